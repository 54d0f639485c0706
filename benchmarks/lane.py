"""A lane against the same cases run the upstream way, side by side in one process tree, and the workbench's
own overhead on top of its engines.

    .venv/bin/python benchmarks/lane.py [LANE.yaml] [-p KEY VALUE]... [--skip-overhead]

1. Upstream's way: for each case of the lane, its reference engine, then its speculative engine, one
   after the other, each generating both prompt sets (GSM8k and the output-match prompts), no
   notebook, no report, every engine on all cores (no binding), no control pass.
2. `workbench lane LANE --no-reuse` (a cold reference cache): one reference engine for the cases that
   share a key, every case's notebook, report, lane.json and lane report.
3. Overhead: one default `workbench run` of the lane's first case; its wall time minus the time its
   engines ran (the longer child, as they run side by side) is the kernel, the notebook's stages and the
   report.

Prints both walls and the ratio lane / upstream (target <= 0.6 for a two-case lane) and the overhead
share (target <= 5 %), then one JSON line. Timings hold for the machine it runs on: compare ratios.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from workbench.core.params import parse_override
from workbench.correctness import pipeline
from workbench.lane.spec import load_lane
from workbench.records import load_engine_record, load_summary

REPO = Path(__file__).resolve().parent.parent
UPSTREAM_WAY = {"engine_cpu_binding": None, "output_match_control": False, "store_reference": False,
                "engine_in_process": False}  # upstream builds `LLM` as is: vLLM spawns its engine-core process


def upstream_way(lane: Path, overrides: dict, root: Path) -> float:
    """Every case: reference engine, then speculative engine, each on the whole machine."""
    _, cases = load_lane(lane, overrides)
    started = time.perf_counter()
    for case in cases:
        ctx = pipeline.prepare(case.params_file, {**case.overrides, **UPSTREAM_WAY}, root / case.name)
        for label in pipeline.RUN_LABELS:
            pipeline.run_engine(ctx, label)
    return time.perf_counter() - started


def workbench(*args: str) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "workbench.cli", *args], cwd=REPO, capture_output=True, text=True)
    if done.returncode not in (0, 1):
        raise SystemExit(f"workbench {' '.join(args)} exited {done.returncode}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return time.perf_counter() - started


def engine_seconds(run_dir: Path) -> float:
    """How long the run's engines ran: the longer child (they run side by side), or their sum one after the other."""
    walls = [load_engine_record(run_dir / "records" / f"{label}.json").wall_s or 0.0 for label in pipeline.RUN_LABELS]
    parallel = load_summary(run_dir).params.parallel_engines
    return max(walls) if parallel else sum(walls)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("lane", nargs="?", type=Path, default=REPO / "lanes" / "tiny-cpu.yaml")
    parser.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"), default=[])
    parser.add_argument("--skip-overhead", action="store_true", help="skip the default run that measures overhead")
    args = parser.parse_args(argv)
    overrides = dict(parse_override(k, v) for k, v in args.param)
    p_args = [a for k, v in args.param for a in ("-p", k, v)]
    with tempfile.TemporaryDirectory(prefix="bench-lane-") as tmp:
        root = Path(tmp)
        upstream = upstream_way(args.lane, overrides, root / "upstream")
        lane = workbench("lane", str(args.lane), "--no-reuse", "--out", str(root / "lane"), *p_args)
        lane_summary = json.loads((root / "lane" / "lane.json").read_text())
        result = {"lane": str(args.lane), "cases": len(lane_summary["cases"]),
                  "reference_runs": lane_summary["reference_runs"], "upstream_way_s": round(upstream, 1),
                  "lane_s": round(lane, 1), "ratio": round(lane / upstream, 3)}
        print(f"{args.lane.name}: {result['cases']} cases; upstream way {upstream:.1f} s "
              f"({2 * result['cases']} engines, one after the other); workbench lane {lane:.1f} s "
              f"({result['reference_runs']} reference engine(s)); ratio {result['ratio']:.3f} (target <= 0.6)")
        if not args.skip_overhead:
            _, cases = load_lane(args.lane, overrides)
            first = cases[0]
            run_dir = root / "default-run"
            p_case = [a for k, v in first.overrides.items() for a in ("-p", k, json.dumps(v))]
            wall = workbench("run", str(first.params_file), "--out", str(run_dir), "--no-reuse", *p_case)
            engines = engine_seconds(run_dir)
            result.update(default_run_s=round(wall, 1), default_run_engines_s=round(engines, 1),
                          overhead_share=round((wall - engines) / wall, 4))
            print(f"default run of {first.name}: {wall:.1f} s, engines {engines:.1f} s, workbench overhead "
                  f"{wall - engines:.1f} s = {100 * (wall - engines) / wall:.1f} % (target <= 5 %)")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
