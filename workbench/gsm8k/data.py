"""GSM8k data: the packaged copy, vLLM's 5-shot prompts and its sampling settings.

The prompts and sampling settings mirror vLLM's offline GSM8k eval,
``tests/evals/gsm8k/gsm8k_eval.py`` in vllm-project/vllm (``_build_gsm8k_prompts``,
``evaluate_gsm8k_offline``), so an accuracy measured here can be set beside the one
vLLM's CI reports. The scorers live in ``workbench.gsm8k.scorers``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
import json
from pathlib import Path

DATA_DIR: Path = Path(str(files("workbench") / "data" / "gsm8k"))
"""The packaged copy (MIT, OpenAI): train.jsonl (7473 rows), test.jsonl (1319 rows)."""

SPLITS: tuple[str, ...] = ("train", "test")
HUB_CONFIG = "main"
"""The GSM8k configuration on the hub (``openai/gsm8k`` has ``main`` and ``socratic``)."""

# --- mirrors vllm-project/vllm tests/evals/gsm8k/gsm8k_eval.py -------------------------
NUM_SHOTS = 5
MAX_TOKENS = 256
TEMPERATURE = 0.0
STOP: list[str] = ["Question", "Assistant:", "<|separator|>"]
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
    # JSON lines read directly: no hub, no progress bars, and none of `datasets`' import and cache-building
    # seconds before the engines can start
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as exc:
                raise ValueError(f"{path}: line {number} is not JSON ({exc})") from exc
    return _rows_to_items(rows, str(path))


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
