"""`reference_record`: a later run reuses an earlier reference engine's record, only when it is the same reference."""

from __future__ import annotations

import json

import pytest

from conftest import TINY_PARAMS, recorded_context, run_cli
from workbench.core.errors import ParamsError
from workbench.correctness import pipeline


def _earlier_reference(recorded, folder) -> str:
    """A finished run folder whose records/reference.json is the recorded reference with this case's engine args."""
    ctx = recorded_context(recorded, folder)
    record = {**recorded["reference"], "llm_kwargs": pipeline.llm_kwargs(ctx.params, "reference"), "ok": True}
    path = ctx.run_dir / "records" / "reference.json"
    path.write_text(json.dumps(record))
    return str(path)


def test_the_same_reference_is_reused_and_its_engine_not_started(tmp_path, recorded, monkeypatch) -> None:
    source = _earlier_reference(recorded, tmp_path / "earlier")
    ctx = recorded_context(recorded, tmp_path / "later", reference_record=source)
    assert ctx.reused_reference is not None
    assert json.loads((ctx.run_dir / "records" / "reference.json").read_text())["gsm8k"][0]["completion"] == \
        recorded["reference"]["gsm8k"][0]["completion"]
    started = []
    monkeypatch.setattr(pipeline, "start_engine_job", lambda job, target: started.append(job.label) or job.label)
    monkeypatch.setattr(pipeline, "wait_engine_jobs", lambda running, *a, **k: [recorded[label] for label in running])
    reference, _ = pipeline.run_engines(ctx)
    assert started == ["speculative"]  # the reference engine is not started again
    assert [r["question_id"] for r in reference["gsm8k"]] == [q.question_id for q in ctx.questions]


@pytest.mark.parametrize(("override", "reason"), [
    ({"num_questions": 7}, "prompts differ"), ({"max_tokens": 64}, "sampling settings differ"),
    ({"dtype": "float32"}, r"engine arguments differ from this run.s \(dtype\)"), ({"workload": "churn"}, "engine arguments differ"),
    ({"output_match_control": False}, "control batching differs")])
def test_another_reference_is_refused_naming_the_key(tmp_path, recorded, override, reason) -> None:
    source = _earlier_reference(recorded, tmp_path / "earlier")
    with pytest.raises(ParamsError, match=f"reference_record.*{reason}"):
        recorded_context(recorded, tmp_path / "later", reference_record=source, **override)


def test_a_missing_reference_record_is_bad_input(tmp_path) -> None:
    result = run_cli("run", str(TINY_PARAMS), "-p", "reference_record", str(tmp_path / "nope.json"),
                     "--out", str(tmp_path / "run"), timeout=120)
    assert result.returncode == 2 and "reference_record" in result.stderr
