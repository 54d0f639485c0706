"""Issue 13: the Qwen3.5 cases are upstream's check exactly.

Upstream's two prompt builders (``get_test_prompts`` in tests/v1/e2e/spec_decode/utils.py and
``_build_gsm8k_prompts`` in tests/evals/gsm8k/gsm8k_eval.py) are re-expressed here from their
behaviour, independently of `workbench.correctness.prompts`, and the workbench's prompts are
compared with them byte for byte, chat-rendered ones included.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from conftest import REPO, TINY_PARAMS, recorded_context, run_cli
from workbench.core.params import load_params
from workbench.correctness import pipeline
from workbench.correctness.prompts import build_prompt_sets
from workbench.gsm8k import load_gsm8k

TINY_MODEL = REPO / "models" / "tiny-qwen3_5-mtp"


def upstream_gsm8k_prompt(train, question: str, shots: int = 5) -> str:
    """_build_gsm8k_prompts: the first `shots` train items as `Question: q\\nAnswer: a\\n\\n`, then the question."""
    few_shot = "".join("Question: " + t.question + "\nAnswer: " + t.answer + "\n\n" for t in train[:shots])
    return few_shot + "Question: " + question + "\nAnswer:"


def upstream_test_messages(num_prompts: int = 100) -> list[list[dict[str, str]]]:
    """get_test_prompts(mm_enabled=False): n // 2 repeat conversations from the global `random` seeded 0,
    then the rest as 5-shot GSM8k prompts of the first test questions, one user message each."""
    state = random.getstate()
    random.seed(0)
    try:
        lines = ["please repeat the word '{}' 10 times.",
                 "give no other output than the word at least ten times in a row,",
                 "in lowercase with spaces between each word and without quotes."]
        conversations = []
        for _ in range(num_prompts // 2):
            word = random.choice(["test", "temp", "hello", "where"])
            indent = " " * 8
            content = "\n" + "".join(indent + line.format(word) + "\n" for line in lines) + indent
            conversations.append([{"role": "user", "content": content}])
    finally:
        random.setstate(state)
    train, test = load_gsm8k("train"), load_gsm8k("test")
    for item in test[: num_prompts - num_prompts // 2]:
        conversations.append([{"role": "user", "content": upstream_gsm8k_prompt(train, item.question)}])
    return conversations


def chatml(content: str) -> str:
    """The Qwen ChatML rendering of one user turn with the generation prompt, as `llm.chat` sends it."""
    return "<|im_start|>user\n" + content + "<|im_end|>\n<|im_start|>assistant\n"


def _sets(**overrides):
    params = load_params(TINY_PARAMS, overrides)
    return build_prompt_sets(params, load_gsm8k("test"), load_gsm8k("train"), str(TINY_PARAMS))


def test_output_match_messages_are_upstreams_byte_for_byte() -> None:
    sets = _sets(prompt_format="chat")
    assert sets.match_format == "chat"
    assert [p.messages for p in sets.output_match] == upstream_test_messages(100)
    assert [p.kind for p in sets.output_match] == ["repeat"] * 50 + ["gsm8k"] * 50


def test_chat_rendered_prompts_are_the_models_chatml_template() -> None:
    """The shipped stand-in has a Qwen-style template: each prompt is upstream's message in ChatML."""
    sets = _sets()  # prompt_format auto: chat, because the tokenizer has a template
    assert sets.match_format == "chat"
    assert [p.prompt for p in sets.output_match] == [chatml(m[0]["content"]) for m in upstream_test_messages(100)]


def test_gsm8k_eval_prompts_stay_upstreams_completion_prompts() -> None:
    sets = _sets(num_questions=None)
    train, test = load_gsm8k("train"), load_gsm8k("test")
    assert sets.gsm8k_format == "completion" and len(sets.gsm8k) == 1319
    assert [p.prompt for p in sets.gsm8k] == [upstream_gsm8k_prompt(train, t.question) for t in test]
    chat = _sets(num_questions=3, gsm8k_prompt_format="chat")
    assert [p.prompt for p in chat.gsm8k] == [chatml(upstream_gsm8k_prompt(train, t.question)) for t in test[:3]]


def test_completion_format_and_a_model_without_template(tmp_path) -> None:
    """`completion` sends plain text; `auto` falls back to it without a template; `chat` then is bad input."""
    from workbench.core.errors import ParamsError

    plain = _sets(prompt_format="completion")
    assert plain.match_format == "completion" and plain.output_match[0].messages is None
    assert plain.output_match[0].prompt.startswith("please repeat the word 'where' 10 times.\n")
    no_template = tmp_path / "model"
    shutil.copytree(TINY_MODEL, no_template, ignore=shutil.ignore_patterns("*.safetensors", "chat_template*"))
    config = json.loads((no_template / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (no_template / "tokenizer_config.json").write_text(json.dumps(config))
    assert _sets(tokenizer=str(no_template)).match_format == "completion"
    with pytest.raises(ParamsError, match="prompt_format.*no chat template"):
        _sets(tokenizer=str(no_template), prompt_format="chat")


def test_prepare_records_rendered_prompts_and_the_summary_their_format(tmp_path, recorded) -> None:
    ctx = recorded_context(recorded, tmp_path / "run")
    written = json.loads((ctx.run_dir / "records" / "prompts.json").read_text())
    assert written["output_match_format"] == "chat" and written["gsm8k_format"] == "completion"
    expected = upstream_test_messages(10)
    assert [row["messages"] for row in written["output_match"]] == expected
    assert [row["prompt"] for row in written["output_match"]] == [chatml(m[0]["content"]) for m in expected]
    job = pipeline.engine_job(ctx, "speculative")
    assert job.match_chat and job.match_prompts == expected  # the engine gets conversations, for llm.chat
    assert not job.gsm8k_chat and job.gsm8k_prompts == [row["prompt"] for row in written["gsm8k"]]


def test_ngram_lookup_case_is_upstreams_and_refused_by_a_vllm_without_the_key() -> None:
    params = load_params("qwen3_5-hybrid-ngram-lookup")
    assert params.speculative_config() == {"method": "mtp", "num_speculative_tokens": 3, "max_model_len": 2048,
                                           "ngram_lookup": True}
    result = run_cli("run", "qwen3_5-hybrid-ngram-lookup", timeout=120)
    assert result.returncode == 2, result.stderr
    assert "ngram_lookup" in result.stderr and "0.32.0" in result.stderr
    prompt_lookup = load_params("qwen3_5-hybrid-prompt-lookup")
    assert prompt_lookup.method == "ngram" and "not upstream" in prompt_lookup.description.lower()


# ------------------------------------------------------------------ invalid_rate, the control, async scheduling


def _summary(ctx, reference, speculative):
    table = pipeline.score(ctx, reference, speculative)
    match = pipeline.compare_outputs(ctx, reference, speculative)
    return pipeline.build_summary(ctx, reference, speculative, table, match, pipeline.acceptance(speculative))


def _no_number(text: str) -> bool:
    """Upstream's INVALID, re-derived: no digits (commas dropped), or a last number with a leading zero."""
    import re

    numbers = re.findall(r"[0-9]+", text.replace(",", ""))
    return not numbers or (len(numbers[-1]) > 1 and numbers[-1].startswith("0"))


def test_invalid_rate_per_run_and_scorer(tmp_path, recorded) -> None:
    ctx = recorded_context(recorded, tmp_path / "run")
    recorded["speculative"]["gsm8k"][0]["completion"] = " no answer here"
    recorded["speculative"]["gsm8k"][1]["completion"] = " it is 007"
    summary = _summary(ctx, recorded["reference"], recorded["speculative"])
    for label in ("reference", "speculative"):
        completions = [r["completion"] for r in recorded[label]["gsm8k"]]
        expected = sum(_no_number(c) for c in completions) / len(completions)
        assert getattr(summary, label).invalid_rate["upstream"] == pytest.approx(expected)
        assert set(getattr(summary, label).invalid_rate) == {"upstream", "strict", "flexible"}
    assert summary.speculative.invalid_rate["upstream"] >= 2 / 8
    frame = pipeline.score_frame(pipeline.score(ctx, recorded["reference"], recorded["speculative"]))
    assert frame.loc["speculative", ("invalid rate", "upstream")] == summary.speculative.invalid_rate["upstream"]


def test_control_marks_engine_noise_apart_from_speculation(tmp_path, recorded) -> None:
    """Reference vs reference beside reference vs speculative; each mismatch says whether the control has it too."""
    import copy

    ctx = recorded_context(recorded, tmp_path / "run")
    reference, speculative = recorded["reference"], recorded["speculative"]
    control = copy.deepcopy(reference["output_match"])
    noisy, clean = 1, 7  # prompt 1 differs in the control too (noise); prompt 7 only with speculation
    for index in (noisy, clean):
        speculative["output_match"][index] = {**speculative["output_match"][index], "completion": "x",
                                              "token_ids": [99999], "top_logprobs": None}
    control[noisy] = {**control[noisy], "completion": "y", "token_ids": [88888], "top_logprobs": None}
    reference["output_match_control"] = control
    reference["control_batching"] = {"order": "reversed", "batch_size": 2}
    summary = _summary(ctx, reference, speculative)
    match = summary.output_match
    assert match.prompt_format == "chat"
    assert (match.control.matched, match.control.total, match.control.batch_size) == (9, 10, 2)
    assert sum(t.matched for t in match.control.by_kind.values()) == 9
    written = json.loads((ctx.run_dir / "output_match.json").read_text())
    flags = {m["prompt_id"]: m["in_control"] for m in written["mismatches"]}
    assert flags[noisy] is True and flags[clean] is False
    assert [m["prompt_id"] for m in written["control_mismatches"]] == [noisy]
    frame = pipeline.mismatch_frame(written)
    assert frame.loc[noisy, "also in control"].startswith("engine noise")
    assert frame.loc[clean, "also in control"] == "only with speculation"
    assert "control (reference vs reference" in summary.check("output_match").message


def test_required_share_by_kind_fails_a_kind_below_its_share(tmp_path, recorded) -> None:
    ctx = recorded_context(recorded, tmp_path / "run", required_match_share=0.0,
                           required_match_share_by_kind={"repeat": 0.8}, match_mode="exact")
    speculative = recorded["speculative"]
    speculative["output_match"][:5] = [dict(row) for row in recorded["reference"]["output_match"][:5]]
    for index in (0, 1):  # two of the five repeat prompts differ: 3 < int(0.8 x 5) + 1 = 5
        speculative["output_match"][index] = {**speculative["output_match"][index], "completion": "x",
                                              "token_ids": [99999]}
    check = _summary(ctx, recorded["reference"], speculative).check("output_match")
    assert check.status == "failed" and "repeat 3/5 < 5 required" in check.message
    ctx = recorded_context(recorded, tmp_path / "run2", required_match_share=0.0,
                           required_match_share_by_kind={"repeat": 0.5}, match_mode="exact")
    assert _summary(ctx, recorded["reference"], speculative).check("output_match").status == "passed"


@pytest.mark.parametrize(("device", "active", "expect", "status"), [
    ("cpu", False, True, "skipped"), ("cuda", True, True, "passed"), ("cuda", False, True, "failed"),
    ("cuda", False, False, "skipped")])
def test_async_scheduling_check(tmp_path, recorded, device, active, expect, status) -> None:
    ctx = recorded_context(recorded, tmp_path / "run", expect_async_scheduling=expect)
    recorded["speculative"].update(async_scheduling=active, device_type=device)
    check = _summary(ctx, recorded["reference"], recorded["speculative"]).check("async_scheduling")
    assert check.status == status, check.message
    if status == "failed":
        assert "async_scheduling is False" in check.message and "expected True" in check.message
