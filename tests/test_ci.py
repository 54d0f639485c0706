"""CI outputs (issue 15): JUnit XML, the GitHub step summary and Buildkite annotations, from recorded run folders,
and through `workbench run --junit-xml` as a user calls it."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from junitparser import Error, Failure, JUnitXml, Skipped

from conftest import REPO, TINY_PARAMS, finish_recorded_run, run_cli
from workbench.ci import CaseResult, check_junit_path, publish, write_junit
from workbench.core.errors import BadInputError, ExitCode
from workbench.core.rundir import write_summary
from workbench.records import load_summary

CI_VARIABLES = ("GITHUB_STEP_SUMMARY", "GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID", "BUILDKITE",
                "WORKBENCH_CI_OUTPUTS")


@pytest.fixture(autouse=True)
def outside_ci(monkeypatch):
    """Each test sets the CI it pretends to run in; none writes to the real CI page of a job running the suite."""
    for name in CI_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def failing_run(tmp_path, recorded) -> Path:
    """The recorded run held to an acceptance-length gate it misses (1.62 < 1.7): a real failed check."""
    return finish_recorded_run(recorded, tmp_path / "failing", min_acceptance_length=1.7)


def _stopped(run_dir: Path, status: str, error: str) -> Path:
    """The run folder as the runner leaves it when an error or a cancel stopped the run (`_finish_summary`)."""
    summary = load_summary(run_dir)
    write_summary(run_dir, summary.model_copy(update={"status": status, "error": error, "passed": False}))
    return run_dir


def _pipes(row: str) -> int:
    return len(re.findall(r"(?<!\\)\|", row))


# ------------------------------------------------------------------ JUnit XML


def test_junit_has_a_testcase_per_check_with_failures_and_skips(tmp_path, failing_run) -> None:
    summary = load_summary(failing_run)
    failed = [c for c in summary.checks if c.status == "failed"]
    skipped = [c for c in summary.checks if c.status == "skipped"]
    assert failed and skipped, "the recorded run must fail one check and skip another for this test to mean something"
    path = write_junit([CaseResult.from_run("tiny-k1", failing_run, ExitCode.CHECKS_FAILED, duration_s=12.5)],
                       tmp_path / "out" / "junit.xml")

    root = ET.parse(path).getroot()
    assert root.tag == "testsuites" and [s.tag for s in root] == ["testsuite"]
    suite = root[0]
    assert {"name", "tests", "failures", "errors", "skipped", "time"} <= set(suite.attrib)
    for testcase in suite.iter("testcase"):
        assert {"classname", "name", "time"} <= set(testcase.attrib)

    [parsed] = list(JUnitXml.fromfile(str(path)))
    assert parsed.name == "tiny-k1" and parsed.time == 12.5
    assert (parsed.tests, parsed.failures, parsed.errors, parsed.skipped) == (len(summary.checks), len(failed), 0,
                                                                              len(skipped))
    cases = {case.name: case for case in parsed}
    assert list(cases) == [c.name for c in summary.checks]
    for check in summary.checks:
        case = cases[check.name]
        assert case.classname == "tiny-k1"
        results = case.result
        if check.status == "failed":
            [failure] = results
            assert isinstance(failure, Failure)
            assert check.message in failure.message
            assert f"observed {check.observed:g}" in failure.message and f"required {check.required:g}" in failure.message
        elif check.status == "skipped":
            [skip] = results
            assert isinstance(skip, Skipped) and skip.message == check.message
        else:
            assert results == []


@pytest.mark.parametrize("status, exit_code", [("error", ExitCode.ERROR), ("cancelled", ExitCode.CANCELLED)])
def test_a_stopped_run_is_an_error_testcase_carrying_what_stopped_it(tmp_path, finished_run, status,
                                                                      exit_code) -> None:
    # an engine's log tail: markup, quotes, an ANSI colour and a NUL, which XML 1.0 cannot hold at all
    why = 'EngineError: speculative engine died <pid 7> & "rc" -9 \x1b[31mKilled\x1b[0m\x00'
    _stopped(finished_run, status, why)
    path = write_junit([CaseResult.from_run("tiny", finished_run, exit_code)], tmp_path / "junit.xml")

    [suite] = list(JUnitXml.fromfile(str(path)))
    run = next(case for case in suite if case.name == "run")
    [error] = run.result
    assert isinstance(error, Error) and error.type == status
    assert error.message.startswith("EngineError: speculative engine died <pid 7> & \"rc\" -9 Killed")
    assert "\x1b" not in error.message and "\x00" not in error.message
    assert suite.errors == 1 and suite.tests == len(load_summary(finished_run).checks) + 1


def test_a_run_without_a_summary_is_an_error_naming_the_missing_file(tmp_path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    assert CaseResult.from_run("tiny", run_dir, ExitCode.OK).verdict == "ERROR", "no summary is never a pass"
    result = CaseResult.from_run("tiny", run_dir, ExitCode.ERROR)
    assert result.summary is None and result.verdict == "ERROR"
    [suite] = list(JUnitXml.fromfile(str(write_junit([result], tmp_path / "junit.xml"))))
    [run] = list(suite)
    [error] = run.result
    assert isinstance(error, Error) and "summary.json" in error.message and "not found" in error.message


def test_a_broken_summary_is_kept_as_the_reason(tmp_path, finished_run) -> None:
    (finished_run / "summary.json").write_text('{"checks": 3}')
    result = CaseResult.from_run("tiny", finished_run, ExitCode.OK)
    assert result.summary is None and result.verdict == "ERROR" and "not a RunSummary" in result.error


def test_several_cases_are_several_suites_with_totals(tmp_path, finished_run, failing_run) -> None:
    results = [CaseResult.from_run("k1", finished_run, ExitCode.OK, duration_s=1.0),
               CaseResult.from_run("k3", failing_run, ExitCode.CHECKS_FAILED, duration_s=2.0)]
    xml = JUnitXml.fromfile(str(write_junit(results, tmp_path / "junit.xml")))
    suites = list(xml)
    assert [s.name for s in suites] == ["k1", "k3"]
    root = ET.parse(tmp_path / "junit.xml").getroot()
    for key in ("tests", "failures", "errors", "skipped"):
        assert int(root.get(key)) == sum(getattr(s, key) for s in suites), key
    assert float(root.get("time")) == 3.0
    assert suites[0].failures == 0 and suites[1].failures == 1


def test_verdict_is_the_worse_of_exit_code_and_summary(finished_run, failing_run) -> None:
    assert CaseResult.from_run("a", finished_run, ExitCode.OK).verdict == "PASSED"
    assert CaseResult.from_run("a", failing_run, ExitCode.CHECKS_FAILED).verdict == "FAILED"
    assert CaseResult.from_run("a", failing_run, ExitCode.OK).verdict == "FAILED"  # a failed check is never green
    assert CaseResult.from_run("a", finished_run, -9).verdict == "ERROR"  # a killed case process
    assert CaseResult.from_run("a", finished_run, ExitCode.CANCELLED).verdict == "CANCELLED"


def test_an_unwritable_junit_path_is_refused_naming_flag_and_path(tmp_path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for bad in (a_file / "junit.xml", a_file / "deeper" / "junit.xml", tmp_path):
        with pytest.raises(BadInputError, match=re.escape(f"--junit-xml {bad}")):
            check_junit_path(bad)
    check_junit_path(tmp_path / "new" / "folders" / "junit.xml")  # created when written, not before
    assert not (tmp_path / "new").exists()
    check_junit_path(None)
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=stat.S_IRUSR | stat.S_IXUSR)
        with pytest.raises(BadInputError, match="not writable"):
            check_junit_path(locked / "junit.xml")


# ------------------------------------------------------------------ GitHub step summary


def test_github_step_summary_gets_one_row_per_case_verdict_first(tmp_path, monkeypatch, finished_run,
                                                                failing_run) -> None:
    page = tmp_path / "step_summary.md"
    page.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(page))
    (finished_run / "report.html").write_text("<html></html>")
    passing, failing = load_summary(finished_run), load_summary(failing_run)
    publish([CaseResult.from_run("k1", finished_run, 0), CaseResult.from_run("k3", failing_run, 1)], None)

    text = page.read_text()
    assert text.startswith("earlier step\n"), "the step summary is appended to, never replaced"
    rows = [line for line in text.splitlines() if line.startswith("| **")]
    assert len(rows) == 2
    header = next(line for line in text.splitlines() if line.startswith("| verdict |"))
    assert all(_pipes(row) == _pipes(header) for row in rows)
    passed_row, failed_row = rows
    assert passed_row.startswith("| **PASSED** | k1 |") and failed_row.startswith("| **FAILED** | k3 |")
    assert f"{passing.speculative.acceptance_length:.4f}" in passed_row
    assert f"{passing.output_match.matched}/{passing.output_match.total}" in passed_row
    scorer = passing.primary_scorer
    assert (f"{passing.reference.accuracy[scorer]:.4f} / {passing.speculative.accuracy[scorer]:.4f} "
            f"({scorer})") in passed_row
    assert "report.html" in passed_row and "not written" in failed_row
    [failed_check] = [c for c in failing.checks if c.status == "failed"]
    assert f"**{failed_check.name.replace('_', chr(92) + '_')}**" in failed_row
    assert "acceptance length 1" in failed_row and failed_check.name not in passed_row


def test_markdown_cannot_be_broken_by_texts_from_params_or_engines(tmp_path, monkeypatch, finished_run) -> None:
    page = tmp_path / "step_summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(page))
    _stopped(finished_run, "error", "EngineError: a | b\nsecond line <script>alert(1)</script>")
    publish([CaseResult.from_run("case | with\npipe", finished_run, ExitCode.ERROR)], None)

    [row] = [line for line in page.read_text().splitlines() if line.startswith("| **")]
    header = next(line for line in page.read_text().splitlines() if line.startswith("| verdict |"))
    assert _pipes(row) == _pipes(header), row
    assert row.startswith("| **ERROR** | case \\| with<br>pipe |")
    assert "<script>" not in row and "\\<script\\>" in row
    assert "a \\| b<br>second line" in row


def test_ci_pages_can_be_switched_off_for_child_runs(tmp_path, monkeypatch, finished_run) -> None:
    page = tmp_path / "step_summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(page))
    monkeypatch.setenv("WORKBENCH_CI_OUTPUTS", "off")
    publish([CaseResult.from_run("k1", finished_run, 0)], tmp_path / "junit.xml")
    assert not page.exists() and (tmp_path / "junit.xml").is_file()  # the JUnit file was asked for: written


# ------------------------------------------------------------------ Buildkite

FAKE_AGENT = """#!{python}
import json, os, sys
with open(os.environ["FAKE_AGENT_LOG"], "a") as log:
    log.write(json.dumps({{"argv": sys.argv[1:], "stdin": sys.stdin.read() if sys.argv[1] == "annotate" else None}}) + "\\n")
sys.exit(int(os.environ.get("FAKE_AGENT_EXIT", "0")))
"""


@pytest.fixture
def buildkite(tmp_path, monkeypatch):
    """A fake `buildkite-agent` first on PATH, under BUILDKITE=true; yields a reader of what it was called with."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    agent = bin_dir / "buildkite-agent"
    agent.write_text(FAKE_AGENT.format(python=sys.executable))
    agent.chmod(0o755)
    log = tmp_path / "agent.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("BUILDKITE", "true")
    monkeypatch.setenv("FAKE_AGENT_LOG", str(log))
    monkeypatch.chdir(tmp_path)
    return lambda: [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_buildkite_annotates_each_case_and_uploads_its_files(tmp_path, buildkite, finished_run, failing_run) -> None:
    for run in (finished_run, failing_run):
        (run / "report.html").write_text("<html></html>")
    junit = tmp_path / "results" / "junit.xml"
    publish([CaseResult.from_run("tiny-mtp-k1", finished_run, 0), CaseResult.from_run("tiny mtp/k3", failing_run, 1)],
            junit)

    calls = buildkite()
    uploads = [c["argv"][2] for c in calls if c["argv"][:2] == ["artifact", "upload"]]
    assert sorted(uploads) == sorted([f"{run.relative_to(tmp_path)}/{name}" for run in (finished_run, failing_run)
                                      for name in ("report.html", "summary.json")] + ["results/junit.xml"])
    annotations = [c for c in calls if c["argv"][0] == "annotate"]
    assert [a["argv"][1:] for a in annotations] == [["--style", "success", "--context", "workbench-tiny-mtp-k1"],
                                                    ["--style", "error", "--context", "workbench-tiny-mtp-k3"]]
    passing = load_summary(finished_run)
    body = annotations[0]["stdin"]
    assert "PASSED" in body and f"{passing.speculative.acceptance_length:.4f}" in body
    assert f"{passing.output_match.matched}/{passing.output_match.total}" in body
    assert f"(artifact://{finished_run.relative_to(tmp_path)}/report.html)" in body
    failing_body = annotations[1]["stdin"]
    assert "FAILED" in failing_body and "acceptance\\_length" in failing_body
    kinds = [c["argv"][0] for c in calls]
    assert kinds.index("annotate") > len(kinds) - 1 - kinds[::-1].index("artifact"), "uploads first: links resolve"


def test_a_cancelled_case_is_a_warning_annotation(buildkite, finished_run) -> None:
    _stopped(finished_run, "cancelled", "cancelled by SIGTERM")
    publish([CaseResult.from_run("tiny", finished_run, ExitCode.CANCELLED)], None)
    [annotation] = [c for c in buildkite() if c["argv"][0] == "annotate"]
    assert annotation["argv"][1:3] == ["--style", "warning"] and "cancelled by SIGTERM" in annotation["stdin"]


def test_a_failing_agent_only_warns(tmp_path, buildkite, monkeypatch, capsys, finished_run) -> None:
    monkeypatch.setenv("FAKE_AGENT_EXIT", "1")
    publish([CaseResult.from_run("tiny", finished_run, 0)], tmp_path / "junit.xml")  # must not raise
    assert buildkite(), "the agent was called"
    assert "warning: buildkite-agent annotate" in capsys.readouterr().err
    assert (tmp_path / "junit.xml").is_file()


def test_without_the_agent_on_path_buildkite_is_skipped(tmp_path, buildkite, monkeypatch, finished_run) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    publish([CaseResult.from_run("tiny", finished_run, 0)], None)
    assert buildkite() == []


# ------------------------------------------------------------------ through `workbench run`, as a user calls it

DRIVER = textwrap.dedent('''
    """`workbench run` with papermill replaced: the notebook "leaves" a recorded summary.json and ends as told."""
    import shutil, sys
    from pathlib import Path

    import nbformat
    from nbformat.v4 import new_markdown_cell, new_notebook

    import workbench.core.notebook as runner
    from workbench.cli import main

    summary, status, message, block = sys.argv[1:5]

    def execute(notebook, output, parameters, cwd):
        if summary != "-":
            shutil.copy(summary, Path(parameters["run_dir"]) / "summary.json")
        if block != "-":  # something takes the JUnit file's place while the run executes
            Path(block).mkdir(parents=True)
        nbformat.write(new_notebook(cells=[new_markdown_cell("recorded run")]), str(output))
        return runner.NotebookOutcome(status, message)

    runner.execute = execute
    sys.exit(main(sys.argv[5:]))
''')


def _run(tmp_path: Path, summary: Path | None, status: str, *args: str, message: str = "", block: Path | None = None,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    clean = {k: v for k, v in os.environ.items() if k not in CI_VARIABLES}
    return subprocess.run([sys.executable, str(driver), str(summary or "-"), status, message, str(block or "-"),
                           "run", str(TINY_PARAMS), *args], cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**clean, **(env or {})})


def test_run_writes_junit_and_step_summary_and_keeps_its_exit_code(tmp_path, finished_run, failing_run) -> None:
    page = tmp_path / "page.md"
    for source, status, code, verdict in ((finished_run, "ok", 0, "PASSED"), (failing_run, "assertion", 1, "FAILED")):
        out, junit = tmp_path / f"run-{status}", tmp_path / f"ci-{status}" / "junit.xml"
        result = _run(tmp_path, source / "summary.json", status, "--out", str(out), "--junit-xml", str(junit),
                      message="AssertionError: checks failed", env={"GITHUB_STEP_SUMMARY": str(page)})
        assert result.returncode == code, result.stdout[-2000:] + result.stderr[-2000:]
        [suite] = list(JUnitXml.fromfile(str(junit)))
        assert suite.name == TINY_PARAMS.stem and float(suite.time) > 0
        assert [case.name for case in suite] == [c.name for c in load_summary(out).checks]
        assert suite.failures == sum(c.status == "failed" for c in load_summary(out).checks) == code
        assert f"| **{verdict}** | {TINY_PARAMS.stem.replace('_', chr(92) + '_')} |" in page.read_text()


def test_an_error_outcome_writes_an_error_testcase(tmp_path) -> None:
    junit = tmp_path / "junit.xml"
    result = _run(tmp_path, None, "error", "--out", str(tmp_path / "run"), "--junit-xml", str(junit),
                  message="EngineError: reference engine died")
    assert result.returncode == 3, result.stdout[-2000:] + result.stderr[-2000:]
    [suite] = list(JUnitXml.fromfile(str(junit)))
    [run] = list(suite)
    [error] = run.result
    assert isinstance(error, Error) and "EngineError: reference engine died" in error.message


def test_a_junit_file_that_cannot_be_written_never_changes_the_exit_code(tmp_path, finished_run) -> None:
    junit = tmp_path / "ci" / "junit.xml"
    result = _run(tmp_path, finished_run / "summary.json", "ok", "--out", str(tmp_path / "out"), "--junit-xml",
                  str(junit), block=junit)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert f"warning: JUnit XML {junit} not written" in result.stderr and "[workbench] PASSED" in result.stdout


def test_a_bad_junit_path_is_bad_input_before_anything_starts(tmp_path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for command in ("run", "audit"):
        result = run_cli(command, str(TINY_PARAMS), "--out", str(tmp_path / "run"), "--junit-xml",
                         str(a_file / "junit.xml"))
        assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
        assert f"--junit-xml {a_file / 'junit.xml'}" in result.stderr and "Traceback" not in result.stderr
        assert not (tmp_path / "run").exists(), "nothing may start, not even the run folder"


# The real-engine JUnit check runs inside tests/test_lane.py's tiny-lane test (a testsuite per case, a testcase
# per check), so the suite starts no extra engines for it.
