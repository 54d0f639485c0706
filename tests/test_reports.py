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
    finally:
        InteractiveShell.clear_instance()
        pd.reset_option("display.float_format")
    assert "26.83" in html and "26.831234" not in html and "707" in html
    assert "NaN" not in html and "<td>—</td>" in html


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
