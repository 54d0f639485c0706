"""GSM8k: the packaged data, vLLM's 5-shot prompts, and the answer scorers.

The prompts, sampling settings and the ``upstream`` scorer mirror vLLM's offline
GSM8k eval, ``tests/evals/gsm8k/gsm8k_eval.py`` in vllm-project/vllm
(``_build_gsm8k_prompts``, ``evaluate_gsm8k_offline``, ``get_answer_value``), so an
accuracy measured here can be set beside the one vLLM's CI reports.  Two more
scorers (``strict``, ``flexible``) are reported beside it, because the upstream rule
(last integer anywhere) can hide or invent differences between two engines.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas is only needed by accuracy_table
    import pandas as pd

DATA_DIR: Path = Path(__file__).resolve().parent / "data" / "gsm8k"
"""The packaged copy (MIT, OpenAI): train.jsonl (7473 rows), test.jsonl (1319 rows)."""

SPLITS: tuple[str, ...] = ("train", "test")
HUB_CONFIG = "main"
"""The GSM8k configuration on the hub (``openai/gsm8k`` has ``main`` and ``socratic``)."""

# --- mirrors vllm-project/vllm tests/evals/gsm8k/gsm8k_eval.py -------------------------
NUM_SHOTS = 5
MAX_TOKENS = 256
TEMPERATURE = 0.0
STOP: list[str] = ["Question", "Assistant:", "<|separator|>"]
INVALID = -9999999
"""Upstream's marker for "no number found"; never equal to a label."""
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GSM8kItem:
    """One GSM8k row; ``question_id`` is its row index in the split, so it is stable."""

    question_id: int
    question: str
    answer: str


# ------------------------------------------------------------------------------ loading


def _rows_to_items(rows: Iterable[object], where: str) -> list[GSM8kItem]:
    """Turn dataset rows into items; a row without string question/answer is an error."""
    items: list[GSM8kItem] = []
    for index, row in enumerate(rows):
        question = row.get("question") if isinstance(row, Mapping) else None
        answer = row.get("answer") if isinstance(row, Mapping) else None
        if not isinstance(question, str) or not isinstance(answer, str):
            raise ValueError(
                f"{where}: row {index} lacks a string 'question' and 'answer' (got {row!r:.200})"
            )
        items.append(GSM8kItem(question_id=index, question=question, answer=answer))
    return items


def _looks_like_local_path(source: str) -> bool:
    """A source that exists, or is written as a path, is local; else a hub dataset id."""
    if Path(source).expanduser().exists():
        return True
    return source.startswith(("/", "./", "../", "~", ".\\", "..\\")) or source.endswith(".jsonl")


def _load_local(directory: Path, split: str) -> list[GSM8kItem]:
    """Read ``{directory}/{split}.jsonl`` through the packaged ``json`` builder (no hub)."""
    if not directory.is_dir():
        raise FileNotFoundError(
            f"GSM8k source {str(directory)!r} is not a directory; expected a directory "
            f"holding {split}.jsonl"
        )
    path = directory / f"{split}.jsonl"
    if not path.is_file():
        present = sorted(p.name for p in directory.glob("*.jsonl"))
        raise FileNotFoundError(
            f"GSM8k split {split!r} not found: {str(path)!r} does not exist "
            f"(jsonl files there: {present or 'none'})"
        )
    from datasets import load_dataset  # heavy import, only when loading

    # "json" is a builder packaged inside `datasets`: reading local files contacts no hub.
    dataset = load_dataset("json", data_files={split: str(path)}, split=split)
    return _rows_to_items(dataset, str(path))


def load_gsm8k(split: str = "test", source: str | None = None) -> list[GSM8kItem]:
    """Load a GSM8k split as items in file order.

    ``source`` None reads the packaged copy (offline).  A local directory reads
    ``{source}/{split}.jsonl``.  Anything else is taken as a hub dataset id such as
    ``openai/gsm8k`` and loaded with ``load_dataset(source, "main", split=split)``
    (needs network; for online users only).
    """
    if not isinstance(split, str) or not split:
        raise ValueError(f"split must be a non-empty string, got {split!r}")
    if source is None:
        if split not in SPLITS:
            raise ValueError(
                f"unknown GSM8k split {split!r} for the packaged copy in {str(DATA_DIR)!r}; "
                f"known: {list(SPLITS)}"
            )
        return _load_local(DATA_DIR, split)
    if _looks_like_local_path(source):
        return _load_local(Path(source).expanduser(), split)
    from datasets import load_dataset

    dataset = load_dataset(source, HUB_CONFIG, split=split)
    return _rows_to_items(dataset, f"hub dataset {source!r} ({HUB_CONFIG}, {split})")


# ------------------------------------------------------------------------------ prompts


def few_shot_prefix(train: Sequence[GSM8kItem], num_shots: int = NUM_SHOTS) -> str:
    """The few-shot block: the first ``num_shots`` TRAIN items, as upstream builds it.

    Upstream: ``f"Question: {q}\\nAnswer:{gen_prefix} {a}\\n\\n"`` per shot, with
    ``gen_prefix=""`` in the offline eval.
    """
    if num_shots < 0:
        raise ValueError(f"num_shots must be >= 0, got {num_shots}")
    if num_shots > len(train):
        raise ValueError(f"num_shots={num_shots} but only {len(train)} train items given")
    return "".join(
        f"Question: {shot.question}\nAnswer: {shot.answer}\n\n" for shot in train[:num_shots]
    )


def build_prompt(prefix: str, item: GSM8kItem) -> str:
    """One completion prompt: few-shot prefix + ``"Question: {q}\\nAnswer:"`` (no space)."""
    return f"{prefix}Question: {item.question}\nAnswer:"


def build_prompts(
    test_items: Sequence[GSM8kItem],
    train_items: Sequence[GSM8kItem],
    num_shots: int = NUM_SHOTS,
) -> list[str]:
    """Prompts for ``test_items`` in order, all sharing one few-shot prefix."""
    prefix = few_shot_prefix(train_items, num_shots)
    return [build_prompt(prefix, item) for item in test_items]


def sampling_kwargs() -> dict[str, object]:
    """Keyword arguments for ``vllm.SamplingParams``, as the offline eval sets them.

    A fresh dict (and stop list) each call, so a caller cannot alter the constants.
    """
    return {"temperature": TEMPERATURE, "max_tokens": MAX_TOKENS, "stop": list(STOP)}


# ------------------------------------------------------------------------------ scorers

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


def _score_upstream(text: str) -> str | None:
    """vLLM eval rule: last integer (commas removed) as a string; None when none."""
    value = get_answer_value(text)
    return None if value == INVALID else str(value)


def _score_strict(text: str) -> str | None:
    """Official GSM8k rule: first ``#### number``; commas and a trailing ``.`` removed."""
    match = _STRICT_RE.search(text)
    if match is None:
        return None
    value = match.group(1).strip().replace(",", "").rstrip(".")
    return value if value not in ("", "-") else None


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


def _score_flexible(text: str) -> str | None:
    """Last number in the text (``$``, commas, decimals, negatives), normalised."""
    matches = list(_FLEX_RE.finditer(text))
    if not matches:
        return None
    last = matches[-1]
    negative = bool(last.group("sign") or last.group("sign2"))
    return normalize_number(("-" if negative else "") + last.group("num"))


SCORERS: dict[str, Callable[[str], str | None]] = {
    "upstream": _score_upstream,
    "strict": _score_strict,
    "flexible": _score_flexible,
}
"""Answer extractors by name; all are reported side by side, ``upstream`` is primary."""


def _scorer(name: str) -> Callable[[str], str | None]:
    """Look a scorer up, failing with the known names."""
    try:
        return SCORERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown scorer {name!r}; known scorers: {sorted(SCORERS)}") from None


def extract_answer(text: str, scorer: str = "flexible") -> str | None:
    """The answer ``scorer`` reads from ``text`` (a string), or None when it finds none."""
    return _scorer(scorer)(text)


def reference_number(reference_answer: str) -> str:
    """The gold number of a GSM8k ``answer`` field: the part after ``####``.

    Commas and a trailing "." removed.  A reference without ``####`` (e.g. a bare
    "18") falls back to its last number.  Raises ValueError when there is none.
    """
    gold = _score_strict(reference_answer)
    if gold is None:
        gold = _score_flexible(reference_answer)
    if gold is None:
        raise ValueError(f"reference answer has no number: {reference_answer!r:.200}")
    return gold


def is_correct(completion: str, reference_answer: str, scorer: str = "flexible") -> bool:
    """Whether ``completion`` answers correctly under ``scorer``.

    ``upstream`` compares as vLLM does: label = get_answer_value(answer field),
    pred = get_answer_value(completion), INVALID never correct.  ``strict`` compares
    the ``####`` string with the gold string; ``flexible`` compares numerically.
    """
    extract = _scorer(scorer)
    if scorer == "upstream":
        label = get_answer_value(reference_answer)
        if label == INVALID:  # upstream asserts all labels are valid
            raise ValueError(f"reference answer has no integer: {reference_answer!r:.200}")
        pred_value = get_answer_value(completion)
        return pred_value != INVALID and pred_value == label
    pred = extract(completion)
    if pred is None:
        return False
    gold = reference_number(reference_answer)
    if scorer == "strict":
        return pred == gold
    gold_norm = normalize_number(gold)
    return gold_norm is not None and normalize_number(pred) == gold_norm


def score_completions(
    completions: Sequence[str], items: Sequence[GSM8kItem]
) -> dict[str, list[bool]]:
    """Per-question correctness under every scorer, in the order of ``items``."""
    if len(completions) != len(items):
        raise ValueError(
            f"{len(completions)} completions for {len(items)} GSM8k items; they must pair up"
        )
    return {
        name: [is_correct(c, item.answer, name) for c, item in zip(completions, items)]
        for name in SCORERS
    }


def accuracy(flags: Sequence[bool]) -> float:
    """Share of True; NaN for an empty list rather than a misleading 0 or 1."""
    return sum(bool(f) for f in flags) / len(flags) if flags else float("nan")


def accuracy_table(
    completions_by_run: Mapping[str, Sequence[str]], items: Sequence[GSM8kItem]
) -> pd.DataFrame:
    """Accuracy per run (rows, e.g. reference / speculative) and scorer (columns)."""
    import pandas as pd

    rows = {
        run: {name: accuracy(flags) for name, flags in score_completions(comps, items).items()}
        for run, comps in completions_by_run.items()
    }
    table = pd.DataFrame.from_dict(rows, orient="index", columns=list(SCORERS))
    table.index.name = "run"
    return table
