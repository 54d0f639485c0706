"""GSM8k answer scorers, registered by name: each reads an answer from a completion and judges it.

``upstream`` mirrors vLLM's offline eval (``get_answer_value`` in
``tests/evals/gsm8k/gsm8k_eval.py``): the last integer anywhere. Two more are reported beside
it, because that rule can hide or invent differences between two engines: ``strict`` (the
official ``#### number``) and ``flexible`` (the last number, decimals and signs kept). A new
scorer is a subclass registered with ``register_scorer``; params choose the primary one by
name, and every report iterates the registry.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, ClassVar

from workbench.gsm8k.data import GSM8kItem

if TYPE_CHECKING:  # pandas is only needed by accuracy_table
    from collections.abc import Mapping

    import pandas as pd

INVALID = -9999999
"""Upstream's marker for "no number found"; never equal to a label."""

_INT_RE = re.compile(r"\d+")
_STRICT_RE = re.compile(r"#### (\-?[0-9\.\,]+)")
# A number: grouped thousands ("1,234.5"), plain ("1234", "18.00") or bare decimal (".5").
# The sign is taken only when the "-" does not follow a word character (so "3-5" is 5),
# before or after a "$" ("-$5", "$-5").
_FLEX_RE = re.compile(
    r"(?P<sign>(?<![\w.])-)?\$?(?P<sign2>(?<![\w.])-)?"
    r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
)


def get_answer_value(text: str) -> int:
    """Upstream's ``get_answer_value``: commas removed, last ``\\d+``, else INVALID.

    ``ast.literal_eval`` is kept on purpose: it makes e.g. ``"05"`` INVALID, as upstream.
    Upstream catches only SyntaxError; a ValueError (over 4300 digits) is INVALID here
    too, where upstream would raise.
    """
    numbers = _INT_RE.findall(text.replace(",", ""))
    if not numbers:
        return INVALID
    try:
        value = ast.literal_eval(numbers[-1])
    except (SyntaxError, ValueError):
        return INVALID
    return value if isinstance(value, int) else INVALID


def normalize_number(text: str) -> str | None:
    """Canonical decimal string: "18.00" -> "18", "1,000" -> "1000", "-0" -> "0".

    Also drops "$" and a trailing "."; None when the text is not a number.
    """
    cleaned = text.strip().replace(",", "").replace("$", "").rstrip(".")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    if not value.is_finite():
        return None
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


class Scorer:
    """Reads an answer out of a completion (`extract`) and judges it against a GSM8k answer field."""

    name: ClassVar[str]
    description: ClassVar[str]

    def extract(self, text: str) -> str | None:
        """The answer this scorer reads from ``text``, or None when it finds none (an invalid answer)."""
        raise NotImplementedError

    def gold(self, reference_answer: str) -> str:
        """The gold answer of a GSM8k ``answer`` field, in this scorer's terms."""
        return reference_number(reference_answer)

    def same(self, predicted: str, gold: str) -> bool:
        return predicted == gold

    def is_correct(self, completion: str, reference_answer: str) -> bool:
        predicted = self.extract(completion)
        return predicted is not None and self.same(predicted, self.gold(reference_answer))


class UpstreamScorer(Scorer):
    """vLLM's eval rule: the last integer (commas removed); INVALID is never correct."""

    name = "upstream"
    description = "vLLM's eval rule: the last integer in the completion"

    def extract(self, text: str) -> str | None:
        value = get_answer_value(text)
        return None if value == INVALID else str(value)

    def gold(self, reference_answer: str) -> str:
        label = get_answer_value(reference_answer)
        if label == INVALID:  # upstream asserts all labels are valid
            raise ValueError(f"reference answer has no integer: {reference_answer!r:.200}")
        return str(label)


class StrictScorer(Scorer):
    """Official GSM8k rule: the first ``#### number``; commas and a trailing ``.`` removed."""

    name = "strict"
    description = "the official GSM8k rule: the number after ####"

    def extract(self, text: str) -> str | None:
        match = _STRICT_RE.search(text)
        if match is None:
            return None
        value = match.group(1).strip().replace(",", "").rstrip(".")
        return value if value not in ("", "-") else None


class FlexibleScorer(Scorer):
    """The last number in the text (``$``, commas, decimals, negatives), compared numerically."""

    name = "flexible"
    description = "the last number, with commas, $ and decimals handled, compared numerically"

    def extract(self, text: str) -> str | None:
        matches = list(_FLEX_RE.finditer(text))
        if not matches:
            return None
        last = matches[-1]
        negative = bool(last.group("sign") or last.group("sign2"))
        return normalize_number(("-" if negative else "") + last.group("num"))

    def same(self, predicted: str, gold: str) -> bool:
        gold_norm = normalize_number(gold)
        return gold_norm is not None and normalize_number(predicted) == gold_norm


SCORERS: dict[str, Scorer] = {}
"""The registry, in report order; ``upstream`` is the primary scorer of every shipped case."""


def register_scorer(scorer: Scorer) -> Scorer:
    """Add a scorer under its name (a name is registered once)."""
    if scorer.name in SCORERS:
        raise ValueError(f"scorer {scorer.name!r} is already registered")
    SCORERS[scorer.name] = scorer
    return scorer


for _builtin in (UpstreamScorer(), StrictScorer(), FlexibleScorer()):
    register_scorer(_builtin)


def get_scorer(name: str) -> Scorer:
    """Look a scorer up, failing with the known names."""
    try:
        return SCORERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown scorer {name!r}; known scorers: {sorted(SCORERS)}") from None


def extract_answer(text: str, scorer: str = "flexible") -> str | None:
    """The answer ``scorer`` reads from ``text`` (a string), or None when it finds none."""
    return get_scorer(scorer).extract(text)


def reference_number(reference_answer: str) -> str:
    """The gold number of a GSM8k ``answer`` field: the part after ``####``.

    Commas and a trailing "." removed.  A reference without ``####`` (e.g. a bare
    "18") falls back to its last number.  Raises ValueError when there is none.
    """
    gold = SCORERS["strict"].extract(reference_answer) or SCORERS["flexible"].extract(reference_answer)
    if gold is None:
        raise ValueError(f"reference answer has no number: {reference_answer!r:.200}")
    return gold


def is_correct(completion: str, reference_answer: str, scorer: str = "flexible") -> bool:
    """Whether ``completion`` answers correctly under the named scorer."""
    return get_scorer(scorer).is_correct(completion, reference_answer)


def score_completions(completions: Sequence[str], items: Sequence[GSM8kItem]) -> dict[str, list[bool]]:
    """Per-question correctness under every registered scorer, in the order of ``items``."""
    if len(completions) != len(items):
        raise ValueError(f"{len(completions)} completions for {len(items)} GSM8k items; they must pair up")
    return {name: [scorer.is_correct(c, item.answer) for c, item in zip(completions, items)]
            for name, scorer in SCORERS.items()}


def invalid_completions(completions: Sequence[str]) -> dict[str, list[bool]]:
    """Per registered scorer, which completions it reads no answer from (upstream's INVALID)."""
    return {name: [scorer.extract(c) is None for c in completions] for name, scorer in SCORERS.items()}


def accuracy(flags: Sequence[bool]) -> float:
    """Share of True; NaN for an empty list rather than a misleading 0 or 1."""
    return sum(bool(f) for f in flags) / len(flags) if flags else float("nan")


def accuracy_table(completions_by_run: Mapping[str, Sequence[str]], items: Sequence[GSM8kItem]) -> pd.DataFrame:
    """Accuracy per run (rows, e.g. reference / speculative) and scorer (columns)."""
    import pandas as pd

    rows = {run: {name: accuracy(flags) for name, flags in score_completions(comps, items).items()}
            for run, comps in completions_by_run.items()}
    table = pd.DataFrame.from_dict(rows, orient="index", columns=list(SCORERS))
    table.index.name = "run"
    return table
