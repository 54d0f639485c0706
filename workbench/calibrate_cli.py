"""`workbench calibrate`: choose and defend the GSM8k threshold (issue 4).

From finished run folders:
    workbench calibrate RUN_DIR... [--write params/X.yaml] [--scorer upstream]
                        [--max-false-failure 1e-3] [--threshold T] [--out DIR]
What-if, from bare numbers (no run needed):
    workbench calibrate --accuracy 0.348 --questions 1319 [--threshold 0.20] [--max-false-failure 1e-3]

Prints the calibration JSON (recommended_threshold, false_failure_probability, detectable_drop, ...).
Exit codes: 0 done, 2 bad input (nothing written).
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from workbench.calibration import CalibrationError, calibrate, calibrate_from_runs, to_json, write_threshold
from workbench.params import REPO_ROOT

EXIT_OK, EXIT_BAD_INPUT = 0, 2


def default_out_dir() -> Path:
    return REPO_ROOT / "results" / f"calibration-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def run_calibration(run_dirs: list[Path], out_dir: Path, scorer: str = "upstream", max_false_failure: float = 1e-3,
                    threshold: float | None = None) -> dict[str, Any]:
    """Calibrate from run folders and write `calibration.json` into out_dir.

    The single place where the RUN_DIR form produces its output folder: executing
    notebooks/calibrate_threshold.ipynb with papermill (and report.html) slots in here.
    """
    result = calibrate_from_runs(run_dirs, scorer, max_false_failure, threshold)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "calibration.json").write_text(to_json(result), encoding="utf-8")
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench calibrate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="*", type=Path, metavar="RUN_DIR", help="finished run folders")
    parser.add_argument("--accuracy", type=float, help="what-if: reference accuracy in [0, 1]")
    parser.add_argument("--questions", type=int, help="what-if: number of GSM8k questions")
    parser.add_argument("--threshold", type=float, help="threshold to evaluate (default: the recommended one)")
    parser.add_argument("--max-false-failure", type=float, default=1e-3,
                        help="allowed probability that one healthy run fails (default 1e-3)")
    parser.add_argument("--scorer", default="upstream", help="scorer column of questions.csv (default upstream)")
    parser.add_argument("--write", type=Path, metavar="PARAMS_YAML",
                        help="set threshold (+ threshold_source) in this params file")
    parser.add_argument("--out", type=Path, help="output folder (default results/calibration-<timestamp>/)")
    return parser


def _validate(args: argparse.Namespace) -> None:
    if args.run_dirs and (args.accuracy is not None or args.questions is not None):
        raise CalibrationError("give either RUN_DIR... or --accuracy/--questions, not both")
    if not args.run_dirs:
        if args.accuracy is None:
            raise CalibrationError("nothing to calibrate: give RUN_DIR... or --accuracy A --questions N")
        if args.questions is None:
            raise CalibrationError("--accuracy needs --questions")
        if not 0.0 <= args.accuracy <= 1.0:
            raise CalibrationError(f"--accuracy must lie in [0, 1], got {args.accuracy}")
        if args.questions < 1:
            raise CalibrationError(f"--questions must be >= 1, got {args.questions}")
    for folder in args.run_dirs:
        if not folder.is_dir():
            raise CalibrationError(f"run folder not found: {folder}")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise CalibrationError(f"--threshold must lie in [0, 1], got {args.threshold}")
    if not 0.0 < args.max_false_failure < 1.0:
        raise CalibrationError(f"--max-false-failure must lie in (0, 1), got {args.max_false_failure}")
    if args.write is not None and not args.write.is_file():
        raise CalibrationError(f"--write: params file not found: {args.write}")


def main(argv: list[str]) -> int:
    """Entry point of `workbench calibrate` (argv without the subcommand)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    try:
        _validate(args)
        if args.run_dirs:
            out_dir = (args.out or default_out_dir()).resolve()
            result = run_calibration(args.run_dirs, out_dir, args.scorer, args.max_false_failure, args.threshold)
            source = ", ".join(str(p) for p in args.run_dirs)
        else:
            result = calibrate(args.accuracy, args.questions, args.threshold, args.max_false_failure)
            source = "what-if numbers (no runs)"
        if args.write is not None:
            write_threshold(args.write, result, source)
    except (CalibrationError, FileNotFoundError) as exc:
        print(f"workbench calibrate: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    sys.stdout.write(to_json(result))
    if args.run_dirs:
        print(f"[workbench] calibration: {out_dir / 'calibration.json'}", file=sys.stderr)
    if args.write is not None:
        print(f"[workbench] wrote threshold {result['recommended_threshold']} to {args.write}", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
