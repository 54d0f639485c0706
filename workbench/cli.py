"""`workbench` command line: run | calibrate | audit | summarize | train-tiny.

Exit codes (all subcommands): 0 the checks passed, 1 the assertion cell failed,
2 bad input (nothing started), 3 an engine or infrastructure error stopped the run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from workbench.params import REPO_ROOT, ParamsError, load_params, parse_override

EXIT_OK, EXIT_ASSERTION, EXIT_BAD_INPUT, EXIT_ERROR = 0, 1, 2, 3
NOTEBOOKS = REPO_ROOT / "notebooks"


def _overrides(pairs: list[list[str]] | None) -> dict[str, Any]:
    return dict(parse_override(key, value) for key, value in (pairs or []))


def run_notebook_case(notebook: str, params_file: Path, overrides: dict[str, Any], out: Path | None,
                      show_input: bool = False) -> int:
    """Validate, execute the notebook into a run folder, render the report, map the outcome to an exit code."""
    from workbench.pipeline import new_run_dir, write_summary
    from workbench.report import execute, export_html

    params = load_params(params_file, overrides)  # ParamsError -> exit 2 before anything starts
    run_dir = (out or new_run_dir(params_file)).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    executed = run_dir / notebook
    print(f"[workbench] {params_file} -> {run_dir}", flush=True)
    outcome = execute(NOTEBOOKS / notebook, executed,
                      {"params_file": str(params_file.resolve()), "overrides": overrides, "run_dir": str(run_dir)},
                      cwd=run_dir)
    html = None
    if executed.exists():
        html = export_html(executed, run_dir / "report.html", show_input=show_input)
    summary_path = run_dir / "summary.json"
    if outcome.status == "error":
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {"params": params.model_dump()}
        summary.update(error=outcome.message, passed=False)
        write_summary(run_dir, summary)
    print(f"[workbench] report: {html or '(not written: the notebook did not start)'}", flush=True)
    print(f"[workbench] summary: {summary_path}", flush=True)
    if outcome.status == "ok":
        print("[workbench] PASSED", flush=True)
        return EXIT_OK
    if outcome.status == "assertion":
        print(f"[workbench] FAILED {outcome.message}", flush=True)
        return EXIT_ASSERTION
    print(f"[workbench] ERROR {outcome.message}", file=sys.stderr, flush=True)
    return EXIT_ERROR


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="workbench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("run", "reference vs speculative correctness on GSM8k (notebooks/mtp_correctness.ipynb)"),
                            ("audit", "no-sync audit of async scheduling (notebooks/no_sync_audit.ipynb)")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("params", type=Path, help="params YAML file, e.g. params/tiny-qwen3_5-cpu.yaml")
        p.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"),
                       help="override one params key (value read as YAML); repeatable")
        p.add_argument("--out", type=Path, default=None, help="run folder (default results/<params-name>-<timestamp>/)")
        p.add_argument("--show-code", action="store_true", help="keep code cells in report.html")
    sub.add_parser("calibrate", help="threshold calibration (see `workbench calibrate --help`)", add_help=False)
    sub.add_parser("summarize", help="Markdown table of finished runs (RUN_DIR...)", add_help=False)
    sub.add_parser("train-tiny", help="train the tiny Qwen3.5 stand-in (see `workbench train-tiny --help`)",
                   add_help=False)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "calibrate":
        from workbench.calibrate_cli import main as calibrate_main

        return calibrate_main(argv[1:])
    if argv and argv[0] == "summarize":
        from workbench.summarize import main as summarize_main

        return summarize_main(argv[1:])
    if argv and argv[0] == "train-tiny":
        from workbench.tinymodel.train import main as train_main

        return train_main(argv[1:])
    args = parser.parse_args(argv)
    notebook = {"run": "mtp_correctness.ipynb", "audit": "no_sync_audit.ipynb"}[args.command]
    try:
        return run_notebook_case(notebook, args.params, _overrides(args.param), args.out, args.show_code)
    except ParamsError as exc:
        print(f"workbench: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    raise SystemExit(main())
