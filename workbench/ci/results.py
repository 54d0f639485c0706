"""One case as CI sees it: its name, run folder, exit code and summary, and the verdict drawn from them.

CI outputs are written for runs that went wrong too, so the summary is optional: a run folder whose
summary.json is missing or unreadable still becomes a result, with the reason kept in
`summary_problem` and an ERROR verdict.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from workbench.core.errors import ExitCode, RecordError
from workbench.records import Check, RunSummary, load_summary

Verdict = Literal["PASSED", "FAILED", "ERROR", "CANCELLED"]


class KeyNumbers(BaseModel):
    """The numbers a CI reader looks at first (None where the run has none, e.g. an audit or an error)."""

    acceptance_length: float | None = None
    output_match_matched: int | None = None
    output_match_total: int | None = None
    output_match_near_ties: int | None = Field(None, description="mismatches within the tie margin (tie_aware mode)")
    primary_scorer: str | None = None
    reference_accuracy: float | None = Field(None, description="by the primary scorer")
    speculative_accuracy: float | None = Field(None, description="by the primary scorer")

    @classmethod
    def of(cls, summary: RunSummary | None) -> KeyNumbers:
        if summary is None:
            return cls()
        scorer = summary.primary_scorer
        def accuracy(engine) -> float | None:
            return None if engine is None or scorer is None else engine.accuracy.get(scorer)
        match = summary.output_match
        return cls(acceptance_length=None if summary.speculative is None else summary.speculative.acceptance_length,
                   output_match_matched=None if match is None else match.matched,
                   output_match_total=None if match is None else match.total,
                   output_match_near_ties=None if match is None or match.near_ties is None else match.near_ties.total,
                   primary_scorer=scorer, reference_accuracy=accuracy(summary.reference),
                   speculative_accuracy=accuracy(summary.speculative))


class CaseResult(BaseModel):
    """A finished case (`workbench run`, `audit`, or one case of a `lane`), ready for every CI output."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="the JUnit testsuite and classname, the Buildkite annotation context")
    run_dir: Path
    exit_code: int = Field(description="the command's exit code (workbench.core.errors.ExitCode); "
                                       "any other value, e.g. a killed process's, counts as an error")
    summary: RunSummary | None = None
    summary_problem: str | None = Field(None, description="why `summary` is None: summary.json missing or unreadable")
    duration_s: float | None = Field(None, description="wall seconds of the case, when the caller timed it")

    @classmethod
    def from_run(cls, name: str, run_dir: str | Path, exit_code: int, duration_s: float | None = None) -> CaseResult:
        """Load the run folder's summary.json through `load_summary`; a missing or broken one is kept as a reason."""
        try:
            summary, problem = load_summary(run_dir), None
        except RecordError as exc:
            summary, problem = None, exc.message
        except OSError as exc:  # unreadable (permissions, a folder in its place)
            summary, problem = None, f"{Path(run_dir) / 'summary.json'}: cannot be read ({exc.strerror or exc})"
        return cls(name=name, run_dir=Path(run_dir), exit_code=int(exit_code), summary=summary,
                   summary_problem=problem, duration_s=duration_s)

    @property
    def failed_checks(self) -> list[Check]:
        return [] if self.summary is None else [c for c in self.summary.checks if c.status == "failed"]

    @property
    def verdict(self) -> Verdict:
        """The worse of what the exit code and the summary say; no summary at all is an error."""
        status = None if self.summary is None else self.summary.status
        if self.exit_code == ExitCode.CANCELLED or status == "cancelled":
            return "CANCELLED"
        if self.exit_code not in (ExitCode.OK, ExitCode.CHECKS_FAILED) or self.summary is None or status == "error":
            return "ERROR"
        if self.exit_code == ExitCode.CHECKS_FAILED or status == "failed" or self.failed_checks:
            return "FAILED"
        return "PASSED"

    @property
    def error(self) -> str | None:
        """What stopped an ERROR or CANCELLED run, in the best words available; None for the others."""
        if self.verdict not in ("ERROR", "CANCELLED"):
            return None
        if self.summary is not None and self.summary.error:
            return self.summary.error
        if self.summary_problem:
            return self.summary_problem
        try:
            code = ExitCode(self.exit_code).name
        except ValueError:
            code = "not a workbench exit code"
        return f"exit code {self.exit_code} ({code}); see {self.run_dir / 'logs'}"

    @property
    def report(self) -> Path | None:
        """report.html, when the run wrote one."""
        path = self.run_dir / "report.html"
        return path if path.is_file() else None

    @property
    def numbers(self) -> KeyNumbers:
        return KeyNumbers.of(self.summary)


def display_path(path: Path) -> str:
    """A path as CI pages and artifact uploads name it: relative to the current folder when inside it."""
    absolute = Path(os.path.abspath(path))
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)
