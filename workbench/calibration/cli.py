"""`workbench calibrate`: choose and defend the GSM8k threshold (issue 4).

From finished run folders:
    workbench calibrate RUN_DIR... [--write params/X.yaml] [--scorer upstream]
                        [--max-false-failure 1e-3] [--threshold T] [--out DIR]
Launching the runs first (run-to-run variation of the engine, e.g. over batch sizes):
    workbench calibrate --launch params/X.yaml --vary max_num_seqs 256,64,16 [-p KEY VALUE]... [--write params/X.yaml]
What-if, from bare numbers (no run needed):
    workbench calibrate --accuracy 0.348 --questions 1319 [--threshold 0.20] [--max-false-failure 1e-3]
                        [--min-drop 0.05 [--miss-rate 0.1]]

Prints the calibration JSON (recommended_threshold, false_failure_probability, detectable_drop, ...).
Exit codes: 0 done, 2 bad input (nothing written), 3 the calibration notebook failed (calibration.json kept).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from workbench.calibration.stats import (calibrate, calibrate_from_runs, detection_from_controls, questions_needed,
                                         to_json, write_threshold)
from workbench.core.errors import CalibrationError, ExitCode, NotebookError, WorkbenchError
from workbench.records import CalibrationHeadline, RunSummary, load_summary
from workbench.core.resources import default_results_dir, notebook_path
from workbench.core.rundir import write_summary

NOTEBOOK = notebook_path("calibrate_threshold.ipynb")


def default_out_dir() -> Path:
    return default_results_dir() / f"calibration-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def run_calibration(run_dirs: list[Path], out_dir: Path, scorer: str = "upstream", max_false_failure: float = 1e-3,
                    threshold: float | None = None, controls: Path | None = None) -> dict[str, Any]:
    """Calibrate from run folders and write `calibration.json` into out_dir.

    The single place where the RUN_DIR form produces its output folder: executing
    notebooks/calibrate_threshold.ipynb with papermill (and report.html) slots in here.
    """
    from workbench.core.environment import collect_environment, stamp_environment, utc_now
    from workbench.core.notebook import execute, render_report

    started_at, started = utc_now(), time.monotonic()
    result = calibrate_from_runs(run_dirs, scorer, max_false_failure, threshold)
    if controls is not None:
        result["controls_detection"] = detection_from_controls(controls)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "calibration.json").write_text(to_json(result), encoding="utf-8")  # kept even if the notebook fails
    write_summary(out_dir, RunSummary(kind="calibration", passed=True, calibration=CalibrationHeadline(
        runs=result["runs"], accuracy=result["accuracy"], questions=result["questions"],
        recommended_threshold=result["recommended_threshold"],
        false_failure_probability=result["false_failure_probability"],
        output_match_mode=result.get("output_match_mode")), environment=collect_environment(started_at)))
    executed = out_dir / NOTEBOOK.name
    outcome = execute(NOTEBOOK, executed, {
        "run_dirs": [str(Path(d).resolve()) for d in run_dirs], "threshold": threshold,
        "max_false_failure": max_false_failure, "scorer": scorer, "out_dir": str(out_dir),
        "controls": str(Path(controls).resolve()) if controls is not None else None}, cwd=out_dir)
    if outcome.status != "ok":  # the report opens with it
        summary = load_summary(out_dir)
        write_summary(out_dir, summary.model_copy(update={"passed": False, "status": "error",
                                                          "error": f"{NOTEBOOK.name} failed: {outcome.message}"}))
    stamp_environment(out_dir, started_at, time.monotonic() - started)
    if executed.exists():
        render_report(out_dir, executed)
    if outcome.status != "ok":
        raise NotebookError(f"{NOTEBOOK.name} failed: {outcome.message} (see {executed})", path=executed)
    return result


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench calibrate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="*", type=Path, metavar="RUN_DIR", help="finished run folders")
    parser.add_argument("--accuracy", type=float, help="what-if: reference accuracy in [0, 1]")
    parser.add_argument("--questions", type=int, help="what-if: number of GSM8k questions")
    parser.add_argument("--threshold", type=float, help="threshold to evaluate (default: the recommended one)")
    parser.add_argument("--max-false-failure", type=float, default=1e-3,
                        help="allowed probability that one healthy run fails (default 1e-3)")
    parser.add_argument("--min-drop", type=float,
                        help="what-if: also report how many questions catch this drop (and where the threshold goes)")
    parser.add_argument("--miss-rate", type=float, default=0.1, help="with --min-drop: allowed miss rate (default 0.1)")
    parser.add_argument("--scorer", default="upstream", help="scorer column of questions.csv (default upstream)")
    parser.add_argument("--write", type=Path, metavar="PARAMS_YAML",
                        help="set threshold (+ threshold_source) in this params file")
    parser.add_argument("--out", type=Path, help="output folder (default results/calibration-<timestamp>/)")
    parser.add_argument("--controls", type=Path, metavar="CONTROLS_DIR",
                        help="a `workbench controls` folder: measured detection beside the computed power")
    parser.add_argument("--launch", type=Path, metavar="PARAMS_YAML",
                        help="first run this case (workbench run) once per --vary value, then calibrate from those runs")
    parser.add_argument("--vary", nargs=2, metavar=("KEY", "V1,V2,..."),
                        help="with --launch: the params key varied between runs, e.g. max_num_seqs 256,64,16")
    parser.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                        help="with --launch: override a params key in every launched run")
    return parser


def launch_runs(params_file: Path, vary: tuple[str, str] | None, overrides: dict[str, Any], out_dir: Path) -> list[Path]:
    """Run the correctness notebook once per value of the varied key (engine run-to-run variation).

    A run whose checks fail still measured what calibration needs; an engine error stops here.
    """
    from workbench.core.notebook import run_notebook_case
    from workbench.core.params import load_params, parse_override

    key, values = vary if vary else ("seed", str(load_params(params_file, overrides).seed))
    run_dirs = []
    for raw in values.split(","):
        run_overrides = {**overrides, **dict([parse_override(key, raw)])}
        load_params(params_file, run_overrides)  # bad input fails here, before any engine starts
        run_dir = out_dir / "runs" / f"{key}-{raw}"
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries the calibration JSON only
            code = run_notebook_case("mtp_correctness.ipynb", params_file, run_overrides, run_dir)
        if code == ExitCode.ERROR:
            raise NotebookError(f"launched run {run_dir} stopped on an engine error", path=run_dir)
        run_dirs.append(run_dir)
    return run_dirs


def _validate(args: argparse.Namespace) -> None:
    if args.launch is not None and not args.launch.is_file():
        raise CalibrationError(f"--launch: params file not found: {args.launch}")
    if args.vary is not None and args.launch is None:
        raise CalibrationError("--vary needs --launch PARAMS_YAML")
    if args.launch is not None:
        return
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
        args = parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    try:
        _validate(args)
        if args.launch is not None:
            from workbench.core.params import parse_override

            out_dir = (args.out or default_out_dir()).resolve()
            overrides = dict(parse_override(k, v) for k, v in args.param)
            args.run_dirs = [*args.run_dirs, *launch_runs(args.launch, args.vary, overrides, out_dir)]
        if args.run_dirs:
            out_dir = (args.out or default_out_dir()).resolve()
            result = run_calibration(args.run_dirs, out_dir, args.scorer, args.max_false_failure, args.threshold,
                                     args.controls)
            source = ", ".join(str(p) for p in args.run_dirs)
        else:
            result = calibrate(args.accuracy, args.questions, args.threshold, args.max_false_failure)
            if args.min_drop is not None:
                result["questions_needed"] = questions_needed(args.accuracy, args.min_drop, args.max_false_failure,
                                                              args.miss_rate)
            source = "what-if numbers (no runs)"
        if args.write is not None:
            write_threshold(args.write, result, source)
    except FileNotFoundError as exc:
        print(f"workbench calibrate: error: {exc}", file=sys.stderr)
        return int(ExitCode.BAD_INPUT)
    except WorkbenchError as exc:
        print(f"workbench calibrate: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    sys.stdout.write(to_json(result))
    if args.run_dirs:
        print(f"[workbench] calibration: {out_dir / 'calibration.json'}, report: {out_dir / 'report.html'}",
              file=sys.stderr)
    if args.write is not None:
        print(f"[workbench] wrote threshold {result['recommended_threshold']} to {args.write}", file=sys.stderr)
    return int(ExitCode.OK)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
