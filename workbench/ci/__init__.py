"""CI outputs of finished cases: JUnit XML, the GitHub step summary, Buildkite annotations and uploads.

The API (`workbench run|audit` publish one case through it; `workbench lane` all of its cases):

    from workbench.ci import CaseResult, check_junit_path, publish

    check_junit_path(junit_xml: Path | None) -> None
        # before anything starts: BadInputError (exit 2) naming --junit-xml and the path when it
        # cannot be written (a folder, a parent that is a file or not writable); None: no-op
    CaseResult.from_run(name: str, run_dir: str | Path, exit_code: int, duration_s: float | None = None) -> CaseResult
        # pydantic model: name, run_dir, exit_code, summary: RunSummary | None (via load_summary; a missing
        # or broken summary.json leaves None and its reason in summary_problem), duration_s;
        # .verdict is PASSED | FAILED | ERROR | CANCELLED
    publish(results: Sequence[CaseResult], junit_xml: Path | None, env: Mapping[str, str] | None = None) -> None
        # never raises; writes the JUnit file when junit_xml is given, appends to $GITHUB_STEP_SUMMARY
        # when set, annotates and uploads when BUILDKITE=true and buildkite-agent is on PATH
    without_ci_pages(env) -> dict[str, str]
        # env for child commands whose results the parent publishes (WORKBENCH_CI_OUTPUTS=off)

`case_publisher(name, junit_xml)` wraps `publish` as the `on_finished(run_dir, exit_code)` callback of
`workbench.core.notebook.run_notebook_case`.
"""

from workbench.ci.junit import check_junit_path, junit_tree, write_junit
from workbench.ci.publish import CI_OUTPUTS_VARIABLE, case_publisher, publish, without_ci_pages
from workbench.ci.results import CaseResult, KeyNumbers, Verdict

__all__ = ["CI_OUTPUTS_VARIABLE", "CaseResult", "KeyNumbers", "Verdict", "case_publisher", "check_junit_path",
           "junit_tree", "publish", "without_ci_pages", "write_junit"]
