"""Training text for the tiny model: GSM8k train plus the project's own synthetic problems.

GSM8k test never enters here; `tests/test_tinymodel_data.py` checks that no test question does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from workbench.tinymodel.synthetic import generate_problems

GSM8K_DIR = Path(__file__).resolve().parent.parent / "data" / "gsm8k"


def format_example(question: str, answer: str) -> str:
    """One block in the exact shape of vLLM's GSM8k few-shot prompt."""
    return f"Question: {question}\nAnswer: {answer}\n\n"


def gsm8k_train_pairs(gsm8k_dir: Path = GSM8K_DIR) -> list[tuple[str, str]]:
    """(question, answer) pairs of GSM8k *train* only."""
    with open(gsm8k_dir / "train.jsonl", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return [(row["question"], row["answer"]) for row in rows]


def synthetic_pairs(count: int, seed: int) -> list[tuple[str, str]]:
    return [(p.question, p.answer) for p in generate_problems(count, seed)]


def tokenizer_training_texts(gsm8k_dir: Path = GSM8K_DIR) -> Iterator[str]:
    """The tokenizer is trained on GSM8k train only (issue 5)."""
    for question, answer in gsm8k_train_pairs(gsm8k_dir):
        yield format_example(question, answer)
