"""`workbench controls PARAMS [--inject NAME,...] [--inject-rate R] [--workload batch,churn] [-p KEY VALUE]...
[--out DIR]`.

Exit 0: every clean run passed and every injection was caught. 1: a clean run failed, or an injection
no check caught (named on the last line). 2: bad input, before any engine starts. 3: an error stopped
a run. 4: cancelled.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from workbench.core.errors import BadInputError, ExitCode, ParamsError, WorkbenchError
from workbench.core.params import load_params, parse_override
from workbench.core.resources import resolve_case
from workbench.core.rundir import claim_run_folder, new_run_dir
from workbench.correctness.workloads import WORKLOADS


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench controls", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("params", type=Path, help="params YAML file or packaged case name")
    parser.add_argument("--inject", default=None,
                        help="comma-separated injections (default: every registered one)")
    parser.add_argument("--inject-rate", type=float, default=None,
                        help="rate of every injection (default: each fault's own default rate)")
    parser.add_argument("--workload", default=",".join(WORKLOADS),
                        help=f"comma-separated workloads (default: {','.join(WORKLOADS)})")
    parser.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"),
                        help="override one params key for every run (value read as YAML); repeatable")
    parser.add_argument("--out", type=Path, default=None, help="folder (default results/controls-<case>-<timestamp>/)")
    parser.add_argument("--force", action="store_true", help="clear --out first when it already holds runs")
    return parser


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def validate(params_file: Path, overrides: dict, injections: list[str], workloads: list[str],
             inject_overrides: dict | None = None) -> None:
    """Everything a later run would refuse, refused now (exit 2): params, every injection and workload."""
    from workbench.correctness.preflight import preflight

    if not injections:
        raise BadInputError("--inject: no injection named", key="--inject")
    unknown = [w for w in workloads if w not in WORKLOADS]
    if unknown or not workloads:
        raise BadInputError(f"--workload: unknown {unknown or workloads}; known: {', '.join(WORKLOADS)}",
                            key="--workload")
    for key in ("inject", "inject_rate", "workload", "reference_record"):
        if key in overrides:
            raise BadInputError(f"-p {key}: set by `workbench controls` itself (use --inject / --workload)", key=key)
    from workbench.inject.faults import known_faults

    unknown = [name for name in injections if name not in known_faults()]
    if unknown:
        raise BadInputError(f"--inject: unknown injection {unknown[0]!r}; known: {', '.join(known_faults())}",
                            key="--inject")
    preflight(load_params(params_file, overrides), params_file)
    for name in injections:
        load_params(params_file, {**overrides, **(inject_overrides or {}), "inject": name})


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        from workbench.controls.report import write_report
        from workbench.controls.runner import run_controls
        from workbench.inject.faults import known_faults

        params_file = resolve_case(args.params)
        overrides = dict(parse_override(k, v) for k, v in (args.param or []))
        injections = _split(args.inject) if args.inject is not None else known_faults()
        workloads = _split(args.workload)
        inject_overrides = {"inject_rate": args.inject_rate} if args.inject_rate is not None else {}
        validate(params_file, overrides, injections, workloads, inject_overrides)
        out = args.out or new_run_dir(f"controls-{params_file.stem}")
        out, lock = claim_run_folder(out, params_file, args.force)
        try:
            print(f"[workbench] controls {params_file}: {', '.join(injections)} under {', '.join(workloads)} -> {out}",
                  flush=True)
            summary, code = run_controls(params_file, overrides, injections, workloads, out,
                                         inject_overrides=inject_overrides)
            report = write_report(summary, out)
        finally:
            lock.release()
        for outcome in summary.injections:
            verdict = "caught by " + ", ".join(outcome.caught_by) if outcome.caught else (
                "MISSED" if outcome.status == "passed" else f"{(outcome.status or 'error').upper()} {outcome.error}")
            print(f"[workbench] {outcome.workload:6s} {outcome.name}: {verdict}", flush=True)
        print(f"[workbench] controls: {out / 'controls.json'}\n[workbench] report: {report}", flush=True)
        if summary.passed:
            print("[workbench] PASSED: every clean run passed, every injection was caught", flush=True)
        else:
            clean = "" if summary.clean.passed else "a clean run did not pass; "
            print(f"[workbench] FAILED: {clean}missed: {', '.join(summary.missed) or 'none'}"
                  + (f"; errors: {'; '.join(summary.errors)}" if summary.errors else ""), flush=True)
        return int(code)
    except (WorkbenchError, ParamsError) as exc:
        print(f"workbench: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print("workbench: cancelled", file=sys.stderr)
        return int(ExitCode.CANCELLED)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
