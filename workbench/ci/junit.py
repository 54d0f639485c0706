"""JUnit XML, the format Buildkite, GitHub reporters and GitLab all render.

`testsuites` > one `testsuite` per case > one `testcase` per check (classname: the case). A failed
check carries `<failure>` with its message and its observed and required numbers; a skipped one
`<skipped>`; a run that an error stopped, that was cancelled, or that left no summary.json gets one
more testcase, `run`, with `<error>`, so a CI page never shows a broken run as green. Built with
ElementTree (escaping is its job) after `clean_text`, since XML 1.0 cannot hold some characters at all.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from workbench.ci.results import CaseResult
from workbench.ci.text import clean_text
from workbench.core.errors import BadInputError
from workbench.records import Check

RUN_TESTCASE = "run"
"""The testcase that stands for the run itself when it ended in an error or was cancelled."""


def _seconds(value: float | None) -> str:
    return f"{value or 0.0:.3f}"


def _number(value: float | None) -> str:
    return "none" if value is None else f"{value:g}"


def _check_testcase(suite: ET.Element, case: str, check: Check) -> ET.Element:
    testcase = ET.SubElement(suite, "testcase", classname=clean_text(case), name=clean_text(check.name),
                             time=_seconds(0.0))
    message = clean_text(check.message)
    if check.status == "failed":
        numbers = f"observed {_number(check.observed)}, required {_number(check.required)}"
        failure = ET.SubElement(testcase, "failure", message=f"{message} ({numbers})", type="check_failed")
        failure.text = f"{message}\n{numbers}"
    elif check.status == "skipped":
        ET.SubElement(testcase, "skipped", message=message)
    return testcase


def _suite(result: CaseResult) -> ET.Element:
    suite = ET.Element("testsuite", name=clean_text(result.name))
    properties = ET.SubElement(suite, "properties")
    for name, value in (("run_dir", str(result.run_dir)), ("exit_code", str(result.exit_code)),
                        ("verdict", result.verdict), ("report", "" if result.report is None else str(result.report))):
        ET.SubElement(properties, "property", name=name, value=clean_text(value))
    checks = [] if result.summary is None else result.summary.checks
    for check in checks:
        _check_testcase(suite, result.name, check)
    errors = 0
    if result.verdict in ("ERROR", "CANCELLED"):
        errors = 1
        testcase = ET.SubElement(suite, "testcase", classname=clean_text(result.name), name=RUN_TESTCASE,
                                 time=_seconds(result.duration_s))
        text = clean_text(result.error or result.verdict)
        error = ET.SubElement(testcase, "error", message=text.splitlines()[0] if text else result.verdict,
                              type=result.verdict.lower())
        error.text = f"{text}\nrun folder: {result.run_dir}"
    counts = {"tests": len(checks) + errors, "failures": sum(c.status == "failed" for c in checks),
              "errors": errors, "skipped": sum(c.status == "skipped" for c in checks)}
    suite.attrib.update({key: str(value) for key, value in counts.items()})
    suite.set("time", _seconds(result.duration_s))
    return suite


def junit_tree(results: Sequence[CaseResult], name: str = "workbench") -> ET.ElementTree:
    """The whole document: one testsuite per result, totals on `testsuites`."""
    root = ET.Element("testsuites", name=name)
    suites = [_suite(result) for result in results]
    for key in ("tests", "failures", "errors", "skipped"):
        root.set(key, str(sum(int(s.get(key)) for s in suites)))
    root.set("time", _seconds(sum(r.duration_s or 0.0 for r in results)))
    root.extend(suites)
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(results: Sequence[CaseResult], path: Path) -> Path:
    """Write the file whole (a partial file, then a rename), creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        junit_tree(results).write(partial, encoding="utf-8", xml_declaration=True)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def check_junit_path(path: Path | None, flag: str = "--junit-xml") -> None:
    """Refuse, before anything starts, a JUnit path that cannot be written: a folder, or a parent that is a
    file or not writable. `BadInputError` (exit 2) names the flag and the path; None is no file asked for."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise BadInputError(f"{flag} {path}: is a folder; name a file, e.g. {path / 'junit.xml'}", key=flag, path=path)
    existing = Path(os.path.abspath(path)).parent
    while not existing.exists():  # the nearest folder that exists: the rest is created when the file is written
        existing = existing.parent
    if not existing.is_dir():
        raise BadInputError(f"{flag} {path}: {existing} is not a folder", key=flag, path=path)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise BadInputError(f"{flag} {path}: {existing} is not writable", key=flag, path=path)
