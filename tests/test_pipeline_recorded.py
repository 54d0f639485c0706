"""Scores, acceptance, output match, checks and figures on recorded engine outputs (no vLLM)."""

from __future__ import annotations

import copy
import json

import matplotlib
import pytest

matplotlib.use("Agg")

from conftest import recorded_context
from workbench import gsm8k
from workbench.correctness import figures, pipeline
from workbench.core.checks import assert_checks, evaluate_checks
from workbench.correctness.compare import first_divergence, output_match
from workbench.correctness.metrics import acceptance_stats, per_prompt_acceptance


@pytest.fixture
def ctx(tmp_path, recorded):
    return recorded_context(recorded, tmp_path / "run")


def test_prepare_writes_prompts_matching_upstream_format(ctx, recorded) -> None:
    written = json.loads((ctx.run_dir / "records" / "prompts.json").read_text())
    assert [p["prompt"] for p in written["gsm8k"]] == [p["prompt"] for p in recorded["prompts"]["gsm8k"]]
    assert written["gsm8k"][0]["prompt"].endswith(f"Question: {ctx.questions[0].question}\nAnswer:")
    assert (ctx.run_dir / "params.yaml").is_file()


def test_scores_agree_with_independent_scoring(ctx, recorded) -> None:
    table = pipeline.score(ctx, recorded["reference"], recorded["speculative"])
    for scorer in gsm8k.SCORERS:
        expected = sum(gsm8k.is_correct(r["completion"], q.answer, scorer)
                       for r, q in zip(recorded["speculative"]["gsm8k"], ctx.questions)) / len(ctx.questions)
        assert pipeline.accuracy_by_scorer(table, "speculative")[scorer] == pytest.approx(expected)
    assert (ctx.run_dir / "questions.csv").is_file()
    diverged = [first_divergence(r["token_ids"], s["token_ids"])
                for r, s in zip(recorded["reference"]["gsm8k"], recorded["speculative"]["gsm8k"])]
    assert list(table["first_divergent_token"].fillna(-1).astype(int)) == [-1 if d is None else d for d in diverged]


def test_acceptance_follows_upstream_definitions() -> None:
    stats = acceptance_stats({"vllm:spec_decode_num_drafts": 100, "vllm:spec_decode_num_draft_tokens": 300,
                              "vllm:spec_decode_num_accepted_tokens": 150,
                              "vllm:spec_decode_num_accepted_tokens_per_pos": [80, 45, 25]})
    assert stats["acceptance_rate"] == pytest.approx(0.5)
    assert stats["acceptance_length"] == pytest.approx(2.5)
    assert stats["acceptance_rate_per_position"] == pytest.approx([0.8, 0.45, 0.25])
    assert acceptance_stats({})["acceptance_length"] is None


def test_per_prompt_histogram_converts_to_per_position() -> None:
    # 10 steps: 2 accepted nothing, 3 accepted one, 5 accepted both of k=2
    stats = per_prompt_acceptance({"acceptance_histogram": [2, 3, 5], "num_draft_tokens": 20})
    assert stats["num_accepted_tokens_per_pos"] == [8, 5]
    assert stats["acceptance_length"] == pytest.approx(1 + 13 / 10)


def test_recorded_counters_give_recorded_acceptance(recorded) -> None:
    counters = recorded["speculative"]["spec_counters"]
    accept = pipeline.acceptance(recorded["speculative"])
    assert accept["acceptance_rate"] == pytest.approx(counters["vllm:spec_decode_num_accepted_tokens"]
                                                      / counters["vllm:spec_decode_num_draft_tokens"])
    assert 0.0 < accept["acceptance_rate"] <= 1.0


def test_output_match_reports_first_divergent_token() -> None:
    ref = [{"completion": "a b c", "token_ids": [1, 2, 3]}, {"completion": "x", "token_ids": [9]}]
    spec = [{"completion": "a b d", "token_ids": [1, 2, 4]}, {"completion": "x", "token_ids": [9]}]
    match = output_match(ref, spec, ["repeat", "gsm8k"], 0.8)
    assert (match["matched"], match["total"], match["share"]) == (1, 2, 0.5)
    assert match["mismatches"][0]["first_divergent_token"] == 2
    assert match["by_kind"]["gsm8k"] == {"matched": 1, "total": 1, "near_ties": 0, "divergences": 0}
    assert first_divergence([1, 2], [1, 2, 3]) == 2 and first_divergence([5], [5]) is None


def summary_for(ctx, recorded, **params_changes):
    context = copy.copy(ctx)
    context.params = ctx.params.model_copy(update=params_changes)
    table = pipeline.score(context, recorded["reference"], recorded["speculative"])
    match = pipeline.compare_outputs(context, recorded["reference"], recorded["speculative"])
    return pipeline.build_summary(context, recorded["reference"], recorded["speculative"], table, match,
                                  pipeline.acceptance(recorded["speculative"]))


def test_summary_has_the_promised_keys(ctx, recorded) -> None:
    summary = summary_for(ctx, recorded)
    on_disk = json.loads((ctx.run_dir / "summary.json").read_text())
    for key in ("params", "threshold", "margin", "passed", "versions", "checks"):
        assert key in on_disk
    assert set(on_disk["reference"]["accuracy"]) == set(gsm8k.SCORERS)
    assert {"acceptance_rate", "acceptance_length", "acceptance_rate_per_position"} <= set(on_disk["speculative"])
    assert {"matched", "total"} <= set(on_disk["output_match"])
    assert {"init_s", "generate_s", "output_tokens_per_s"} <= set(on_disk["reference"]["timings"])
    assert {"vllm", "torch", "python", "model_config_hash"} <= set(on_disk["versions"])
    assert summary.passed is True


def test_threshold_zero_is_skipped_never_passed(ctx, recorded) -> None:
    summary = summary_for(ctx, recorded, threshold=0.0, min_acceptance_length=None)
    statuses = {c.name: c.status for c in summary.checks}
    assert statuses["reference_accuracy"] == "skipped" and statuses["speculative_accuracy"] == "skipped"
    assert statuses["acceptance_length"] == "skipped"


def test_failed_checks_raise_with_names_and_numbers(ctx, recorded) -> None:
    summary = summary_for(ctx, recorded, threshold=0.99, min_acceptance_length=1.99)
    assert summary.passed is False
    with pytest.raises(AssertionError) as info:
        assert_checks(summary.checks)
    message = str(info.value)
    for name in ("reference_accuracy", "speculative_accuracy", "acceptance_length"):
        assert name in message
    assert "0.9900" in message and "1.9900" in message
    assert "output_match" not in message  # it passed on these records


def test_output_match_check_fails_below_required_share(ctx, recorded) -> None:
    spec = copy.deepcopy(recorded["speculative"])
    for row in spec["output_match"][:5]:
        row["completion"] += " changed"
    table = pipeline.score(ctx, recorded["reference"], spec)
    match = pipeline.compare_outputs(ctx, recorded["reference"], spec)
    summary = pipeline.build_summary(ctx, recorded["reference"], spec, table, match, pipeline.acceptance(spec))
    check = {c.name: c for c in evaluate_checks(summary)}["output_match"]
    # 5 texts changed with their tokens intact: divergences; a near-tie among them still counts (tie_aware)
    assert check.status == "failed"
    assert check.observed == pytest.approx((5 + match["near_ties"]["total"]) / 10) and match["matched"] == 5


def test_figures_render(ctx, recorded) -> None:
    table = pipeline.score(ctx, recorded["reference"], recorded["speculative"])
    accuracy = pipeline.accuracy_table(table)
    accept = pipeline.acceptance(recorded["speculative"])
    for fig in (figures.accuracy_vs_threshold(accuracy, 0.2, "upstream"),
                figures.accuracy_vs_threshold(accuracy, 0.0, "upstream"),
                figures.acceptance_length(accept, 1), figures.per_position_acceptance([0.6]),
                figures.disagreement(table, "upstream")):
        assert fig.axes
    margin_texts = [t.get_text() for t in figures.accuracy_vs_threshold(accuracy, 0.2, "upstream").axes[0].texts]
    assert any(t.startswith("margin (upstream): ") for t in margin_texts)


def test_summarize_prints_the_run_numbers(ctx, recorded, capsys) -> None:
    from workbench.summarize import main as summarize_main

    summary = summary_for(ctx, recorded)
    assert summarize_main([str(ctx.run_dir)]) == 0
    table = capsys.readouterr().out
    assert f"{summary.speculative.acceptance_length:.4f}" in table
    assert f"{summary.output_match.matched}/{summary.output_match.total}" in table
    assert summarize_main([str(ctx.run_dir / "nowhere")]) == 2


def test_html_report_opens_offline_and_hides_code(tmp_path) -> None:
    import base64
    import re

    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    from workbench.core.notebook import export_html

    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"0" * 16).decode()
    cell = new_code_cell("secret_code_marker = 1", outputs=[new_output("display_data", data={"image/png": png})])
    widget = new_code_cell("slider_marker", metadata={"tags": ["widget"]}, outputs=[
        new_output("stream", name="stdout", text="live widget text\n")])
    path = tmp_path / "nb.ipynb"
    nbformat.write(new_notebook(cells=[cell, widget]), str(path))
    html = export_html(path, tmp_path / "r.html").read_text()
    assert f"data:image/png;base64,{png}" in html
    assert "secret_code_marker" not in html and "live widget text" not in html
    assert not re.search(r"<script[^>]*src=", html), "the report must not load scripts from the web"
    assert "secret_code_marker" in export_html(path, tmp_path / "r2.html", show_input=True).read_text()


def test_recorded_near_tie_is_classified_from_real_logprobs(ctx, recorded) -> None:
    """A real AMX run: the one repeat mismatch is a bf16 near-tie; a token outside the top-N is a divergence."""
    match = pipeline.compare_outputs(ctx, recorded["reference"], recorded["speculative"])
    ties = [m for m in match["mismatches"] if m["class"] == "near_tie"]
    assert ties and match["near_ties"]["total"] == len(ties)
    tie = ties[0]
    assert tie["reference_margin"] <= match["tie_margin"] == pytest.approx(0.125)  # bf16 model, dtype-derived margin
    assert tie["speculative_token"] in [e["id"] for e in tie["reference_top_logprobs"]]
    assert tie["reference_token_text"] == tie["reference_top_logprobs"][0]["text"]
    # the same prompt, the speculative engine emitting a token its reference never ranked: a divergence
    spec = copy.deepcopy(recorded["speculative"])
    row = spec["output_match"][tie["prompt_id"]]
    row["token_ids"][tie["first_divergent_token"]] = 424242
    row["completion"] += " broken"
    broken = pipeline.compare_outputs(ctx, recorded["reference"], spec)
    assert broken["divergences"]["total"] == match["divergences"]["total"] + 1
    assert broken["judged_matched"] == match["judged_matched"] - 1


def test_match_mode_exact_judges_identical_texts_only(ctx, recorded) -> None:
    tie_aware = summary_for(ctx, recorded, match_mode="tie_aware").output_match.model_dump()
    exact = summary_for(ctx, recorded, match_mode="exact").output_match.model_dump()
    assert exact["judged_matched"] == exact["matched"] == tie_aware["matched"]
    assert tie_aware["judged_matched"] == tie_aware["matched"] + tie_aware["near_ties"]["total"]
    assert exact["near_ties"] == tie_aware["near_ties"]  # near-ties are reported in both modes


def test_match_figure_splits_classes_per_kind(ctx, recorded) -> None:
    match = pipeline.compare_outputs(ctx, recorded["reference"], recorded["speculative"])
    fig = figures.match_classes(match)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["exact match", "near-tie", "divergence"]
    widths = sum(patch.get_width() for patch in fig.axes[0].patches)
    assert widths == match["total"]
    frame = pipeline.mismatch_frame(match)
    assert {"position", "class", "reference token", "speculative token", "reference top logprobs",
            "speculative top logprobs"} <= set(frame.columns)
