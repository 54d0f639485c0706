"""`workbench lane LANE.yaml [--out DIR] [-p KEY VALUE]... [--junit-xml PATH] [--reuse-reference | --no-reuse]
[--baseline FILE] [--max-parallel N]`.

Runs every case of the lane (one `workbench run` each, side by side), one reference engine per
reference key. Exit: the worst of the cases (3 over 1 over 0); 2: bad input, before any engine
starts; 4: cancelled. The lane folder holds one run folder per case, lane.json and report.html.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from workbench.core.errors import ExitCode, WorkbenchError
from workbench.ci import CaseResult, check_junit_path, publish
from workbench.core.params import parse_override


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="workbench lane", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("lane", type=Path, help="lane YAML file (e.g. lanes/tiny-cpu.yaml)")
    p.add_argument("--out", type=Path, default=None, help="lane folder (default results/<lane>-<timestamp>/)")
    p.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"),
                   help="override one params key of every case (value read as YAML); repeatable")
    p.add_argument("--junit-xml", type=Path, default=None, help="write a JUnit XML file: a testsuite per case, "
                                                                "a testcase per check")
    reuse = p.add_mutually_exclusive_group()
    reuse.add_argument("--reuse-reference", dest="reuse", action="store_true", default=True,
                       help="reuse a cached reference with the same key (the default in a lane)")
    reuse.add_argument("--no-reuse", dest="reuse", action="store_false",
                       help="compute the reference afresh (still once per key within the lane)")
    p.add_argument("--baseline", type=Path, default=None, help="compare every case with this baseline file "
                                                               "(same as -p baseline FILE)")
    p.add_argument("--max-parallel", type=int, default=None, help="cases run at once (default: the lane file's "
                                                                  "max_parallel_cases)")
    p.add_argument("--cache-dir", type=str, metavar="DIR", default=None,
                   help="the compile caches' folder of every case's engines (same as -p cache_dir DIR)")
    p.add_argument("--force", action="store_true", help="clear --out first when it already holds a lane")
    p.add_argument("--benchmark-json", type=Path, metavar="FILE", default=None,
                   help="write every case's headline numbers in github-action-benchmark's customBiggerIsBetter "
                        "format")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        from workbench.core.rundir import claim_run_folder
        from workbench.correctness.preflight import preflight
        from workbench.core.params import load_params
        from workbench.lane.report import write_report
        from workbench.lane.runner import run_lane
        from workbench.lane.spec import load_lane

        overrides = dict(parse_override(k, v) for k, v in (args.param or []))
        if args.baseline is not None:
            overrides["baseline"] = str(args.baseline.resolve())
        if args.cache_dir is not None:
            overrides["cache_dir"] = str(Path(args.cache_dir).expanduser().resolve())
        spec, cases = load_lane(args.lane, overrides)
        for case in cases:  # every case's bad input refused before any engine of the lane starts
            preflight(load_params(case.params_file, case.overrides), case.params_file)
        check_junit_path(args.junit_xml)
        from workbench.site.benchmark import check_benchmark_path, lane_entries, write_benchmark_json

        check_benchmark_path(args.benchmark_json)
        out, lock = claim_run_folder(args.out, args.lane, args.force)
        try:
            print(f"[lane] {args.lane} -> {out}", flush=True)
            summary = run_lane(args.lane, spec.description, cases, out, reuse=args.reuse,
                               max_parallel=args.max_parallel or spec.max_parallel_cases,
                               echo=lambda line: print(line, flush=True))
            report = write_report(summary, out)
            _publish(summary, args.junit_xml)
            if args.benchmark_json is not None:
                write_benchmark_json(args.benchmark_json, lane_entries(summary))
        finally:
            lock.release()
        print(f"[lane] lane.json: {out / 'lane.json'}", flush=True)
        print(f"[lane] report: {report}", flush=True)
        verdict = {0: "PASSED", 1: "FAILED", 4: "CANCELLED"}.get(summary.exit_code, "ERROR")
        failing = [c.name for c in summary.cases if not c.passed]
        print(f"[lane] {verdict}: {len(summary.cases) - len(failing)}/{len(summary.cases)} cases passed"
              + (f"; not passed: {', '.join(failing)}" if failing else "")
              + f"; reference engines started: {summary.reference_runs}", flush=True)
        return summary.exit_code
    except WorkbenchError as exc:
        print(f"workbench lane: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print("workbench lane: cancelled", file=sys.stderr)
        return int(ExitCode.CANCELLED)


def _publish(summary, junit_xml: Path | None) -> None:
    """JUnit, the GitHub step summary and Buildkite annotations for every case of the lane."""
    publish([CaseResult.from_run(c.name, Path(c.run_dir), c.exit_code, duration_s=c.wall_s) for c in summary.cases],
            junit_xml)
