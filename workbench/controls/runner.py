"""Run the controls: per workload, the clean case, then each injection on the clean run's reference.

Each run is an ordinary `workbench run` (the correctness notebook, papermill, its own folder with
summary.json and report.html): `controls` adds nothing to what a run checks, it only asks whether
the checks fail when they should.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench.core.errors import ExitCode
from workbench.core.notebook import run_notebook_case
from workbench.core.params import case_name
from workbench.correctness.compare import first_divergence
from workbench.records import (CleanOutcome, CleanVerdict, ControlsSummary, DivergentOutput, InjectionOutcome,
                               RunSummary, load_engine_record, load_summary, write_record)

NOTEBOOK = "mtp_correctness.ipynb"
RunCase = Callable[[Path, dict[str, Any], Path], ExitCode]


def _summary(run_dir: Path) -> RunSummary | None:
    try:
        return load_summary(run_dir)
    except Exception:  # a run stopped before its summary: the outcome says so
        return None


def _failed_checks(summary: RunSummary | None) -> list[str]:
    return [c.name for c in summary.checks if c.status == "failed"] if summary else []


def first_divergences(run_dir: Path, limit: int = 3) -> list[DivergentOutput]:
    """The first output-match prompts whose speculative output differs from the reference's."""
    try:
        reference = load_engine_record(run_dir / "records" / "reference.json")
        speculative = load_engine_record(run_dir / "records" / "speculative.json")
    except Exception:
        return []
    import json

    kinds = [row["kind"] for row in json.loads((run_dir / "records" / "prompts.json").read_text())["output_match"]]
    rows = []
    for ref, spec, kind in zip(reference.output_match, speculative.output_match, kinds):
        if ref.completion != spec.completion:
            rows.append(DivergentOutput(prompt_id=ref.prompt_id, kind=kind, reference=ref.completion,
                                        speculative=spec.completion,
                                        position=first_divergence(ref.token_ids, spec.token_ids)))
        if len(rows) == limit:
            break
    return rows


def injection_outcome(name: str, workload: str, run_dir: Path, code: ExitCode) -> InjectionOutcome:
    """What one injected run showed: the checks that failed (a catch), or the error that stopped it."""
    summary = _summary(run_dir)
    caught_by = _failed_checks(summary)
    outcome = InjectionOutcome(name=name, workload=workload, run_dir=str(run_dir),
                               status=summary.status if summary else "error", caught_by=caught_by,
                               caught=bool(caught_by) and code == ExitCode.CHECKS_FAILED)
    if summary is None:
        outcome.error = f"no summary.json (exit {int(code)})"
        return outcome
    injection = getattr(summary, "injection", None)
    if injection is not None:
        outcome.rate = getattr(injection, "rate", None)
        outcome.events = getattr(injection, "events", None)
    if summary.params is not None and outcome.rate is None:
        outcome.rate = getattr(summary.params, "inject_rate", None)
    outcome.error = summary.error
    match, scorer = summary.output_match, summary.primary_scorer
    if match is not None:
        outcome.output_match_matched, outcome.output_match_total = match.matched, match.total
        outcome.output_match_judged = match.judged_matched
        outcome.output_match_divergences = match.divergences.total if match.divergences else None
    if summary.reference is not None:
        outcome.reference_accuracy = summary.reference.accuracy.get(scorer)
    if summary.speculative is not None:
        outcome.speculative_accuracy = summary.speculative.accuracy.get(scorer)
        outcome.acceptance_length = summary.speculative.acceptance_length
    outcome.first_divergences = first_divergences(run_dir)
    return outcome


def default_run_case(params_file: Path, show_input: bool = False) -> RunCase:
    """One correctness run as `workbench run` makes it, with the correctness preflight."""
    from workbench.correctness.preflight import preflight

    def run(path: Path, overrides: dict[str, Any], out: Path) -> ExitCode:
        return run_notebook_case(NOTEBOOK, params_file, overrides, out, show_input, force=True,
                                 preflight=lambda params, where: preflight(params, where))

    return run


def run_controls(params_file: Path, overrides: dict[str, Any], injections: list[str], workloads: list[str],
                 out: Path, run_case: RunCase | None = None,
                 inject_overrides: dict[str, Any] | None = None) -> tuple[ControlsSummary, ExitCode]:
    """Every workload's clean run and injections; controls.json written after each run, so nothing is lost.

    Exit: 0 when every clean run passed and every injection was caught; 1 when a clean run failed or an
    injection was missed; 3 when an error stopped a run; 4 on a cancel (the rest is not started).
    """
    run_case = run_case or default_run_case(params_file)
    summary = ControlsSummary(case=case_name(params_file), overrides=overrides, workloads=workloads,
                              clean=CleanVerdict(passed=False))
    codes: list[ExitCode] = []
    started = time.perf_counter()

    def save() -> None:
        summary.wall_s = round(time.perf_counter() - started, 1)  # so far: the report's "how long"
        write_record(out / "controls.json", summary)

    for workload in workloads:
        clean_dir = out / workload / "clean"
        code = run_case(params_file, {**overrides, "workload": workload}, clean_dir)
        codes.append(code)
        clean_summary = _summary(clean_dir)
        summary.clean.by_workload[workload] = CleanOutcome(
            workload=workload, run_dir=str(clean_dir), status=clean_summary.status if clean_summary else "error",
            passed=code == ExitCode.OK, failed_checks=_failed_checks(clean_summary))
        save()
        if code == ExitCode.CANCELLED:
            break
        reference = clean_dir / "records" / "reference.json"
        for name in injections:
            run_dir = out / workload / name
            if not reference.is_file():
                summary.injections.append(InjectionOutcome(name=name, workload=workload, run_dir=str(run_dir),
                                                           status="error", error="the clean run left no reference"))
                codes.append(ExitCode.ERROR)
                continue
            code = run_case(params_file, {**overrides, **(inject_overrides or {}), "workload": workload,
                                          "inject": name, "reference_record": str(reference)}, run_dir)
            codes.append(code)
            summary.injections.append(injection_outcome(name, workload, run_dir, code))
            save()
            if code == ExitCode.CANCELLED:
                break
        if ExitCode.CANCELLED in codes:
            break
    summary.clean.passed = bool(summary.clean.by_workload) and all(c.passed for c in summary.clean.by_workload.values())
    # a miss is a run that finished with every check passing; one an error or a cancel stopped proves nothing
    summary.missed = [f"{i.name}@{i.workload}" for i in summary.injections if not i.caught and i.status == "passed"]
    summary.errors = [f"{i.name}@{i.workload}: {i.status}: {i.error}" for i in summary.injections
                      if not i.caught and i.status != "passed"]
    caught_in = {(i.name, i.workload) for i in summary.injections if i.caught}
    summary.churn_only = sorted({name for name, workload in caught_in if workload == "churn"
                                 and (name, "batch") not in caught_in and "batch" in workloads})
    summary.passed = summary.clean.passed and not summary.missed and not summary.errors and \
        len(summary.injections) == len(injections) * len(workloads)
    save()
    if ExitCode.CANCELLED in codes:
        return summary, ExitCode.CANCELLED
    clean_errors = [c for c in summary.clean.by_workload.values() if c.status in ("error", None)]
    if summary.errors or clean_errors:
        return summary, ExitCode.ERROR
    return summary, ExitCode.OK if summary.passed else ExitCode.CHECKS_FAILED
