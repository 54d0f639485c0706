"""`workbench site` (issue 17): the index lists every run found, case pages chart each case's history, comparison
pages put two runs side by side with the paired test; `--benchmark-json` writes the trend tools' format."""

from __future__ import annotations

import json
import re
import shutil
from html import unescape
from pathlib import Path

import pandas as pd
import pytest
from scipy.stats import binomtest

from conftest import REPO, TINY_PARAMS
from recorded_results import HOSTILE, finish, results_dir  # noqa: F401  (fixture)
from workbench.core.pages import number, signed
from workbench.records import LaneSummary, SweepSummary, load_lane_summary, load_summary, load_sweep_summary
from workbench.site.benchmark import TOOL, benchmark_on_finished, lane_entries, run_entries
from workbench.site.build import build_site
from workbench.site.cli import main as site_main
from workbench.site.history import history_figures
from workbench.site.runs import discover


def group(folder: Path) -> LaneSummary | SweepSummary | None:
    """The lane or sweep whose folder this is (None: a run folder)."""
    if (folder / "lane.json").exists():
        return load_lane_summary(folder)
    return load_sweep_summary(folder) if (folder / "sweep.json").exists() else None


def run_folders(results: Path) -> dict[Path, str]:
    """Every run folder under `results`, found here independently of the site: folder -> its start (ISO)."""
    found = {}
    for path in results.rglob("*.json"):
        if path.name == "summary.json" and group(path.parent) is None:
            found[path.parent] = load_summary(path.parent).environment.started_at
        elif path.name in ("lane.json", "sweep.json"):
            members = getattr(group(path.parent), "cases" if path.name == "lane.json" else "cells")
            found[path.parent] = min(load_summary(m.run_dir).environment.started_at for m in members)
    return found


def rows(index_html: str) -> list[tuple[str, str, str]]:
    """(run id, case, verdict) of each row of the index, in page order."""
    return re.findall(r'<tr data-run="([^"]+)" data-case="([^"]*)" data-verdict="([^"]+)">', index_html)


@pytest.fixture(scope="module")
def site(results_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site") / "site"
    assert site_main([str(results_dir), "--out", str(out)]) == 0
    return out


def test_the_index_lists_every_run_newest_first_with_its_report(site, results_dir) -> None:
    html = (site / "index.html").read_text()
    folders = run_folders(results_dir)
    listed = rows(html)
    expected = sorted(folders, key=lambda f: (folders[f], f"results/{f.relative_to(results_dir).as_posix()}"),
                      reverse=True)
    assert [run_id for run_id, _, _ in listed] == [f"results/{f.relative_to(results_dir).as_posix()}" for f in expected]
    for (run_id, case, verdict), folder in zip(listed, expected):
        report = "report.html"
        copied = site / "runs" / run_id / report
        assert copied.read_bytes() == (folder / report).read_bytes(), "each run's report is copied into the site"
        assert f'href="runs/{run_id}/{report}"' in html
        if group(folder) is not None:
            assert verdict == ("PASSED" if group(folder).passed else "FAILED")
        else:
            summary = load_summary(folder)
            assert (case, verdict) == (summary.case, summary.status.upper())


def test_the_index_escapes_run_texts_and_loads_nothing(site) -> None:
    for page in [site / "index.html", *(site / "cases").glob("*.html"), *(site / "compare").glob("*.html")]:
        html = page.read_text()
        assert not re.search(r'(src|href)="(https?:)?//', html), page
        assert "<img src=x" not in html, page


def test_a_case_page_charts_its_history(site, results_dir) -> None:
    runs, _ = discover([results_dir])
    case = [r for r in runs if r.case == "tiny-qwen3_5-cpu" and r.variant in ("mtp k=1", "lane", "sweep")]
    oldest_first = sorted((r for r in case if r.kind == "correctness"), key=lambda r: r.started_at)
    figures = dict(history_figures(case))
    assert len(figures) == 4
    lines = {line.get_label(): line for line in figures["Accuracy (primary scorer) and threshold"].axes[0].lines}
    assert list(lines["speculative"].get_ydata()) == [r.speculative_accuracy for r in oldest_first]
    assert "threshold" not in lines, "threshold 0 is off: no line is drawn for it"
    gate = {line.get_label(): line for line in figures["Acceptance length, gate and baseline"].axes[0].lines}["gate"]
    assert list(gate.get_ydata()) == [r.acceptance_gate for r in oldest_first]
    labels = [t.get_text() for t in figures["Generation speed"].axes[0].get_xticklabels()]
    assert labels[0].split("\n")[1] == oldest_first[0].commit[:7]
    page = (site / "cases" / "tiny-qwen3_5-cpu.html").read_text()
    assert page.count('src="data:image/svg+xml;base64,') == 4
    assert page.index("wb-verdict") < page.index("<h1>")


def test_two_cases_of_one_params_name_are_separate_variants(results_dir) -> None:
    runs, _ = discover([results_dir])
    other = {r.variant for r in runs if r.case == "tiny-other" and r.kind == "correctness"}
    assert other == {"mtp k=1", "mtp k=3"}
    figure = dict(history_figures([r for r in runs if r.case == "tiny-other"]))["Acceptance length, gate and baseline"]
    labels = {line.get_label() for line in figure.axes[0].lines}
    assert labels >= {"mtp k=1: acceptance length", "mtp k=3: acceptance length"}
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert legend == ["mtp k=1", "mtp k=3", "acceptance length", "gate"], "variants, then series: not their product"


def test_injected_runs_are_listed_but_not_charted(results_dir) -> None:
    runs, _ = discover([results_dir])
    case = [r for r in runs if r.case == "tiny-qwen3_5-cpu" and r.variant == "mtp k=1"]
    control = case[0].model_copy(update={"injected": "drop_bonus_token", "speculative_accuracy": 0.987})
    figure = dict(history_figures([control, *case[1:]]))["Accuracy (primary scorer) and threshold"]
    plotted = [y for line in figure.axes[0].lines for y in line.get_ydata()]
    assert 0.987 not in plotted and len(figure.axes[0].get_xticks()) == len(case) - 1


def test_consecutive_runs_are_compared_with_the_paired_test(site, results_dir) -> None:
    manifest = json.loads((site / "site.json").read_text())
    case = next(c for c in manifest["cases"] if c["name"] == "tiny-qwen3_5-cpu")
    first, second = (f"results/tiny-qwen3_5-cpu-2026112{d}-090000" for d in (0, 1))
    link = next(link for link in case["comparisons"] if (link["a"], link["b"]) == (first, second))
    assert f'href="../{link["page"]}"' in (site / case["page"]).read_text()
    page = (site / link["page"]).read_text()
    a = pd.read_csv(results_dir / first.split("/", 1)[1] / "questions.csv")
    b = pd.read_csv(results_dir / second.split("/", 1)[1] / "questions.csv")
    differ = a["question_id"][a["speculative_correct_upstream"] != b["speculative_correct_upstream"]].tolist()
    assert differ, "the fixture flips two speculative answers"
    table = page[page.index('data-engine="speculative"'):]
    assert re.findall(r'<tr data-question="(\d+)">', table) == [str(q) for q in differ]
    only_a = int((a["speculative_correct_upstream"] & ~b["speculative_correct_upstream"]).sum())
    only_b = int((~a["speculative_correct_upstream"] & b["speculative_correct_upstream"]).sum())
    pvalue = binomtest(min(only_a, only_b), only_a + only_b, 0.5).pvalue
    assert f"only A {only_a}, only B {only_b}" in page and f"p = {number(min(1.0, pvalue))}" in page
    left, right = (load_summary(results_dir / run.split("/", 1)[1]).speculative.accuracy["upstream"]
                   for run in (first, second))
    row = re.search(r"<td>speculative\.accuracy\.upstream</td>(.*?)</tr>", page, re.S).group(1)
    cells = [unescape(c) for c in re.findall(r">([^<]*)</td>", row)]
    assert cells == [number(left), number(right), signed(right - left)]
    assert "acceptance_length" in page and "min_acceptance_length" in page  # both checks; the params that differ


def test_compare_command_writes_a_page_into_dir(results_dir, tmp_path) -> None:
    a = results_dir / "tiny-qwen3_5-cpu-20261120-090000"
    b = results_dir / "other" / "tiny-other-20261121-120000"
    assert site_main(["--compare", str(a), str(b), "--out", str(tmp_path / "cmp")]) == 0
    page = next((tmp_path / "cmp").glob("compare-*.html"))
    html = page.read_text()
    assert HOSTILE not in html and "&lt;img src=x onerror=alert(1)&gt;" in html  # the params diff, escaped
    for href in re.findall(r'class="report" href="([^"]+)"', html):
        assert (page.parent / href).resolve().is_file()
    assert site_main(["--compare", str(a), str(tmp_path), "--out", str(tmp_path / "cmp")]) == 2


def test_rerunning_on_a_grown_folder_updates_the_site(results_dir, tmp_path) -> None:
    results = tmp_path / "results"
    shutil.copytree(results_dir / "other", results / "other")
    out = results / "site"  # inside the results folder: never taken for runs
    first = build_site([results], out)
    assert len(first.runs) == len(run_folders(results / "other"))
    newest = results / "other" / "tiny-other-20261126-120000"
    shutil.copytree(results / "other" / "tiny-other-20261121-120000", newest)
    finish(newest, "2026-11-26T12:00:00", 95.0)
    second = build_site([results], out)
    listed = rows((out / "index.html").read_text())
    assert len(listed) == len(first.runs) + 1 and listed[0][0] == "results/other/tiny-other-20261126-120000"
    assert (out / "runs" / "results" / "other" / newest.name / "report.html").is_file()
    assert len(second.comparisons) == len(first.comparisons) + 1  # it follows the k=1 run before it
    shutil.rmtree(newest)
    build_site([results], out)
    assert not (out / "runs" / "results" / "other" / newest.name).exists(), "a run that is gone leaves the site"


def test_bad_input_exits_2(tmp_path, capsys) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("someone else's folder")
    assert site_main([str(tmp_path / "nowhere"), "--out", str(tmp_path / "s")]) == 2
    assert site_main([str(tmp_path), "--out", str(tmp_path / "mine")]) == 2
    assert "not a workbench site" in capsys.readouterr().err
    assert (tmp_path / "mine" / "notes.txt").is_file()


def test_benchmark_json_is_github_action_benchmarks_bigger_is_better_format(finished_run, tmp_path) -> None:
    summary = load_summary(finished_run)
    path = tmp_path / "bench" / "run.json"
    benchmark_on_finished(path)(finished_run, 0)
    entries = json.loads(path.read_text())
    assert isinstance(entries, list) and entries
    assert all(set(e) <= {"name", "unit", "value", "range", "extra"} and isinstance(e["value"], float) for e in entries)
    by_name = {e["name"].split(": ", 1)[1]: e for e in entries}
    prefix = f"{summary.case} (mtp k={summary.params.num_speculative_tokens})"
    assert all(e["name"].startswith(prefix + ": ") for e in entries)
    assert by_name["acceptance length"]["value"] == summary.speculative.acceptance_length
    assert by_name["output match"]["value"] == summary.output_match.share
    scorer = summary.primary_scorer
    assert by_name[f"speculative accuracy ({scorer})"]["value"] == summary.speculative.accuracy[scorer]
    assert by_name[f"speculative accuracy ({scorer})"]["range"].startswith("± ")
    assert by_name["speculative output tokens/s"]["value"] == summary.speculative.timings.output_tokens_per_s
    assert not any("wall" in n or "start" in n for n in by_name), f"{TOOL}: smaller-is-better numbers stay out"
    assert finished_run.name in by_name["acceptance length"]["extra"]


def test_benchmark_json_of_a_lane_names_each_case(results_dir) -> None:
    lane = load_lane_summary(next(p.parent for p in results_dir.rglob("lane.json")))
    entries = lane_entries(lane)
    assert entries and {e.name.split(": ")[0] for e in entries} == {c.name for c in lane.cases}
    assert run_entries(results_dir / "other" / "tiny-other-20261125-120000") == []  # an error: no numbers


def test_benchmark_json_refuses_a_folder_before_anything_starts(tmp_path) -> None:
    from workbench.cli import main

    assert main(["run", str(TINY_PARAMS), "--benchmark-json", str(tmp_path), "--out", str(tmp_path / "run")]) == 2
    assert not (tmp_path / "run").exists()
    from workbench.lane.cli import main as lane_main

    lane = str(REPO / "lanes" / "tiny-cpu.yaml")
    assert lane_main([lane, "--benchmark-json", str(tmp_path), "--out", str(tmp_path / "l")]) == 2

