"""`workbench sweep PARAMS [--vary KEY V1,V2,...]... [-p KEY VALUE]... [--executor local|ray] [--ray-address ADDR]
[--out DIR] [--force]`.

Runs the case once per cell of the Cartesian product of the varied keys (e.g. `--vary num_speculative_tokens
1,2,3,4 --vary method mtp,ngram`), the reference engine once per distinct reference key, each other cell only
its speculative engine. `--executor local` (default): this machine, one cell per GPU at once where there are
several; `--executor ray`: each cell a Ray task, on `--ray-address` or a local cluster started for the sweep.
The sweep folder holds every cell's run folder, sweep.json and report.html (notebooks/sweep.ipynb).
Exit: the worst cell (3 over 1 over 0); 2: bad input, before any engine starts; 4: cancelled.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from workbench.core.errors import BadInputError, ExitCode, WorkbenchError
from workbench.core.params import parse_override

VERDICTS = {0: "PASSED", 1: "FAILED", 4: "CANCELLED"}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="workbench sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("params", type=Path, help="params YAML file or packaged case name (e.g. tiny-qwen3_5-cpu)")
    p.add_argument("--vary", nargs=2, action="append", default=[], metavar=("KEY", "V1,V2,..."),
                   help="a params key and its values (each read as YAML); repeatable: the cells are the product")
    p.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                   help="override one params key of every cell (value read as YAML); repeatable")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: this machine (one cell per GPU at once); ray: each cell a Ray task")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="with --executor ray: the cluster's head (HOST:PORT, ray://HOST:PORT or auto); default: a "
                        "local cluster on 127.0.0.1, started and stopped by the sweep")
    p.add_argument("--out", type=Path, default=None, help="sweep folder (default results/sweep-<case>-<timestamp>/)")
    p.add_argument("--force", action="store_true", help="clear --out first when it already holds a sweep")
    return p


def say(line: str, stream=None) -> None:
    """A line for the terminal; a closed one (a CI log gone, `| head`) must not stop the sweep before sweep.json."""
    try:
        print(line, file=stream or sys.stdout, flush=True)
    except OSError:
        pass


def make_executor(name: str, ray_address: str | None):
    if ray_address is not None and name != "ray":
        raise BadInputError("--ray-address needs --executor ray", key="--ray-address")
    if name == "ray":
        from workbench.sweep.ray_executor import RayExecutor

        return RayExecutor(ray_address)
    from workbench.sweep.executors import LocalExecutor

    return LocalExecutor()


def _sweep(args: argparse.Namespace) -> int:
    """Check every cell and the executor (exit 2 before any engine), run the sweep, write its report."""
    from workbench.core.params import load_params
    from workbench.core.resources import resolve_case
    from workbench.core.rundir import claim_run_folder
    from workbench.correctness.preflight import preflight
    from workbench.sweep.runner import run_sweep, write_report
    from workbench.sweep.spec import build_cells, parse_vary

    params_file = resolve_case(args.params).resolve()
    vary = parse_vary(args.vary)
    overrides = dict(parse_override(k, v) for k, v in args.param)
    cells = build_cells(params_file, vary, overrides)
    for cell in cells:
        preflight(load_params(params_file, cell.overrides), f"{params_file} (cell {cell.name})")
    executor = make_executor(args.executor, args.ray_address)
    try:
        executor.check(cells)
        out, lock = claim_run_folder(args.out, f"sweep-{params_file.stem}", args.force)
    except BaseException:
        executor.close()
        raise
    try:
        try:
            say(f"[sweep] {params_file} x {len(cells)} cell(s) -> {out}")
            summary = run_sweep(params_file, vary, overrides, cells, executor, out, echo=say,
                                ray_address=args.ray_address)
        finally:
            executor.close()  # a local Ray cluster is stopped before the report renders
        code = summary.exit_code
        try:
            say(f"[sweep] report: {write_report(out)}")
        except WorkbenchError as exc:  # the cells' verdicts stand; the sweep's report is lost: an error
            say(f"[sweep] ERROR {exc}", sys.stderr)
            code = code if code == ExitCode.CANCELLED else max(code, int(ExitCode.ERROR))
    finally:
        lock.release()
    passed = [c.name for c in summary.cells if c.passed]
    others = [c.name for c in summary.cells if not c.passed]
    say(f"[sweep] sweep.json: {out / 'sweep.json'}\n[sweep] {VERDICTS.get(code, 'ERROR')}: {len(passed)} of "
        f"{len(summary.cells)} cells passed{'; not passed: ' + ', '.join(others) if others else ''}; reference "
        f"engines started: {summary.reference_runs}; fastest passing: {summary.fastest_passing or 'none'}")
    return code


def main(argv: list[str]) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error such as an unknown --executor (2)
        return int(exc.code or 0)
    try:
        return _sweep(args)
    except (WorkbenchError, KeyboardInterrupt) as exc:
        cancelled = isinstance(exc, KeyboardInterrupt)
        say(f"workbench sweep: {'cancelled' if cancelled else f'error: {exc}'}", sys.stderr)
        return int(ExitCode.CANCELLED if cancelled else exc.exit_code)
