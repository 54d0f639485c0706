"""Run a lane: its cases side by side, each an ordinary `workbench run`, one reference engine per reference key.

Cases whose reference would be identical (same `ReferenceKey`: model files, reference engine
arguments, prompts, sampling, workload, hardware, versions) share one reference run. With
`reuse`, a reference already in the cache serves every case of its key and no reference engine
starts. Otherwise the first case of a key (its leader) runs both engines and stores its reference
under the key; the other cases (followers) start at the same time, run only their speculative
engine, and wait for the leader's stored reference (`reference_wait_s`). A leader that ends without
storing one stops its followers, which then end as errors naming it. Each case's output goes to
`logs/<case>.out` of the lane folder; `lane.json` is rewritten whenever a case ends.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.ci import without_ci_pages
from workbench.core.errors import ExitCode
from workbench.core.params import load_params
from workbench.correctness import reference_cache
from workbench.correctness.pipeline import case_reference_key
from workbench.lane.spec import LaneCase
from workbench.records import LaneCaseOutcome, LaneSummary, RunSummary, load_summary, write_record

SEVERITY = (ExitCode.OK, ExitCode.CHECKS_FAILED, ExitCode.BAD_INPUT, ExitCode.ERROR)
"""Case exit codes ordered from best to worst (their values are their ranks)."""


@dataclass
class PlannedCase:
    """A case with its role for its reference key: leader (computes), follower (waits) or cached (reuses)."""

    case: LaneCase
    key: str
    role: str  # "leader" | "follower" | "cached"
    overrides: dict[str, Any]
    leader: str | None = None
    process: subprocess.Popen | None = None
    started: float | None = None
    ended: float | None = None
    exit_code: int | None = None
    stopped_because: str | None = None
    log: Path | None = None
    record: Path | None = None


@dataclass
class LanePlan:
    cases: list[PlannedCase] = field(default_factory=list)

    @property
    def keys(self) -> int:
        return len({c.key for c in self.cases})


def plan_lane(cases: list[LaneCase], reuse: bool, lane_cache: Path) -> LanePlan:
    """Group the cases by reference key and give each its role and the overrides that implement it.

    Without `reuse`, nothing is read from the shared cache: the lane's leaders store into a cache of
    the lane's own (`lane_cache`), so an older entry of the same key is never picked up.
    """
    plan = LanePlan()
    leaders: dict[str, PlannedCase] = {}
    for case in cases:
        key = case_reference_key(case.params_file, case.overrides)
        params = load_params(case.params_file, case.overrides)
        if not reuse:
            params = params.model_copy(update={"reference_cache_dir": str(lane_cache)})
        record = reference_cache.entry_record(params, key)
        digest = key.digest()
        cache_dir = str(reference_cache.cache_dir(params))
        if reuse and record.is_file():
            planned = PlannedCase(case, digest, "cached", {**case.overrides, "reference_record": str(record)},
                                  record=record)
        elif digest in leaders:
            planned = PlannedCase(case, digest, "follower", {
                **case.overrides, "reference_record": str(record), "reference_wait_s": params.engine_timeout_s,
                "store_reference": False}, leader=leaders[digest].case.name, record=record)
        else:
            planned = PlannedCase(case, digest, "leader", {
                **case.overrides, "reuse_reference": False, "store_reference": True,
                "reference_cache_dir": cache_dir}, record=record)
            leaders[digest] = planned
        plan.cases.append(planned)
    return plan


def _command(planned: PlannedCase, run_dir: Path) -> list[str]:
    command = [sys.executable, "-m", "workbench.cli", "run", str(planned.case.params_file), "--out", str(run_dir),
               "--force"]
    for key, value in planned.overrides.items():
        command += ["-p", key, json.dumps(value)]  # JSON is YAML: read back exactly
    return command


def _outcome(planned: PlannedCase, run_dir: Path) -> LaneCaseOutcome:
    summary: RunSummary | None
    try:
        summary = load_summary(run_dir)
    except Exception:  # a run stopped before its summary: the outcome says so
        summary = None
    code = planned.exit_code if planned.exit_code is not None else int(ExitCode.ERROR)
    error = planned.stopped_because or (summary.error if summary else None)
    if summary is None and error is None:
        error = f"no summary.json (exit {code}); see {planned.log}"
    source = summary.reference_source if summary else None
    return LaneCaseOutcome(
        name=planned.case.name, params=str(planned.case.params_file), run_dir=str(run_dir), exit_code=code,
        passed=code == ExitCode.OK, status="error" if planned.stopped_because else (summary.status if summary else "error"),
        failed_checks=[c.name for c in summary.checks if c.status == "failed"] if summary else [],
        error=error, reference=source.kind if source else None, reference_key=planned.key,
        reference_engine_started=(run_dir / "logs" / "reference.log").exists(),
        wall_s=(planned.ended - planned.started) if planned.started and planned.ended else None)


def lane_exit_code(codes: list[int], cancelled: bool) -> ExitCode:
    """The worst of the cases: 3 over 2 over 1 over 0 (a case cancelled by the lane counts as an error)."""
    if cancelled:
        return ExitCode.CANCELLED
    # 0-3 rank as themselves; any other code (a signal, a cancel the lane itself did not ask for) is an error
    return ExitCode(max((c if c in SEVERITY else int(ExitCode.ERROR) for c in codes), default=int(ExitCode.OK)))


def run_lane(lane_file: Path, description: str, cases: list[LaneCase], out: Path, reuse: bool = True,
             max_parallel: int = 3, echo=print) -> LaneSummary:
    """Run every case of the lane into `out/<case>/`; lane.json after each case; the summary at the end."""
    started_at = time.perf_counter()
    plan = plan_lane(cases, reuse, out / "reference-cache")
    (out / "logs").mkdir(parents=True, exist_ok=True)
    summary = LaneSummary(lane=str(lane_file), description=description, reference_keys=plan.keys)
    roles = ", ".join(f"{c.case.name} ({c.role}{' of ' + c.leader if c.leader else ''})" for c in plan.cases)
    echo(f"[lane] {len(plan.cases)} cases, {plan.keys} reference key(s): {roles}")
    cancelled: list[str] = []

    def on_signal(number, _frame):
        cancelled.append(signal.Signals(number).name)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    # leaders first, so a follower never waits on a leader the parallel limit keeps from starting
    queue = sorted(plan.cases, key=lambda c: c.role == "follower")
    running: list[PlannedCase] = []

    def stop(planned: PlannedCase, why: str) -> None:
        planned.stopped_because = why
        if planned.process is not None and planned.process.poll() is None:
            planned.process.send_signal(signal.SIGTERM)

    try:
        while queue or running:
            if cancelled:
                for planned in running:
                    stop(planned, f"the lane was cancelled ({cancelled[0]})")
                for planned in queue:
                    planned.stopped_because, planned.exit_code = "the lane was cancelled", int(ExitCode.CANCELLED)
                queue.clear()
            while queue and len(running) < max_parallel:
                planned = queue.pop(0)
                if planned.stopped_because:
                    continue
                run_dir = out / planned.case.name
                planned.log = out / "logs" / f"{planned.case.name}.out"
                with open(planned.log, "w", encoding="utf-8") as log:
                    # the lane publishes every case's CI outputs once, at its end: the cases publish none
                    planned.process = subprocess.Popen(_command(planned, run_dir), stdout=log, stderr=subprocess.STDOUT,
                                                       env=without_ci_pages(os.environ))
                planned.started = time.perf_counter()
                running.append(planned)
                echo(f"[lane] {planned.case.name}: started ({planned.role}) -> {run_dir}")
            for planned in list(running):
                if planned.process.poll() is None:
                    continue
                planned.ended, planned.exit_code = time.perf_counter(), planned.process.returncode
                running.remove(planned)
                if planned.stopped_because and planned.exit_code in (ExitCode.CANCELLED, -signal.SIGTERM):
                    planned.exit_code = int(ExitCode.CANCELLED if cancelled else ExitCode.ERROR)
                echo(f"[lane] {planned.case.name}: exit {planned.exit_code}"
                     + (f" ({planned.stopped_because})" if planned.stopped_because else ""))
                if planned.role == "leader" and not (planned.record and planned.record.is_file()):
                    why = (f"the case computing the shared reference ({planned.case.name}) ended without one "
                           f"(exit {planned.exit_code})")
                    for other in [*running, *queue]:
                        if other.role == "follower" and other.leader == planned.case.name:
                            if other.process is None:
                                other.stopped_because, other.exit_code = why, int(ExitCode.ERROR)
                            else:
                                stop(other, why)
                summary.cases = [_outcome(c, out / c.case.name) for c in plan.cases if c.exit_code is not None]
                write_record(out / "lane.json", summary)
            time.sleep(0.3)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for planned in plan.cases:
            if planned.process is not None and planned.process.poll() is None:
                planned.process.kill()
    summary.cases = [_outcome(c, out / c.case.name) for c in plan.cases]
    summary.reference_runs = sum(c.reference_engine_started for c in summary.cases)
    summary.reused_from_cache = sum(c.reference == "cache" for c in summary.cases)
    summary.exit_code = int(lane_exit_code([c.exit_code for c in summary.cases], bool(cancelled)))
    summary.passed = summary.exit_code == ExitCode.OK
    summary.wall_s = time.perf_counter() - started_at
    write_record(out / "lane.json", summary)
    return summary
