"""The output-match prompt set: greedy outputs of reference and speculative must agree.

Mirrors ``get_test_prompts`` in vllm-project/vllm ``tests/v1/e2e/spec_decode/utils.py``
(earlier in ``tests/v1/e2e/test_spec_decode.py``): ``num_prompts // 2`` "repeat the
word" prompts (``random.seed(0)``, one ``random.choice`` of
``["test", "temp", "hello", "where"]`` each), then 5-shot GSM8k prompts of the first
test questions, generated greedily for 10 tokens (``temperature=0, max_tokens=10``).
Repeats are easy for a drafter to predict, GSM8k prompts are not, so both the
accepted and the rejected paths of speculative decoding are exercised.

Upstream wraps each prompt in a chat message; our models are base models without a
chat template, so the prompts here are plain text written for a base model to continue.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from workbench.gsm8k import NUM_SHOTS, GSM8kItem, build_prompts, load_gsm8k

OUTPUT_MATCH_MAX_TOKENS = 10
"""New tokens per output-match prompt, as upstream's ``greedy_sampling()``."""

REPEAT_WORDS: tuple[str, ...] = ("test", "temp", "hello", "where")
"""Upstream's word choices, in its order (the order matters for ``choice``)."""

REPEAT_TEMPLATE = (
    "please repeat the word '{word}' 10 times.\n"
    "give no other output than the word at least ten times in a row,\n"
    "in lowercase with spaces between each word and without quotes.\n"
    "{word}"
)
"""Upstream's instruction, dedented, then the word once so a base model carries on."""

PromptKind = Literal["repeat", "gsm8k"]


@dataclass(frozen=True)
class OutputMatchPrompt:
    """One prompt with its kind, so matches can be reported per kind."""

    kind: PromptKind
    text: str


def repeat_prompt(word: str) -> str:
    """The plain-text "repeat the word" prompt for ``word``."""
    return REPEAT_TEMPLATE.format(word=word)


def split_counts(num_prompts: int, gsm8k_share: float) -> tuple[int, int]:
    """(repeat, gsm8k) counts; share 0.5 gives upstream's ``n // 2`` repeats."""
    if isinstance(num_prompts, bool) or not isinstance(num_prompts, int) or num_prompts < 0:
        raise ValueError(f"num_prompts must be an integer >= 0, got {num_prompts!r}")
    if not 0.0 <= gsm8k_share <= 1.0:
        raise ValueError(f"gsm8k_share must be within [0, 1], got {gsm8k_share!r}")
    # The epsilon keeps float noise (100 * 0.9 = 89.999...) from losing a prompt.
    num_repeat = min(num_prompts, math.floor(num_prompts * (1.0 - gsm8k_share) + 1e-9))
    return num_repeat, num_prompts - num_repeat


def output_match_prompt_set(
    num_prompts: int = 100,
    seed: int = 0,
    gsm8k_share: float = 0.5,
    train_items: Sequence[GSM8kItem] | None = None,
    test_items: Sequence[GSM8kItem] | None = None,
) -> list[OutputMatchPrompt]:
    """The prompt set with kinds: repeats first (seeded words), then GSM8k, as upstream.

    The GSM8k prompts are the first test questions with the 5-shot prefix of
    ``workbench.gsm8k``; items default to the packaged copy.
    """
    num_repeat, num_gsm8k = split_counts(num_prompts, gsm8k_share)
    rng = random.Random(seed)  # seed 0 draws the same words as upstream's random.seed(0)
    prompts = [
        OutputMatchPrompt("repeat", repeat_prompt(rng.choice(REPEAT_WORDS)))
        for _ in range(num_repeat)
    ]
    if num_gsm8k:
        tests = load_gsm8k("test") if test_items is None else test_items
        trains = load_gsm8k("train") if train_items is None else train_items
        if num_gsm8k > len(tests):
            raise ValueError(
                f"{num_gsm8k} GSM8k prompts asked for but only {len(tests)} test items given"
            )
        prompts.extend(
            OutputMatchPrompt("gsm8k", text)
            for text in build_prompts(tests[:num_gsm8k], trains, NUM_SHOTS)
        )
    return prompts


def output_match_prompts(
    num_prompts: int = 100,
    seed: int = 0,
    gsm8k_share: float = 0.5,
    train_items: Sequence[GSM8kItem] | None = None,
    test_items: Sequence[GSM8kItem] | None = None,
) -> list[str]:
    """The output-match prompts as plain strings (see ``output_match_prompt_set``)."""
    return [
        p.text
        for p in output_match_prompt_set(num_prompts, seed, gsm8k_share, train_items, test_items)
    ]
