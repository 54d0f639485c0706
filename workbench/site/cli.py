"""`workbench site RESULTS_DIR... --out SITE_DIR`: a static site of every run found under the results folders
(index.html, a page per case with its history, comparisons of consecutive runs, each run's report).
`workbench site --compare RUN_A RUN_B --out DIR`: one comparison page of two runs, written into DIR.

The pages open from disk or any static host and load nothing from the network. Running the command again on a
grown results folder rewrites the site. Exit codes: 0 written, 2 bad input (a folder that is not there, a run
folder without summary.json, an --out that is someone else's folder).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from workbench.core.errors import BadInputError, ExitCode, WorkbenchError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="workbench site", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="*", type=Path, metavar="RESULTS_DIR",
                   help="folders searched (recursively) for run, lane, sweep and controls folders")
    p.add_argument("--compare", nargs=2, type=Path, metavar=("RUN_A", "RUN_B"), default=None,
                   help="write one comparison page of two run folders instead of a site")
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="the site's folder (or, with --compare, where the comparison page goes)")
    return p


def compare_page(run_a: Path, run_b: Path, out: Path) -> Path:
    """The comparison page of two run folders in `out`, linking to their reports where they are."""
    from workbench.site.build import slug
    from workbench.site.compare import compare, write_comparison

    for run in (run_a, run_b):
        if not (run / "summary.json").is_file():
            raise BadInputError(f"--compare {run}: no summary.json (not a run folder)", path=run, key="--compare")
    out.mkdir(parents=True, exist_ok=True)
    links = [os.path.relpath(run / "report.html", out) if (run / "report.html").is_file() else None
             for run in (run_a, run_b)]
    comparison = compare(run_a, run_b, *links)
    name = f"compare-{slug(run_a.resolve().name)}-vs-{slug(run_b.resolve().name)}.html"
    return write_comparison(comparison, out / name)


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        if args.compare is not None:
            if args.results:
                raise BadInputError("give either RESULTS_DIR... or --compare RUN_A RUN_B, not both", key="--compare")
            print(f"[site] comparison: {compare_page(*args.compare, args.out)}", flush=True)
            return int(ExitCode.OK)
        if not args.results:
            raise BadInputError("no RESULTS_DIR given (or --compare RUN_A RUN_B)", key="RESULTS_DIR")
        missing = [r for r in args.results if not r.is_dir()]
        if missing:
            raise BadInputError(f"{missing[0]}: not a folder", path=missing[0], key="RESULTS_DIR")
        from workbench.site.build import build_site

        build = build_site(args.results, args.out)
        for problem in build.problems:
            print(f"[site] left out: {problem}", file=sys.stderr, flush=True)
        print(f"[site] {len(build.runs)} runs, {len(build.cases)} cases, {len(build.comparisons)} comparisons: "
              f"{Path(build.out) / 'index.html'}", flush=True)
        return int(ExitCode.OK)
    except WorkbenchError as exc:
        print(f"workbench site: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
