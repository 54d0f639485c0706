"""Every CI output of a set of finished cases, from one call, without ever failing the command.

JUnit is written when a path was given; the GitHub step summary when `GITHUB_STEP_SUMMARY` is set;
Buildkite annotations and uploads when `BUILDKITE=true` and `buildkite-agent` is on PATH. Setting
`WORKBENCH_CI_OUTPUTS=off` turns the last two off: for commands that run inside a CI job without being
its result (the test suite's runs, a lane's per-case runs, whose lane publishes them all at once).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from workbench.ci.buildkite import publish_to_buildkite
from workbench.ci.github import append_step_summary
from workbench.ci.junit import write_junit
from workbench.ci.results import CaseResult
from workbench.core.errors import ExitCode

CI_OUTPUTS_VARIABLE = "WORKBENCH_CI_OUTPUTS"


def ci_pages_enabled(env: Mapping[str, str]) -> bool:
    return env.get(CI_OUTPUTS_VARIABLE, "").strip().lower() not in ("off", "0", "false", "no")


def without_ci_pages(env: Mapping[str, str]) -> dict[str, str]:
    """`env` for a child command whose results the parent publishes itself (no second annotation or row)."""
    return {**env, CI_OUTPUTS_VARIABLE: "off"}


def _warn(what: str, exc: BaseException) -> None:
    print(f"workbench: warning: {what} not written: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)


def publish(results: Sequence[CaseResult], junit_xml: Path | None, env: Mapping[str, str] | None = None) -> None:
    """Write the JUnit file (when asked), the GitHub step summary and the Buildkite annotations (where they apply).

    Never raises: an output that cannot be written is a warning on stderr, and the command's exit code
    stays what its runs made it.
    """
    env = os.environ if env is None else env
    if junit_xml is not None:
        try:
            print(f"[workbench] junit: {write_junit(results, Path(junit_xml))}", flush=True)
        except Exception as exc:  # noqa: BLE001 - a CI output never fails the run
            _warn(f"JUnit XML {junit_xml}", exc)
    if not ci_pages_enabled(env):
        return
    if env.get("GITHUB_STEP_SUMMARY"):
        try:
            append_step_summary(results, Path(env["GITHUB_STEP_SUMMARY"]), env)
        except Exception as exc:  # noqa: BLE001
            _warn(f"GitHub step summary {env['GITHUB_STEP_SUMMARY']}", exc)
    agent = shutil.which("buildkite-agent", path=env.get("PATH")) if env.get("BUILDKITE") == "true" else None
    if agent is not None:
        try:
            publish_to_buildkite(results, junit_xml, agent)
        except Exception as exc:  # noqa: BLE001
            _warn("Buildkite annotations", exc)


def case_publisher(name: str, junit_xml: Path | None) -> Callable[[Path, ExitCode], None]:
    """The `on_finished` of `workbench run|audit`: publish the one case once its run folder is final, timed
    from this call."""
    started = time.monotonic()

    def publish_case(run_dir: Path, exit_code: ExitCode) -> None:
        try:
            result = CaseResult.from_run(name, run_dir, exit_code, duration_s=time.monotonic() - started)
        except Exception as exc:  # noqa: BLE001
            _warn("CI outputs", exc)
            return
        publish([result], junit_xml)

    return publish_case
