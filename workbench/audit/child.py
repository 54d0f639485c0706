"""The audit's engine child: one real `vllm.LLM` with `async_scheduling=True` under the probe.

It runs in `workbench.core.engine`'s child frame (log, environment, record on disk, vLLM
shutdown, exit code); only the body is the audit's: engine up, the measured generation in phase
`generate`, then the positive control. The probe goes into this process before vLLM is imported
(`install_from_env` as the frame's setup), and the job's environment (`hook.probe_env`) carries
it into every process vLLM starts.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from workbench.audit.probe import POSITIVE_CONTROL, install_from_env, set_phase
from workbench.core.engine import (ChildJob, ChildState, child_frame, completion_record, run_engine_job,
                                   scheduling_facts, supported_llm_kwargs)

# Upstream's one prompt first; a few more so that the batch holds several requests. Greedy, 10 new
# tokens, as upstream.
AUDIT_PROMPTS = (
    "Hello, my name is",
    "The capital of France is",
    "Question: Tom has 3 apples and buys 5 more. How many apples does he have now?\nAnswer:",
    "Repeat the word cat five times: cat cat",
)
AUDIT_SAMPLING = {"temperature": 0.0, "max_tokens": 10}
POSITIVE_CONTROL_SAMPLING = {"temperature": 0.0, "max_tokens": 3}


@dataclass(kw_only=True)
class AuditJob(ChildJob):
    """What the audit child needs beyond the common job: its prompts, the control switch, the probe's files."""

    prompts: list[str]
    sampling: dict[str, Any]
    positive_control: bool
    probe_log: str
    control_path: str


def async_reason(active: bool, requested: Any, device_type: str) -> str:
    """Why async scheduling is (not) active, as the engine's config says after construction."""
    if active:
        return f"async scheduling active (requested {requested!r}, device {device_type})"
    why = " (vLLM's CPU platform turns it off)" if device_type == "cpu" else ""
    return (f"requested async_scheduling={requested!r}, but the engine's scheduler_config.async_scheduling "
            f"is False after construction on device '{device_type}'{why}")


def audit_body(job: AuditJob, state: ChildState) -> None:
    """Engine up, generate under the probe, then the positive control."""
    from vllm import LLM, SamplingParams

    record = state.record
    record.update(llm_pid=os.getpid(), positive_control_run=False,
                  engine_multiprocessing=os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING", "1") != "0")
    started = time.perf_counter()
    state.llm = llm = LLM(**supported_llm_kwargs(job.llm_kwargs))
    record["init_s"] = time.perf_counter() - started
    facts = scheduling_facts(llm)  # as upstream: read back after construction
    active, device_type = facts["async_scheduling"], facts["device_type"]
    spec = llm.llm_engine.vllm_config.speculative_config
    record.update(async_scheduling_active=active, device_type=device_type,
                  async_scheduling_reason=async_reason(active, job.llm_kwargs.get("async_scheduling"), device_type),
                  speculative_active={"method": getattr(spec, "method", None),
                                      "num_speculative_tokens": getattr(spec, "num_speculative_tokens", None)}
                  if spec is not None else None)
    set_phase(job.control_path, "generate")
    started = time.perf_counter()
    outputs = llm.generate(job.prompts, SamplingParams(**job.sampling), use_tqdm=False)
    record["generate_s"] = time.perf_counter() - started
    set_phase(job.control_path, "idle")
    record["outputs"] = [{"prompt": prompt, **completion_record(i, out)}
                         for i, (prompt, out) in enumerate(zip(job.prompts, outputs))]
    if job.positive_control:
        set_phase(job.control_path, POSITIVE_CONTROL)
        llm.generate(job.prompts[:1], SamplingParams(**POSITIVE_CONTROL_SAMPLING), use_tqdm=False)
        set_phase(job.control_path, "idle")
        record["positive_control_run"] = True


def audit_child(job: AuditJob) -> None:
    """Runs in the spawned child: the probe goes in before vLLM is imported, then the audit body.

    The probe env and PYTHONPATH (`job.env`) reach every process vLLM starts; `install_from_env`
    puts the probe into this process too.
    """
    child_frame(job, lambda state: audit_body(job, state), setup=install_from_env)


def run_audit_job(job: AuditJob, timeout_s: float) -> dict[str, Any]:
    """The audit child in `workbench.core.engine`'s frame; its record, or `EngineError`."""
    return run_engine_job(job, timeout_s, target=audit_child)
