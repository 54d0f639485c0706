"""The churn workload: the same prompts, submitted in waves with filler requests, under KV-cache pressure."""

from __future__ import annotations

import json

import pytest

from conftest import TINY_PARAMS, run_cli
from workbench.correctness.workloads import ChurnPlan, submitter, wave_order


def test_waves_cover_every_prompt_once_mixed_and_seeded() -> None:
    waves = wave_order(100, ChurnPlan(waves=4, seed=0))
    assert len(waves) == 4 and sorted(i for wave in waves for i in wave) == list(range(100))
    assert all(any(i < 50 for i in wave) and any(i >= 50 for i in wave) for wave in waves)  # repeat and gsm8k mixed
    assert waves == wave_order(100, ChurnPlan(waves=4, seed=0)) != wave_order(100, ChurnPlan(waves=4, seed=1))
    assert sorted(map(len, wave_order(2, ChurnPlan(waves=4)))) == [1, 1]  # never an empty wave


def test_batch_is_upstreams_submission_and_unknown_workloads_are_refused() -> None:
    assert submitter("batch") is None
    assert callable(submitter("churn"))
    with pytest.raises(ValueError, match="unknown workload"):
        submitter("storm")


@pytest.mark.vllm
def test_a_clean_build_passes_under_churn_with_preemption(tmp_path) -> None:
    out = tmp_path / "churn"
    result = run_cli("run", str(TINY_PARAMS), "-p", "workload", "churn", "-p", "num_questions", "16",
                     "-p", "output_match_prompts", "20", "--out", str(out))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["params"]["workload"] == "churn"
    for label in ("reference", "speculative"):
        record = json.loads((out / "records" / f"{label}.json").read_text())
        assert record["workload"] == "churn"
        assert len(record["gsm8k"]) == 16 and len(record["output_match"]) == 20  # fillers are not kept
        assert summary[label]["preemptions"] > 0  # the case's churn_kv_blocks forced preemption
    assert "churn: the same prompts in shuffled waves" in (out / "report.html").read_text()
