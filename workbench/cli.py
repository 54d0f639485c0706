"""`workbench` command line: run | calibrate | audit | summarize | controls | train-tiny.

Exit codes (all subcommands): 0 the checks passed, 1 a check failed (the assertion cell),
2 bad input (nothing started), 3 an engine or infrastructure error stopped the run,
4 cancelled (SIGTERM or SIGINT; every process of the run stopped, summary and report say so).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from workbench.core.errors import ExitCode, ParamsError, WorkbenchError
from workbench.core.params import parse_override


def _overrides(pairs: list[list[str]] | None) -> dict[str, Any]:
    return dict(parse_override(key, value) for key, value in (pairs or []))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="workbench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("run", "reference vs speculative correctness on GSM8k (notebooks/mtp_correctness.ipynb)"),
                            ("audit", "no-sync audit of async scheduling (notebooks/no_sync_audit.ipynb)")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("params", type=Path,
                       help="params YAML file (e.g. params/tiny-qwen3_5-cpu.yaml) or a packaged case name "
                            "(e.g. tiny-qwen3_5-cpu)")
        p.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"),
                       help="override one params key (value read as YAML); repeatable")
        p.add_argument("--out", type=Path, default=None, help="run folder (default results/<params-name>-<timestamp>/)")
        p.add_argument("--show-code", action="store_true", help="keep code cells in report.html")
        p.add_argument("--force", action="store_true", help="clear --out first when it already holds a run")
        if name == "run":
            p.add_argument("--allow-no-checks", action="store_true",
                           help="run a case whose every check is switched off (it then checks nothing)")
            p.add_argument("--inject", metavar="NAME", default=None,
                           help="install the named fault into the speculative engine only (a positive control: "
                                "a check must fail); same as -p inject NAME. Faults: workbench/inject/faults.py")
    sub.add_parser("calibrate", help="threshold calibration (see `workbench calibrate --help`)", add_help=False)
    sub.add_parser("summarize", help="Markdown table of finished runs (RUN_DIR...)", add_help=False)
    sub.add_parser("controls", help="positive controls: clean and injected runs (see `workbench controls --help`)",
                   add_help=False)
    sub.add_parser("train-tiny", help="train the tiny Qwen3.5 stand-in (see `workbench train-tiny --help`)",
                   add_help=False)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "calibrate":
        from workbench.calibration.cli import main as calibrate_main

        return calibrate_main(argv[1:])
    if argv and argv[0] == "summarize":
        from workbench.summarize import main as summarize_main

        return summarize_main(argv[1:])
    if argv and argv[0] == "controls":
        from workbench.controls.cli import main as controls_main

        return controls_main(argv[1:])
    if argv and argv[0] == "train-tiny":
        from workbench.tinymodel.train import main as train_main

        return train_main(argv[1:])
    args = parser.parse_args(argv)
    notebook = {"run": "mtp_correctness.ipynb", "audit": "no_sync_audit.ipynb"}[args.command]
    try:
        from workbench.core.notebook import run_notebook_case
        from workbench.core.params import check_against_vllm
        from workbench.core.resources import resolve_case

        overrides = _overrides(args.param)
        if args.command == "run":
            from workbench.correctness.preflight import preflight as correctness_preflight
            from workbench.inject.stages import check_params as check_injection

            if args.inject is not None:
                overrides["inject"] = args.inject

            def preflight(params, path):
                check_injection(params, path)
                correctness_preflight(params, path, allow_no_checks=args.allow_no_checks)
        else:
            def preflight(params, path):
                if params.inject is not None:
                    raise ParamsError(f"{path}: key 'inject': faults are injected by `workbench run` (the speculative "
                                      "engine of a correctness run); the audit installs none", key="inject", path=path)
                check_against_vllm(params, path)
        return int(run_notebook_case(notebook, resolve_case(args.params), overrides, args.out,
                                     args.show_code, force=args.force, preflight=preflight))
    except WorkbenchError as exc:
        print(f"workbench: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:  # Ctrl-C before the run started: nothing to clean up
        print("workbench: cancelled", file=sys.stderr)
        return int(ExitCode.CANCELLED)


if __name__ == "__main__":
    raise SystemExit(main())
