"""Writing the site: index.html (every run, newest first), a page per case (its history and runs), a comparison
page per pair of consecutive runs of a case, and each run's own report copied under runs/ (its folder tree kept,
so that a lane's or controls' links to its runs still work). Running it again on a grown results folder rewrites
the site from what is there now."""

from __future__ import annotations

import re
import shutil
from datetime import datetime, timezone
from itertools import pairwise
from pathlib import Path

from pydantic import BaseModel, Field

from workbench.core.errors import BadInputError
from workbench.core.pages import render
from workbench.site.compare import compare, write_comparison
from workbench.site.history import history_charts
from workbench.site.runs import SITE_MARK, SiteRun, discover

OWNED = ("runs", "cases", "compare")
"""The site's own subfolders: cleared and rewritten on every build."""
NO_CASE = "(no case)"


class ComparisonLink(BaseModel):
    a: str = Field(description="id of the older run")
    b: str = Field(description="id of the newer run")
    page: str = Field(description="the comparison page, relative to the site's root")


class CasePage(BaseModel):
    name: str
    page: str = Field(description="relative to the site's root")
    runs: list[str] = Field(default_factory=list, description="run ids, newest first")
    comparisons: list[ComparisonLink] = Field(default_factory=list)


class SiteBuild(BaseModel):
    """What a build wrote (also `site.json` in the site): the runs, the case pages, the comparisons."""

    out: str
    generated_at: str
    roots: list[str]
    runs: list[SiteRun]
    cases: list[CasePage]
    problems: list[str] = Field(default_factory=list, description="folders whose records could not be read")

    @property
    def comparisons(self) -> list[ComparisonLink]:
        return [link for case in self.cases for link in case.comparisons]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "_"


def case_of(run: SiteRun) -> str:
    return run.case or NO_CASE


def _prepare(out: Path) -> None:
    """A new folder, or a site written before (its own subfolders cleared); never someone else's folder."""
    if out.exists() and not out.is_dir():
        raise BadInputError(f"--out {out}: exists and is not a folder", path=out, key="--out")
    if out.is_dir() and any(out.iterdir()) and not (out / SITE_MARK).exists():
        raise BadInputError(f"--out {out}: holds files and is not a workbench site; choose an empty or new folder",
                            path=out, key="--out")
    out.mkdir(parents=True, exist_ok=True)
    for name in OWNED:
        shutil.rmtree(out / name, ignore_errors=True)
    (out / SITE_MARK).write_text("written by `workbench site`; its runs/, cases/ and compare/ are rewritten\n",
                                 encoding="utf-8")


def _copy_reports(runs: list[SiteRun], out: Path) -> None:
    for run in runs:
        target = out / "runs" / run.id
        target.mkdir(parents=True, exist_ok=True)
        for name in filter(None, (run.report_name, "summary.json")):
            if (Path(run.source) / name).is_file():
                shutil.copy2(Path(run.source) / name, target / name)


def comparable(run: SiteRun) -> bool:
    """A finished correctness run: it has numbers to compare."""
    return run.kind == "correctness" and run.speculative_accuracy is not None


def _comparisons(runs: list[SiteRun], out: Path, case_page: str) -> list[ComparisonLink]:
    """Each run compared with the one before it of the same variant (method and draft length)."""
    links = []
    oldest_first = sorted((r for r in runs if comparable(r)), key=lambda r: (r.started_at or "", r.id))
    for name in dict.fromkeys(r.variant for r in oldest_first):
        members = [r for r in oldest_first if r.variant == name]
        for older, newer in pairwise(members):
            page = f"compare/{slug(older.id)}__{slug(newer.id)}.html"
            comparison = compare(Path(older.source), Path(newer.source),
                                 f"../{older.report}" if older.report else None,
                                 f"../{newer.report}" if newer.report else None)
            write_comparison(comparison, out / page, index="../index.html", case_page=f"../{case_page}")
            links.append(ComparisonLink(a=older.id, b=newer.id, page=page))
    return links


def build_site(roots: list[Path], out: Path) -> SiteBuild:
    """Write the site for every run under `roots` into `out`; the build's record is returned and kept as site.json."""
    out = out.resolve()
    _prepare(out)
    runs, problems = discover(roots, exclude=out)
    _copy_reports(runs, out)
    (out / "cases").mkdir(exist_ok=True)
    names = sorted({case_of(r) for r in runs})
    cases = []
    for name in names:
        members = [r for r in runs if case_of(r) == name]
        page = f"cases/{slug(name)}.html"
        links = _comparisons(members, out, page)
        cases.append(CasePage(name=name, page=page, runs=[r.id for r in members], comparisons=links))
        previous = {link.b: link for link in links}
        (out / page).write_text(render("case.html.j2", case=name, runs=members, charts=history_charts(members),
                                       comparisons=links, previous=previous, root="../", case_of=case_of,
                                       by_id={r.id: r for r in members}), encoding="utf-8")
    build = SiteBuild(out=str(out), generated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                      roots=[str(r) for r in roots], runs=runs, cases=cases, problems=problems)
    pages = {c.name: c.page for c in cases}
    (out / "index.html").write_text(render("index.html.j2", build=build, case_pages=pages, case_of=case_of,
                                           verdicts=sorted({r.verdict for r in runs}), root=""), encoding="utf-8")
    (out / "site.json").write_text(build.model_dump_json(indent=2), encoding="utf-8")
    return build
