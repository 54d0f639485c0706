"""`workbench` command line: run | calibrate | audit | summarize | controls | train-tiny.

Exit codes (all subcommands): 0 the checks passed, 1 a check failed (the assertion cell),
2 bad input (nothing started), 3 an engine or infrastructure error stopped the run,
4 cancelled (SIGTERM or SIGINT; every process of the run stopped, summary and report say so).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

from workbench.core.errors import ExitCode, ParamsError, WorkbenchError
from workbench.core.params import parse_override


def _overrides(pairs: list[list[str]] | None) -> dict[str, Any]:
    return dict(parse_override(key, value) for key, value in (pairs or []))


DELEGATED: dict[str, tuple[str, str]] = {
    "calibrate": ("workbench.calibration.cli", "threshold calibration (see `workbench calibrate --help`)"),
    "summarize": ("workbench.summarize", "Markdown table of finished runs (RUN_DIR...)"),
    "controls": ("workbench.controls.cli",
                 "positive controls: clean and injected runs (see `workbench controls --help`)"),
    "baseline": ("workbench.baseline.cli", "record a finished run as a baseline (see `workbench baseline --help`)"),
    "lane": ("workbench.lane.cli", "a CI lane: several cases, one reference (see `workbench lane --help`)"),
    "sweep": ("workbench.sweep.cli", "one case over varied params keys, one reference per key, local or on Ray "
                                     "(see `workbench sweep --help`)"),
    "site": ("workbench.site.cli", "a static site of every run: index, case histories, comparisons "
                                   "(see `workbench site --help`)"),
    "train-tiny": ("workbench.tinymodel.train", "train the tiny Qwen3.5 stand-in (see `workbench train-tiny --help`)"),
}
"""Commands that read their own arguments: name -> (module with `main(argv) -> int` and `parser()`, help)."""


def build_parser() -> argparse.ArgumentParser:
    """`workbench`'s parser: run and audit with their arguments, each delegated command a placeholder."""
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
        p.add_argument("--junit-xml", type=Path, metavar="PATH", default=None,
                       help="write a JUnit XML file: a testsuite for the case, a testcase per check "
                            "(README, CI outputs)")
        p.add_argument("--cache-dir", type=str, metavar="DIR", default=None,
                       help="the folder of the engines' compile caches (vLLM, Triton, Inductor, FlashInfer), reused "
                            "by later runs; same as -p cache_dir DIR (default ~/.cache/mtp-workbench/compile)")
        if name == "run":
            p.add_argument("--benchmark-json", type=Path, metavar="FILE", default=None,
                           help="write the headline numbers (accuracies, acceptance length, output match, tokens/s) "
                                "in github-action-benchmark's customBiggerIsBetter format (README, the site)")
            p.add_argument("--allow-no-checks", action="store_true",
                           help="run a case whose every check is switched off (it then checks nothing)")
            p.add_argument("--baseline", type=Path, metavar="FILE", default=None,
                           help="hold the run to a baseline file (workbench baseline record): adds the "
                                "*_vs_baseline checks; same as -p baseline FILE")
            p.add_argument("--inject", metavar="NAME", default=None,
                           help="install the named fault into the speculative engine only (a positive control: "
                                "a check must fail); same as -p inject NAME. Faults: workbench/inject/faults.py")
            reuse = p.add_mutually_exclusive_group()
            reuse.add_argument("--reuse-reference", dest="reuse_reference", action="store_const", const=True,
                               default=None, help="reuse a cached reference run with the same key (model files, "
                                                  "engine arguments, prompts, hardware, versions); same as "
                                                  "-p reuse_reference true")
            reuse.add_argument("--no-reuse", dest="reuse_reference", action="store_const", const=False,
                               help="always start the reference engine (the default for `run`)")
    for name, (_, help_text) in DELEGATED.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def command_parser(command: str) -> argparse.ArgumentParser:
    """The parser that reads `workbench COMMAND ...`'s arguments: a delegated command's own (its module's
    `parser()`), else run's or audit's. Lets a command line be checked without running it (the CI files')."""
    if command in DELEGATED:
        return importlib.import_module(DELEGATED[command][0]).parser()
    subcommands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    if command not in subcommands.choices:
        raise LookupError(f"workbench has no command {command!r} (commands: {', '.join(subcommands.choices)})")
    return subcommands.choices[command]


def skip_iri_grammar() -> None:
    """Keep jsonschema from building its RFC 3987 grammar (`rfc3987_syntax`, a Lark parser built at import).

    papermill and nbconvert import nbformat, nbformat imports jsonschema, and jsonschema imports that grammar
    when it is installed (jupyterlab's jsonschema[format-nongpl] brings it) only to check the `iri` string
    formats, which no notebook schema uses: 1.3 s of every command's start on this project's CPU, before any
    engine starts. Blocked here, jsonschema skips those two format checks, as it does where the package is absent.
    """
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]  # None: `import` raises ImportError


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    skip_iri_grammar()
    if argv and argv[0] in DELEGATED:
        return importlib.import_module(DELEGATED[argv[0]][0]).main(argv[1:])
    args = build_parser().parse_args(argv)
    notebook = {"run": "mtp_correctness.ipynb", "audit": "no_sync_audit.ipynb"}[args.command]
    try:
        from workbench.core.caches import check_cache_dir
        from workbench.core.notebook import run_notebook_case
        from workbench.core.params import check_against_vllm
        from workbench.core.resources import resolve_case

        overrides = _overrides(args.param)
        if args.cache_dir is not None:
            overrides["cache_dir"] = str(Path(args.cache_dir).expanduser().resolve())
        if args.command == "run":
            from workbench.correctness.preflight import preflight as correctness_preflight
            from workbench.inject.stages import check_params as check_injection

            if args.inject is not None:
                overrides["inject"] = args.inject
            if args.baseline is not None:
                overrides["baseline"] = str(args.baseline.expanduser().resolve())
            if args.reuse_reference is not None:
                overrides["reuse_reference"] = args.reuse_reference

            def preflight(params, path):
                check_injection(params, path)
                correctness_preflight(params, path, allow_no_checks=args.allow_no_checks)
        else:
            def preflight(params, path):
                if params.inject is not None:
                    raise ParamsError(f"{path}: key 'inject': faults are injected by `workbench run` (the speculative "
                                      "engine of a correctness run); the audit installs none", key="inject", path=path)
                check_against_vllm(params, path)
                check_cache_dir(params.cache_dir, path)
        from workbench.ci import case_publisher, check_junit_path

        from workbench.site.benchmark import benchmark_on_finished, check_benchmark_path

        check_junit_path(args.junit_xml)  # bad input (exit 2) before anything starts
        benchmark_json = getattr(args, "benchmark_json", None)
        check_benchmark_path(benchmark_json)
        params_file = resolve_case(args.params)
        case = params_file.stem if args.command == "run" else f"{params_file.stem}-audit"
        on_finished = benchmark_on_finished(benchmark_json, case_publisher(case, args.junit_xml))
        return int(run_notebook_case(notebook, params_file, overrides, args.out, args.show_code, force=args.force,
                                     preflight=preflight, on_finished=on_finished))
    except WorkbenchError as exc:
        print(f"workbench: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:  # Ctrl-C before the run started: nothing to clean up
        print("workbench: cancelled", file=sys.stderr)
        return int(ExitCode.CANCELLED)


if __name__ == "__main__":
    raise SystemExit(main())
