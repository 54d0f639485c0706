"""`workbench controls`: the clean run and each injection per workload, and the verdict on them."""

from __future__ import annotations

import copy
import json

import pytest

from conftest import TINY_PARAMS, recorded_context, run_cli
from workbench.controls.report import render
from workbench.controls.runner import run_controls
from workbench.core.errors import ExitCode
from workbench.correctness import pipeline
from workbench.records import ControlsSummary


def fake_runs(recorded, effects: dict[tuple[str, str], str]):
    """A `run_case` that builds real run folders from the recorded engine outputs: an injection named in
    `effects` garbles the speculative output-match texts ("caught"), changes nothing ("missed"), or stops
    the run before its summary ("error"). The clean run is the recorded run."""

    def run(params_file, overrides, out) -> ExitCode:
        name, workload = overrides.get("inject"), overrides["workload"]
        effect = effects.get((name, workload), "missed") if name else "clean"
        if effect == "error":
            out.mkdir(parents=True, exist_ok=True)
            return ExitCode.ERROR
        records = copy.deepcopy(recorded)
        ctx = recorded_context(records, out, workload=workload)
        if effect == "caught":
            for row in records["speculative"]["output_match"]:
                row.update(completion="<b>garbled</b>", token_ids=[1, 2, 3], top_logprobs=None)
        for label in ("reference", "speculative"):  # as the engine children write them
            (out / "records" / f"{label}.json").write_text(json.dumps(records[label]))
        table = pipeline.score(ctx, records["reference"], records["speculative"])
        match = pipeline.compare_outputs(ctx, records["reference"], records["speculative"])
        summary = pipeline.build_summary(ctx, records["reference"], records["speculative"], table, match,
                                         pipeline.acceptance(records["speculative"]))
        return ExitCode.OK if summary.passed else ExitCode.CHECKS_FAILED

    return run


def test_every_injection_caught_and_clean_passing_exits_0(tmp_path, recorded) -> None:
    effects = {(n, w): "caught" for n in ("a", "b") for w in ("batch", "churn")}
    summary, code = run_controls(TINY_PARAMS, {}, ["a", "b"], ["batch", "churn"], tmp_path,
                                 run_case=fake_runs(recorded, effects))
    assert code == ExitCode.OK and summary.passed and summary.clean.passed
    assert [(i.name, i.workload, i.caught_by) for i in summary.injections] == [
        ("a", "batch", ["output_match"]), ("b", "batch", ["output_match"]),
        ("a", "churn", ["output_match"]), ("b", "churn", ["output_match"])]
    written = ControlsSummary.model_validate_json((tmp_path / "controls.json").read_text())
    assert written == summary
    first = summary.injections[0]
    assert first.output_match_judged < first.output_match_total
    assert first.first_divergences and first.first_divergences[0].speculative == "<b>garbled</b>"


def test_a_missed_injection_is_named_and_exits_1(tmp_path, recorded) -> None:
    effects = {("a", "batch"): "caught", ("a", "churn"): "caught", ("b", "churn"): "caught"}
    summary, code = run_controls(TINY_PARAMS, {}, ["a", "b"], ["batch", "churn"], tmp_path,
                                 run_case=fake_runs(recorded, effects))
    assert code == ExitCode.CHECKS_FAILED and not summary.passed
    assert summary.missed == ["b@batch"] and summary.churn_only == ["b"]
    html = render(summary, tmp_path)
    assert "MISSED" in html and "FAILED" in html and "b@batch: missed" in html
    assert "<b>garbled</b>" not in html and "&lt;b&gt;garbled&lt;/b&gt;" in html  # model text is escaped
    assert 'href="batch/a/report.html"' in html and "http" not in html.replace("http-equiv", "")


def test_an_error_is_not_a_catch_and_exits_3(tmp_path, recorded) -> None:
    summary, code = run_controls(TINY_PARAMS, {}, ["a"], ["batch"], tmp_path,
                                 run_case=fake_runs(recorded, {("a", "batch"): "error"}))
    assert code == ExitCode.ERROR and not summary.passed
    assert summary.injections[0].status == "error" and not summary.injections[0].caught
    assert summary.errors and not summary.missed


def test_bad_input_is_refused_before_any_run(tmp_path) -> None:
    for args, key in ((["--workload", "storm"], "--workload"), (["-p", "workload", "churn"], "workload"),
                      (["--inject", "no_such_fault"], "no_such_fault")):
        result = run_cli("controls", str(TINY_PARAMS), *args, "--out", str(tmp_path / "c"), timeout=120)
        assert result.returncode == 2, result.stderr
        assert key in result.stderr
        assert not (tmp_path / "c" / "controls.json").exists()


def test_calibration_reads_controls_measured_beside_computed_power(tmp_path, recorded) -> None:
    from scipy import stats

    from workbench.calibration.stats import calibrate_inputs, detection_from_controls

    effects = {("a", "batch"): "caught", ("b", "batch"): "missed"}
    summary, _ = run_controls(TINY_PARAMS, {}, ["a", "b"], ["batch"], tmp_path, run_case=fake_runs(recorded, effects))
    rows = {row["injection"]: row for row in detection_from_controls(tmp_path)}
    assert rows["a"]["measured"] == "caught by output_match" and rows["b"]["measured"] == "MISSED"
    for name, outcome in zip(("a", "b"), summary.injections):
        share = outcome.output_match_judged / outcome.output_match_total
        needed = int(0.8 * outcome.output_match_total) + 1
        assert rows[name]["output_match_check_power"] == pytest.approx(
            stats.binom.cdf(needed - 1, outcome.output_match_total, share))
        assert rows[name]["accuracy_check_power"] is None  # threshold 0: the accuracy check is off
    assert rows["a"]["output_match_check_power"] > 0.99 > rows["b"]["output_match_check_power"]
    result = calibrate_inputs([], 0.3, 200, None, controls=str(tmp_path))
    assert result["controls_detection"] == detection_from_controls(tmp_path / "controls.json")


def test_a_cancelled_injection_is_neither_caught_nor_missed(tmp_path, recorded) -> None:
    run = fake_runs(recorded, {("a", "batch"): "caught"})

    def cancel_b(params_file, overrides, out):
        if overrides.get("inject") == "b":
            out.mkdir(parents=True, exist_ok=True)
            return ExitCode.CANCELLED
        return run(params_file, overrides, out)

    summary, code = run_controls(TINY_PARAMS, {}, ["a", "b"], ["batch", "churn"], tmp_path, run_case=cancel_b)
    assert code == ExitCode.CANCELLED and not summary.passed
    assert summary.missed == [] and summary.errors and "b@batch" in summary.errors[0]
    assert [i.workload for i in summary.injections] == ["batch", "batch"]  # nothing started after the cancel


@pytest.mark.vllm
def test_controls_on_the_real_model_catch_an_injection_and_name_a_miss(tmp_path) -> None:
    """Real engines: a clean batch run passes and `stale_accepted_tokens` is caught; the same fault at rate 0
    (installed, never firing: a regression no check can see) is a miss, named, exit 1."""
    small = ["-p", "num_questions", "8", "-p", "output_match_prompts", "20", "--workload", "batch"]
    out = tmp_path / "caught"
    result = run_cli("controls", str(TINY_PARAMS), "--inject", "stale_accepted_tokens", *small, "--out", str(out))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = ControlsSummary.model_validate_json((out / "controls.json").read_text())
    assert summary.clean.passed and summary.injections[0].caught and summary.injections[0].events > 0
    assert json.loads((out / "batch" / "stale_accepted_tokens" / "summary.json").read_text())["injection"]
    assert (out / "controls.html").is_file() and (out / "batch" / "clean" / "report.html").is_file()
    missed = tmp_path / "missed"
    result = run_cli("controls", str(TINY_PARAMS), "--inject", "stale_accepted_tokens", "--inject-rate", "0",
                     *small, "--out", str(missed))
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "missed: stale_accepted_tokens@batch" in result.stdout
