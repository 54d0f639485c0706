"""Tests for workbench.gsm8k: packaged data, upstream prompt format, scorers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workbench import gsm8k
from workbench.gsm8k import (
    SCORERS,
    GSM8kItem,
    accuracy_table,
    build_prompt,
    build_prompts,
    extract_answer,
    few_shot_prefix,
    is_correct,
    load_gsm8k,
    score_completions,
)

DATA_DIR = Path(__file__).resolve().parents[1] / "workbench" / "data" / "gsm8k"


def _raw_rows(split: str) -> list[dict[str, str]]:
    """The jsonl read with plain json, independent of the `datasets` path under test."""
    with open(DATA_DIR / f"{split}.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def train() -> list[GSM8kItem]:
    return load_gsm8k("train")


@pytest.fixture(scope="module")
def test_items() -> list[GSM8kItem]:
    return load_gsm8k("test")


# ------------------------------------------------------------------------------ loading


def test_packaged_counts(train: list[GSM8kItem], test_items: list[GSM8kItem]) -> None:
    assert len(train) == 7473
    assert len(test_items) == 1319


def test_items_follow_file_order(test_items: list[GSM8kItem]) -> None:
    raw = _raw_rows("test")
    assert [i.question_id for i in test_items] == list(range(1319))
    assert test_items[0].question.startswith("Janet\u2019s ducks lay 16 eggs per day.")
    assert test_items[0].answer.endswith("#### 18")
    assert (test_items[1318].question, test_items[1318].answer) == (
        raw[1318]["question"],
        raw[1318]["answer"],
    )


def test_item_is_frozen(test_items: list[GSM8kItem]) -> None:
    with pytest.raises(AttributeError):
        test_items[0].question = "changed"  # type: ignore[misc]


def test_local_directory_source(tmp_path: Path) -> None:
    rows = [{"question": "q0?", "answer": "a\n#### 1"}, {"question": "q1?", "answer": "#### 2"}]
    (tmp_path / "test.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    items = load_gsm8k("test", source=str(tmp_path))
    assert items == [
        GSM8kItem(0, "q0?", "a\n#### 1"),
        GSM8kItem(1, "q1?", "#### 2"),
    ]


def test_local_source_missing_split_names_path(tmp_path: Path) -> None:
    (tmp_path / "test.jsonl").write_text(json.dumps({"question": "q", "answer": "#### 1"}))
    with pytest.raises(FileNotFoundError) as err:
        load_gsm8k("train", source=str(tmp_path))
    assert str(tmp_path / "train.jsonl") in str(err.value)


def test_local_source_missing_directory_names_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="nope"):
        load_gsm8k("test", source=str(missing))


def test_local_source_bad_rows(tmp_path: Path) -> None:
    (tmp_path / "test.jsonl").write_text(json.dumps({"question": "q", "solution": "x"}) + "\n")
    with pytest.raises(ValueError, match="test.jsonl"):
        load_gsm8k("test", source=str(tmp_path))


def test_unknown_packaged_split() -> None:
    with pytest.raises(ValueError, match="validation"):
        load_gsm8k("validation")


# ------------------------------------------------------------------------------ prompts


def test_prompt_for_test_item_0_matches_upstream_format(
    train: list[GSM8kItem], test_items: list[GSM8kItem]
) -> None:
    raw_train, raw_test = _raw_rows("train"), _raw_rows("test")
    # Hand-built as in vLLM tests/evals/gsm8k/gsm8k_eval.py::_build_gsm8k_prompts
    expected = ""
    for i in range(5):
        expected += "Question: " + raw_train[i]["question"] + "\n"
        expected += "Answer: " + raw_train[i]["answer"] + "\n\n"
    expected += "Question: " + raw_test[0]["question"] + "\nAnswer:"

    prompts = build_prompts(test_items[:3], train)
    assert prompts[0] == expected
    assert build_prompt(few_shot_prefix(train), test_items[0]) == expected
    assert expected.startswith("Question: Natalia sold clips to 48 of her friends")
    assert "#### 72\n\nQuestion: Weng earns $12 an hour" in expected
    assert expected.count("Question: ") == 6
    assert not expected.endswith(" ")
    assert prompts[2].endswith("Question: " + raw_test[2]["question"] + "\nAnswer:")


def test_few_shot_prefix_counts(train: list[GSM8kItem]) -> None:
    assert few_shot_prefix(train, 0) == ""
    assert few_shot_prefix(train, 2).count("Question: ") == 2
    with pytest.raises(ValueError):
        few_shot_prefix(train[:3], 5)


def test_sampling_settings_match_upstream() -> None:
    kwargs = gsm8k.sampling_kwargs()
    assert kwargs == {
        "temperature": 0.0,
        "max_tokens": 256,
        "stop": ["Question", "Assistant:", "<|separator|>"],
    }
    stop = kwargs["stop"]
    assert isinstance(stop, list)
    stop.append("x")  # the caller's copy only
    assert gsm8k.STOP == ["Question", "Assistant:", "<|separator|>"]
    assert gsm8k.NUM_SHOTS == 5


# ------------------------------------------------------------------------------ scorers

# text, upstream, strict, flexible
SCORER_TABLE: list[tuple[str, str | None, str | None, str | None]] = [
    ("Natalia sold 48+24 = 72 clips.\n#### 72", "72", "72", "72"),
    ("The answer is 1,234.50.", "50", None, "1234.5"),
    ("#### 1,000", "1000", "1000", "1000"),
    ("She pays $18.00 in total.", "0", None, "18"),
    ("The total is 18.", "18", None, "18"),
    ("The temperature dropped to -5 degrees", "5", None, "-5"),
    ("no number here", None, None, None),
    ("", None, None, None),
    ("#### -3", "3", "-3", "-3"),
    ("#### 42.\n", "42", "42", "42"),
    ("It costs -$5", "5", None, "-5"),
    ("It costs $-5", "5", None, "-5"),
    ("#### 7\nThen 3 more", "3", "7", "3"),
    ("pick 1,2,3", "123", None, "3"),
    ("Half is 0.5", "5", None, "0.5"),
    ("It takes 3-5 days", "5", None, "5"),
    ("The answer is 05", None, None, "5"),
    ("#### $1,234.50", "50", None, "1234.5"),
    ("x = 12,345,678", "12345678", None, "12345678"),
    ("#### 18.00", "0", "18.00", "18"),
    ("The result is -0.0", "0", None, "0"),
]


@pytest.mark.parametrize(("text", "upstream", "strict", "flexible"), SCORER_TABLE)
def test_scorers_on_tricky_completions(
    text: str, upstream: str | None, strict: str | None, flexible: str | None
) -> None:
    got = {name: extract_answer(text, name) for name in ("upstream", "strict", "flexible")}
    assert got == {"upstream": upstream, "strict": strict, "flexible": flexible}


def test_default_scorer_is_flexible() -> None:
    assert extract_answer("It costs -$5") == "-5"


def test_registry_names() -> None:
    assert set(SCORERS) == {"upstream", "strict", "flexible"}


REF = "Janet sells 16 - 3 - 4 = 9 duck eggs a day.\nShe makes 9 * 2 = $18 every day.\n#### 18"
REF_BIG = "Total 1,000 items.\n#### 1,000"
REF_NEG = "The level fell 13 - 23 = -10 metres.\n#### -10"

# completion, reference, scorer, expected
CORRECT_TABLE: list[tuple[str, str, str, bool]] = [
    ("9 * 2 = 18 dollars.\n#### 18", REF, "upstream", True),
    ("She makes $18.00", REF, "upstream", False),  # last integer is 00
    ("18 dollars, then 20 more", REF, "upstream", False),
    ("no idea", REF, "upstream", False),
    ("1000", REF_BIG, "upstream", True),
    ("it is 10", REF_NEG, "upstream", True),  # upstream drops signs on both sides
    ("#### 18", REF, "strict", True),
    ("#### 18.", REF, "strict", True),
    ("18", REF, "strict", False),  # no ####
    ("#### 18.00", REF, "strict", False),  # official rule compares strings
    ("#### 1,000", REF_BIG, "strict", True),
    ("#### 10", REF_NEG, "strict", False),
    ("#### -10", REF_NEG, "strict", True),
    ("She makes $18.00", REF, "flexible", True),
    ("18", REF, "flexible", True),
    ("-18", REF, "flexible", False),
    ("18 dollars, then 20 more", REF, "flexible", False),
    ("1000.0", REF_BIG, "flexible", True),
    ("it is 10", REF_NEG, "flexible", False),
    ("it fell to -10.", REF_NEG, "flexible", True),
    ("no idea", REF, "flexible", False),
    ("18", "18", "flexible", True),  # bare-number reference
]


@pytest.mark.parametrize(("completion", "reference", "scorer", "expected"), CORRECT_TABLE)
def test_is_correct(completion: str, reference: str, scorer: str, expected: bool) -> None:
    assert is_correct(completion, reference, scorer) is expected


def test_every_test_answer_scores_itself_correct(test_items: list[GSM8kItem]) -> None:
    for item in test_items:
        for name in SCORERS:
            assert is_correct(item.answer, item.answer, name), (item.question_id, name)


def test_negative_gold_items_differ_between_scorers(test_items: list[GSM8kItem]) -> None:
    negatives = [i.question_id for i in test_items if i.answer.rstrip().endswith(("-10", "-3"))]
    assert 489 in negatives and 1113 in negatives
    item = test_items[489]
    assert extract_answer(item.answer, "strict") == "-10"
    assert extract_answer(item.answer, "upstream") == "10"


def test_reference_without_number_is_an_error() -> None:
    with pytest.raises(ValueError):
        is_correct("18", "no number at all", "upstream")
    with pytest.raises(ValueError):
        is_correct("18", "no number at all", "flexible")


@pytest.mark.parametrize("api", ["extract_answer", "is_correct"])
def test_unknown_scorer(api: str) -> None:
    with pytest.raises(ValueError) as err:
        if api == "extract_answer":
            extract_answer("1", "bogus")
        else:
            is_correct("1", "#### 1", "bogus")
    message = str(err.value)
    assert "bogus" in message
    for name in ("upstream", "strict", "flexible"):
        assert name in message


# ------------------------------------------------------------------------------ helpers


def test_score_completions_and_accuracy_table() -> None:
    items = [GSM8kItem(0, "q0", "x\n#### 18"), GSM8kItem(1, "q1", "y\n#### -4")]
    completions = ["$18.00", "#### -4"]
    scores = score_completions(completions, items)
    assert scores == {
        "upstream": [False, True],
        "strict": [False, True],
        "flexible": [True, True],
    }
    table = accuracy_table({"reference": completions, "speculative": ["#### 18", "4"]}, items)
    assert list(table.columns) == ["upstream", "strict", "flexible"]
    assert table.loc["reference"].to_dict() == {"upstream": 0.5, "strict": 0.5, "flexible": 1.0}
    assert table.loc["speculative"].to_dict() == {"upstream": 1.0, "strict": 0.5, "flexible": 0.5}


def test_score_completions_length_mismatch() -> None:
    with pytest.raises(ValueError, match="2 completions for 1"):
        score_completions(["1", "2"], [GSM8kItem(0, "q", "#### 1")])
