"""Injected regressions (issue 14, positive controls): the fault registry, its params and environment, the
install into fresh processes through the generated sitecustomize, the record of what was injected, and
(marked `vllm`) real runs in which every registered fault, at its default rate, fails a check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import REPO, TINY_PARAMS, recorded_context, run_cli
from workbench.core import hook
from workbench.core.errors import EngineError, ParamsError
from workbench.core.notebook import injection_banner
from workbench.core.params import load_params
from workbench.correctness import pipeline
from workbench.inject import faults, points, runtime, stages
from workbench.inject.faults import FAULTS, Chance, EmittedRow, SampledRow, SpecRow
from workbench.records import load_summary

FAULT_NAMES = sorted(FAULTS)
SMALL = ["-p", "num_questions", "8", "-p", "output_match_prompts", "20"]


# ------------------------------------------------------------------ the registry


def test_every_fault_is_registered_with_a_patch_point_a_rate_and_the_bugs_it_mirrors() -> None:
    assert FAULT_NAMES == ["accept_extra_draft", "drop_bonus_token", "skip_state_rollback", "stale_accepted_tokens"]
    for fault in FAULTS.values():
        assert fault.point in points.POINTS, fault.name
        assert 0 < fault.default_rate <= 1
        assert fault.mirrors and all("#" in m for m in fault.mirrors)  # names the upstream issue
        assert fault.summary and fault.doc.startswith(fault.summary)
    with pytest.raises(ValueError, match="already registered"):
        faults.register_fault("drop_bonus_token", point="emitted_tokens", mirrors=["x#1"], default_rate=0.1)(
            lambda row, chance: None)


def test_patch_points_name_vllm_functions_by_module_class_and_attribute() -> None:
    assert {p.target for p in points.POINTS.values()} == {
        "vllm.v1.attention.backends.gdn_attn.GDNAttentionMetadataBuilder.build",
        "vllm.v1.sample.rejection_sampler.RejectionSampler.forward",
        "vllm.v1.sample.rejection_sampler.RejectionSampler.parse_output"}


# ------------------------------------------------------------------ what each fault does to a row (no vLLM)


def rows(*counts: int, first: tuple[int, ...] = ()) -> list[SpecRow]:
    return [SpecRow(index=i, count=c, query_len=2, first_spec=i in first) for i, c in enumerate(counts)]


def test_stale_accepted_tokens_gives_rows_another_rows_differing_count() -> None:
    wrong = faults.stale_accepted_tokens(rows(1, 2, 2, 1, 1), 1, Chance(1.0, 0))
    assert wrong == {0: 2, 1: 1, 2: 1, 3: 2, 4: 2}
    assert faults.stale_accepted_tokens(rows(2, 2, 2), 1, Chance(1.0, 0)) == {}  # nothing differs: nothing to read
    assert faults.stale_accepted_tokens(rows(1, 2, 2, 1), 1, Chance(0.0, 0)) == {}
    # a first spec step (count 1) reads a neighbour's count: it resumes from a slot never written for it (#45100)
    assert faults.stale_accepted_tokens(rows(1, 2, first=(0,)), 1, Chance(1.0, 0))[0] == 2


def test_skip_state_rollback_resumes_after_the_last_drafted_token() -> None:
    wrong = faults.skip_state_rollback(rows(1, 2, 1, 3, first=(2,)), 2, Chance(1.0, 0))
    assert wrong == {0: 3, 1: 3}  # row 2: its first spec step, nothing drafted before; row 3: all accepted


def test_accept_extra_draft_emits_the_rejected_draft_and_the_targets_next_token() -> None:
    # drafts 7, 8; the verifier accepted 7, rejected 8 and corrected it to 5; the target's token after 8 is 6
    row = SampledRow(index=0, drafts=[7, 8], tokens=[7, 5], target=[7, 5, 6])
    assert faults.accept_extra_draft(row, Chance(1.0, 0)) == [7, 8, 6]
    all_accepted = SampledRow(index=0, drafts=[7, 8], tokens=[7, 8, 9], target=[7, 8, 9])
    assert faults.accept_extra_draft(all_accepted, Chance(1.0, 0)) is None
    assert faults.accept_extra_draft(SampledRow(index=0, drafts=[], tokens=[4], target=[4]), Chance(1.0, 0)) is None
    assert faults.accept_extra_draft(row, Chance(0.0, 0)) is None


def test_drop_bonus_token_drops_the_last_token_of_fully_accepted_rows_only() -> None:
    assert faults.drop_bonus_token(EmittedRow(index=0, tokens=[7, 8], width=2), Chance(1.0, 0)) == [7]
    assert faults.drop_bonus_token(EmittedRow(index=0, tokens=[5], width=2), Chance(1.0, 0)) is None


def test_the_draw_is_seeded_and_keeps_to_its_rate() -> None:
    first, second = Chance(0.3, 7, "x"), Chance(0.3, 7, "x")
    assert [first.hit() for _ in range(200)] == [second.hit() for _ in range(200)]  # every TP rank draws the same
    chance = Chance(0.3, 1, "y")
    assert 2800 < sum(chance.hit() for _ in range(10000)) < 3200
    assert not any(Chance(0.0, 1).hit() for _ in range(1000))


# ------------------------------------------------------------------ params, the CLI and the environment


def test_inject_keys_are_params_and_an_unknown_fault_is_refused_naming_the_key() -> None:
    params = load_params(TINY_PARAMS, {"inject": "drop_bonus_token", "inject_rate": 0.25, "inject_seed": 3})
    assert (params.inject, params.inject_rate, params.inject_seed) == ("drop_bonus_token", 0.25, 3)
    assert stages.rate_of(params) == 0.25
    assert stages.rate_of(load_params(TINY_PARAMS, {"inject": "drop_bonus_token"})) == FAULTS["drop_bonus_token"].default_rate
    with pytest.raises(ParamsError, match="inject_rate.*set inject"):
        load_params(TINY_PARAMS, {"inject_rate": 0.5})
    with pytest.raises(ParamsError, match="inject_rate"):
        load_params(TINY_PARAMS, {"inject": "drop_bonus_token", "inject_rate": 1.5})
    with pytest.raises(ParamsError) as refused:
        stages.check_params(load_params(TINY_PARAMS, {"inject": "no_such_fault"}), TINY_PARAMS)
    assert refused.value.key == "inject"
    assert all(name in str(refused.value) for name in FAULT_NAMES)


@pytest.mark.parametrize("args", [["--inject", "no_such_fault"], ["-p", "inject", "no_such_fault"]])
def test_cli_refuses_an_unknown_fault_before_any_engine(tmp_path, args) -> None:
    result = run_cli("run", str(TINY_PARAMS), *args, "--out", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr[-2000:]
    assert "'inject'" in result.stderr and "known faults: accept_extra_draft" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()


def test_the_audit_refuses_an_injected_fault(tmp_path) -> None:
    result = run_cli("audit", str(TINY_PARAMS), "-p", "inject", "drop_bonus_token", "--out", str(tmp_path / "run"))
    assert result.returncode == 2 and "'inject'" in result.stderr, result.stderr[-2000:]


def test_only_the_speculative_engine_gets_the_fault(tmp_path) -> None:
    ctx = pipeline.prepare(TINY_PARAMS, {"num_questions": 2, "output_match_prompts": 2, "inject": "skip_state_rollback",
                                         "inject_rate": 0.2, "inject_seed": 5}, tmp_path / "run")
    reference, speculative = (pipeline.engine_job(ctx, label) for label in pipeline.RUN_LABELS)
    assert not any(k.startswith("WORKBENCH_INJECT") for k in reference.env) and "PYTHONPATH" not in reference.env
    env = speculative.env
    assert (env[runtime.INJECT_ENV], env[runtime.INJECT_RATE_ENV], env[runtime.INJECT_SEED_ENV]) == \
        ("skip_state_rollback", "0.2", "5")
    assert env[runtime.INJECT_LOG_ENV] == str(ctx.run_dir / "records" / "inject_events.jsonl")
    path = env["PYTHONPATH"].split(os.pathsep)
    assert path[0] == str(ctx.run_dir / "inject") and path[1] == str(hook.package_root())
    site = (ctx.run_dir / "inject" / "sitecustomize.py").read_text()
    assert "from workbench.inject.runtime import install_from_env" in site and runtime.INJECT_ENV in site
    # the llm kwargs do not change: the fault is in the environment only
    assert reference.llm_kwargs["seed"] == speculative.llm_kwargs["seed"]


IMPORT_RUNTIME = """
import json, sys
before = set(sys.modules)
import workbench.inject.runtime
print(json.dumps(sorted({m.split('.')[0] for m in set(sys.modules) - before})))
"""


def test_the_runtime_pulls_in_only_the_standard_library() -> None:
    """In a fresh interpreter, as the generated sitecustomize imports it in every engine process."""
    result = subprocess.run([sys.executable, "-c", IMPORT_RUNTIME], cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout)) - set(sys.stdlib_module_names) == {"workbench"}


# ------------------------------------------------------------------ install into a fresh process (fake and real vLLM)

FAKE_SAMPLER = '''
class RejectionSampler:
    @staticmethod
    def parse_output(output_token_ids, vocab_size, discard_req_indices=(), logprobs_tensors=None):
        return [[t for t in row if t != -1] for row in output_token_ids.tolist()], None

    def forward(self, metadata, draft_probs, logits, sampling_metadata):
        raise NotImplementedError
'''


def _fake_vllm(root: Path, sampler_source: str) -> Path:
    package = root / "fake" / "vllm" / "v1" / "sample"
    package.mkdir(parents=True)
    for folder in (root / "fake" / "vllm", root / "fake" / "vllm" / "v1", package):
        (folder / "__init__.py").write_text("")
    (package / "rejection_sampler.py").write_text(sampler_source)
    return root / "fake"


def _injected_python(tmp_path: Path, fault: str, script: str, extra_path: list[str], rate: float = 1.0):
    params = load_params(TINY_PARAMS, {"inject": fault, "inject_rate": rate})
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_INJECT")}
    env.update(stages.engine_env(params, tmp_path))
    env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], *extra_path])
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env, capture_output=True, text=True,
                            timeout=300)
    return params, result


def test_sitecustomize_installs_the_fault_in_a_fresh_process_before_vllm_is_imported(tmp_path) -> None:
    fake = _fake_vllm(tmp_path, FAKE_SAMPLER)
    params, result = _injected_python(tmp_path, "drop_bonus_token", '''
        import numpy, torch
        from vllm.v1.sample.rejection_sampler import RejectionSampler
        # as vLLM's runner calls it: the rows to discard as a numpy array (empty here)
        print(RejectionSampler.parse_output(torch.tensor([[7, 8], [5, -1]]), 100, numpy.array([], dtype=int))[0])
    ''', [str(fake)])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[[7], [5]]"  # the bonus of the fully accepted row is gone
    record = stages.verify(params, tmp_path)
    assert record.events == 1 and record.calls == 1 and record.installed_in[0].pid != os.getpid()
    assert record.target.endswith("RejectionSampler.parse_output")

    # the same process without the fault's environment: nothing installed, nothing changed
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_INJECT")}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "inject"), str(REPO), str(fake)])
    clean = subprocess.run([sys.executable, "-c", "import torch\nfrom vllm.v1.sample.rejection_sampler import "
                            "RejectionSampler as R\nprint(R.parse_output(torch.tensor([[7, 8]]), 100)[0])"],
                           env=env, capture_output=True, text=True, timeout=300)
    assert clean.returncode == 0 and clean.stdout.strip() == "[[7, 8]]", clean.stderr


def test_a_missing_target_fails_the_import_and_the_run_is_an_error(tmp_path) -> None:
    fake = _fake_vllm(tmp_path, "class SomethingElse:\n    pass\n")
    params, result = _injected_python(tmp_path, "drop_bonus_token",
                                      "import vllm.v1.sample.rejection_sampler\n", [str(fake)])
    assert result.returncode != 0
    assert "cannot install fault 'drop_bonus_token'" in result.stderr and "no class RejectionSampler" in result.stderr
    with pytest.raises(EngineError, match="could not be installed: .*no class RejectionSampler"):
        stages.verify(params, tmp_path, finished=False)


def test_a_fault_never_installed_or_never_fired_is_an_error_never_a_clean_run(tmp_path) -> None:
    params = load_params(TINY_PARAMS, {"inject": "stale_accepted_tokens"})
    stages.engine_env(params, tmp_path)  # a fresh, empty log: no engine process ever imported the target
    with pytest.raises(EngineError, match="installed in no engine process"):
        stages.verify(params, tmp_path)
    log = stages.events_path(tmp_path)
    hook.append_event(log, {"kind": runtime.INSTALLED, "fault": "stale_accepted_tokens", "target": "x"})
    with pytest.raises(EngineError, match=f"never fired at rate {FAULTS['stale_accepted_tokens'].default_rate:g}"):
        stages.verify(params, tmp_path)
    nothing_asked = load_params(TINY_PARAMS, {"inject": "stale_accepted_tokens", "inject_rate": 0.0})
    assert stages.verify(nothing_asked, tmp_path).events == 0  # rate 0: installed, nothing injected, by request
    hook.append_event(log, {"kind": runtime.INJECTED, "rows": 3, "first_spec": 1})
    hook.append_event(log, {"kind": runtime.INJECTED, "rows": 2, "first_spec": 0})
    record = stages.verify(params, tmp_path)
    assert (record.events, record.calls, record.first_spec_rows) == (5, 2, 1)


def test_a_fault_seen_in_the_reference_engine_is_an_error(tmp_path) -> None:
    from workbench.core.engine import ENGINE_LABEL_ENV

    assert runtime.ENGINE_ENV == ENGINE_LABEL_ENV  # the label every engine child and its processes carry
    params = load_params(TINY_PARAMS, {"inject": "stale_accepted_tokens"})
    stages.engine_env(params, tmp_path)
    log = stages.events_path(tmp_path)
    hook.append_event(log, {"kind": runtime.INSTALLED, "target": "x", "engine": "reference"})
    hook.append_event(log, {"kind": runtime.INJECTED, "rows": 1, "engine": "reference"})
    with pytest.raises(EngineError, match="reached the reference engine"):
        stages.verify(params, tmp_path)


@pytest.mark.parametrize("fault", FAULT_NAMES)
def test_every_patch_point_installs_on_the_real_vllm_classes(tmp_path, fault) -> None:
    pytest.importorskip("vllm")
    module = points.POINTS[FAULTS[fault].point].module
    params, result = _injected_python(tmp_path, fault, f"import {module}\n", [])
    assert result.returncode == 0, result.stderr[-3000:]
    record = stages.verify(params, tmp_path, finished=False)  # no install error
    assert [i.target for i in record.installed_in] == [points.POINTS[FAULTS[fault].point].target]
    assert record.events == 0  # imported, not run: nothing injected yet


# ------------------------------------------------------------------ the record and the report (recorded engines)


def test_summary_header_and_banner_say_the_run_was_injected(tmp_path, recorded) -> None:
    ctx = recorded_context(recorded, tmp_path / "run", inject="accept_extra_draft", inject_seed=2)
    log = stages.events_path(ctx.run_dir)
    hook.append_event(log, {"kind": runtime.INSTALLED, "fault": "accept_extra_draft",
                            "target": points.POINTS["rejection_sampler_output"].target})
    hook.append_event(log, {"kind": runtime.INJECTED, "rows": 4})
    table = pipeline.score(ctx, recorded["reference"], recorded["speculative"])
    match = pipeline.compare_outputs(ctx, recorded["reference"], recorded["speculative"])
    pipeline.build_summary(ctx, recorded["reference"], recorded["speculative"], table, match,
                           pipeline.acceptance(recorded["speculative"]))
    summary = load_summary(ctx.run_dir)
    injection = summary.injection
    rate = FAULTS["accept_extra_draft"].default_rate
    assert (injection.name, injection.rate, injection.seed, injection.events) == ("accept_extra_draft", rate, 2, 4)
    assert injection.mirrors == list(FAULTS["accept_extra_draft"].mirrors)
    assert summary.params.inject == "accept_extra_draft"
    assert "INJECTED FAULT" in pipeline.describe_case(ctx) and "vllm-project/vllm#2658" in pipeline.describe_case(ctx)
    banner = injection_banner(ctx.run_dir, ctx.params)
    assert banner.startswith(f"INJECTED FAULT accept_extra_draft (rate {rate:g}, seed 2; 4 rows corrupted)")
    assert injection_banner(ctx.run_dir, load_params(TINY_PARAMS)) is None


def test_a_clean_run_records_no_injection(finished_run) -> None:
    assert load_summary(finished_run).injection is None


# ------------------------------------------------------------------ real engines: every fault is caught

CAUGHT_BY = ("output_match", "acceptance_length")
"""Upstream's checks that run on the default case (accuracy is skipped there: threshold 0)."""


def _failed(run_dir: Path) -> dict[str, tuple[float | None, float | None]]:
    return {c.name: (c.observed, c.required) for c in load_summary(run_dir).checks if c.status == "failed"}


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory) -> Path:
    """The case without a fault, at the tests' size: it passes, so a failure below is the fault's doing."""
    out = tmp_path_factory.mktemp("controls") / "clean"
    result = run_cli("run", str(TINY_PARAMS), *SMALL, "--out", str(out))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


@pytest.mark.vllm
def test_an_injected_run_fails_a_check_and_says_what_was_injected(clean_run, tmp_path) -> None:
    """Both engines started (in parallel, as the case sets): only the speculative one is broken."""
    out = tmp_path / "injected"
    result = run_cli("run", str(TINY_PARAMS), "--inject", "stale_accepted_tokens", *SMALL, "--out", str(out))
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "FAILED" in result.stdout and set(_failed(out)) & set(CAUGHT_BY)
    summary = load_summary(out)
    injection = summary.injection
    assert summary.status == "failed" and injection.name == "stale_accepted_tokens" and injection.events > 0
    assert injection.mirrors[0].startswith("vllm-project/vllm#45100")
    events = hook.read_events(out / "records" / "inject_events.jsonl")
    assert {e["engine"] for e in events} == {"speculative"}  # every process that patched or injected
    processes = {i.pid: i.process for i in injection.installed_in}
    assert "engine-speculative" in processes.values() and len(processes) >= 2  # the child, and vLLM's worker
    assert sum(e.get("rows", 0) for e in events if e["kind"] == runtime.INJECTED) == injection.events
    assert "workbench.inject" not in (out / "logs" / "reference.log").read_text()
    html = (out / "report.html").read_text()
    assert html.index("INJECTED FAULT stale_accepted_tokens") < html.index("<b>Case</b>")  # the banner opens it


@pytest.mark.vllm
def test_a_fault_reaches_an_engine_core_that_runs_in_the_engine_child(clean_run, tmp_path) -> None:
    """The GPU default (`engine_in_process`): no EngineCore or worker process starts, so the fault must be installed
    in the engine child itself, before vLLM is imported; it is, and the run fails a check, as with vLLM's processes."""
    out = tmp_path / "injected-in-process"
    result = run_cli("run", str(TINY_PARAMS), "--inject", "stale_accepted_tokens", *SMALL, "-p", "engine_in_process",
                     "true", "-p", "reference_record", str(clean_run / "records" / "reference.json"), "--out", str(out))
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert set(_failed(out)) & set(CAUGHT_BY)
    injection = load_summary(out).injection
    assert injection.events > 0
    assert {i.process for i in injection.installed_in} == {"engine-speculative"}  # the child alone: nothing below it
    assert "EngineCore pid=" not in (out / "logs" / "speculative.log").read_text()


@pytest.mark.vllm
@pytest.mark.parametrize("fault", [name for name in FAULT_NAMES if name != "stale_accepted_tokens"])
def test_every_fault_at_its_default_rate_fails_a_check(clean_run, tmp_path, fault) -> None:
    """The positive control per fault: on the clean run's reference (`reference_record`), the injected
    speculative engine fails a check the clean one passed, and the summary counts the corrupted rows.
    (`stale_accepted_tokens` is the fault of the test above, at its default rate: one engine run less.)"""
    out = tmp_path / fault
    result = run_cli("run", str(TINY_PARAMS), "--inject", fault, *SMALL,
                     "-p", "reference_record", str(clean_run / "records" / "reference.json"), "--out", str(out))
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    failed = _failed(out)
    assert set(failed) & set(CAUGHT_BY), failed
    injection = load_summary(out).injection
    assert injection.name == fault and injection.rate == FAULTS[fault].default_rate and injection.events > 0
    print(f"{fault} at rate {injection.rate}: {injection.events} rows corrupted; failed (observed, required): {failed}")
