"""Reports verdict first (issue 17): the banner with each failed check's numbers, the key numbers, the environment
recorded at run time, numbers for people, no stray stderr, contents; the same for lanes and controls."""

from __future__ import annotations

import math
import re
import subprocess
from datetime import datetime
from html import unescape
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO
from recorded_results import HOSTILE, SECTIONS, STDERR, results_dir  # noqa: F401  (fixture)
from workbench.core import pages
from workbench.core.fingerprint import hardware
from workbench.correctness.pipeline import checks_frame
from workbench.records import load_summary


def text_of(html: str) -> str:
    """The page's text as a reader sees it (tags, styles and scripts dropped)."""
    body = re.split(r"<body[^>]*>", html, maxsplit=1)[-1]
    body = re.sub(r"<(style|script)[^>]*>.*?</\1>", " ", body, flags=re.S)
    body = re.sub(r"</?(strong|b|span|a|code|em)\b[^>]*>", "", body)  # inline: no space
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", body))).strip()


def run(results: Path, name: str) -> Path:
    return next(p.parent for p in results.rglob("summary.json") if p.parent.name == name)


def test_a_failed_report_opens_with_the_verdict_and_each_failed_checks_numbers(results_dir) -> None:
    folder = run(results_dir, "tiny-qwen3_5-cpu-20261121-090000")
    summary = load_summary(folder)
    failed = [c for c in summary.checks if c.status == "failed"]
    assert failed, "the fixture's second run fails its acceptance gate"
    text = text_of((folder / "report.html").read_text())
    assert text.startswith("FAILED"), text[:200]
    head = text[:text.index(SECTIONS[0])]
    for check in failed:
        assert f"{check.name}: observed {pages.number(check.observed)}, required {pages.number(check.required)}" in head
    scorer = summary.primary_scorer
    assert f"speculative {pages.number(summary.speculative.accuracy[scorer])}" in head  # the key numbers
    assert f"{summary.output_match.matched}/{summary.output_match.total}" in head


def test_the_environment_block_shows_what_summary_json_recorded(results_dir) -> None:
    folder = run(results_dir, "tiny-qwen3_5-cpu-20261120-090000")
    env = load_summary(folder).environment
    versions = load_summary(folder).versions
    text = text_of((folder / "report.html").read_text())
    head = text[:text.index(SECTIONS[0])]
    for shown in (env.hardware.label, versions.vllm, versions.torch, versions.model_config_hash,
                  pages.commit(env.git_commit), pages.when(env.started_at), pages.duration(env.wall_s)):
        assert shown in head, shown


def test_the_environment_is_recorded_at_run_time(finished_run) -> None:
    env = load_summary(finished_run).environment
    assert env is not None and env.hardware == hardware()
    if subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True).returncode == 0:
        # the checkout's commit then (HEAD, or an ancestor of it if someone committed since)
        ancestor = subprocess.run(["git", "merge-base", "--is-ancestor", env.git_commit.split("+")[0], "HEAD"], cwd=REPO)
        assert ancestor.returncode == 0, env.git_commit
    else:
        assert env.git_commit == "unknown"
    assert datetime.fromisoformat(env.started_at).tzinfo is not None and env.wall_s >= 0


def test_no_stray_stderr_and_a_table_of_contents(results_dir) -> None:
    folder = run(results_dir, "tiny-qwen3_5-cpu-20261122-090000")
    html = (folder / "report.html").read_text()
    assert STDERR.strip() not in html
    assert STDERR.strip() in (folder / "mtp_correctness.ipynb").read_text(), "the notebook keeps it"
    toc = html[html.index('class="wb-toc"'):]
    toc = toc[:toc.index("</nav>")]
    for title in SECTIONS:
        anchor = title.replace(" ", "-")
        assert f'href="#{anchor}"' in toc and f'id="{anchor}"' in html


def test_an_error_report_says_error_first_and_escapes_the_message(results_dir) -> None:
    folder = run(results_dir, "tiny-other-20261125-120000")
    summary = load_summary(folder)
    html = (folder / "report.html").read_text()
    assert text_of(html).startswith(f"ERROR: {summary.error.splitlines()[0]}")
    assert HOSTILE in summary.error and HOSTILE not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert summary.environment is not None  # stamped even though the run stopped


def test_skipped_checks_say_off_and_numbers_are_for_people(finished_run) -> None:
    summary = load_summary(finished_run)
    frame = checks_frame(summary)
    skipped = [c.name for c in summary.checks if c.status == "skipped"]
    assert skipped and all(frame.loc[name, "required"] == "off" for name in skipped)
    assert not frame.isna().any().any() and "nan" not in frame.to_html().lower()
    for check in summary.checks:
        if check.observed is not None:
            shown = frame.loc[check.name, "observed"]
            assert len(shown.split(".")[-1]) <= 4 and math.isclose(float(shown.replace(",", "")), check.observed,
                                                                   rel_tol=1e-3, abs_tol=1e-4)


@pytest.mark.parametrize("value,shown", [(0.7346123456, "0.7346"), (21577.31, "21,577"), (683.123, "683.1"),
                                         (float("nan"), "—"), (None, "—"), (707.0, "707"), (1.4e-32, "1.4e-32")])
def test_number_formatting(value, shown) -> None:
    assert pages.number(value) == shown


def test_notebook_tables_show_numbers_for_people_and_no_nan() -> None:
    for name in ("mtp_correctness.ipynb", "no_sync_audit.ipynb", "calibrate_threshold.ipynb"):
        assert "use_people_tables()" in (REPO / "notebooks" / name).read_text(), name
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        pages.use_people_tables()
        frame = pd.DataFrame({"init_s": [26.8312345, None], "output_tokens": [707, None]})
        html = shell.display_formatter.format(frame)[0]["text/html"]
        empty = shell.display_formatter.format(frame.iloc[0:0])[0]["text/html"]
    finally:
        InteractiveShell.clear_instance()
        pd.reset_option("display.float_format")
    assert "26.83" in html and "26.831234" not in html and "707" in html
    assert "NaN" not in html and "<td>—</td>" in html
    assert "<em>none</em>" in empty and "<table" not in empty, "no header row over nothing"


def test_lane_and_controls_reports_have_the_environment_block(results_dir, tmp_path, recorded) -> None:
    lane = next(p.parent for p in results_dir.rglob("lane.json"))
    member = load_summary(lane / "tiny-mtp-k1")
    text = text_of((lane / "report.html").read_text())
    assert text.startswith("PASSED")
    assert "Environment" in text and member.environment.hardware.label in text

    from test_controls import fake_runs
    from workbench.controls.report import render
    from workbench.controls.runner import run_controls
    from conftest import TINY_PARAMS

    summary, _ = run_controls(TINY_PARAMS, {}, ["a"], ["batch"], tmp_path,
                              run_case=fake_runs(recorded, {("a", "batch"): "missed"}))
    page = text_of(render(summary, tmp_path))
    assert page.startswith("FAILED") and page.index("FAILED") < page.index("Positive controls")
    assert "Environment" in page and hardware().label in page
    assert summary.wall_s is not None and f"how long {pages.duration(summary.wall_s)}" in page


def test_a_failed_lane_opens_with_each_failed_cases_checks_and_numbers(results_dir, tmp_path) -> None:
    from workbench.lane.report import write_report
    from workbench.records import LaneCaseOutcome, LaneSummary

    passed, failed = run(results_dir, "tiny-qwen3_5-cpu-20261120-090000"), run(results_dir,
                                                                              "tiny-qwen3_5-cpu-20261121-090000")
    cases = [LaneCaseOutcome(name=name, params="p.yaml", run_dir=str(folder), exit_code=code, passed=not code,
                             failed_checks=[c.name for c in load_summary(folder).checks if c.status == "failed"])
             for name, folder, code in (("k1", passed, 0), ("k1-gated", failed, 1))]
    summary = LaneSummary(lane="lanes/x.yaml", cases=cases, reference_runs=1, reference_keys=1, exit_code=1)
    text = text_of(write_report(summary, tmp_path).read_text())
    assert text.startswith("FAILED: 1 of 2 cases passed"), text[:200]
    head = text[:text.index("Lane x")]
    gate = load_summary(failed).check("acceptance_length")
    assert f"k1-gated: acceptance_length: observed {pages.number(gate.observed)}, required " \
           f"{pages.number(gate.required)}" in head
    assert "k1: " not in head.split("acceptance length")[0], "a passing case is not named among the failures"
    spec = load_summary(passed).speculative
    assert re.search(rf"acceptance length ?k1 {re.escape(pages.number(spec.acceptance_length))}", head)
    assert re.search("Contents ?Environment ?Cases", head)


def test_a_sweep_report_opens_with_its_verdict_key_numbers_and_environment(results_dir) -> None:
    sweep = results_dir / "sweep-20261124-150000"
    html = (sweep / "report.html").read_text()
    text = text_of(html)
    assert text.startswith("FAILED: 1 of 2 cells passed"), text[:200]
    head = text[:text.index("Sweep")]
    failing = load_summary(sweep / "num_speculative_tokens-3")
    gate = failing.check("acceptance_length")
    assert f"k=3: acceptance_length: observed {pages.number(gate.observed)}, required 3.9" in head
    assert "k=1: " not in head.split("acceptance length")[0]
    cell = load_summary(sweep / "num_speculative_tokens-1")
    assert re.search(rf"acceptance length ?k=1 {re.escape(pages.number(cell.speculative.acceptance_length))}", head)
    assert re.search("fastest passing ?k=1:", head) and re.search("output match ?k=1 ", head)
    assert failing.environment.hardware.label in head and pages.commit(failing.environment.git_commit) in head
    assert STDERR.strip() not in html and 'href="#Cells"' in html
    assert "nan" not in text.lower().replace("nanosecond", "")


def test_papermills_red_error_markers_stay_out_of_the_report(tmp_path) -> None:
    import nbformat
    from nbformat.v4 import new_markdown_cell, new_notebook

    from workbench.core.notebook import export_html

    marker = new_markdown_cell("An Exception was encountered at 'In [13]'.",
                               metadata={"tags": ["papermill-error-cell-tag"]})
    nbformat.write(new_notebook(cells=[marker, new_markdown_cell("## Checks")]), str(tmp_path / "nb.ipynb"))
    html = export_html(tmp_path / "nb.ipynb", tmp_path / "report.html").read_text()
    assert 'id="Checks"' in html and "An Exception was encountered" not in html


def test_audit_and_calibration_tables_say_a_dash_not_none() -> None:
    from workbench.audit.views import counts_frame
    from workbench.calibration.figures import overview_frame

    audit = counts_frame({"async_scheduling_active": False, "sync_count": 0, "positive_control_count": 6,
                          "cuda_sync_count": None})
    calibration = overview_frame({"accuracy_interval": (0.0179, 0.4042), "accuracy": 0.1, "questions": 10,
                                  "max_false_failure": 1e-3, "recommended_threshold": 0.0, "threshold_evaluated": 0.0,
                                  "margin": 0.1, "false_failure_probability": 0.0, "detectable_drop": None})
    for frame in (audit, calibration):
        shown = frame["value"].tolist()
        assert "None" not in shown and "—" in shown, shown
    assert audit.loc["async scheduling active", "value"] == "no"
