"""A results folder of recorded runs for the report, site and browser tests: real run folders built by the real
stages from the recorded engine outputs (no engine), each stamped with its environment and given its report.html
by the real renderer.

    results/
      tiny-qwen3_5-cpu-20261120-090000   passed
      tiny-qwen3_5-cpu-20261121-090000   failed (acceptance gate 1.99; two questions flip correctness)
      tiny-qwen3_5-cpu-20261122-090000   passed
      other/tiny-other-20261121-120000   passed (a second case, whose description is HTML)
      other/tiny-other-20261123-120000   passed, k=3
      other/tiny-other-20261125-120000   error (an engine died): no numbers
      lane-20261124-100000/              a lane of one case (lane.json, report.html, tiny-mtp-k1/)
      sweep-20261124-150000/             a sweep of two cells: k=1 passed, k=3 failed (gate 3.9)
"""

from __future__ import annotations

import copy
import re
from datetime import datetime, timezone
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from conftest import REPO, TINY_PARAMS, finish_recorded_run, load_recorded
from workbench import gsm8k
from workbench.core.environment import stamp_environment
from workbench.core.notebook import render_report
from workbench.core.rundir import write_summary
from workbench.correctness.pipeline import checks_frame
from workbench.records import LaneCaseOutcome, LaneSummary, RunSummary, load_summary, write_record

HOSTILE = '<img src=x onerror=alert(1)> stand-in "quoted" & more'
STDERR = "Generating test split: 0 examples [00:00, ? examples/s]\n"
SECTIONS = ("Engine runs", "GSM8k accuracy under every scorer", "Checks")


def other_params(folder: Path) -> Path:
    """A second case: the tiny case under another name, with an HTML description (it must arrive escaped)."""
    text = TINY_PARAMS.read_text(encoding="utf-8")
    text = re.sub(r"^model: .*$", f"model: {REPO / 'models' / 'tiny-qwen3_5-mtp'}", text, flags=re.M)
    text = re.sub(r"^description: .*$", f"description: '{HOSTILE}'", text, flags=re.M)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny-other.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def stand_in_notebook(path: Path, title: str, sections: dict[str, str | None]) -> Path:
    """A stand-in for an executed notebook: its sections (title -> HTML output), each with a stray stderr line."""
    cells = [new_markdown_cell(f"# {title}")]
    for heading, shown in sections.items():
        cells.append(new_markdown_cell(f"## {heading}"))
        outputs = [new_output("stream", name="stderr", text=STDERR)]
        if shown:
            outputs.append(new_output("display_data", data={"text/html": shown}))
        cells.append(new_code_cell("pass", outputs=outputs))
    nbformat.write(new_notebook(cells=cells), str(path))
    return path


def executed_notebook(run_dir: Path) -> Path:
    """The correctness notebook's stand-in: its sections, the checks table under Checks."""
    summary = load_summary(run_dir)
    sections = {t: checks_frame(summary).to_html() if t == "Checks" and summary.checks else None for t in SECTIONS}
    return stand_in_notebook(run_dir / "mtp_correctness.ipynb", "MTP vs reference on GSM8k", sections)


def finish(run_dir: Path, started: str, wall_s: float) -> Path:
    stamp_environment(run_dir, datetime.fromisoformat(started).replace(tzinfo=timezone.utc), wall_s)
    render_report(run_dir, executed_notebook(run_dir))
    return run_dir


def flipped(recorded: dict) -> dict:
    """The speculative record with its first two GSM8k answers' correctness flipped (upstream scorer)."""
    spec = copy.deepcopy(recorded["speculative"])
    answers = [q.answer for q in gsm8k.load_gsm8k("test")[:len(spec["gsm8k"])]]
    for row, answer in list(zip(spec["gsm8k"], answers))[:2]:
        right = gsm8k.is_correct(row["completion"], answer, "upstream")
        row["completion"] = "I do not know." if right else f"The answer is {gsm8k.reference_number(answer)}."
    return spec


def make_results(root: Path) -> Path:
    recorded = load_recorded()
    results = root / "results"
    case = "tiny-qwen3_5-cpu"
    finish(finish_recorded_run(recorded, results / f"{case}-20261120-090000"), "2026-11-20T09:00:00", 101.0)
    finish(finish_recorded_run(recorded, results / f"{case}-20261121-090000", speculative=flipped(recorded),
                               min_acceptance_length=1.99), "2026-11-21T09:00:00", 98.5)
    finish(finish_recorded_run(recorded, results / f"{case}-20261122-090000"), "2026-11-22T09:00:00", 103.0)
    other = other_params(root / "params")
    finish(finish_recorded_run(recorded, results / "other" / "tiny-other-20261121-120000", other),
           "2026-11-21T12:00:00", 99.0)
    finish(finish_recorded_run(recorded, results / "other" / "tiny-other-20261123-120000", other,
                               num_speculative_tokens=3, min_acceptance_length=None), "2026-11-23T12:00:00", 97.0)
    broken = results / "other" / "tiny-other-20261125-120000"
    broken.mkdir(parents=True)
    from workbench.core.params import load_params

    write_summary(broken, RunSummary(kind="correctness", case="tiny-other", params=load_params(other), status="error",
                                     error=f"EngineError: the speculative engine died (exit -9)\nlog tail: {HOSTILE}"))
    finish(broken, "2026-11-25T12:00:00", 12.0)
    lane = results / "lane-20261124-100000"
    member = finish(finish_recorded_run(recorded, lane / "tiny-mtp-k1"), "2026-11-24T10:00:00", 100.0)
    summary = LaneSummary(lane=str(REPO / "lanes" / "tiny-cpu.yaml"), description="one case",
                          cases=[LaneCaseOutcome(name="tiny-mtp-k1", params=str(TINY_PARAMS), run_dir=str(member),
                                                 exit_code=0, passed=True, status="passed", reference="computed",
                                                 reference_engine_started=True, wall_s=100.0)],
                          reference_runs=1, reference_keys=1, exit_code=0, passed=True, wall_s=104.0)
    write_record(lane / "lane.json", summary)
    from workbench.lane.report import write_report

    write_report(summary, lane)
    make_sweep(recorded, results / "sweep-20261124-150000")
    return results


def make_sweep(recorded: dict, sweep: Path) -> Path:
    """A sweep folder of two cells built as `run_sweep` builds it (k=1 passes, k=3 fails its gate of 3.9), its
    report.html the real head on a stand-in of notebooks/sweep.ipynb."""
    from workbench.core.notebook import export_html
    from workbench.records import SweepSummary
    from workbench.sweep.executors import CellJob, CellResult
    from workbench.sweep.report import cells_frame, sweep_head
    from workbench.sweep.runner import fastest_passing, sweep_cell
    from workbench.sweep.spec import SweepCellSpec

    cells = []
    for k, code, gate in ((1, 0, 1.59), (3, 1, 3.9)):
        name = f"num_speculative_tokens-{k}"
        finish(finish_recorded_run(recorded, sweep / name, num_speculative_tokens=k, min_acceptance_length=gate),
               f"2026-11-24T15:0{k}:00", 60.0)
        spec = SweepCellSpec(name=name, values={"num_speculative_tokens": k}, params_file=TINY_PARAMS, overrides={})
        job = CellJob(name=name, params_file=TINY_PARAMS, overrides={}, role="leader", key=f"key-{k}")
        cells.append(sweep_cell(spec, job, CellResult(exit_code=code, wall_s=60.0, device="cpu"), sweep))
    summary = SweepSummary(params=str(TINY_PARAMS), vary={"num_speculative_tokens": [1, 3]}, cells=cells,
                           reference_runs=2, reference_keys=2, fastest_passing=fastest_passing(cells), exit_code=1,
                           wall_s=130.0)
    write_record(sweep / "sweep.json", summary)
    notebook = stand_in_notebook(sweep / "sweep.ipynb", "Sweep", {"Cells": cells_frame(summary).to_html()})
    export_html(notebook, sweep / "report.html", head=sweep_head(summary))
    return sweep


@pytest.fixture(scope="session")
def results_dir(tmp_path_factory) -> Path:
    """The recorded results folder (built once per session: rendering reports takes seconds)."""
    return make_results(tmp_path_factory.mktemp("recorded-results"))
