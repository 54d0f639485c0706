"""An N-cell sweep against the same N configs run the upstream way, side by side in one run.

    .venv/bin/python benchmarks/sweep.py [PARAMS] [--vary KEY V1,V2,...]... [-p KEY VALUE]...
                                         [--executor local|ray] [--ray-address ADDR]

1. Upstream's way: for each cell, its reference engine, then its speculative engine, one after the
   other, each generating both prompt sets (GSM8k and the output-match prompts), no notebook, no
   report, every engine on all cores (no binding), no control pass: 2N engines.
2. `workbench sweep` over the same cells with a cold reference cache (the sweep's own): one reference
   engine per reference key (N + 1 engines when the cells share one), every cell's notebook and report,
   sweep.json and the sweep report.

Prints both walls, the ratio sweep / upstream and its target (N + 1) / (2N) (the share of engines the
sweep still starts), then one JSON line. Timings hold for the machine it runs on: compare ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lane import REPO, UPSTREAM_WAY, workbench  # noqa: E402  (the lane benchmark's upstream settings and runner)

from workbench.core.params import parse_override  # noqa: E402
from workbench.correctness import pipeline  # noqa: E402
from workbench.sweep.spec import build_cells, parse_vary  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("params", nargs="?", type=Path, default=REPO / "params" / "tiny-qwen3_5-cpu.yaml")
    parser.add_argument("--vary", nargs=2, action="append", metavar=("KEY", "V1,V2,..."), default=[])
    parser.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"), default=[])
    parser.add_argument("--executor", choices=("local", "ray"), default="local")
    parser.add_argument("--ray-address", default=None)
    args = parser.parse_args(argv)
    vary = parse_vary(args.vary or [("num_speculative_tokens", "1,2")])
    cells = build_cells(args.params.resolve(), vary, dict(parse_override(k, v) for k, v in args.param))
    sweep_args = [a for key, values in vary.items() for a in ("--vary", key, ",".join(json.dumps(v) for v in values))]
    sweep_args += [a for k, v in args.param for a in ("-p", k, v)] + ["--executor", args.executor]
    sweep_args += ["--ray-address", args.ray_address] if args.ray_address else []
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        for cell in cells:  # upstream's way: every config its own reference and speculative engine
            ctx = pipeline.prepare(cell.params_file, {**cell.overrides, **UPSTREAM_WAY}, root / "upstream" / cell.name)
            for label in pipeline.RUN_LABELS:
                pipeline.run_engine(ctx, label)
        upstream = time.perf_counter() - started
        sweep = workbench("sweep", str(args.params), *sweep_args, "--out", str(root / "sweep"))
        written = json.loads((root / "sweep" / "sweep.json").read_text())
    n = len(cells)
    result = {"params": str(args.params), "cells": n, "executor": args.executor,
              "reference_runs": written["reference_runs"], "exit_code": written["exit_code"],
              "upstream_way_s": round(upstream, 1), "sweep_s": round(sweep, 1), "ratio": round(sweep / upstream, 3),
              "target": round((n + 1) / (2 * n), 3)}
    print(f"{args.params.name} x {n} cells: upstream way {upstream:.1f} s ({2 * n} engines, one after the other); "
          f"workbench sweep {sweep:.1f} s ({result['reference_runs']} reference engine(s), executor {args.executor}); "
          f"ratio {result['ratio']:.3f} (target <= (N+1)/(2N) = {result['target']:.3f})")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
