"""Finding the runs under results folders, and what the site shows of each (`SiteRun`).

A run folder is recognised by the record it holds: `summary.json` (correctness, audit and calibration runs),
`lane.json` (a lane; its cases are run folders of their own, found too), `controls.json` (positive
controls; likewise) or `sweep.json` (a sweep; its cells likewise). A folder whose record cannot be read is
reported and left out, never guessed at.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from workbench.core.errors import WorkbenchError
from workbench.core.pages import exit_verdict, group_environment, variant, verdict_of
from workbench.records import (ControlsSummary, LaneSummary, RunSummary, SweepSummary, load_controls_summary,
                               load_lane_summary, load_summary, load_sweep_summary, read_summary)

SITE_MARK = ".workbench-site"
"""Written into every site folder: a site inside a results folder is never taken for runs."""

MARKERS = ("summary.json", "lane.json", "controls.json", "sweep.json")
GROUPS = ("lane.json", "controls.json", "sweep.json")
"""Records of folders that hold runs of their own (each found as a run too)."""
STAMP = re.compile(r"(\d{8}-\d{6})")


class SiteRun(BaseModel):
    """One run as the site lists it: where it is, what it is, its verdict and headline numbers."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="unique in the site: the results folder's name, then the path below it")
    folder: str = Field(description="the run folder's name")
    source: str = Field(description="the run folder, as found")
    kind: str = Field(description="correctness, audit, calibration, lane, controls or sweep")
    case: str | None = None
    variant: str | None = Field(None, description="method and draft length (and workload, injection): one history")
    started_at: str | None = Field(None, description="ISO 8601, UTC; from the environment, the folder's name or "
                                                     "its summary file's time")
    commit: str | None = None
    hardware: str | None = None
    vllm: str | None = None
    verdict: str
    failed_checks: list[str] = Field(default_factory=list)
    primary_scorer: str | None = None
    reference_accuracy: float | None = None
    speculative_accuracy: float | None = None
    threshold: float | None = None
    acceptance_length: float | None = None
    acceptance_gate: float | None = None
    baseline_acceptance_length: float | None = None
    output_match: str | None = None
    output_match_share: float | None = None
    control_share: float | None = None
    reference_tokens_per_s: float | None = None
    speculative_tokens_per_s: float | None = None
    wall_s: float | None = None
    report_name: str | None = Field(None, description="the run's own page in its folder (report.html, "
                                                      "controls.html), when there is one")
    has_questions: bool = False
    injected: str | None = Field(None, description="the fault injected on purpose (a positive control): listed, "
                                                   "never charted as the case's history")

    @property
    def within(self) -> str | None:
        """Where a nested run sits, between its results folder and its own name (`controls1/batch`): two runs
        of one name (`clean`) are told apart on the index."""
        parts = self.id.split("/")[1:-1]
        return "/".join(parts) or None

    @property
    def report(self) -> str | None:
        """Its report's path in the site, relative to the site's root."""
        return f"runs/{self.id}/{self.report_name}" if self.report_name else None


def _started(folder: Path, marker: Path, recorded: str | None) -> str:
    if recorded:
        return recorded
    found = STAMP.search(folder.name)
    if found:
        stamp = datetime.strptime(found.group(1), "%Y%m%d-%H%M%S").astimezone(timezone.utc)
    else:
        stamp = datetime.fromtimestamp(marker.stat().st_mtime, timezone.utc)
    return stamp.isoformat(timespec="seconds")


def _report_name(folder: Path, *names: str) -> str | None:
    return next((name for name in names if (folder / name).is_file()), None)


def from_summary(summary: RunSummary, folder: Path, run_id: str) -> SiteRun:
    env = summary.environment
    scorer = summary.primary_scorer
    ref, spec, match = summary.reference, summary.speculative, summary.output_match
    params = summary.params
    case = summary.case or ("calibration" if summary.kind == "calibration" else None)
    return SiteRun(
        id=run_id, folder=folder.name, source=str(folder), kind=summary.kind, case=case,
        variant=variant(summary) if summary.kind == "correctness" else summary.kind,
        started_at=_started(folder, folder / "summary.json", env.started_at if env else None),
        commit=env.git_commit if env else None, hardware=env.hardware.label if env and env.hardware else None,
        vllm=summary.versions.vllm, verdict=verdict_of(summary).word,
        failed_checks=[c.name for c in summary.checks if c.status == "failed"], primary_scorer=scorer,
        reference_accuracy=ref.accuracy.get(scorer) if ref and scorer else None,
        speculative_accuracy=spec.accuracy.get(scorer) if spec and scorer else None,
        threshold=summary.threshold, acceptance_length=spec.acceptance_length if spec else None,
        acceptance_gate=params.min_acceptance_length if params else None,
        baseline_acceptance_length=summary.baseline.acceptance_length if summary.baseline else None,
        output_match=f"{match.matched}/{match.total}" if match else None,
        output_match_share=match.share if match else None,
        control_share=match.control.share if match and match.control else None,
        reference_tokens_per_s=ref.timings.output_tokens_per_s if ref else None,
        speculative_tokens_per_s=spec.timings.output_tokens_per_s if spec else None,
        wall_s=env.wall_s if env else None, report_name=_report_name(folder, "report.html"),
        has_questions=(folder / "questions.csv").is_file(), injected=params.inject if params else None)


def _member_summaries(folder: Path, run_dirs: list[str]) -> list[RunSummary]:
    """The summaries of a lane's or controls' runs (by their recorded path, else by name inside the folder)."""
    found = []
    for run_dir in run_dirs:
        summary = read_summary(run_dir) or read_summary(folder / Path(run_dir).name)
        if summary is not None:
            found.append(summary)
    return found


def _from_group(folder: Path, run_id: str, kind: str, case: str, verdict: str, members: list[RunSummary],
                marker: Path, wall_s: float | None, report: str | None) -> SiteRun:
    """A lane, sweep or controls folder: where and when from its runs' environments."""
    env, versions = group_environment(members, wall_s)
    return SiteRun(id=run_id, folder=folder.name, source=str(folder), kind=kind, case=case, variant=kind,
                   started_at=_started(folder, marker, env.started_at if env else None),
                   commit=env.git_commit if env else None,
                   hardware=env.hardware.label if env and env.hardware else None,
                   vllm=versions.vllm if versions else None, verdict=verdict, wall_s=wall_s, report_name=report)


def from_coded(record: LaneSummary | SweepSummary, folder: Path, run_id: str) -> SiteRun:
    """A lane or a sweep: its file's name is its case, its exit code its verdict, its cases or cells its runs."""
    lane = isinstance(record, LaneSummary)
    members = record.cases if lane else record.cells
    run = _from_group(folder, run_id, record.kind, Path(record.lane if lane else record.params).stem,
                      exit_verdict(record.exit_code),
                      _member_summaries(folder, [m.run_dir for m in members]), folder / f"{record.kind}.json",
                      record.wall_s, _report_name(folder, "report.html"))
    run.failed_checks = [m.name for m in members if not m.passed]
    return run


def from_controls(controls: ControlsSummary, folder: Path, run_id: str) -> SiteRun:
    run = _from_group(folder, run_id, "controls", controls.case, "PASSED" if controls.passed else "FAILED",
                      _member_summaries(folder, controls.run_dirs), folder / "controls.json", controls.wall_s,
                      _report_name(folder, "controls.html", "report.html"))
    run.failed_checks = [*controls.missed, *controls.errors]
    return run


def _load(folder: Path, marker: str, run_id: str) -> SiteRun:
    if marker == "lane.json":
        return from_coded(load_lane_summary(folder), folder, run_id)
    if marker == "sweep.json":
        return from_coded(load_sweep_summary(folder), folder, run_id)
    if marker == "controls.json":
        return from_controls(load_controls_summary(folder), folder, run_id)
    return from_summary(load_summary(folder), folder, run_id)


def _is_site(path: Path, root: Path) -> bool:
    return any((parent / SITE_MARK).exists() for parent in [path, *path.parents] if parent.is_relative_to(root))


def discover(roots: list[Path], exclude: Path | None = None) -> tuple[list[SiteRun], list[str]]:
    """Every run folder under the roots (recursively), newest first, and the folders that could not be read.

    A folder holding a lane's, sweep's or controls' record is listed as such even if it also holds a summary.json.
    """
    runs: list[SiteRun] = []
    problems: list[str] = []
    prefixes: dict[str, int] = {}
    for root in roots:
        root = root.resolve()
        name = root.name or "results"
        prefixes[name] = prefixes.get(name, 0) + 1
        prefix = name if prefixes[name] == 1 else f"{name}-{prefixes[name]}"
        folders: dict[Path, str] = {}
        for marker in MARKERS:
            for path in root.rglob(marker):
                folder = path.parent
                if exclude is not None and folder.resolve().is_relative_to(exclude.resolve()):
                    continue
                if _is_site(folder, root):
                    continue
                if folders.get(folder) in GROUPS:
                    continue
                folders[folder] = marker
        for folder, marker in sorted(folders.items()):
            relative = folder.relative_to(root).as_posix()
            run_id = prefix if relative == "." else f"{prefix}/{relative}"
            try:
                runs.append(_load(folder, marker, run_id))
            except WorkbenchError as exc:
                problems.append(f"{folder}: {exc}")
    runs.sort(key=lambda r: (r.started_at or "", r.id), reverse=True)
    return runs, problems
