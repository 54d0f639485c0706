"""How the prompts reach the engine: upstream's `batch`, or a `churn` workload that provokes the
scheduling races speculative decoding on hybrid models has had.

Upstream submits every prompt at once with room to spare, the very conditions under which the
bugs this check exists for hide (vLLM PR #38556, #45100, #51599, vllm-ascend #13863: stale or
shifted accepted-token counts while `condense()` reorders rows, outputs corrupted only under
batch churn and KV-cache pressure). `churn` sends the same prompts with the same sampling, so
their outputs stay comparable, but in waves, interleaved with filler requests of staggered
`max_tokens` that finish at different steps: the batch condenses and reorders at almost every
step. The case's KV-cache size (`churn_kv_blocks`) can force preemption; fillers' outputs are
discarded, their tokens count in the engine's counters.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Literal

Workload = Literal["batch", "churn"]
WORKLOADS: tuple[str, ...] = ("batch", "churn")

FILLER_MAX_TOKENS: tuple[int, ...] = (1, 2, 3, 5, 8, 13, 21, 34)
"""Staggered lengths of the filler requests: each finishes at another step, so rows leave the batch
(and the rest are condensed) at almost every step."""


@dataclass(frozen=True)
class ChurnPlan:
    """The shape of the churn: how many waves, how many engine steps between them, fillers per wave."""

    waves: int = 4
    steps_between_waves: int = 2
    fillers_per_wave: int = 8
    seed: int = 0


def wave_order(count: int, plan: ChurnPlan) -> list[list[int]]:
    """The prompt indices of each wave: shuffled (seeded), so every wave mixes short and long prompts."""
    order = list(range(count))
    random.Random(plan.seed).shuffle(order)
    waves = max(1, min(plan.waves, count))
    return [order[i::waves] for i in range(waves)]


def _external_id(request_id: str) -> str:
    """The id `LLM` gave a request (a counter); the engine returns it with a random suffix ("12-1a2b3c4d")
    from `enqueue`, and bare on the outputs."""
    return request_id.split("-", 1)[0]


def _enqueue(llm: Any, prompts: list[Any], sampling: Any, chat: bool) -> list[str]:
    send = llm.enqueue_chat if chat else llm.enqueue
    return [_external_id(rid) for rid in send(prompts, sampling, use_tqdm=False)]


def submit_churn(llm: Any, prompts: list[Any], sampling: dict[str, Any], progress: Any = None,
                 chat: bool = False, plan: ChurnPlan | None = None) -> list[Any]:
    """The prompts' `RequestOutput`s in prompt order, generated under churn (`workbench.core.engine.Submit`).

    `progress` is a tqdm class (as `LLM.generate(use_tqdm=...)` takes), updated per finished prompt.
    """
    from vllm import SamplingParams

    plan = plan or ChurnPlan()
    measured_params = SamplingParams(**sampling)
    bar = progress(total=len(prompts)) if progress else None
    wanted: dict[str, int] = {}
    finished: dict[str, Any] = {}

    def collect(outputs: list[Any]) -> None:
        for output in outputs:
            rid = _external_id(output.request_id)
            if output.finished and rid in wanted and rid not in finished:
                finished[rid] = output
                if bar is not None:
                    bar.update(1)

    for wave_index, wave in enumerate(wave_order(len(prompts), plan)):
        ids = _enqueue(llm, [prompts[i] for i in wave], measured_params, chat)
        wanted.update(zip(ids, wave))
        fillers = [prompts[(wave_index * plan.fillers_per_wave + j) % len(prompts)]
                   for j in range(plan.fillers_per_wave)]
        filler_params = [SamplingParams(**{**sampling, "max_tokens": FILLER_MAX_TOKENS[j % len(FILLER_MAX_TOKENS)],
                                           "logprobs": None})
                         for j in range(len(fillers))]
        _enqueue(llm, fillers, filler_params, chat)
        for _ in range(plan.steps_between_waves):
            if not llm.llm_engine.has_unfinished_requests():
                break
            collect(llm.llm_engine.step())
    collect(llm.wait_for_completion(use_tqdm=False))
    if bar is not None:
        bar.close()
    missing = [i for rid, i in wanted.items() if rid not in finished]
    if missing:
        raise RuntimeError(f"churn workload: {len(missing)} prompts never finished (first: {missing[:5]})")
    by_index = {wanted[rid]: output for rid, output in finished.items()}
    return [by_index[i] for i in range(len(prompts))]


def submitter(workload: str, seed: int = 0) -> Any:
    """The `Submit` function of a workload: None (all at once) for `batch`."""
    if workload == "batch":
        return None
    if workload == "churn":
        plan = ChurnPlan(seed=seed)
        return lambda llm, prompts, sampling, progress, chat: submit_churn(llm, prompts, sampling, progress, chat,
                                                                           plan)
    raise ValueError(f"unknown workload {workload!r}; known: {', '.join(WORKLOADS)}")
