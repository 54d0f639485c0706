"""`workbench baseline record RUN_DIR [--to FILE] [--force] [--allow-failed]`.

Records a finished correctness run's acceptance length, per-position acceptance, accuracy per scorer
(with its question count) and output match as a baseline file, with the hardware, vLLM version and model
hash it was measured with. Later runs are held to it with `workbench run PARAMS --baseline FILE` or the
params key `baseline`. Default FILE: baselines/<case>-<hardware>.json in the current folder.

Exit 0: written. 2: refused (a run folder that did not finish, is not a correctness run, failed its checks
without --allow-failed, or a FILE that exists without --force), naming the file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from workbench.core.errors import WorkbenchError


def parser() -> argparse.ArgumentParser:
    """`workbench baseline`'s own arguments (the top-level command delegates to this module)."""
    command = argparse.ArgumentParser(prog="workbench baseline", description=__doc__,
                                      formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = command.add_subparsers(dest="action", required=True)
    record = sub.add_parser("record", help="record a finished correctness run as a baseline")
    record.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a finished `workbench run` folder")
    record.add_argument("--to", type=Path, default=None, metavar="FILE",
                        help="baseline file (default baselines/<case>-<hardware>.json)")
    record.add_argument("--force", action="store_true", help="replace FILE when it exists")
    record.add_argument("--allow-failed", action="store_true", help="record a run whose checks failed")
    return command


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    from workbench.baseline.store import default_baseline_path, record_baseline, write_baseline

    try:
        baseline = record_baseline(args.run_dir, allow_failed=args.allow_failed)
        written = write_baseline(baseline, args.to or default_baseline_path(baseline), force=args.force)
    except WorkbenchError as exc:
        print(f"workbench: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    scorer = baseline.accuracy[baseline.primary_scorer]
    per_position = " / ".join(f"{rate:.4f}" for rate in baseline.acceptance_rate_per_position)
    match = baseline.output_match
    matched = "" if match is None else f", output match {match.matched}/{match.total}" + (
        f" (control {match.control.matched}/{match.control.total})" if match.control else "")
    print(f"[workbench] baseline: {written.resolve()}\n[workbench] {baseline.case}: {baseline.method} "
          f"k={baseline.num_speculative_tokens}, acceptance length {baseline.acceptance_length:.4f} (per position "
          f"{per_position}), accuracy ({baseline.primary_scorer}) {scorer.accuracy:.4f} on {scorer.questions} "
          f"questions{matched}; {baseline.hardware.device} {baseline.hardware.label}, vLLM {baseline.vllm}, "
          f"model {baseline.model_hash}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
