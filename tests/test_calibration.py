"""Threshold calibration (issue 4): numbers checked against independent computations."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from workbench.calibration import stats as cal
from workbench.calibration.cli import main as cli_main

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "calibrate_threshold.ipynb"
DRAWS = 200_000


def _mc_fail_rate(accuracy: float, questions: int, threshold: float, seed: int = 0) -> tuple[float, float]:
    """Monte-Carlo: share of binomial runs whose measured accuracy is below the threshold (+ its std error)."""
    counts = np.random.default_rng(seed).binomial(questions, accuracy, size=DRAWS)
    rate = float(np.mean(counts / questions < threshold))
    return rate, math.sqrt(max(rate * (1 - rate), 1e-12) / DRAWS)


# --------------------------------------------------------------------------- false failures and power


@pytest.mark.parametrize("accuracy,questions,threshold", [(0.348, 1319, 0.33), (0.348, 1319, 0.325),
                                                          (0.8, 200, 0.75), (0.5, 50, 0.42)])
def test_false_failure_matches_monte_carlo(accuracy, questions, threshold):
    exact = cal.false_failure_probability(accuracy, questions, threshold)
    simulated, se = _mc_fail_rate(accuracy, questions, threshold)
    assert 1e-3 < exact < 0.9
    assert abs(exact - simulated) < 5 * se


def test_strict_inequality_and_decimal_thresholds():
    # 0.2 * 1000 = 200 exactly: 200 correct is *not* below 0.2, so only k <= 199 fails
    assert cal.false_failure_probability(0.2, 1000, 0.2) == pytest.approx(stats.binom.cdf(199, 1000, 0.2), rel=1e-12)
    # 0.2 * 1319 = 263.8: k <= 263 fails
    assert cal.false_failure_probability(0.3, 1319, 0.2) == pytest.approx(stats.binom.cdf(263, 1319, 0.3), rel=1e-12)
    # 0.7 * 10 is 7.000000000000001 in floats, yet 7/10 is not below 0.7
    assert cal.false_failure_probability(0.7, 10, 0.7) == pytest.approx(stats.binom.cdf(6, 10, 0.7), rel=1e-12)
    assert cal.false_failure_probability(0.5, 100, 0.0) == 0.0
    assert cal.false_failure_probability(0.5, 100, 1.0) == pytest.approx(1 - 0.5**100)


@pytest.mark.parametrize("threshold,questions,baseline", [(0.30, 1319, 0.348), (0.2, 1319, 0.348), (0.7, 300, 0.8)])
def test_detectable_drop_has_the_stated_power(threshold, questions, baseline):
    drop = cal.detectable_drop(threshold, questions, baseline, power=0.9)
    assert 0 < drop < baseline
    simulated, se = _mc_fail_rate(baseline - drop, questions, threshold, seed=1)
    assert abs(simulated - 0.9) < 5 * se + 1e-3
    # smallest such drop: a slightly smaller one falls short of 90%
    assert cal.false_failure_probability(baseline - drop + 1e-4, questions, threshold) < 0.9


def test_detectable_drop_edges():
    assert math.isinf(cal.detectable_drop(0.0, 100, 0.5))  # threshold 0 never fails
    assert cal.detectable_drop(0.6, 100, 0.5) == 0.0  # a healthy build already fails most of the time


# --------------------------------------------------------------------------- upstream's worked example


def test_upstream_worked_example():
    result = cal.calibrate(0.348, 1319, threshold=0.20)
    assert result["false_failure_probability"] < 1e-25  # astronomically small: 0.20 never fails a healthy build
    assert result["false_failure_probability"] == pytest.approx(stats.binom.cdf(263, 1319, 0.348), rel=1e-9)
    recommended = result["recommended_threshold"]
    assert 0.20 < recommended < 0.348
    assert 0.28 < recommended < 0.32
    assert result["recommended"]["false_failure_probability"] <= 1e-3
    # 0.20 misses drops the recommendation catches
    assert result["detectable_drop"] > 0.15
    assert result["recommended"]["detectable_drop"] < 0.06
    assert result["threshold_evaluated"] == 0.20
    assert result["margin"] == pytest.approx(0.148)
    low, high = result["accuracy_interval"]
    assert low < 0.348 < high
    for key in ("recommended_threshold", "false_failure_probability", "detectable_drop", "threshold_evaluated",
                "margin", "accuracy", "questions", "accuracy_interval", "max_false_failure"):
        assert key in result
    json.loads(cal.to_json(result))


def test_recommended_threshold_is_the_highest_safe_one():
    accuracy, n, alpha = 0.348, 1319, 1e-3
    rec = cal.recommend_threshold(accuracy, n, alpha)
    assert cal.false_failure_probability(accuracy, n, rec) <= alpha
    exact = cal.calibrate(accuracy, n, max_false_failure=alpha)["recommended_threshold_exact"]
    assert rec <= exact
    assert round(rec, 3) == rec  # a human value
    # one more failing count (just above the exact bound) breaks the limit
    assert cal.false_failure_probability(accuracy, n, exact + 0.5 / n) > alpha
    # the calibration without a named threshold evaluates the recommended one
    result = cal.calibrate(accuracy, n, max_false_failure=alpha)
    assert result["threshold_evaluated"] == rec
    assert result["false_failure_probability"] == result["recommended"]["false_failure_probability"]


def test_recommended_threshold_keeps_the_test_when_a_round_value_exists():
    # 200 questions: each failing set spans 0.005, so a 3-decimal value with the same test always exists
    rec = cal.recommend_threshold(0.8, 200, 1e-3)
    k = cal._largest_safe_count(0.8, 200, 1e-3)
    assert (k - 1) / 200 < rec <= k / 200
    assert cal.recommend_threshold(0.01, 20, 1e-3) == 0.0  # nothing is safe: check off


def test_threshold_curves():
    grid = np.linspace(0.0, 0.35, 8)
    frame = cal.threshold_curves(0.348, 1319, grid)
    assert list(frame.columns) == ["threshold", "false_failure_probability", "detectable_drop"]
    assert frame["false_failure_probability"].is_monotonic_increasing
    finite = frame["detectable_drop"].replace(np.inf, np.nan).dropna()
    assert finite.is_monotonic_decreasing


# --------------------------------------------------------------------------- questions needed


@pytest.mark.parametrize("baseline,drop,ff,miss", [(0.348, 0.05, 1e-3, 0.1), (0.348, 0.10, 1e-3, 0.1),
                                                   (0.8, 0.05, 1e-2, 0.2), (0.5, 0.1, 1e-4, 0.05)])
def test_questions_needed_is_the_smallest_n(baseline, drop, ff, miss):
    answer = cal.questions_needed(baseline, drop, ff, miss)
    n, threshold = answer["questions"], answer["threshold"]

    def separates(size: int, t: float) -> bool:
        healthy_fails = cal.false_failure_probability(baseline, size, t)
        regressed_fails = cal.false_failure_probability(baseline - drop, size, t)
        return healthy_fails <= ff and regressed_fails >= 1 - miss

    assert separates(n, threshold)
    # with one question fewer, no threshold at all does it (check every attainable one)
    assert not any(separates(n - 1, k / (n - 1)) for k in range(0, n))
    assert abs(n - answer["normal_approximation"]) / n < 0.1  # the normal bracket was close


# --------------------------------------------------------------------------- paired comparison


def test_mcnemar_matches_binomial_test_on_discordant_pairs():
    # hand table: both right 40, reference only 9, speculative only 2, both wrong 49
    ref = [True] * 40 + [True] * 9 + [False] * 2 + [False] * 49
    spec = [True] * 40 + [False] * 9 + [True] * 2 + [False] * 49
    result = cal.paired_comparison(ref, spec)
    assert result["table"] == [[40, 9], [2, 49]]
    assert (result["reference_only"], result["speculative_only"]) == (9, 2)
    assert result["mcnemar_pvalue"] == pytest.approx(stats.binomtest(2, 11, 0.5).pvalue, rel=1e-9)
    assert result["reference_only_indices"] == list(range(40, 49))
    assert result["speculative_only_indices"] == [49, 50]
    assert result["difference"] == pytest.approx(-0.07)
    same = cal.paired_comparison([True, False], [True, False])
    assert same["mcnemar_pvalue"] == 1.0 and same["disagreeing_indices"] == []


def test_interval_and_spread():
    low, high = cal.accuracy_interval(459, 1319)
    assert low < 459 / 1319 < high
    b_low, b_high = cal.accuracy_interval(459, 1319, method="beta")
    assert b_low < low and b_high > high  # Clopper-Pearson is the wider one
    spread = cal.run_to_run_spread([0.34, 0.35, 0.36])
    assert spread == pytest.approx({"n": 3, "mean": 0.35, "std": 0.01, "min": 0.34, "max": 0.36})


def test_acceptance_length_gate():
    samples = [1.80, 1.82, 1.79, 1.81, 1.80]
    gate = cal.acceptance_length_gate(samples, 1e-3)
    n, mean, std = 5, np.mean(samples), np.std(samples, ddof=1)
    assert gate["status"] == "ok"
    assert gate["gate"] == pytest.approx(mean - stats.t.isf(1e-3, n - 1) * std * math.sqrt(1 + 1 / n))
    assert gate["gate"] < gate["gate_normal"] < mean
    assert gate["detectable_drop"] > mean - gate["gate"]
    short = cal.acceptance_length_gate([1.8], 1e-3)
    assert short["status"] == "insufficient runs" and short["gate"] is None


# --------------------------------------------------------------------------- run folders


def _fake_run(folder: Path, ref: list[bool], spec: list[bool], acceptance_length: float,
              threshold: float = 0.2) -> Path:
    """A finished run folder as DESIGN.md describes it (summary.json + questions.csv)."""
    folder.mkdir(parents=True)
    n = len(ref)
    pd.DataFrame({
        "question_id": range(n),
        "question": [f"question {i}?" for i in range(n)],
        "reference_answer": [str(i) for i in range(n)],
        "reference_completion": [f"ref says {i if r else -1}" for i, r in enumerate(ref)],
        "speculative_completion": [f"spec says {i if s else -1}" for i, s in enumerate(spec)],
        "reference_correct_upstream": ref, "speculative_correct_upstream": spec,
        "reference_correct_strict": ref, "speculative_correct_strict": spec,
        "reference_correct_flexible": ref, "speculative_correct_flexible": spec,
        "first_divergent_token": [None if r == s else 3 for r, s in zip(ref, spec)],
    }).to_csv(folder / "questions.csv", index=False)
    acc = lambda flags: sum(flags) / n  # noqa: E731
    summary = {
        "kind": "correctness", "params": {"model": "fake/model", "threshold": threshold}, "threshold": threshold,
        "primary_scorer": "upstream",
        "num_questions": n, "margin": min(acc(ref), acc(spec)) - threshold,
        "reference": {"accuracy": {"upstream": acc(ref)}, "timings": {}},
        "speculative": {"accuracy": {"upstream": acc(spec)}, "timings": {}, "acceptance_rate": 0.8,
                        "acceptance_length": acceptance_length, "acceptance_rate_per_position": [0.8], "counters": {}},
        "output_match": {"matched": 10, "total": 10, "share": 1.0, "required_share": 0.8},
        "checks": [], "passed": True, "error": None, "versions": {},
    }
    (folder / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return folder


@pytest.fixture
def fake_runs(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(7)
    runs = []
    for i, length in enumerate((1.80, 1.82, 1.79)):
        ref = list(rng.random(200) < 0.6)
        spec = list(ref)
        spec[3 + i] = not spec[3 + i]  # one flip per run
        spec[10] = not spec[10]
        runs.append(_fake_run(tmp_path / f"run{i}", [bool(x) for x in ref], [bool(x) for x in spec], length))
    return runs


def test_calibrate_from_runs(fake_runs):
    result = cal.calibrate_from_runs(fake_runs, "upstream", 1e-3)
    tables = [pd.read_csv(r / "questions.csv") for r in fake_runs]
    ref_acc = [float(t["reference_correct_upstream"].mean()) for t in tables]
    assert result["runs"] == [str(r) for r in fake_runs]
    assert result["questions"] == 200
    assert result["accuracy"] == pytest.approx(np.mean(ref_acc))
    assert result["spread"]["n"] == 3 and result["spread"]["std"] == pytest.approx(np.std(ref_acc, ddof=1))
    first = tables[0]
    assert result["paired_comparison"]["disagreeing_indices"] == sorted(
        np.flatnonzero(first["reference_correct_upstream"] != first["speculative_correct_upstream"]).tolist())
    assert result["acceptance_length"]["n"] == 3 and result["acceptance_length"]["status"] == "ok"
    assert result["current"]["threshold"] == 0.2
    expected = cal.calibrate(result["accuracy"], 200, None, 1e-3)
    for key in expected:
        assert result[key] == expected[key]
    json.loads(cal.to_json(result))
    table = cal.disagreement_table(cal.load_runs(fake_runs[:1])[0], "upstream")
    assert len(table) == len(result["paired_comparison"]["disagreeing_indices"])
    assert {"reference_completion", "speculative_completion"} <= set(table.columns)


def test_load_runs_names_the_missing_file(tmp_path, fake_runs):
    (fake_runs[1] / "questions.csv").unlink()
    with pytest.raises(cal.CalibrationError, match=r"run1.*questions\.csv"):
        cal.load_runs(fake_runs)
    with pytest.raises(cal.CalibrationError, match="nowhere"):
        cal.load_runs([tmp_path / "nowhere"])
    with pytest.raises(cal.CalibrationError, match="reference_correct_nosuch"):
        cal.calibrate_from_runs(fake_runs[:1], scorer="nosuch")


# --------------------------------------------------------------------------- writing the threshold


PARAMS_TEXT = """# a case
description: test case  # with a comment
model: ../models/x
threshold: 0.2  # upstream's hand-picked value
primary_scorer: upstream
speculative_extra:
  threshold: 5
num_questions: 1319
"""


def test_write_threshold_changes_only_the_threshold_line(tmp_path):
    import yaml

    path = tmp_path / "case.yaml"
    path.write_text(PARAMS_TEXT, encoding="utf-8")
    result = cal.calibrate(0.348, 1319)
    cal.write_threshold(path, result, "results/run-a, results/run-b")
    before, after = PARAMS_TEXT.splitlines(), path.read_text(encoding="utf-8").splitlines()
    assert len(after) == len(before) + 1
    index = before.index("threshold: 0.2  # upstream's hand-picked value")
    assert after[index] == f"threshold: {result['recommended_threshold']}  # upstream's hand-picked value"
    assert after[index + 1].startswith("threshold_source: ")
    assert after[:index] + after[index + 2:] == before[:index] + before[index + 1:]  # nested threshold untouched
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert loaded["threshold"] == result["recommended_threshold"]
    assert loaded["speculative_extra"] == {"threshold": 5}
    source = loaded["threshold_source"]
    assert "\n" not in source and source.startswith("calibrated from results/run-a, results/run-b on ")
    assert "reference accuracy 0.3480 on 1319 questions, false-failure" in source
    # a second write replaces the provenance instead of adding another line
    cal.write_threshold(path, cal.calibrate(0.5, 1319), "again")
    again = path.read_text(encoding="utf-8").splitlines()
    assert len(again) == len(after) and sum(line.startswith("threshold_source:") for line in again) == 1
    snippet = yaml.safe_load(cal.yaml_snippet(result, "x"))
    assert snippet["threshold"] == result["recommended_threshold"]
    assert "calibrated from x" in snippet["threshold_source"]


def test_write_threshold_without_key(tmp_path):
    path = tmp_path / "nothreshold.yaml"
    path.write_text("model: x\nspeculative_extra:\n  threshold: 1\n", encoding="utf-8")
    with pytest.raises(cal.CalibrationError, match="nothreshold.yaml"):
        cal.write_threshold(path, cal.calibrate(0.348, 1319), "x")


def test_params_file_still_loads_after_write(tmp_path):
    """The written keys pass the params schema (threshold_source is a known key)."""
    from workbench.core.params import load_params

    source = REPO / "params" / "tiny-qwen3_5-cpu.yaml"
    if not (REPO / "models" / "tiny-qwen3_5-mtp" / "config.json").exists():
        pytest.skip("tiny model not present")
    (tmp_path / "params").mkdir()
    (tmp_path / "models").symlink_to(REPO / "models")
    path = tmp_path / "params" / source.name
    path.write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    cal.write_threshold(path, cal.calibrate(0.348, 200), "what-if")
    params = load_params(path)
    assert params.threshold == cal.recommend_threshold(0.348, 200)
    assert params.threshold_source.startswith("calibrated from what-if on ")


# --------------------------------------------------------------------------- CLI


def test_cli_what_if(capsys):
    assert cli_main(["--accuracy", "0.348", "--questions", "1319", "--threshold", "0.20"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == json.loads(cal.to_json(cal.calibrate(0.348, 1319, 0.20)))
    for key in ("recommended_threshold", "false_failure_probability", "detectable_drop"):
        assert key in out


@pytest.mark.parametrize("argv,message", [
    ([], "nothing to calibrate"),
    (["--accuracy", "1.3", "--questions", "100"], "accuracy"),
    (["--accuracy", "0.3"], "--questions"),
    (["/no/such/run"], "/no/such/run"),
    (["--accuracy", "0.3", "--questions", "100", "--max-false-failure", "2"], "max-false-failure"),
    (["--accuracy", "abc", "--questions", "100"], "invalid float"),
])
def test_cli_bad_input_exits_2(capsys, argv, message):
    assert cli_main(argv) == 2
    assert message in capsys.readouterr().err


def test_cli_runs_writes_calibration_and_params(tmp_path, fake_runs, capsys):
    params = tmp_path / "case.yaml"
    params.write_text(PARAMS_TEXT, encoding="utf-8")
    out = tmp_path / "calib"
    argv = [str(p) for p in fake_runs] + ["--out", str(out), "--write", str(params)]
    assert cli_main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    written = json.loads((out / "calibration.json").read_text(encoding="utf-8"))
    assert printed == written and written["runs"] == [str(p) for p in fake_runs]
    assert f"threshold: {written['recommended_threshold']}  #" in params.read_text(encoding="utf-8")
    html = (out / "report.html").read_text(encoding="utf-8")  # the notebook ran headless and was rendered
    assert "data:image/png;base64" in html and "calibration.calibrate_inputs(" not in html
    assert "FloatSlider" not in html  # the live widget cell is dropped from the static report


def test_cli_launch_needs_a_params_file(tmp_path, capsys):
    assert cli_main(["--vary", "max_num_seqs", "64,32"]) == 2
    assert "--vary needs --launch" in capsys.readouterr().err
    assert cli_main(["--launch", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml" in capsys.readouterr().err


def test_cli_through_workbench_entry_point():
    completed = subprocess.run([sys.executable, "-m", "workbench.cli", "calibrate", "--accuracy", "0.348",
                                "--questions", "1319"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["recommended_threshold"] == cal.recommend_threshold(0.348, 1319)


# --------------------------------------------------------------------------- notebook


def _execute(tmp_path: Path, monkeypatch, parameters: dict) -> Path:
    papermill = pytest.importorskip("papermill")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    out = tmp_path / "executed.ipynb"
    papermill.execute_notebook(str(NOTEBOOK), str(out), parameters={**parameters, "out_dir": str(tmp_path)},
                               kernel_name="python3", cwd=str(tmp_path), progress_bar=False)
    return out


def test_notebook_is_committed_clean():
    import nbformat

    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code[0].metadata.get("tags") == ["parameters"]
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None


def test_notebook_what_if_matches_calibrate(tmp_path, monkeypatch):
    _execute(tmp_path, monkeypatch, {"accuracy": 0.348, "questions": 1319, "threshold": 0.2})
    written = json.loads((tmp_path / "calibration.json").read_text(encoding="utf-8"))
    assert written == json.loads(cal.to_json(cal.calibrate(0.348, 1319, 0.2, 1e-3)))


def test_notebook_from_runs(tmp_path, monkeypatch, fake_runs):
    out = _execute(tmp_path, monkeypatch, {"run_dirs": [str(p) for p in fake_runs]})
    written = json.loads((tmp_path / "calibration.json").read_text(encoding="utf-8"))
    assert written == json.loads(cal.to_json(cal.calibrate_from_runs(fake_runs)))
    text = out.read_text(encoding="utf-8")
    assert "spec says" in text  # the disagreeing completions are shown side by side
    assert "image/png" in text  # figures rendered


def test_cli_what_if_questions_needed(capsys):
    assert cli_main(["--accuracy", "0.348", "--questions", "1319", "--min-drop", "0.05"]) == 0
    printed = json.loads(capsys.readouterr().out)
    from workbench.calibration.stats import questions_needed

    assert printed["questions_needed"]["questions"] == questions_needed(0.348, 0.05, 1e-3, 0.1)["questions"]


def _match_summary(exact_mismatches: int, near_ties: int, total: int = 100, mode: str = "tie_aware") -> dict:
    return {"matched": total - exact_mismatches, "total": total, "share": (total - exact_mismatches) / total,
            "required_share": 0.8, "mode": mode, "near_ties": {"total": near_ties, "by_kind": {}},
            "divergences": {"total": exact_mismatches - near_ties, "by_kind": {}}}


def test_output_match_false_failure_matches_monte_carlo():
    # six runs as on an AMX Xeon: ~21 near-ties per run, one divergence in one run
    runs = [_match_summary(21, 21), _match_summary(20, 20), _match_summary(22, 21), _match_summary(19, 19),
            _match_summary(21, 21), _match_summary(23, 23)]
    result = cal.output_match_false_failure(runs)
    assert result["required_matches"] == 81 and result["prompts_per_run"] == 100
    exact, tie = result["exact"], result["tie_aware"]
    assert exact["failing_prompts_per_run"] == [21, 20, 22, 19, 21, 23]
    assert exact["runs_failed"] == 5  # more than 19 failing prompts fail a run; run 4 has exactly 19
    assert tie["failing_prompts_per_run"] == [0, 0, 1, 0, 0, 0] and tie["runs_failed"] == 0
    rate = sum(exact["failing_prompts_per_run"]) / 600
    assert exact["failure_rate"] == pytest.approx(rate)
    draws = np.random.default_rng(3).binomial(100, rate, size=200_000)
    assert exact["false_failure_probability"] == pytest.approx(float(np.mean(draws > 19)), abs=0.01)
    # one-sided Clopper-Pearson: at the upper bound, seeing <= 1 failing prompt in 600 has probability 5 %
    assert stats.binom.cdf(1, 600, tie["failure_rate_upper"]) == pytest.approx(0.05, rel=1e-6)
    assert tie["false_failure_probability_upper"] < 1e-12 < exact["false_failure_probability"]


def test_output_match_false_failure_refuses_unequal_runs_and_old_summaries():
    with pytest.raises(cal.CalibrationError, match="different numbers"):
        cal.output_match_false_failure([_match_summary(1, 1), _match_summary(1, 1, total=50)])
    old = {"matched": 90, "total": 100, "share": 0.9, "required_share": 0.8}
    result = cal.output_match_false_failure([old, old])
    assert result["exact"]["status"] == "ok" and result["tie_aware"]["status"] == "unavailable"


def test_provenance_names_the_output_match_estimate(fake_runs):
    for folder in fake_runs:
        summary = json.loads((folder / "summary.json").read_text())
        summary["output_match"] = _match_summary(20, 19)
        (folder / "summary.json").write_text(json.dumps(summary))
    result = cal.calibrate_from_runs(fake_runs)
    assert result["output_match_mode"] == "tie_aware"
    line = cal.yaml_snippet(result, "three runs")
    assert "output match (tie_aware, 81 of 100 required) over 3 runs: failing prompts per run [1, 1, 1]" in line
    assert "exact mode would fail 3 of 3 runs" in line


def _with_control(summary: dict, repeat_failing: int, gsm8k_failing: int) -> dict:
    by_kind = {"repeat": {"matched": 50 - repeat_failing, "total": 50},
               "gsm8k": {"matched": 50 - gsm8k_failing, "total": 50}}
    failing = repeat_failing + gsm8k_failing
    summary["control"] = {"matched": 100 - failing, "total": 100, "share": (100 - failing) / 100, "by_kind": by_kind,
                          "order": "reversed", "batch_size": 25}
    return summary


def test_output_match_share_recommended_from_the_control(fake_runs):
    """The control's noise (reference vs reference) sets the strictest share a healthy build passes."""
    for folder, gsm8k_failing in zip(fake_runs, (8, 6, 7)):
        summary = json.loads((folder / "summary.json").read_text())
        summary["output_match"] = _with_control(_match_summary(10, 9), 0, gsm8k_failing)
        (folder / "summary.json").write_text(json.dumps(summary))
    result = cal.calibrate_from_runs(fake_runs)["output_match_control"]
    assert result["runs"] == 3
    gsm8k, repeat = result["by_kind"]["gsm8k"], result["by_kind"]["repeat"]
    assert (gsm8k["control_failing"], gsm8k["control_prompts"]) == (21, 150)
    # at the rate's 95 % upper bound, the recommended count fails a healthy run at most 1e-3 of the time,
    # and one more required match would fail it more often
    for tally in (gsm8k, repeat, result["overall"]):
        n, upper, needed = tally["prompts_per_run"], tally["noise_rate_upper"], tally["required_matches"]
        assert stats.beta.cdf(upper, tally["control_failing"] + 1,
                              tally["control_prompts"] - tally["control_failing"]) == pytest.approx(0.95)
        assert stats.binom.sf(n - needed, n, upper) <= 1e-3
        assert needed == min(n, int(tally["recommended_share"] * n) + 1)
        assert stats.binom.sf(n - needed - 2, n, upper) > 1e-3 or needed <= 2
    assert repeat["recommended_share"] > gsm8k["recommended_share"]  # a noisy kind needs a looser share
    snippet = cal.yaml_snippet(cal.calibrate_from_runs(fake_runs), "three runs")
    assert f"# required_match_share: {result['overall']['recommended_share']}" in snippet
    no_control = [_match_summary(10, 9)]
    assert cal.output_match_share_from_control(no_control) is None
