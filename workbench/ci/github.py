"""GitHub Actions: the Markdown appended to `$GITHUB_STEP_SUMMARY` shows on the workflow run's page.

The run folders themselves reach the page as an uploaded artifact (the workflow's upload step), so the
table names each report by its path inside the artifact and links the run's artifact list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from workbench.ci.markdown import results_table, tally
from workbench.ci.results import CaseResult, display_path
from workbench.ci.text import markdown_text


def run_artifacts_url(env: Mapping[str, str]) -> str | None:
    """The workflow run's artifact list, from the variables GitHub sets in every job."""
    parts = [env.get(k) for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")]
    return None if not all(parts) else f"{parts[0]}/{parts[1]}/actions/runs/{parts[2]}#artifacts"


def _report_cell(result: CaseResult) -> str:
    return "not written" if result.report is None else markdown_text(display_path(result.report))


def step_summary(results: Sequence[CaseResult], env: Mapping[str, str]) -> str:
    lines = [f"### workbench: {tally(results)}", "", results_table(results, _report_cell), ""]
    url = run_artifacts_url(env)
    if url:
        lines += [f"Reports (report.html, summary.json per case): [this run's artifacts]({url})", ""]
    return "\n".join(lines)


def append_step_summary(results: Sequence[CaseResult], summary_file: Path, env: Mapping[str, str]) -> None:
    with open(summary_file, "a", encoding="utf-8") as out:
        out.write(step_summary(results, env) + "\n")
