"""The lane's report.html: the verdict first (each failed case's failed checks with their numbers), the key numbers
and environment, then one row per case with a link to the case's own report. Every text from params, lane files or
models is escaped (Jinja2 autoescape); the page loads nothing from the network."""

from __future__ import annotations

import os
from pathlib import Path

from workbench.core.pages import (VERDICT_CSS, Verdict, environment_rows, exit_verdict, group_environment,
                                  group_verdict, match_text, number, page_head, per_member, render)
from workbench.records import LaneSummary, RunSummary, read_summary

SECTIONS = [("cases", "Cases")]


def lane_verdict(summary: LaneSummary, runs: dict[str, RunSummary | None]) -> Verdict:
    """PASSED / FAILED / ERROR / CANCELLED with how many cases passed, and why each other case did not."""
    return group_verdict(summary.exit_code, [(c.name, c.passed, runs.get(c.name), c.error) for c in summary.cases],
                         "cases")


def lane_keys(summary: LaneSummary, runs: dict[str, RunSummary | None]) -> list[tuple[str, str]]:
    """Per case: acceptance length, output match with its control; then the reference engines the lane started."""
    found = {name: r for name, r in runs.items() if r is not None}
    return [("acceptance length", per_member([(name, number(r.speculative.acceptance_length))
                                              for name, r in found.items() if r.speculative])),
            ("output match", per_member([(name, match_text(r.output_match))
                                         for name, r in found.items() if r.output_match])),
            ("reference engines", f"{summary.reference_runs} started for {summary.reference_keys} reference key(s)"
                                  + (f", {summary.reused_from_cache} case(s) from the cache"
                                     if summary.reused_from_cache else ""))]


def write_report(summary: LaneSummary, out: Path) -> Path:
    runs = {c.name: read_summary(c.run_dir) for c in summary.cases}
    name = Path(summary.lane).stem
    environment, versions = group_environment([r for r in runs.values() if r], summary.wall_s)
    head = page_head(lane_verdict(summary, runs), lane_keys(summary, runs), environment_rows(environment, versions),
                     f"lane {name}", sections=SECTIONS)
    page = render("lane.html.j2", s=summary, name=name, runs=runs, head=head, verdict=exit_verdict,
                  css=lambda word: VERDICT_CSS.get(word, "error"), rel=lambda path: os.path.relpath(path, out))
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
