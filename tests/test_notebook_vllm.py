"""The real notebook through real papermill, real vLLM (CPU) and real nbconvert, on the shipped tiny model."""

from __future__ import annotations

import json
import re

import pytest

from conftest import TINY_PARAMS, run_cli

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def passing_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "pass"
    result = run_cli("run", str(TINY_PARAMS), "-p", "num_questions", "12", "-p", "output_match_prompts", "12",
                     "--out", str(out))
    return result, out


def test_run_passes_and_leaves_a_full_record(passing_run) -> None:
    result, out = passing_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for name in ("mtp_correctness.ipynb", "report.html", "summary.json", "params.yaml", "questions.csv",
                 "records/reference.json", "records/speculative.json", "records/prompts.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] is True and summary["num_questions"] == 12
    assert summary["versions"]["vllm"] == "0.32.0"
    spec = summary["speculative"]
    # a trained MTP layer: drafts are made and a good share accepted (random weights give ~0)
    assert spec["counters"]["num_drafts"] > 0
    assert 0.3 < spec["acceptance_rate"] <= 1.0
    assert spec["acceptance_length"] == pytest.approx(1 + spec["acceptance_rate"])  # k = 1
    assert summary["output_match"]["total"] == 12


def test_speculative_greedy_output_equals_reference(passing_run) -> None:
    """The shipped model, real weights: MTP must not change greedy output (issue 5)."""
    _, out = passing_run
    ref = json.loads((out / "records" / "reference.json").read_text())
    spec = json.loads((out / "records" / "speculative.json").read_text())
    same = [r["token_ids"] == s["token_ids"] for r, s in zip(ref["output_match"], spec["output_match"])]
    assert sum(same) >= 0.9 * len(same), f"{sum(same)}/{len(same)} identical"
    assert ref["llm_kwargs"].get("load_format") is None  # real weights, not dummy


def test_report_is_self_contained_and_hides_code(passing_run) -> None:
    _, out = passing_run
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64") >= 4  # accuracy, acceptance, per-position, disagreement
    assert "pipeline.run_engine(" not in html  # input cells hidden
    assert "switched off" in html and "skipped" in html  # threshold 0: accuracy checks shown as skipped
    assert not re.search(r"<script[^>]*src=", html)  # opens offline: no web-loaded scripts


def test_threshold_099_fails_with_exit_1_and_report_shows_it(tmp_path) -> None:
    out = tmp_path / "fail"
    result = run_cli("run", str(TINY_PARAMS), "-p", "threshold", "0.99", "-p", "num_questions", "4",
                     "-p", "output_match_prompts", "4", "--out", str(out))
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "reference_accuracy" in result.stdout and "0.9900" in result.stdout
    html = (out / "report.html").read_text()
    assert "AssertionError" in html and "speculative_accuracy" in html
    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] is False
    assert {c["name"]: c["status"] for c in summary["checks"]}["reference_accuracy"] == "failed"


def test_engine_failure_exits_3_and_keeps_report(tmp_path) -> None:
    """An engine that cannot start (context longer than the model allows) is an infrastructure error."""
    out = tmp_path / "broken"
    result = run_cli("run", str(TINY_PARAMS), "-p", "num_questions", "2", "-p", "output_match_prompts", "2",
                     "-p", "max_model_len", "999999", "-p", "engine_timeout_s", "600", "--out", str(out))
    assert result.returncode == 3, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] is False and "EngineError" in summary["error"]
    assert (out / "report.html").is_file() and (out / "records" / "prompts.json").is_file()
