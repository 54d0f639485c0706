"""Output match: upstream's count rule, near-tie classification, and both match modes (no engine)."""

from __future__ import annotations

import pytest

from workbench.correctness.checks import output_match_check
from workbench.correctness.compare import (classify_divergence, default_tie_margin, model_dtype, output_match, required_matches,
                               top2_margin)


def top(*entries: tuple[int, float]) -> list[dict]:
    """A position's top logprobs, best first, ranked as vLLM ranks them."""
    ordered = sorted(entries, key=lambda e: -e[1])
    return [{"id": t, "logprob": lp, "rank": r, "text": f"<{t}>"} for r, (t, lp) in enumerate(ordered, start=1)]


def completion(tokens: list[int], tops: list[list[dict]]) -> dict:
    return {"completion": " ".join(map(str, tokens)), "token_ids": tokens, "top_logprobs": tops}


SAME = top((1, -0.1), (2, -3.0))
# the recorded AMX near-tie: the reference ranks 565 over 267 by 0.125, the speculative engine ties them
REF_TIE = top((565, -0.866), (267, -0.991), (7, -1.741))
SPEC_TIE = top((267, -0.897), (565, -0.897), (7, -1.897))


def test_upstream_count_rule_is_int_share_times_n_plus_one() -> None:
    assert required_matches(100, 0.8) == 81  # upstream's 81 of 100, not a share >= 0.8 (80)
    assert required_matches(12, 0.8) == 10
    assert required_matches(10, 0.8) == 9
    assert required_matches(4, 1.0) == 4  # never more than n
    assert required_matches(0, 0.8) == 0


def test_near_tie_needs_both_tokens_in_each_others_top_and_a_small_gap() -> None:
    assert classify_divergence(565, 267, REF_TIE, SPEC_TIE, top_n=5, tie_margin=0.125) == "near_tie"
    # same tokens, but the reference's gap is wider than the margin
    assert classify_divergence(565, 267, REF_TIE, SPEC_TIE, top_n=5, tie_margin=0.1) == "divergence"
    # the speculative token is not among the reference's top-N
    assert classify_divergence(565, 999, REF_TIE, top((999, -0.5), (565, -0.6)), 5, 0.125) == "divergence"
    # ... or is, but beyond rank N
    assert classify_divergence(565, 7, REF_TIE, top((7, -0.5), (565, -0.55)), 2, 10.0) == "divergence"
    # the reference token is missing from the speculative engine's top-N
    assert classify_divergence(565, 267, REF_TIE, top((267, -0.1), (8, -0.2)), 5, 0.125) == "divergence"
    # no logprobs recorded (an older run, or one side ended): never a near-tie
    assert classify_divergence(565, 267, None, SPEC_TIE, 5, 0.125) == "divergence"
    assert classify_divergence(None, 267, REF_TIE, SPEC_TIE, 5, 0.125) == "divergence"
    assert top2_margin(REF_TIE) == pytest.approx(0.125)


def test_tie_margin_follows_the_compute_dtype(tmp_path) -> None:
    assert default_tie_margin("bfloat16")[0] == pytest.approx(0.125)
    assert default_tie_margin("float16")[0] == pytest.approx(16 * 2 ** -10)
    assert default_tie_margin("float32")[0] < 1e-5
    (tmp_path / "config.json").write_text('{"text_config": {"dtype": "float16"}}')
    assert model_dtype("auto", str(tmp_path)) == "float16"
    assert model_dtype("bfloat16", str(tmp_path)) == "bfloat16"


def _pair(num_ties: int, num_divergences: int, num_same: int):
    ref, spec, kinds = [], [], []
    for _ in range(num_same):
        ref.append(completion([1, 1], [SAME, SAME]))
        spec.append(completion([1, 1], [SAME, SAME]))
        kinds.append("repeat")
    for _ in range(num_ties):
        ref.append(completion([1, 565], [SAME, REF_TIE]))
        spec.append(completion([1, 267], [SAME, SPEC_TIE]))
        kinds.append("repeat")
    for _ in range(num_divergences):
        ref.append(completion([1, 565], [SAME, REF_TIE]))
        spec.append(completion([1, 4242], [SAME, top((4242, -0.01), (565, -5.0))]))
        kinds.append("gsm8k")
    return ref, spec, kinds


def test_output_match_counts_classes_per_kind() -> None:
    ref, spec, kinds = _pair(num_ties=14, num_divergences=2, num_same=84)
    match = output_match(ref, spec, kinds, 0.8, "tie_aware", 5, 0.125)
    assert (match["matched"], match["total"], match["share"]) == (84, 100, 0.84)
    assert match["near_ties"] == {"total": 14, "by_kind": {"repeat": 14, "gsm8k": 0}}
    assert match["divergences"] == {"total": 2, "by_kind": {"repeat": 0, "gsm8k": 2}}
    assert match["judged_matched"] == 98 and match["required_matches"] == 81
    first = match["mismatches"][0]
    assert (first["class"], first["first_divergent_token"], first["reference_token_text"],
            first["speculative_token_text"]) == ("near_tie", 1, "<565>", "<267>")
    assert [e["id"] for e in first["reference_top_logprobs"]] == [565, 267, 7]


@pytest.mark.parametrize("mode, near_ties, matched, passes", [
    ("exact", 21, 79, False),      # the AMX demo: 79 identical texts, upstream's rule needs 81
    ("exact", 0, 80, False),       # the old share rule passed 80/100; upstream's does not
    ("exact", 0, 81, True),
    ("tie_aware", 21, 79, True),   # the same run, near-ties counted
    ("tie_aware", 1, 79, False),   # 79 + 1 = 80 < 81: divergences beyond the share fail
])
def test_both_modes_judge_by_upstreams_count(mode, near_ties, matched, passes) -> None:
    ref, spec, kinds = _pair(num_ties=near_ties, num_divergences=100 - matched - near_ties, num_same=matched)
    match = output_match(ref, spec, kinds, 0.8, mode, 5, 0.125)
    check = output_match_check(match)
    assert (check.status == "passed") is passes, check.message
    assert match["share"] == pytest.approx(matched / 100)  # the exact share is always reported
    assert f"exact share {matched / 100:.4f}" in check.message and f"{mode}" in check.message
    assert check.required == pytest.approx(0.81)


def test_old_summaries_without_a_mode_are_judged_exactly() -> None:
    check = output_match_check({"matched": 80, "total": 100, "share": 0.8, "required_share": 0.8})
    assert check.status == "failed" and "80/100 < 81" in check.message
