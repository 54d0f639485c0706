"""The typed run record: summaries validate, readers refuse foreign or future folders, the schema doc is generated."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import REPO
from workbench.core.errors import RecordError
from workbench.records import SCHEMA_VERSION, RunSummary, load_summary, schema_markdown, update_design_doc


@pytest.fixture
def run_dir(finished_run):
    return finished_run


def test_summary_round_trips_through_the_model(run_dir) -> None:
    raw = json.loads((run_dir / "summary.json").read_text())
    assert raw["schema_version"] == SCHEMA_VERSION and raw["kind"] == "correctness"
    summary = RunSummary.model_validate_json((run_dir / "summary.json").read_text())  # the one-liner
    assert summary == load_summary(run_dir)
    # every key the summary had before versioning is still there, with its meaning
    for key in ("case", "params", "primary_scorer", "num_questions", "threshold", "margin", "reference", "speculative",
                "output_match", "gsm8k_identical_completions", "versions", "error", "checks", "passed"):
        assert key in raw, key
    assert raw["output_match"]["matched"] == summary.output_match.matched
    assert [c["name"] for c in raw["checks"]] == [c.name for c in summary.checks]


def test_a_future_schema_version_is_refused_naming_the_file(run_dir) -> None:
    path = run_dir / "summary.json"
    raw = json.loads(path.read_text())
    raw["schema_version"] = SCHEMA_VERSION + 1
    path.write_text(json.dumps(raw))
    with pytest.raises(RecordError, match=r"summary\.json: schema_version 2"):
        load_summary(run_dir)


def test_a_wrong_shape_names_the_file_and_key(run_dir) -> None:
    path = run_dir / "summary.json"
    raw = json.loads(path.read_text())
    raw["reference"] = {"accuracy": "high"}
    path.write_text(json.dumps(raw))
    with pytest.raises(RecordError, match=r"summary\.json: not a RunSummary: key 'reference\.accuracy'") as info:
        load_summary(run_dir)
    assert info.value.path == str(path)
    path.write_text("[1, 2]")
    with pytest.raises(RecordError, match="expected a JSON object"):
        load_summary(run_dir)


@pytest.mark.parametrize("command", ["calibrate", "summarize"])
def test_readers_refuse_a_foreign_summary_with_exit_2(run_dir, command, capsys) -> None:
    from workbench.cli import main

    raw = json.loads((run_dir / "summary.json").read_text())
    raw["schema_version"] = 99
    (run_dir / "summary.json").write_text(json.dumps(raw))
    assert main([command, str(run_dir), *(["--out", str(run_dir.parent / "c")] if command == "calibrate" else [])]) == 2
    assert str(run_dir / "summary.json") in capsys.readouterr().err


def test_design_doc_schema_is_generated_from_the_models(tmp_path) -> None:
    copy = tmp_path / "DESIGN.md"
    shutil.copy(REPO / "docs" / "DESIGN.md", copy)
    assert not update_design_doc(copy), "docs/DESIGN.md is stale: run `python -m workbench.records docs/DESIGN.md`"
    assert schema_markdown() in copy.read_text()
    for name in ("RunSummary", "EngineRecord", "OutputMatch", "Check", "KindTally"):
        assert f"#### `{name}`" in copy.read_text()
