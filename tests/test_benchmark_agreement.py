"""Issue 16: how benchmarks/gpu.py decides that the workbench's results agree with the upstream way's.

Accuracies also go through McNemar's exact test on the questions, pair by pair of runs: a way whose own runs repeat
exactly (the engine core in the engine child) has no run-to-run spread to compare with, while the completions that
differ between the ways decide whether their accuracies may differ by chance. More runs of a way widen its measured
spread (`--runs 4`, `--agreement-of A B` pooling folders); the acceptance rate is held to the acceptance length's
floor over k. Synthetic runs and folders built from recorded engine outputs, no engine.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import gpu  # noqa: E402  (benchmarks/gpu.py)

QUESTIONS = 1319


def run(reference_right: set[int], speculative_right: set[int], acceptance: float = 1.734, k: int = 1,
        wall_s: float = 0.0) -> dict:
    correct = {"reference": {"upstream": [i in reference_right for i in range(QUESTIONS)]},
               "speculative": {"upstream": [i in speculative_right for i in range(QUESTIONS)]}}
    engine = {"init_s": 1.0, "start_breakdown": None, "start_cache_hit": None, "generate_s": 1.0}
    return {"correct": correct, "completions": {"reference": [""] * QUESTIONS, "speculative": [""] * QUESTIONS},
            "accuracy": {label: {"upstream": sum(flags["upstream"]) / QUESTIONS} for label, flags in correct.items()},
            "acceptance": {"acceptance_length": acceptance, "acceptance_rate": (acceptance - 1) / k,
                           "num_drafts": 94000, "num_accepted_tokens": 69000},
            "output_match": {"matched": 99, "total": 100}, "wall_s": wall_s, "run_dir": "",
            "engines": {"reference": engine, "speculative": engine}}


def verdicts(runs: dict) -> dict[str, bool]:
    return {row["name"]: row["agree"] for row in gpu.agreement(runs, "upstream")}


SHARED = set(range(0, 300, 10))  # 30 questions both ways get right


def test_a_repeatable_way_and_a_few_flipped_questions_agree() -> None:
    """The H100 run of 2026-11-26: the workbench's reference right on 38 twice, upstream's on 33 and 31; the spreads
    alone call that a difference (5-7 questions against a spread of 2), the questions do not (p 0.23, 0.09)."""
    ours = run(SHARED | set(range(1000, 1008)), SHARED)
    theirs_1 = run((SHARED - {0, 10, 20}) | set(range(1100, 1106)), SHARED)
    theirs_2 = run((SHARED - {0, 10, 20, 30, 40}) | set(range(1100, 1106)), SHARED)
    runs = {"workbench": [ours, ours], "upstream": [theirs_1, theirs_2]}
    row = next(r for r in gpu.agreement(runs, "upstream") if r["name"] == "reference_accuracy_upstream")
    assert row["between"] > row["within"] + 1 / QUESTIONS  # the spreads alone: differs
    assert [(p["workbench_only"], p["upstream_only"]) for p in row["paired"]["pairs"]] == [(11, 6), (13, 6)]
    assert row["paired"]["differs"] is False and row["agree"] is True


def test_a_lopsided_split_of_the_flipped_questions_differs() -> None:
    """30 questions right for the workbench only and none for upstream only is no chance split (p ~ 2e-9)."""
    ours = run(SHARED | set(range(1000, 1030)), SHARED)
    theirs = run(SHARED, SHARED)
    wiggle = run(SHARED | {1200}, SHARED)
    runs = {"workbench": [ours, ours], "upstream": [theirs, wiggle]}
    row = next(r for r in gpu.agreement(runs, "upstream") if r["name"] == "reference_accuracy_upstream")
    assert row["paired"]["differs"] is True and row["agree"] is False
    assert verdicts(runs)["speculative_accuracy_upstream"] is True


def test_acceptance_beyond_both_spreads_still_differs() -> None:
    """The paired test is for accuracies only: acceptance length keeps the spread rule."""
    runs = {"workbench": [run(SHARED, SHARED, 1.80), run(SHARED, SHARED, 1.80)],
            "upstream": [run(SHARED, SHARED, 1.73), run(SHARED, SHARED, 1.734)]}
    assert verdicts(runs)["acceptance_length"] is False
    assert verdicts(runs)["reference_accuracy_upstream"] is True


@pytest.mark.parametrize("only_ours, only_theirs, differs", [(0, 0, False), (4, 0, False), (9, 0, True)])
def test_bonferroni_over_the_run_pairs(only_ours, only_theirs, differs) -> None:
    """Two pairs of runs: a pair differs below 0.025 (0.05 / 2). 4:0 has p 0.125, 9:0 p 0.0039."""
    ours = run(SHARED | set(range(1000, 1000 + only_ours)), SHARED)
    theirs = run(SHARED | set(range(1100, 1100 + only_theirs)), SHARED)
    result = gpu.paired_accuracy_test({"workbench": [ours, ours], "upstream": [theirs, theirs]}, "reference",
                                      "upstream")
    assert result["differs"] is differs


def upstream_folder(folder: Path, recorded: dict, question_ids: list[int], accepted_extra: int = 0) -> None:
    """An upstream-way folder as the benchmark's script writes it (job.json, result.json), from recorded engine rows."""
    folder.mkdir(parents=True)
    (folder / "job.json").write_text(json.dumps({"questions": question_ids}))
    result = {}
    for label in ("reference", "speculative"):
        record = recorded[label]
        counters = dict(record["spec_counters"])
        if label == "speculative" and accepted_extra:
            counters["vllm:spec_decode_num_accepted_tokens"] += accepted_extra
        result[label] = {"gsm8k": [row["completion"] for row in record["gsm8k"]],
                         "output_match": [row["completion"] for row in record["output_match"]],
                         "spec_counters": counters}
    (folder / "result.json").write_text(json.dumps(result))


@pytest.mark.parametrize("accepted_extra, exit_code", [(0, 0), (5000, 1)])
def test_agreement_of_an_earlier_benchmark_folder(tmp_path, recorded, capsys, accepted_extra, exit_code) -> None:
    """`benchmarks/gpu.py --agreement-of DIR` judges a finished benchmark's folders again, running nothing: the same
    engine outputs both ways agree (exit 0); an upstream way that accepted far more drafts does not (exit 1)."""
    from conftest import finish_recorded_run

    out = tmp_path / "bench"
    for i in (1, 2):
        run_dir = finish_recorded_run(recorded, out / f"workbench-{i}")
        with open(run_dir / "questions.csv", encoding="utf-8") as table:
            ids = [int(row["question_id"]) for row in csv.DictReader(table)]
        upstream_folder(out / f"upstream-{i}", recorded, ids, accepted_extra)
    assert gpu.main(["--agreement-of", str(out)]) == exit_code
    printed = capsys.readouterr().out
    assert ("results agree" in printed) is (exit_code == 0)
    assert "paired test" in printed


@pytest.mark.parametrize("k, rate_gap, agree", [(1, 0.0004, True), (1, 0.02, False), (3, 0.002, True),
                                                 (3, 0.005, False)])
def test_acceptance_rate_has_the_floor_of_acceptance_length_over_k(k, rate_gap, agree) -> None:
    """The rate is (length - 1) / k, so it gets the length's floor (0.01) divided by k. The H100 run of 2026-11-26
    (third): rates 0.7343 twice against 0.7339 and 0.7340 were called a difference while the lengths agreed."""
    length = 1.7339
    theirs = [run(SHARED, SHARED, length, k), run(SHARED, SHARED, length + 0.0001 * k, k)]
    ours = run(SHARED, SHARED, length + rate_gap * k, k)
    row = next(r for r in gpu.agreement({"workbench": [ours, ours], "upstream": theirs}, "upstream")
               if r["name"] == "acceptance_rate")
    assert row["agree"] is agree


def test_the_ratios_come_from_the_first_and_second_runs_and_every_run_joins_the_agreement(capsys) -> None:
    """--runs 4: run 1 cold, run 2 warm give the ratios; runs 3 and 4 (warm, for the agreement only) widen the
    upstream way's measured spread, so a workbench value inside it agrees."""
    walls = {"workbench": [300.0, 50.0, 52.0, 49.0], "upstream": [400.0, 110.0, 125.0, 140.0]}
    lengths = {"workbench": [1.760] * 4, "upstream": [1.745, 1.746, 1.775, 1.770]}
    runs = {way: [run(SHARED, SHARED, length, wall_s=wall) for wall, length in zip(walls[way], lengths[way])]
            for way in walls}
    result = gpu.report(runs, "case", "device", "upstream")
    assert result["ratio_cold"] == round(300 / 400, 3) and result["ratio_warm"] == round(50 / 110, 3)
    assert result["ratio_runs"] == {"cold": 1, "warm": 2}
    assert result["results_agree"] is True
    two = {way: rs[:2] for way, rs in runs.items()}  # the first two alone: 1.760 against 1.745/1.746 differs
    assert gpu.report(two, "case", "device", "upstream")["results_agree"] is False
    assert "warm against warm (runs 2)" in capsys.readouterr().out


def test_agreement_of_several_folders_pools_their_runs(tmp_path, recorded, capsys) -> None:
    """`--agreement-of A B`: B holds only more upstream-way runs (another machine, say). A alone differs (its two
    upstream runs accepted 12 tokens more, twice); pooled with B's runs, which spread around the workbench's value,
    the difference is within the upstream way's own run-to-run spread."""
    from conftest import finish_recorded_run

    first, more = tmp_path / "a", tmp_path / "b"
    ids: list[int] = []
    for i in (1, 2):
        run_dir = finish_recorded_run(recorded, first / f"workbench-{i}")
        with open(run_dir / "questions.csv", encoding="utf-8") as table:
            ids = [int(row["question_id"]) for row in csv.DictReader(table)]
        upstream_folder(first / f"upstream-{i}", recorded, ids, accepted_extra=12)
    upstream_folder(more / "upstream-1", recorded, ids, accepted_extra=-12)
    upstream_folder(more / "upstream-2", recorded, ids)
    assert gpu.main(["--agreement-of", str(first)]) == 1
    assert gpu.main(["--agreement-of", str(first), str(more)]) == 0
    assert capsys.readouterr().out.rstrip().endswith("results agree")
    with pytest.raises(SystemExit, match="needs workbench-N and upstream-N"):
        gpu.main(["--agreement-of", str(more)])
