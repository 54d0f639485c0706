"""Run a sweep: one reference per reference key, the cells on an executor, sweep.json, and the report.

The cells are grouped by reference key exactly as a lane groups its cases (`workbench.lane.runner.plan_lane`,
without reading the shared cache): per key, the first cell (its leader) runs both engines and stores its
reference in the sweep's own reference cache (`reference-cache/`); the others (followers) run only their
speculative engine against it. Cells whose key differs (say `max_num_seqs`, an argument of the reference
engine too) get a leader of their own. `reference_runs` counts what really started: the cells whose run
folder has `logs/reference.log`.

The sweep folder: `<cell>/` (each cell's run folder), `logs/<cell>.out`, `reference-cache/`, `sweep.json`
(`SweepSummary`), `sweep.ipynb` (notebooks/sweep.ipynb, executed) and `report.html`. Exit code: the worst
cell (3 over 2 over 1 over 0); 4 when the sweep was cancelled; 3 when the report could not be rendered.
"""

from __future__ import annotations

import signal
import time
import traceback
from pathlib import Path
from typing import Any, Protocol

from workbench.core.errors import ExitCode, WorkbenchError
from workbench.lane.runner import lane_exit_code, plan_lane
from workbench.lane.spec import LaneCase
from workbench.records import MatchShare, SweepCell, SweepSummary, load_summary, load_sweep_summary, write_record
from workbench.sweep.executors import CellJob, CellResult, Echo
from workbench.sweep.spec import SweepCellSpec

NOTEBOOK = "sweep.ipynb"


class Executor(Protocol):
    name: str

    def check(self, cells: list[SweepCellSpec]) -> None: ...

    def run(self, jobs: list[CellJob], out: Path, echo: Echo, cancelled: list[str]) -> dict[str, CellResult]: ...

    def close(self) -> None: ...


def plan_cells(cells: list[SweepCellSpec], out: Path) -> list[CellJob]:
    """Each cell's role for its reference key (leader or follower) and the overrides that implement it."""
    plan = plan_lane([LaneCase(name=c.name, params_file=c.params_file, overrides=c.overrides) for c in cells],
                     reuse=False, lane_cache=out / "reference-cache")
    return [CellJob(name=p.case.name, params_file=p.case.params_file, overrides=p.overrides, role=p.role,
                    leader=p.leader, record=p.record, key=p.key, gpus=cell.tensor_parallel_size)
            for p, cell in zip(plan.cases, cells)]


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator is not None and denominator else None


def sweep_cell(spec: SweepCellSpec, job: CellJob, result: CellResult, out: Path) -> SweepCell:
    """A cell's outcome: how it ended (the executor's word first), and its numbers from its summary.json."""
    run_dir = out / spec.name
    try:
        summary = load_summary(run_dir)
    except WorkbenchError:
        summary = None
    error = result.error or (summary.error if summary else f"no summary.json (exit {result.exit_code}); see "
                                                            f"{out / 'logs' / (spec.name + '.out')}")
    cell = SweepCell(name=spec.name, values=spec.values, run_dir=str(run_dir), exit_code=result.exit_code,
                     passed=result.exit_code == ExitCode.OK, error=error, reference_key=job.key,
                     status="error" if result.error or summary is None else summary.status,
                     reference_engine_started=(run_dir / "logs" / "reference.log").exists(), device=result.device,
                     wall_s=result.wall_s)
    if summary is None:
        return cell
    cell.failed_checks = [c.name for c in summary.checks if c.status == "failed"]
    cell.reference = summary.reference_source.kind if summary.reference_source else None
    cell.primary_scorer, cell.threshold = summary.primary_scorer, summary.threshold
    if summary.reference is not None:
        cell.reference_accuracy = summary.reference.accuracy
        cell.reference_tokens_per_s = summary.reference.timings.output_tokens_per_s
    if summary.speculative is not None:
        spec_run = summary.speculative
        cell.speculative_accuracy = spec_run.accuracy
        cell.speculative_tokens_per_s = spec_run.timings.output_tokens_per_s
        cell.acceptance_length, cell.acceptance_rate = spec_run.acceptance_length, spec_run.acceptance_rate
        cell.acceptance_rate_per_position, cell.counters = spec_run.acceptance_rate_per_position, spec_run.counters
    cell.speedup = _ratio(cell.speculative_tokens_per_s, cell.reference_tokens_per_s)
    match = summary.output_match
    if match is not None:
        cell.output_match = MatchShare(matched=match.matched, total=match.total, share=match.share)
        cell.output_match_judged_share, cell.required_match_share = match.judged_share, match.required_share
        if match.control is not None:
            cell.output_match_control = MatchShare(matched=match.control.matched, total=match.control.total,
                                                   share=match.control.share)
    return cell


def fastest_passing(cells: list[SweepCell]) -> str | None:
    """The passing cell whose speculative engine produced the most output tokens per second."""
    timed = [c for c in cells if c.passed and c.speculative_tokens_per_s is not None]
    return max(timed, key=lambda c: c.speculative_tokens_per_s).name if timed else None


def run_sweep(params_file: Path, vary: dict[str, list[Any]], overrides: dict[str, Any], cells: list[SweepCellSpec],
              executor: Executor, out: Path, echo: Echo = print, ray_address: str | None = None) -> SweepSummary:
    """Plan, run every cell, and write sweep.json (also on a cancel: the cells that ended are kept)."""
    started = time.perf_counter()
    jobs = plan_cells(cells, out)
    keys = len({job.key for job in jobs})
    roles = ", ".join(f"{j.name} ({j.role}{' of ' + j.leader if j.leader else ''})" for j in jobs)
    echo(f"[sweep] {len(jobs)} cell(s), {keys} reference key(s), executor {executor.name}: {roles}")
    cancelled: list[str] = []

    def on_signal(number, _frame) -> None:
        cancelled.append(signal.Signals(number).name)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        results = executor.run(jobs, out, echo, cancelled)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    missing = CellResult(exit_code=ExitCode.ERROR, error="the executor did not run this cell")
    summary = SweepSummary(params=str(params_file), overrides=overrides, vary=vary, executor=executor.name,
                           ray_address=ray_address, reference_keys=keys,
                           cells=[sweep_cell(spec, job, results.get(job.name, missing), out)
                                  for spec, job in zip(cells, jobs)])
    summary.reference_runs = sum(c.reference_engine_started for c in summary.cells)
    summary.fastest_passing = fastest_passing(summary.cells)
    summary.exit_code = int(lane_exit_code([c.exit_code for c in summary.cells], bool(cancelled)))
    summary.passed = summary.exit_code == ExitCode.OK
    summary.wall_s = time.perf_counter() - started
    write_record(out / "sweep.json", summary)
    return summary


def write_report(out: Path) -> Path:
    """notebooks/sweep.ipynb executed into the sweep folder (papermill), then report.html as every run's."""
    from workbench.core.errors import NotebookError
    from workbench.core.notebook import execute, export_html
    from workbench.core.resources import notebook_path
    from workbench.sweep.report import sweep_head

    executed = out / NOTEBOOK
    outcome = execute(notebook_path(NOTEBOOK), executed, {"sweep_dir": str(out)}, cwd=out)
    if not executed.exists():
        raise NotebookError(f"{NOTEBOOK} did not run: {outcome.message}", path=executed)
    notes = None if outcome.status == "ok" else [f"ERROR: the sweep report stopped: {outcome.message}"]
    try:
        html = export_html(executed, out / "report.html", head=sweep_head(load_sweep_summary(out), notes))
    except Exception as exc:
        (out / "logs").mkdir(exist_ok=True)
        (out / "logs" / "report.log").write_text(traceback.format_exc(), encoding="utf-8")
        raise NotebookError(f"report.html not rendered: {type(exc).__name__}: {exc}", path=executed) from exc
    if outcome.status != "ok":
        raise NotebookError(f"{NOTEBOOK} failed: {outcome.message} (see {executed}; report.html says so)",
                            path=executed)
    return html
