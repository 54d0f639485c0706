"""The no-sync audit (issue 6): the seq_lens_cpu probe, its install into fresh processes, the checks,
and (marked `vllm`) `workbench audit` on the CPU end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO, TINY_PARAMS, run_cli
from workbench.audit import hook, probe, stages
from workbench.core.checks import evaluate_checks
from workbench.records import RunSummary, load_summary

torch = pytest.importorskip("torch")


@dataclass
class LegacyMetadata:
    """Upstream's shape before the removal (vLLM <= 0.31): a lazy, cached `seq_lens_cpu` property."""

    seq_lens: torch.Tensor
    _seq_lens_cpu: torch.Tensor | None = None

    @property
    def seq_lens_cpu(self) -> torch.Tensor:
        if self._seq_lens_cpu is None:
            self._seq_lens_cpu = self.seq_lens.to("cpu")
        return self._seq_lens_cpu


@dataclass
class CurrentMetadata:
    """vLLM 0.32's shape: no `seq_lens_cpu` at all."""

    seq_lens: torch.Tensor


@pytest.fixture
def probe_log(tmp_path):
    """Route this process's probe events to a fresh log; undo every class patch afterwards."""
    log = tmp_path / "events.jsonl"
    probe.reset(log)
    yield log
    for cls in (LegacyMetadata, CurrentMetadata):
        probe.uninstall_from_class(cls)
    probe.reset()


def lazy_inits(log: Path) -> list[dict]:
    return [e for e in probe.read_events(log) if e["kind"] == probe.LAZY_INIT]


def test_without_the_probe_nothing_is_counted(probe_log) -> None:
    """The control for the tests below: a lazy init happens, but no probe, no count."""
    meta = LegacyMetadata(torch.tensor([3, 5]))
    assert meta._seq_lens_cpu is None
    meta.seq_lens_cpu  # noqa: B018
    assert meta._seq_lens_cpu is not None  # the lazy init really ran
    assert lazy_inits(probe_log) == []
    assert not hasattr(CurrentMetadata(torch.tensor([1])), "seq_lens_cpu")


def test_probe_wraps_upstream_lazy_property_and_counts_each_init(probe_log) -> None:
    assert probe.install_on_class(LegacyMetadata) == "wrapped"
    assert probe.install_on_class(LegacyMetadata) == "wrapped"  # idempotent: no double counting
    meta = LegacyMetadata(torch.tensor([3, 5]))
    first = meta.seq_lens_cpu
    assert meta.seq_lens_cpu is first  # cached: the second read is no sync and no count
    assert torch.equal(first, torch.tensor([3, 5]))
    LegacyMetadata(torch.tensor([7])).seq_lens_cpu  # noqa: B018
    events = lazy_inits(probe_log)
    assert len(events) == 2
    assert events[0]["source"] == "engine" and events[0]["phase"] == "startup"
    assert events[0]["shape"] == [2] and events[0]["pid"] == os.getpid()
    assert any("test_audit.py" in frame for frame in events[0]["stack"])  # the caller's stack, probe frames cut
    assert not any("workbench/audit/probe.py" in frame for frame in events[0]["stack"])
    installed = [e for e in probe.read_events(probe_log) if e["kind"] == probe.INSTALLED]
    assert [e["mode"] for e in installed] == ["wrapped"]
    probe.uninstall_from_class(LegacyMetadata)
    LegacyMetadata(torch.tensor([1])).seq_lens_cpu  # noqa: B018
    assert len(lazy_inits(probe_log)) == 2  # removed probe: no more counts


def test_probe_installs_a_counting_stand_in_where_vllm_removed_the_property(probe_log) -> None:
    assert probe.install_on_class(CurrentMetadata) == "stand-in"
    meta = CurrentMetadata(torch.tensor([4, 2, 9]))
    assert torch.equal(meta.seq_lens_cpu, torch.tensor([4, 2, 9]))
    meta.seq_lens_cpu  # noqa: B018
    assert len(lazy_inits(probe_log)) == 1
    probe.uninstall_from_class(CurrentMetadata)
    assert not hasattr(CurrentMetadata(torch.tensor([1])), "seq_lens_cpu")


def test_phases_and_positive_control_are_told_apart(probe_log, tmp_path) -> None:
    control = tmp_path / "phase"
    probe.set_phase(control, "startup")
    probe.reset(probe_log, control)
    probe.install_on_class(CurrentMetadata)
    probe.set_phase(control, "generate")
    CurrentMetadata(torch.tensor([1, 2])).seq_lens_cpu  # noqa: B018 - what a sync in the engine looks like
    probe.set_phase(control, probe.POSITIVE_CONTROL)
    CurrentMetadata(torch.tensor([1, 2]))  # constructing is enough: the probe forces the lazy init
    probe.set_phase(control, "idle")
    CurrentMetadata(torch.tensor([1, 2]))  # nothing forced outside the positive control
    counts = probe.count_events(probe.read_events(probe_log))
    assert counts["sync_count"] == 1 and counts["sync_count_by_phase"] == {"generate": 1}
    assert counts["positive_control_count"] == 1
    assert counts["positive_control_events"][0]["phase"] == probe.POSITIVE_CONTROL


FAKE_BACKEND = '''
from dataclasses import dataclass
import torch

@dataclass
class CommonAttentionMetadata:
    seq_lens: torch.Tensor
'''


def _fake_vllm(root: Path) -> Path:
    """A stand-in `vllm.v1.attention.backend` module, so a fresh process can import it in a second."""
    package = root / "fake" / "vllm" / "v1" / "attention"
    package.mkdir(parents=True)
    for folder in (package, package.parent, package.parent.parent):
        (folder / "__init__.py").write_text("")
    (package / "backend.py").write_text(FAKE_BACKEND)
    return root / "fake"


SCRIPT = textwrap.dedent('''
    import sys, torch
    assert "vllm" not in sys.modules
    from vllm.v1.attention.backend import CommonAttentionMetadata as C
    C(torch.tensor([2, 3])).seq_lens_cpu
    print("ok", hasattr(C, "_workbench_sync_probe"))
''')


def _fresh_python(env_extra: dict[str, str], pythonpath: list[str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_SYNC_PROBE")}
    env.update(env_extra)
    env["PYTHONPATH"] = os.pathsep.join(pythonpath)
    return subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120)


def test_sitecustomize_puts_the_probe_in_a_fresh_process_before_vllm_is_imported(tmp_path) -> None:
    """How the probe reaches vLLM's EngineCore and worker processes: env + generated sitecustomize."""
    fake = _fake_vllm(tmp_path)
    site, log, control = tmp_path / "probe", tmp_path / "events.jsonl", tmp_path / "probe" / "phase"
    hook.write_sitecustomize(site)
    probe.set_phase(control, "generate")
    env = hook.probe_env(log, control, site)
    result = _fresh_python(env, env["PYTHONPATH"].split(os.pathsep) + [str(fake)])
    assert result.returncode == 0, result.stderr
    assert "ok True" in result.stdout
    events = probe.read_events(log)
    installed = [e for e in events if e["kind"] == probe.INSTALLED]
    assert len(installed) == 1 and installed[0]["mode"] == "stand-in"
    assert installed[0]["pid"] != os.getpid()  # counted in the other process, read back here
    counts = probe.count_events(events)
    assert counts["sync_count"] == 1 and counts["sync_count_by_phase"] == {"generate": 1}

    # the same process without the probe's environment: no probe, nothing counted
    log.unlink()
    result = _fresh_python({}, [str(site), str(REPO), str(fake)])
    assert result.returncode != 0 and "seq_lens_cpu" in result.stderr  # 0.32's class has no such attribute
    assert probe.read_events(log) == []


def test_probe_patches_the_real_vllm_class_through_the_import_hook(tmp_path) -> None:
    pytest.importorskip("vllm")
    site, log = tmp_path / "probe", tmp_path / "events.jsonl"
    hook.write_sitecustomize(site)
    probe.set_phase(site / "phase", "generate")
    env = {k: v for k, v in os.environ.items()}
    env.update(hook.probe_env(log, site / "phase", site))
    script = textwrap.dedent('''
        import torch
        from vllm.v1.attention.backend import CommonAttentionMetadata as C
        from vllm.v1.attention.backends.utils import CommonAttentionMetadata as C2
        assert C is C2
        t = torch.tensor([0, 1])
        m = C(query_start_loc=t, query_start_loc_cpu=t, seq_lens=torch.tensor([5]), num_reqs=1,
              num_actual_tokens=1, max_query_len=1, max_seq_len=5, block_table_tensor=torch.zeros(1, 1),
              slot_mapping=torch.zeros(1))
        assert int(m.seq_lens_cpu[0]) == 5 and int(m.seq_lens_cpu[0]) == 5
    ''')
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    events = probe.read_events(log)
    installed = [e for e in events if e["kind"] == probe.INSTALLED]
    assert [e["target"] for e in installed] == ["vllm.v1.attention.backend.CommonAttentionMetadata"]
    assert probe.count_events(events)["sync_count"] == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_sync_debug_counter_sees_device_to_host_copies(probe_log, tmp_path) -> None:
    control = tmp_path / "phase"
    probe.set_phase(control, "startup")
    probe.reset(probe_log, control)
    probe.install_on_class(CurrentMetadata)
    torch.zeros(1, device="cuda")  # CUDA initialised, as in a worker
    probe.set_phase(control, "generate")
    meta = CurrentMetadata(torch.tensor([3, 4], device="cuda"))  # the probe polls the phase: counter armed
    assert meta.seq_lens_cpu.device.type == "cpu"  # lazy init: a real device->host sync
    probe.set_phase(control, "idle")
    CurrentMetadata(torch.tensor([1], device="cuda"))  # disarms
    torch.tensor([1.0], device="cuda").item()  # not counted: outside the generation phase
    counts = probe.count_events(probe.read_events(probe_log))
    assert counts["sync_count"] == 1
    assert counts["cuda_sync_count"] >= 1
    assert torch.cuda.get_sync_debug_mode() == 0


# ------------------------------------------------------------------ checks


PROBE_IN_WORKER = {"what": "lazy seq_lens_cpu initialisations", "in_model_process": True, "mode": "stand-in"}


def _summary(**changes) -> RunSummary:
    """An audit summary as `stages.build_summary` writes it; every check reads nothing else."""
    base = {"kind": "audit", "async_scheduling_active": True, "async_scheduling_reason": "async scheduling active",
            "sync_count": 0, "sync_count_by_phase": {}, "positive_control_count": 3,
            "positive_control_processes": ["VLLM::Worker (pid 2)"], "probe": PROBE_IN_WORKER}
    base.update(changes)
    return RunSummary.model_validate(base)


def _checks(summary: RunSummary) -> dict:
    return {c.name: c for c in evaluate_checks(summary)}


def _status(summary: RunSummary) -> dict[str, str]:
    return {name: c.status for name, c in _checks(summary).items()}


def test_the_audit_kind_has_exactly_its_two_checks() -> None:
    assert list(_checks(_summary())) == ["no_sync", "positive_control"]


def test_no_sync_is_skipped_never_passed_when_async_scheduling_is_off() -> None:
    checks = _checks(_summary(async_scheduling_active=False,
                              async_scheduling_reason="vLLM's CPU platform turns it off"))
    assert checks["no_sync"].status == "skipped"
    assert checks["no_sync"].message.startswith("not applicable: async scheduling is not active (")
    assert "CPU platform" in checks["no_sync"].message
    assert checks["positive_control"].status == "passed"


def test_no_sync_passes_on_zero_and_fails_with_the_count() -> None:
    assert _status(_summary()) == {"no_sync": "passed", "positive_control": "passed"}
    failed = _checks(_summary(sync_count=4, sync_count_by_phase={"generate": 4}))
    assert failed["no_sync"].status == "failed" and failed["no_sync"].observed == 4
    assert "4 lazy seq_lens_cpu" in failed["no_sync"].message
    # a zero from a probe that never reached the engine processes means nothing
    assert _status(_summary(probe={**PROBE_IN_WORKER, "in_model_process": False}))["no_sync"] == "failed"
    assert _status(_summary(probe=None))["no_sync"] == "failed"


def test_positive_control_that_counts_nothing_fails() -> None:
    assert _status(_summary(positive_control_count=0))["positive_control"] == "failed"
    # the audit writes no count when the control did not run: skipped, never passed
    assert _status(_summary(positive_control_count=None))["positive_control"] == "skipped"
    with pytest.raises(AssertionError, match="positive_control"):
        from workbench.core.checks import assert_checks

        assert_checks(evaluate_checks(_summary(positive_control_count=0)))


def _cpu_record_and_events() -> tuple[dict, list[dict]]:
    """A CPU audit child's record and its probe log: the control counted in a worker, no sync."""
    record = {"llm_pid": 1, "async_scheduling_active": False, "async_scheduling_reason": "off", "device_type": "cpu",
              "positive_control_run": True, "llm_kwargs": {"async_scheduling": True}, "outputs": [],
              "speculative_active": {"method": "mtp", "num_speculative_tokens": 1},
              "init_s": 1.5, "generate_s": 0.5, "wall_s": 4.0, "versions": {"vllm": "0.32.0", "torch": "2.9.0"}}
    events = [{"kind": probe.INSTALLED, "pid": 1, "process": "engine-audit", "mode": "stand-in", "target": "x"},
              {"kind": probe.INSTALLED, "pid": 2, "process": "VllmWorker-0", "mode": "stand-in", "target": "x"},
              {"kind": probe.LAZY_INIT, "pid": 2, "process": "VLLM::Worker", "phase": "positive_control",
               "source": probe.POSITIVE_CONTROL, "stack": ["a.py:1 in f"]}]
    return record, events


def test_audit_result_from_a_record_and_probe_events() -> None:
    result = stages.audit_result(*_cpu_record_and_events())
    assert result["sync_count"] == 0 and result["positive_control_count"] == 1
    assert result["probe"]["in_model_process"] is True and result["probe"]["mode"] == "stand-in"
    assert result["cuda_sync_count"] is None  # no CUDA: not measured, not zero
    assert result["async_scheduling_requested"] is True


def test_build_summary_writes_an_audit_run_summary(tmp_path) -> None:
    """summary.json without an engine: the audit's keys, the registered checks, versions, read back valid."""
    ctx = stages.prepare(TINY_PARAMS, run_dir=tmp_path / "run")
    assert (ctx.run_dir / "params.yaml").is_file() and (ctx.run_dir / "records").is_dir()
    summary = stages.build_summary(ctx, stages.audit_result(*_cpu_record_and_events()))
    loaded = load_summary(ctx.run_dir)
    assert loaded == summary and loaded.kind == "audit" and loaded.case == "tiny-qwen3_5-cpu"
    assert [(c.name, c.status) for c in loaded.checks] == [("no_sync", "skipped"), ("positive_control", "passed")]
    assert loaded.passed is True and loaded.error is None
    assert loaded.versions.vllm == "0.32.0" and loaded.versions.model_config_hash and loaded.versions.workbench
    assert loaded.probe.in_model_process and loaded.speculative_active.method == "mtp"
    assert loaded.timings.wall_s == 4.0 and loaded.cuda_sync_count is None
    raw = json.loads((ctx.run_dir / "summary.json").read_text())
    for key in ("case", "params", "async_scheduling_active", "async_scheduling_reason", "sync_count",
                "sync_count_by_phase", "sync_stacks", "positive_control_count", "positive_control_processes",
                "cuda_sync_count", "probe", "speculative_active", "timings", "checks", "passed", "error", "versions"):
        assert key in raw, key


# ------------------------------------------------------------------ end to end on the CPU


@pytest.mark.vllm
def test_workbench_audit_on_cpu(tmp_path) -> None:
    out = tmp_path / "audit"
    result = run_cli("audit", str(TINY_PARAMS), "--out", str(out))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (out / "report.html").is_file() and (out / "no_sync_audit.ipynb").is_file()
    summary = json.loads((out / "summary.json").read_text())
    checks = {c["name"]: c for c in summary["checks"]}
    assert summary["async_scheduling_active"] is False  # vLLM's CPU platform turns it off
    assert checks["no_sync"]["status"] == "skipped"  # never "passed" on the CPU
    assert checks["no_sync"]["message"].startswith("not applicable: async scheduling is not active")
    assert checks["positive_control"]["status"] == "passed"
    assert summary["positive_control_count"] > 0
    assert summary["passed"] is True and summary["error"] is None
    assert summary["versions"]["vllm"] == "0.32.0"
    assert summary["sync_count"] == 0
    # the probe sat in the process that runs the model, not only in the engine's parent
    assert summary["probe"]["in_model_process"] is True
    assert any("Worker" in p for p in summary["positive_control_processes"])
    for key in ("params", "case", "sync_stacks", "versions"):
        assert key in summary
    assert "not applicable" in (out / "report.html").read_text()
    assert load_summary(out).kind == "audit"  # summary.json reads back as a RunSummary
