"""Side-by-side speed of the reference and speculative engines of one case, measured in one run.

    .venv/bin/python benchmarks/speed.py [PARAMS.yaml] [-p KEY VALUE]... [--out DIR]

Prints engine start, generation time, output tokens/s of both runs and their ratios
(speculative / reference), plus the wall time of the whole comparison; writes nothing
but the run folder. Timings are for the machine it runs on: compare ratios, not seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from workbench.correctness import pipeline
from workbench.correctness.metrics import acceptance_stats
from workbench.core.params import DEFAULT_PARAMS, parse_override
from workbench.core.rundir import new_run_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("params", nargs="?", type=Path, default=DEFAULT_PARAMS)
    parser.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"), default=[])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    overrides = dict(parse_override(k, v) for k, v in args.param)
    started = time.perf_counter()
    ctx = pipeline.prepare(args.params, overrides, args.out or new_run_dir(args.params))
    records = {label: pipeline.run_engine(ctx, label) for label in pipeline.RUN_LABELS}
    wall = time.perf_counter() - started
    ref, spec = records["reference"], records["speculative"]
    accept = acceptance_stats(spec["spec_counters"])
    rows = [("engine start (s)", "init_s"), ("GSM8k generation (s)", "generate_s"),
            ("output tokens", "output_tokens"), ("output tokens/s", "output_tokens_per_s"),
            ("child process wall (s)", "wall_s")]
    print(f"case {args.params.name}: {len(ctx.questions)} GSM8k questions, "
          f"{ctx.params.speculative_config()}, run folder {ctx.run_dir}")
    print(f"{'':24}{'reference':>12}{'speculative':>13}{'spec/ref':>10}")
    for name, key in rows:
        r, s = ref[key], spec[key]
        print(f"{name:24}{r:12.2f}{s:13.2f}{s / r:10.3f}")
    print(f"acceptance rate {accept['acceptance_rate']:.4f}, acceptance length {accept['acceptance_length']:.4f}")
    print(f"whole comparison wall time: {wall:.1f} s ({wall / 60:.2f} min)")
    print(json.dumps({"wall_s": wall, "speedup_tokens_per_s": spec["output_tokens_per_s"] / ref["output_tokens_per_s"],
                      "acceptance_length": accept["acceptance_length"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
