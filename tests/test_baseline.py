"""Baselines: `workbench baseline record`, the *_vs_baseline checks, and the refusals before any engine starts.

All but the last test replay the recorded engine outputs (no vLLM); the `vllm` one runs the tiny model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_PARAMS, recorded_context, run_cli
from workbench import cli
from workbench.baseline import checks as baseline_checks
from workbench.baseline.store import check_baseline, default_baseline_path, record_baseline, write_baseline
from workbench.core import notebook
from workbench.core.errors import ParamsError, RecordError
from workbench.core.fingerprint import hardware, model_hash
from workbench.core.params import load_params
from workbench.correctness import pipeline
from workbench.records import load_summary, write_record

BASELINE_CHECKS = ("acceptance_length_vs_baseline", "acceptance_per_position_vs_baseline", "accuracy_vs_baseline")


def judged(recorded: dict, folder: Path, **overrides):
    """A correctness summary built by the real stages from the recorded engine outputs, with these params."""
    ctx = recorded_context(recorded, folder, **overrides)
    table = pipeline.score(ctx, recorded["reference"], recorded["speculative"])
    match = pipeline.compare_outputs(ctx, recorded["reference"], recorded["speculative"])
    return pipeline.build_summary(ctx, recorded["reference"], recorded["speculative"], table, match,
                                  pipeline.acceptance(recorded["speculative"]))


@pytest.fixture
def own_baseline(finished_run, tmp_path) -> Path:
    """The baseline recorded from the finished (recorded) run."""
    return write_baseline(record_baseline(finished_run), tmp_path / "baseline.json")


def edited(path: Path, to: Path, change) -> Path:
    """A copy of a baseline file with `change(data)` applied to its JSON."""
    data = json.loads(path.read_text())
    change(data)
    to.write_text(json.dumps(data))
    return to


# ------------------------------------------------------------------ recording


def test_record_keeps_the_runs_numbers_machine_and_model(finished_run, tmp_path, monkeypatch) -> None:
    summary = load_summary(finished_run)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["baseline", "record", str(finished_run)]) == 0
    written = default_baseline_path(record_baseline(finished_run))
    assert written.parent.name == "baselines" and written.is_file()
    data = json.loads(written.read_text())
    spec = summary.speculative
    assert data["acceptance_length"] == spec.acceptance_length
    assert data["acceptance_rate_per_position"] == spec.acceptance_rate_per_position
    assert {s: v["accuracy"] for s, v in data["accuracy"].items()} == spec.accuracy
    assert {v["questions"] for v in data["accuracy"].values()} == {summary.num_questions}
    assert (data["output_match"]["matched"], data["output_match"]["total"]) == \
        (summary.output_match.matched, summary.output_match.total)
    control = summary.output_match.control
    assert data["output_match"]["control"] == (None if control is None else
                                               {"matched": control.matched, "total": control.total,
                                                "share": control.share})
    assert data["hardware"] == hardware().model_dump()
    assert data["model_hash"] == model_hash(summary.params.model) and data["vllm"] == summary.versions.vllm
    assert (data["case"], data["method"], data["num_speculative_tokens"]) == \
        (summary.case, summary.params.method, summary.params.num_speculative_tokens)
    assert data["source_run"] == str(finished_run.resolve()) and data["date"]
    assert cli.main(["baseline", "record", str(finished_run)]) == 2  # an existing file is replaced only with --force
    assert cli.main(["baseline", "record", str(finished_run), "--force"]) == 0


def _error_status(run_dir: Path) -> None:
    summary = load_summary(run_dir)
    write_record(run_dir / "summary.json", summary.model_copy(update={"status": "error", "error": "engine died"}))


def _audit_kind(run_dir: Path) -> None:
    write_record(run_dir / "summary.json", load_summary(run_dir).model_copy(update={"kind": "audit"}))


def _failed_checks(run_dir: Path) -> None:
    write_record(run_dir / "summary.json", load_summary(run_dir).model_copy(update={"status": "failed"}))


@pytest.mark.parametrize(("damage", "reason"), [
    (lambda run: (run / "summary.json").unlink(), "not found"),
    (_error_status, "did not finish .status error: engine died"),
    (_audit_kind, "not a correctness run"),
    (_failed_checks, "checks failed.*--allow-failed"),
])
def test_record_refuses_a_run_that_did_not_finish(finished_run, tmp_path, capsys, damage, reason) -> None:
    damage(finished_run)
    target = tmp_path / "refused.json"
    assert cli.main(["baseline", "record", str(finished_run), "--to", str(target)]) == 2
    err = capsys.readouterr().err
    assert str(finished_run / "summary.json") in err
    assert not target.exists()
    with pytest.raises(RecordError, match=reason):
        record_baseline(finished_run)


# ------------------------------------------------------------------ the checks


def test_without_a_baseline_the_checks_are_skipped_never_passed(finished_run) -> None:
    summary = load_summary(finished_run)
    assert summary.baseline is None
    assert [summary.check(name).status for name in BASELINE_CHECKS] == ["skipped"] * 3


def test_a_run_passes_against_its_own_baseline(recorded, tmp_path, own_baseline) -> None:
    summary = judged(recorded, tmp_path / "later", baseline=str(own_baseline))
    assert summary.baseline is not None and summary.baseline.path == str(own_baseline.resolve())
    assert summary.baseline.acceptance_length == json.loads(own_baseline.read_text())["acceptance_length"]
    for name in BASELINE_CHECKS:
        assert summary.check(name).status == "passed", summary.check(name).message
    assert summary.passed and "WARNING" not in summary.check("acceptance_length_vs_baseline").message


def test_acceptance_length_below_the_tolerance_fails(recorded, tmp_path, own_baseline) -> None:
    measured = json.loads(own_baseline.read_text())["acceptance_length"]
    raised = edited(own_baseline, tmp_path / "raised.json", lambda d: d.update(acceptance_length=measured * 1.3))
    summary = judged(recorded, tmp_path / "later", baseline=str(raised))
    check = summary.check("acceptance_length_vs_baseline")
    assert check.status == "failed" and not summary.passed
    assert f"{measured:.4f}" in check.message and f"{measured * 1.3:.4f}" in check.message and "rtol 0.05" in check.message
    assert check.required == pytest.approx(0.95 * measured * 1.3)
    assert summary.check("acceptance_per_position_vs_baseline").status == "passed"  # only the length was raised


def test_the_tolerance_is_relative_and_set_by_baseline_rtol(recorded, tmp_path, own_baseline) -> None:
    measured = json.loads(own_baseline.read_text())["acceptance_length"]
    within = edited(own_baseline, tmp_path / "within.json", lambda d: d.update(acceptance_length=measured / 0.96))
    assert judged(recorded, tmp_path / "a", baseline=str(within)).check(
        "acceptance_length_vs_baseline").status == "passed"  # 4 % below: inside rtol 0.05
    assert judged(recorded, tmp_path / "b", baseline=str(within), baseline_rtol=0.03).check(
        "acceptance_length_vs_baseline").status == "failed"


def test_each_draft_position_is_held_to_the_baseline(recorded, tmp_path, own_baseline) -> None:
    rates = json.loads(own_baseline.read_text())["acceptance_rate_per_position"]
    raised = edited(own_baseline, tmp_path / "raised.json",
                    lambda d: d.update(acceptance_rate_per_position=[min(1.0, r * 1.3) for r in rates]))
    summary = judged(recorded, tmp_path / "later", baseline=str(raised))
    check = summary.check("acceptance_per_position_vs_baseline")
    assert check.status == "failed" and "position 1" in check.message
    assert check.observed == pytest.approx(rates[0])
    assert summary.check("acceptance_length_vs_baseline").status == "passed"  # only the positions were raised
    longer = edited(own_baseline, tmp_path / "longer.json",
                    lambda d: d.update(acceptance_rate_per_position=[*rates, rates[-1]]))
    assert judged(recorded, tmp_path / "other", baseline=str(longer)).check(
        "acceptance_per_position_vs_baseline").status == "failed"  # a position the run does not have


def test_a_clearly_lower_accuracy_fails_the_one_sided_test(recorded, tmp_path, own_baseline) -> None:
    data = json.loads(own_baseline.read_text())
    scorer = data["primary_scorer"]
    questions = data["accuracy"][scorer]["questions"]
    correct = data["accuracy"][scorer]["correct"] + questions // 2 + 1  # far above this run's count

    def better(d):
        d["accuracy"][scorer].update(correct=correct, accuracy=correct / questions)

    summary = judged(recorded, tmp_path / "later", baseline=str(edited(own_baseline, tmp_path / "better.json", better)))
    check = summary.check("accuracy_vs_baseline")
    assert check.status == "failed" and check.observed < check.required == 0.05
    assert "p = " in check.message and "detectable drop" in check.message and f"{correct}/{questions}" in check.message
    relaxed = judged(recorded, tmp_path / "relaxed", baseline=str(tmp_path / "better.json"),
                     baseline_alpha=check.observed / 2)
    assert relaxed.check("accuracy_vs_baseline").status == "passed"  # the same data at a stricter alpha


def test_the_accuracy_test_is_one_sided() -> None:
    n = 200
    assert baseline_checks.accuracy_drop_pvalue(40, n, 60, n) < 0.05  # 20 % vs 30 %: a drop
    assert baseline_checks.accuracy_drop_pvalue(60, n, 60, n) == pytest.approx(0.5)
    assert baseline_checks.accuracy_drop_pvalue(80, n, 60, n) > 0.95  # better than the baseline never fails
    assert baseline_checks.accuracy_drop_pvalue(0, n, 0, n) == 1.0


def test_the_detectable_drop_shrinks_with_the_question_count() -> None:
    drops = [baseline_checks.detectable_accuracy_drop(0.35, n, n, 0.05) for n in (50, 200, 800, 1319)]
    assert all(a > b > 0 for a, b in zip(drops, drops[1:]))
    assert baseline_checks.detectable_accuracy_drop(0.35, 200, 200, 0.01) > drops[1]  # stricter alpha: larger drop
    assert baseline_checks.detectable_accuracy_drop(0.01, 20, 20, 0.05) is None  # nothing to drop into


def test_the_detectable_drop_is_caught_at_the_stated_power() -> None:
    """Simulated runs at the detectable drop: the test fails about 80 % of them (both accuracies sampled)."""
    rng = np.random.default_rng(0)
    n, accuracy, alpha = 300, 0.35, 0.05
    drop = baseline_checks.detectable_accuracy_drop(accuracy, n, n, alpha)
    trials = 1500
    measured = rng.binomial(n, accuracy - drop, trials)
    base = rng.binomial(n, accuracy, trials)
    caught = np.mean([baseline_checks.accuracy_drop_pvalue(int(m), n, int(b), n) < alpha
                      for m, b in zip(measured, base)])
    assert caught == pytest.approx(baseline_checks.DETECTION_POWER, abs=0.05)
    healthy = rng.binomial(n, accuracy, trials)
    false_failures = np.mean([baseline_checks.accuracy_drop_pvalue(int(m), n, int(b), n) < alpha
                              for m, b in zip(healthy, base)])
    assert false_failures <= alpha + 0.02


def test_another_vllm_version_is_allowed_and_noted(recorded, tmp_path, own_baseline, capsys) -> None:
    older = edited(own_baseline, tmp_path / "older.json", lambda d: d.update(vllm="0.0.1"))
    params = load_params(TINY_PARAMS, {"baseline": str(older)})
    assert check_baseline(params, TINY_PARAMS) is not None
    assert "0.0.1" in capsys.readouterr().err
    summary = judged(recorded, tmp_path / "later", baseline=str(older))
    for name in BASELINE_CHECKS:
        check = summary.check(name)
        assert check.status == "passed" and "WARNING" in check.message and "vLLM 0.0.1" in check.message


# ------------------------------------------------------------------ refusals before any engine starts


def _other_hardware(data: dict) -> None:
    data["hardware"]["name"] += " (another machine)"


def _other_bf16(data: dict) -> None:
    data["hardware"]["bf16"] = "something-else"


def _other_model(data: dict) -> None:
    data["model_hash"] = "0" * len(data["model_hash"])


@pytest.mark.parametrize(("change", "reason"), [
    (_other_hardware, "recorded on"), (_other_bf16, "recorded on"), (_other_model, "another model"),
    (None, "not found"),
])
def test_run_refuses_a_baseline_that_cannot_judge_it(own_baseline, tmp_path, monkeypatch, capsys, change,
                                                       reason) -> None:
    target = tmp_path / "missing.json" if change is None else edited(own_baseline, tmp_path / "other.json", change)
    started = []
    monkeypatch.setattr(notebook, "execute", lambda *args, **kwargs: started.append(args))  # the engines' notebook
    out = tmp_path / "refused"
    code = cli.main(["run", str(TINY_PARAMS), "-p", "num_questions", "8", "--baseline", str(target),
                     "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "key 'baseline'" in err and str(target) in err and reason in err
    assert not started and not out.exists()  # refused before the run folder, the notebook or any engine


@pytest.mark.parametrize(("override", "change", "reason"), [
    ({"num_speculative_tokens": 2}, None, "num_speculative_tokens 1"),
    ({"method": "ngram"}, None, "recorded for mtp"),
    ({}, lambda d: d.pop("model_hash"), "not a readable baseline"),
    ({}, lambda d: d.update(schema_version=99), "not a readable baseline"),
])
def test_another_method_draft_length_or_an_unreadable_file_is_refused(own_baseline, tmp_path, override, change,
                                                                       reason) -> None:
    target = own_baseline if change is None else edited(own_baseline, tmp_path / "other.json", change)
    params = load_params(TINY_PARAMS, {"baseline": str(target), **override})
    with pytest.raises(ParamsError, match=reason) as refused:
        check_baseline(params, TINY_PARAMS)
    assert refused.value.key == "baseline" and str(target) in str(refused.value)


def test_a_relative_baseline_is_read_beside_the_params_file(own_baseline, tmp_path, monkeypatch) -> None:
    case = tmp_path / "cases" / "case.yaml"
    case.parent.mkdir()
    (case.parent / "mine.json").write_text(own_baseline.read_text())
    case.write_text(TINY_PARAMS.read_text().replace("model: ../models/tiny-qwen3_5-mtp",
                                                    f"model: {load_params(TINY_PARAMS).model}")
                    + "\nbaseline: mine.json\n")
    monkeypatch.chdir(tmp_path)
    params = load_params(case)
    assert Path(params.baseline) == case.parent / "mine.json"
    assert check_baseline(params, case) is not None


# ------------------------------------------------------------------ real engines


@pytest.mark.vllm
def test_real_run_passes_its_own_baseline_and_fails_a_raised_one(tmp_path) -> None:
    size = ["-p", "num_questions", "20", "-p", "output_match_prompts", "8"]
    first = tmp_path / "A"
    result = run_cli("run", str(TINY_PARAMS), *size, "--out", str(first))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    baseline = tmp_path / "B.json"
    result = run_cli("baseline", "record", str(first), "--to", str(baseline))
    assert result.returncode == 0, result.stderr
    assert json.loads(baseline.read_text())["acceptance_length"] == load_summary(first).speculative.acceptance_length

    reuse = ["-p", "reference_record", str(first / "records" / "reference.json")]  # only the speculative engine
    again = tmp_path / "C"
    result = run_cli("run", str(TINY_PARAMS), *size, *reuse, "--baseline", str(baseline), "--out", str(again))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = load_summary(again)
    assert summary.baseline.path == str(baseline.resolve())
    assert [summary.check(name).status for name in BASELINE_CHECKS] == ["passed"] * 3

    raised = edited(baseline, tmp_path / "raised.json",
                    lambda d: d.update(acceptance_length=d["acceptance_length"] * 1.3))
    regressed = tmp_path / "D"
    result = run_cli("run", str(TINY_PARAMS), *size, *reuse, "--baseline", str(raised), "--out", str(regressed))
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "acceptance_length_vs_baseline" in result.stdout + result.stderr
    assert load_summary(regressed).check("acceptance_length_vs_baseline").status == "failed"
