"""The correctness flow's engine child: one real `vllm.LLM` generating both prompt sets.

Why a child: vLLM's CPU backend wants engines started under `__main__` or in a spawned
process, teardown between two engines in one process is fragile, and a crash in the child
becomes a reported `EngineError` (with the log tail) instead of a hung notebook kernel.
The child writes its full record to a JSON file, so nothing computed is lost when a
later stage fails.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from workbench.core.engine import (ChildJob, ChildState, child_frame, generate, place_engine_core, progress_bar,
                                   progress_path, scheduling_facts, supported_llm_kwargs)
from workbench.core.startlog import log_offset, read_start_log
from workbench.correctness.workloads import submitter
from workbench.inject.runtime import install_from_env as install_injected_fault
from workbench.records import EngineRecord


@dataclass(kw_only=True)
class EngineJob(ChildJob):
    """The correctness child's job: both prompt sets, how they are sent, and their sampling settings.

    A prompt set is plain texts (`llm.generate`) or, with its `*_chat` flag, conversations (`llm.chat`).
    `control_batch_size` (reference only): generate the output-match set once more, in reversed order
    and batches of that size, for the engine's own noise floor.
    """

    gsm8k_prompts: list[Any]
    gsm8k_chat: bool = False
    gsm8k_sampling: dict[str, Any]
    match_prompts: list[Any]
    match_chat: bool = False
    match_sampling: dict[str, Any]
    control_batch_size: int | None = None
    workload: str = "batch"
    workload_seed: int = 0
    engine_in_process: bool | None = None
    """vLLM's engine core in this child (`place_engine_core`); None: chosen by device."""


def control_batches(count: int, batch_size: int) -> list[list[int]]:
    """Prompt indices of the control generation: reversed order, cut into batches of `batch_size`."""
    order = list(range(count))[::-1]
    return [order[i:i + batch_size] for i in range(0, count, batch_size)]


def generate_control(llm: Any, job: EngineJob, progress: Any) -> tuple[list[dict], float]:
    """The output-match set again under other batching; rows back in prompt order, with their ids."""
    rows: dict[int, dict] = {}
    seconds = 0.0
    for batch in control_batches(len(job.match_prompts), job.control_batch_size or 1):
        out, batch_seconds, _ = generate(llm, [job.match_prompts[i] for i in batch], job.match_sampling,
                                         progress, chat=job.match_chat)
        seconds += batch_seconds
        for index, row in zip(batch, out):
            rows[index] = {**row, "prompt_id": index}
    return [rows[i] for i in range(len(job.match_prompts))], seconds


def _correctness_body(job: EngineJob, state: ChildState) -> None:
    """Build the engine, generate the GSM8k and the output-match prompts (and the control)."""
    from vllm import LLM  # imported in the child only: the parent never loads vLLM

    record = state.record
    record["engine_in_process"] = place_engine_core(job.engine_in_process, job.llm_kwargs)
    offset = log_offset(job.log_path)  # the start's own lines follow: vLLM's processes append to this log
    started = time.perf_counter()
    state.llm = LLM(**supported_llm_kwargs(job.llm_kwargs))
    record["init_s"] = time.perf_counter() - started
    record.update(read_start_log(job.log_path, offset, record["init_s"]).model_dump())
    record.update(scheduling_facts(state.llm), workload=job.workload)
    progress = progress_path(job)
    submit = submitter(job.workload, job.workload_seed)
    gsm8k, seconds, counters = generate(state.llm, job.gsm8k_prompts, job.gsm8k_sampling,
                                        progress_bar(progress, "generating gsm8k"), chat=job.gsm8k_chat,
                                        submit=submit)
    output_tokens = sum(len(r["token_ids"]) for r in gsm8k)
    record.update(gsm8k=gsm8k, generate_s=seconds, output_tokens=output_tokens,
                  output_tokens_per_s=output_tokens / seconds if seconds > 0 else None, spec_counters=counters)
    match, match_seconds, match_counters = generate(state.llm, job.match_prompts, job.match_sampling,
                                                    progress_bar(progress, "generating output match"),
                                                    chat=job.match_chat, submit=submit)
    record.update(output_match=match, match_generate_s=match_seconds, match_spec_counters=match_counters)
    if job.control_batch_size and job.match_prompts:
        control, control_seconds = generate_control(state.llm, job, progress_bar(progress, "generating control"))
        record.update(output_match_control=control, control_generate_s=control_seconds,
                      control_batching={"order": "reversed", "batch_size": job.control_batch_size})


def correctness_child(job: EngineJob) -> None:
    """Runs in the spawned process: the correctness body in the common child frame.

    An injected fault (the speculative job's environment, `workbench.inject`) goes into this process
    too before vLLM is imported, for an engine that runs the model in-process; the processes vLLM
    starts get it from the generated sitecustomize.
    """
    child_frame(job, lambda state: _correctness_body(job, state), setup=install_injected_fault,
                record_model=EngineRecord)
