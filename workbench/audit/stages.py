"""The no-sync audit (issue 6), stage by stage: params -> engine under the probe -> counts -> summary.

Mirrors upstream vLLM's `test_no_sync_with_spec_decode` (tests/v1/e2e/spec_decode): a probe
(`workbench.audit.probe`) counts the lazy initialisations of `CommonAttentionMetadata.seq_lens_cpu`
in every process of a real `vllm.LLM` built with `async_scheduling=True` and the case's
speculative config (`workbench.audit.child`), a few prompts are generated, and the audit asserts
that the probe counted nothing. A positive control then forces such initialisations in the model
process, which must be counted (>= 1): that proves the probe sits where the model runs and that
its counts arrive here. Where CUDA is present, torch's sync-debug mode gives a second,
informational count (`cuda_sync_count`; `null` on the CPU).

The notebook `notebooks/no_sync_audit.ipynb` calls these functions and `workbench.audit.views`.
summary.json is a `RunSummary` of kind `audit`, its checks those registered for that kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.audit import checks as _registers_audit_checks  # noqa: F401  (registration)
from workbench.audit.child import AUDIT_PROMPTS, AUDIT_SAMPLING, AuditJob, run_audit_job
from workbench.audit.hook import probe_env, write_sitecustomize
from workbench.audit.probe import count_events, read_events, set_phase
from workbench.core.caches import compile_cache_dir, compile_cache_env
from workbench.core.checks import all_passed, evaluate_checks
from workbench.core.params import CaseParams, case_name
from workbench.records import EngineVersions, RunSummary
from workbench.core.rundir import open_run_folder, run_versions, write_summary
from workbench.correctness.pipeline import llm_kwargs

MAX_STACKS = 50


@dataclass
class AuditContext:
    """One audit run: its params and folder."""

    params: CaseParams
    params_file: str
    run_dir: Path


def prepare(params_file: str | Path, overrides: dict[str, Any] | None = None, run_dir: str | Path = "") -> AuditContext:
    """Validate params and write them into the run folder."""
    params, folder = open_run_folder(params_file, overrides, run_dir)
    return AuditContext(params, str(params_file), folder)


def audit_llm_kwargs(params: CaseParams) -> dict[str, Any]:
    """The speculative engine's `vllm.LLM(...)` arguments plus `async_scheduling=True` (as upstream)."""
    return {**llm_kwargs(params, "speculative"), "async_scheduling": True}


def run_audit(params: CaseParams, run_dir: Path, positive_control: bool = True) -> dict[str, Any]:
    """One real engine with the probe in all its processes; returns counts, stacks and the record.

    Writes `records/audit.json` (the child's record), `records/probe_events.jsonl` (every probe
    event of every process), `probe/` (the generated sitecustomize and the phase file) and
    `logs/audit.log`.
    """
    run_dir = Path(run_dir)
    records, probe_dir = run_dir / "records", run_dir / "probe"
    records.mkdir(parents=True, exist_ok=True)
    probe_log, control = records / "probe_events.jsonl", probe_dir / "phase"
    probe_log.unlink(missing_ok=True)
    write_sitecustomize(probe_dir)
    set_phase(control, "startup")
    env = probe_env(probe_log, control, probe_dir)
    if params.cpu_kvcache_space_gib:
        env["VLLM_CPU_KVCACHE_SPACE"] = str(params.cpu_kvcache_space_gib)
    env.update(compile_cache_env(compile_cache_dir(params.cache_dir)))
    job = AuditJob(label="audit", llm_kwargs=audit_llm_kwargs(params), prompts=list(AUDIT_PROMPTS),
                   sampling=dict(AUDIT_SAMPLING), positive_control=positive_control,
                   record_path=str(records / "audit.json"), log_path=str(run_dir / "logs" / "audit.log"),
                   probe_log=str(probe_log), control_path=str(control), env=env)
    record = run_audit_job(job, params.engine_timeout_s)
    return audit_result(record, read_events(probe_log))


def _stacks(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = ("pid", "process", "phase", "device", "shape", "stack")
    return [{k: e.get(k) for k in keys if k in e} for e in events[:MAX_STACKS]]


def _probe_note(modes: list[str]) -> str:
    if modes == ["wrapped"]:
        return "vLLM has the lazy seq_lens_cpu property; the probe wraps it as upstream's test does"
    if modes == ["stand-in"]:
        return ("this vLLM has no seq_lens_cpu property (removed upstream; only the eager "
                "seq_lens_cpu_upper_bound remains); the probe installed a counting stand-in with the "
                "deprecated lazy semantics, so in-tree code cannot trigger it and the positive control can")
    return "probe not installed anywhere"


def audit_result(record: dict[str, Any], events: list[dict[str, Any]]) -> dict[str, Any]:
    """Plain-data result of one audit from the child's record and the probe log."""
    counts = count_events(events)
    llm_pid = record.get("llm_pid")
    installed = [{"pid": e["pid"], "process": e.get("process"), "mode": e.get("mode"), "target": e.get("target")}
                 for e in counts["installed"]]
    modes = sorted({i["mode"] for i in installed if i.get("mode")})
    control_run = bool(record.get("positive_control_run"))
    return {
        "async_scheduling_active": record.get("async_scheduling_active"),
        "async_scheduling_requested": record.get("llm_kwargs", {}).get("async_scheduling"),
        "async_scheduling_reason": record.get("async_scheduling_reason"),
        "device_type": record.get("device_type"),
        "speculative_active": record.get("speculative_active"),
        "sync_count": counts["sync_count"],
        "sync_count_by_phase": counts["sync_count_by_phase"],
        "sync_stacks": _stacks(counts["sync_events"]),
        "positive_control_run": control_run,
        "positive_control_count": counts["positive_control_count"] if control_run else None,
        "positive_control_processes": sorted({f"{e.get('process')} (pid {e['pid']})"
                                              for e in counts["positive_control_events"]}),
        "positive_control_stacks": _stacks(counts["positive_control_events"][:3]),
        "cuda_sync_count": counts["cuda_sync_count"] if record.get("device_type") == "cuda" else None,
        "cuda_sync_stacks": _stacks(counts["cuda_sync_events"][:20]),
        "probe": {
            "what": "lazy initialisations of CommonAttentionMetadata.seq_lens_cpu (implicit device->host sync)",
            "mode": modes[0] if len(modes) == 1 else (modes or None),
            "installed_in": installed,
            "llm_pid": llm_pid,
            # the model runs below the LLM process unless vLLM's multiprocessing is switched off
            "in_model_process": any(i["pid"] != llm_pid for i in installed)
            or (record.get("engine_multiprocessing") is False and any(i["pid"] == llm_pid for i in installed)),
            "warnings": [e.get("message") for e in counts["warnings"]],
            "note": _probe_note(modes),
        },
        "outputs": [{"prompt": o.get("prompt"), "completion": o.get("completion"),
                     "num_tokens": len(o.get("token_ids", [])), "finish_reason": o.get("finish_reason")}
                    for o in record.get("outputs", [])],
        "timings": {k: record.get(k) for k in ("init_s", "generate_s", "wall_s")},
        "versions": record.get("versions", {}),
        "llm_kwargs": record.get("llm_kwargs", {}),
    }


SUMMARY_KEYS = ("async_scheduling_active", "async_scheduling_reason", "sync_count", "sync_count_by_phase",
                "sync_stacks", "positive_control_count", "positive_control_processes", "cuda_sync_count", "probe",
                "speculative_active", "timings")
"""The audit result's keys that summary.json keeps, as `RunSummary` fields of the same name."""


def build_summary(ctx: AuditContext, result: dict[str, Any]) -> RunSummary:
    """summary.json of the audit: the counts, the registered `audit` checks and `passed`."""
    summary = RunSummary.model_validate({
        "kind": "audit",
        "case": case_name(ctx.params_file),
        "params": ctx.params,
        **{key: result.get(key) for key in SUMMARY_KEYS},
        "versions": run_versions(EngineVersions.model_validate(result.get("versions") or {}), ctx.params.model),
    })
    summary.checks = evaluate_checks(summary)
    summary.passed = all_passed(summary.checks)
    summary.status = "passed" if summary.passed else "failed"
    write_summary(ctx.run_dir, summary)
    return summary
