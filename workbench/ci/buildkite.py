"""Buildkite: one annotation per case on the build page, and the case's files as the job's artifacts.

`buildkite-agent annotate --style success|error|warning --context workbench-<case>` gets a Markdown
body on stdin (rerunning the job replaces the annotation, as the context stays the same); report.html,
summary.json and the JUnit file go up with `buildkite-agent artifact upload`, and the annotation links
the report as `artifact://<path>`, which Buildkite resolves to the uploaded file. The agent failing
(no token, no network, a timeout) only prints a warning: CI outputs never change a run's exit code.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from workbench.ci.markdown import results_table
from workbench.ci.results import CaseResult, display_path
from workbench.ci.text import markdown_text

AGENT_TIMEOUT_S = 120.0
STYLES = {"PASSED": "success", "FAILED": "error", "ERROR": "error", "CANCELLED": "warning"}


def annotation_context(case: str) -> str:
    """A context key from a case name: the characters Buildkite keys allow, prefixed so ours are recognisable."""
    return "workbench-" + (re.sub(r"[^A-Za-z0-9_.-]+", "-", case).strip("-") or "case")


def _agent(agent: str, args: list[str], stdin: str | None = None) -> bool:
    """Run one agent command; False (with a warning on stderr) when it could not do it."""
    what = " ".join(args[:2])
    try:
        done = subprocess.run([agent, *args], input=stdin, text=True, capture_output=True, timeout=AGENT_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"workbench: warning: buildkite-agent {what} failed: {exc}", file=sys.stderr, flush=True)
        return False
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
        print(f"workbench: warning: buildkite-agent {what} exited {done.returncode}: {tail[0]}", file=sys.stderr,
              flush=True)
        return False
    return True


def _report_link(result: CaseResult) -> str:
    if result.report is None:
        return "not written"
    path = display_path(result.report)
    return f"[report.html](artifact://{path.replace(' ', '%20').replace(')', '%29')})"


def annotation_body(result: CaseResult) -> str:
    return "\n".join([f"#### workbench {markdown_text(result.name)}: {result.verdict}", "",
                      results_table([result], _report_link), ""])


def publish_to_buildkite(results: Sequence[CaseResult], junit_xml: Path | None, agent: str) -> None:
    """Upload each case's report.html and summary.json (and the JUnit file), then annotate each case."""
    for result in results:
        for name in ("report.html", "summary.json"):
            if (result.run_dir / name).is_file():
                _agent(agent, ["artifact", "upload", display_path(result.run_dir / name)])
    if junit_xml is not None and Path(junit_xml).is_file():
        _agent(agent, ["artifact", "upload", display_path(Path(junit_xml))])
    for result in results:
        _agent(agent, ["annotate", "--style", STYLES[result.verdict], "--context", annotation_context(result.name)],
               stdin=annotation_body(result))
