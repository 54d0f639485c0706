"""Tests for workbench.correctness.prompts: the seeded output-match prompt set."""

from __future__ import annotations

import pytest

from workbench.gsm8k import GSM8kItem, build_prompts, load_gsm8k
from workbench.correctness.prompts import (
    OUTPUT_MATCH_MAX_TOKENS,
    output_match_prompt_set,
    output_match_prompts,
    split_counts,
)

FAKE_TRAIN = [GSM8kItem(i, f"train question {i}?", f"step\n#### {i}") for i in range(5)]
FAKE_TEST = [GSM8kItem(i, f"test question {i}?", f"step\n#### {i}") for i in range(60)]


def _repeat_word(prompt: str) -> str:
    """The word a repeat prompt asks for, read back from its first line."""
    first_line = prompt.splitlines()[0]
    assert first_line.startswith("please repeat the word '"), first_line
    return first_line.split("'")[1]


def test_default_set_is_half_repeat_half_gsm8k_from_packaged_data() -> None:
    prompt_set = output_match_prompt_set()
    assert len(prompt_set) == 100
    assert [p.kind for p in prompt_set] == ["repeat"] * 50 + ["gsm8k"] * 50
    train, test = load_gsm8k("train"), load_gsm8k("test")
    assert [p.text for p in prompt_set[50:]] == build_prompts(test[:50], train)
    assert prompt_set[50].text.endswith("Question: " + test[0].question + "\nAnswer:")


def test_seed_0_draws_upstream_words() -> None:
    # vLLM get_test_prompts: random.seed(0), then random.choice(["test", "temp",
    # "hello", "where"]) once per repeat prompt; these are its first six draws.
    prompts = output_match_prompts(10, seed=0, gsm8k_share=0.0)
    assert [_repeat_word(p) for p in prompts[:6]] == [
        "where", "where", "test", "hello", "where", "where",
    ]


def test_repeat_prompt_is_plain_text_a_base_model_continues() -> None:
    prompt = output_match_prompts(1, seed=0, gsm8k_share=0.0)[0]
    assert prompt == (
        "please repeat the word 'where' 10 times.\n"
        "give no other output than the word at least ten times in a row,\n"
        "in lowercase with spaces between each word and without quotes.\n"
        "where"
    )
    assert "role" not in prompt and "<|" not in prompt


def test_deterministic_and_seed_dependent() -> None:
    kwargs = dict(num_prompts=40, train_items=FAKE_TRAIN, test_items=FAKE_TEST)
    first = output_match_prompts(seed=3, **kwargs)  # type: ignore[arg-type]
    again = output_match_prompts(seed=3, **kwargs)  # type: ignore[arg-type]
    other = output_match_prompts(seed=4, **kwargs)  # type: ignore[arg-type]
    assert first == again
    assert first != other
    assert first[20:] == other[20:]  # GSM8k part: the first test questions, seed-free


def test_mix_uses_all_words_and_distinct_gsm8k_questions() -> None:
    prompts = output_match_prompts(100, train_items=FAKE_TRAIN, test_items=FAKE_TEST)
    words = {_repeat_word(p) for p in prompts[:50]}
    assert words == {"test", "temp", "hello", "where"}
    gsm = prompts[50:]
    assert len(set(gsm)) == 50
    assert all(p.count("Question: ") == 6 and p.endswith("\nAnswer:") for p in gsm)
    assert gsm[49].endswith("Question: test question 49?\nAnswer:")


@pytest.mark.parametrize(
    ("num_prompts", "share", "expected"),
    [
        (100, 0.5, (50, 50)),
        (101, 0.5, (50, 51)),  # upstream: num_prompts // 2 repeats
        (10, 0.9, (1, 9)),
        (100, 0.1, (90, 10)),
        (7, 0.0, (7, 0)),
        (7, 1.0, (0, 7)),
        (0, 0.5, (0, 0)),
    ],
)
def test_split_counts(num_prompts: int, share: float, expected: tuple[int, int]) -> None:
    assert split_counts(num_prompts, share) == expected


def test_share_zero_needs_no_gsm8k_items() -> None:
    prompts = output_match_prompts(5, gsm8k_share=0.0, train_items=[], test_items=[])
    assert len(prompts) == 5


def test_share_one_is_all_gsm8k() -> None:
    prompt_set = output_match_prompt_set(
        6, gsm8k_share=1.0, train_items=FAKE_TRAIN, test_items=FAKE_TEST
    )
    assert [p.kind for p in prompt_set] == ["gsm8k"] * 6


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_prompts": -1}, "num_prompts"),
        ({"gsm8k_share": 1.5}, "gsm8k_share"),
        ({"num_prompts": 200, "gsm8k_share": 1.0}, "60 test items"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        output_match_prompts(
            train_items=FAKE_TRAIN, test_items=FAKE_TEST, **kwargs  # type: ignore[arg-type]
        )


def test_output_match_max_tokens_is_upstreams_10() -> None:
    assert OUTPUT_MATCH_MAX_TOKENS == 10


def test_the_light_chat_template_renders_byte_for_byte_what_the_full_tokenizer_renders(tmp_path) -> None:
    """Prompts are rendered without importing transformers' tokenizer classes (they pull in torch, seconds
    before the engines can start); the text must be the one `apply_chat_template` gives, for the shipped
    template and for one that uses special tokens and whitespace control."""
    import shutil

    from transformers import AutoTokenizer

    from workbench.core.params import load_params
    from workbench.correctness.prompts import ChatTemplate, load_tokenizer, output_match_prompt_set, user_messages

    params = load_params("params/tiny-qwen3_5-cpu.yaml")
    test, train = load_gsm8k("test"), load_gsm8k("train")
    messages = [p.message for p in output_match_prompt_set(20, 0, 0.5, train, test)] + ["<b>x</b>\n  'q' \"d\" {{ y }}"]
    model = tmp_path / "model"
    shutil.copytree(params.model, model)
    (model / "chat_template.jinja").write_text(
        "{{ bos_token }}{%- for m in messages %}\n  [{{ m.role | upper }}] {{ m.content | trim }}{{ eos_token }}\n"
        "{%- endfor %}{% if add_generation_prompt %}[ASSISTANT]{% endif %}")
    for folder in (params.model, str(model)):
        light = load_tokenizer(params.model_copy(update={"model": folder}), "test")
        assert isinstance(light, ChatTemplate)
        full = AutoTokenizer.from_pretrained(folder)
        for message in messages:
            ours = light.apply_chat_template(user_messages(message), tokenize=False, add_generation_prompt=True)
            assert ours == full.apply_chat_template(user_messages(message), tokenize=False, add_generation_prompt=True)
