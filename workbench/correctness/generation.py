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

from workbench.core.engine import (ChildJob, ChildState, child_frame, generate, progress_bar, progress_path,
                                   supported_llm_kwargs)
from workbench.records import EngineRecord


@dataclass(kw_only=True)
class EngineJob(ChildJob):
    """The correctness child's job: both prompt sets and their sampling settings."""

    gsm8k_prompts: list[str]
    gsm8k_sampling: dict[str, Any]
    match_prompts: list[str]
    match_sampling: dict[str, Any]


def _correctness_body(job: EngineJob, state: ChildState) -> None:
    """Build the engine, generate the GSM8k and the output-match prompts."""
    from vllm import LLM  # imported in the child only: the parent never loads vLLM

    record = state.record
    started = time.perf_counter()
    state.llm = LLM(**supported_llm_kwargs(job.llm_kwargs))
    record["init_s"] = time.perf_counter() - started
    progress = progress_path(job)
    gsm8k, seconds, counters = generate(state.llm, job.gsm8k_prompts, job.gsm8k_sampling,
                                        progress_bar(progress, "generating gsm8k"))
    output_tokens = sum(len(r["token_ids"]) for r in gsm8k)
    record.update(gsm8k=gsm8k, generate_s=seconds, output_tokens=output_tokens,
                  output_tokens_per_s=output_tokens / seconds if seconds > 0 else None, spec_counters=counters)
    match, match_seconds, match_counters = generate(state.llm, job.match_prompts, job.match_sampling,
                                                    progress_bar(progress, "generating output match"))
    record.update(output_match=match, match_generate_s=match_seconds, match_spec_counters=match_counters)


def correctness_child(job: EngineJob) -> None:
    """Runs in the spawned process: the correctness body in the common child frame."""
    child_frame(job, lambda state: _correctness_body(job, state), record_model=EngineRecord)
