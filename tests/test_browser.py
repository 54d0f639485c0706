"""The site and the reports in a real browser (issue 17): headless Chromium opens index.html, a case page, a
comparison and reports from disk; no request leaves the file system, no console error occurs, the rows and links
match the runs, filters and sorting work, and each report's first visible text is its verdict. Screenshots are
saved under the test's tmp folder for a person to look at.

Skipped, never passed, where no Chromium exists (`make test` installs Debian's `chromium` where it can).
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from cdp import Browser, find_chromium
from recorded_results import results_dir  # noqa: F401  (fixture)
from workbench.site.build import build_site

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (make test installs Debian's "
                                                          "chromium where apt-get can; or set WORKBENCH_CHROMIUM)")

FIRST_TEXT = "document.body.innerText.trim().split('\\n')[0]"
VISIBLE_ROWS = "Array.from(document.querySelectorAll('#runs tbody tr')).filter(r => !r.hidden).map(r => r.dataset.run)"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium = Browser(CHROMIUM, tmp_path_factory.mktemp("chromium-profile"))
    yield chromium
    chromium.close()


@pytest.fixture(scope="module")
def site(results_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("browser-site") / "site"
    return out, build_site([results_dir], out)


def offline(page) -> None:
    """Nothing but the file system (and data: URIs, the embedded charts) was asked for; nothing went wrong."""
    assert not page.leaving, f"{page.url} requested {page.leaving}"
    assert not page.errors, f"{page.url}: {page.errors}"


def test_index_case_comparison_and_reports_open_offline(browser, site, tmp_path) -> None:
    out, build = site
    shots = tmp_path / "screenshots"
    page = browser.page()

    page.open((out / "index.html").as_uri())
    offline(page)
    page.screenshot(shots / "index.png")
    listed = page.evaluate("Array.from(document.querySelectorAll('#runs tbody tr')).map(r => r.dataset.run)")
    assert listed == [r.id for r in build.runs]
    hrefs = page.evaluate("Array.from(document.querySelectorAll('#runs a.run')).map(a => a.href)")
    assert [unquote(urlparse(h).path) for h in hrefs] == [str(out / r.report) for r in build.runs]
    assert all(Path(unquote(urlparse(h).path)).is_file() for h in hrefs)

    # filters: by verdict, by case, then both cleared
    failed = [r.id for r in build.runs if r.verdict == "FAILED"]
    assert failed
    page.evaluate("const v = document.getElementById('filter-verdict'); v.value = 'FAILED'; "
                  "v.dispatchEvent(new Event('change'))")
    assert page.evaluate(VISIBLE_ROWS) == failed
    page.evaluate("const v2 = document.getElementById('filter-verdict'); v2.value = ''; "
                  "v2.dispatchEvent(new Event('change')); const c = document.getElementById('filter-case'); "
                  "c.value = 'tiny-other'; c.dispatchEvent(new Event('change'))")
    assert page.evaluate(VISIBLE_ROWS) == [r.id for r in build.runs if r.case == "tiny-other"]
    page.screenshot(shots / "index-filtered.png")
    # sorting: a click on "date" puts the oldest first
    page.evaluate("Array.from(document.querySelectorAll('#runs th')).find(th => th.textContent === 'date').click()")
    oldest = min(build.runs, key=lambda r: (r.started_at, r.id))
    assert page.evaluate("document.querySelector('#runs tbody tr').dataset.run") == oldest.id

    case = next(c for c in build.cases if c.name == "tiny-qwen3_5-cpu")
    page.open((out / case.page).as_uri())
    offline(page)
    page.screenshot(shots / "case.png")
    assert page.evaluate("document.querySelectorAll('.wb-charts img').length") == 4
    assert page.evaluate("Array.from(document.querySelectorAll('.wb-charts img')).every(i => i.naturalWidth > 0)")
    links = page.evaluate("Array.from(document.querySelectorAll('a.compare')).map(a => a.href)")
    assert {unquote(urlparse(h).path) for h in links} == {str(out / c.page) for c in case.comparisons}

    flipped = next(c for c in case.comparisons if c.b.endswith("tiny-qwen3_5-cpu-20261121-090000"))  # two answers flip
    page.open((out / flipped.page).as_uri())
    offline(page)
    page.screenshot(shots / "comparison.png")
    assert page.evaluate(FIRST_TEXT).startswith("A ")
    assert page.evaluate("document.querySelectorAll('table.questions tbody tr').length") > 0

    for run in build.runs:
        page.open((out / run.report).as_uri())
        offline(page)
        page.screenshot(shots / f"report-{run.id.replace('/', '_')}.png")
        assert page.evaluate(FIRST_TEXT).startswith(run.verdict), run.id
    print(f"screenshots: {shots}")
    manifest = json.loads((out / "site.json").read_text())
    assert len(manifest["runs"]) == len(build.runs)
