"""The notebook runner: execute a flow's notebook with papermill into a run folder, render the
self-contained HTML report with nbconvert, and map how it ended to an exit code."""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from workbench.core.errors import ExitCode, RunFolderError, WorkbenchError
from workbench.core.processes import ProcessTree
from workbench.core.environment import stamp_environment, utc_now
from workbench.core.params import case_name, load_params
from workbench.records import RunSummary, load_summary
from workbench.core.resources import notebook_path
from workbench.core.rundir import claim_run_folder, write_summary

KERNEL_NAME = "mtp-workbench"
TEMPLATES = Path(str(files("workbench") / "templates"))  # workbench_report: lab without web-loaded scripts


@dataclass
class NotebookOutcome:
    """How an executed notebook ended: ok, a failed assertion cell, or an error elsewhere."""

    status: str  # "ok" | "assertion" | "error" | "cancelled"
    message: str = ""
    cell_tags: tuple[str, ...] = ()


def kernel_name() -> str:
    """The project's kernel when registered (make installs it into .venv), else python3."""
    from jupyter_client.kernelspec import KernelSpecManager

    return KERNEL_NAME if KERNEL_NAME in KernelSpecManager().find_kernel_specs() else "python3"


def _failed_cell_tags(notebook_path: Path) -> tuple[str, ...]:
    """Tags of the cell that raised (papermill marks it with an error output)."""
    try:
        nb = json.loads(notebook_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ()
    for cell in nb.get("cells", []):
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            return tuple(cell.get("metadata", {}).get("tags", []))
    return ()


def execute(notebook: Path, output: Path, parameters: dict[str, Any], cwd: Path) -> NotebookOutcome:
    """Run the notebook headless; classify how it ended rather than raising."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    try:
        papermill.execute_notebook(str(notebook), str(output), parameters=parameters, kernel_name=kernel_name(),
                                   cwd=str(cwd), progress_bar=False, log_output=False,
                                   # the last cell has run and joined every engine child by then; a graceful
                                   # shutdown only waits ~0.5 s for the kernel's own exit, and the caller's
                                   # ProcessTree stops whatever a killed kernel leaves
                                   shutdown_kernel="immediate")
    except PapermillExecutionError as exc:
        tags = _failed_cell_tags(output)
        status = "assertion" if exc.ename == "AssertionError" and "assertion" in tags else "error"
        return NotebookOutcome(status, f"{exc.ename}: {exc.evalue}", tags)
    except Exception as exc:  # kernel died, notebook unreadable, ...
        return NotebookOutcome("error", f"{type(exc).__name__}: {exc}")
    return NotebookOutcome("ok")


REPORT_DROPS = ("widget", "papermill-error-cell-tag")
"""Cells a report leaves out: live JupyterLab controls (a static page cannot run them) and papermill's red "An
Exception was encountered" markers (the verdict at the top names what stopped the run)."""


def export_html(executed: Path, html: Path, show_input: bool = False, drop_tags: tuple[str, ...] = REPORT_DROPS,
                head: str | None = None) -> Path:
    """Self-contained HTML (figures are embedded PNG), code cells hidden unless asked for; `drop_tags`' cells left
    out.

    `head` (HTML built by `core.pages.page_head`, its texts escaped there) opens the page: the verdict (and why
    a run stopped), key numbers, environment and contents. Text a cell wrote to stderr (library progress bars,
    warnings) stays in the executed notebook and is left out of the report.
    """
    import nbformat
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import TagRemovePreprocessor

    from workbench.core.pages import insert_toc

    exporter = HTMLExporter(template_name="workbench_report", extra_template_basedirs=[str(TEMPLATES)],
                            exclude_input=not show_input, exclude_input_prompt=True, exclude_output_prompt=True)
    exporter.register_preprocessor(TagRemovePreprocessor(remove_cell_tags=set(drop_tags), enabled=True), enabled=True)
    notebook = nbformat.read(str(executed), as_version=4)
    if drop_tags:
        notebook.metadata.pop("widgets", None)  # the dropped widgets' saved state would be embedded otherwise
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not (o.output_type == "stream" and o.name == "stderr")]
    body, _ = exporter.from_notebook_node(notebook, resources={"workbench_head": head or ""})
    html.write_text(insert_toc(body), encoding="utf-8")
    return html


def render_report(run_dir: Path, executed: Path, show_input: bool = False, notes: list[str] | None = None) -> Path:
    """report.html of a run folder, verdict first: its summary.json's verdict, key numbers and environment
    (`core.pages.report_head`), `notes` (an injected fault, ...), then the executed notebook."""
    from workbench.core.pages import report_head

    try:
        summary = load_summary(run_dir)
    except WorkbenchError:
        summary = None
    return export_html(executed, run_dir / "report.html", show_input=show_input, head=report_head(summary, notes))


@contextmanager
def cancellable(tree: ProcessTree):
    """On SIGTERM or SIGINT, stop every process of the run at once; yields the signal's name, once one came.

    Stopping the kernel makes papermill return (a dead kernel), so nothing is raised into its
    event loop; the caller reads the name to tell a cancel from a crash. Later signals are ignored
    so the cleanup that follows is not cut short.
    """
    import signal

    received: list[str] = []

    def handler(number, _frame):
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        received.append(signal.Signals(number).name)
        tree.kill(grace_s=2.0)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def progress_lines(run_dir: Path, every_s: float = 5.0):
    """Print each engine's real progress (from its child's progress file) to the terminal while a run executes."""
    import threading

    from workbench.core.engine import describe_progress

    stop = threading.Event()

    def report() -> None:
        last = ""
        while not stop.wait(every_s):
            paths = sorted((run_dir / "logs").glob("*.progress.json"))
            line = ", ".join(filter(None, (describe_progress(p) for p in paths)))
            if line and line != last:
                print(f"[workbench] {line}", flush=True)
                last = line

    thread = threading.Thread(target=report, name="progress-lines", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=2)


def _log(run_dir: Path, text: str) -> None:
    """The command's own log: tracebacks go here, not to the user's terminal."""
    try:
        (run_dir / "logs").mkdir(exist_ok=True)
        with open(run_dir / "logs" / "workbench.log", "a", encoding="utf-8") as log:
            log.write(text.rstrip() + "\n")
    except OSError:
        pass


def _finish_summary(run_dir: Path, kind: str, params: Any, status: str, message: str) -> None:
    """Keep what the notebook wrote, and say why the run stopped; never lose the summary to a later failure."""
    summary_path = run_dir / "summary.json"
    try:
        summary = load_summary(run_dir) if summary_path.exists() else RunSummary(kind=kind, params=params)
    except WorkbenchError as exc:  # a half-written summary: start again from what is known
        _log(run_dir, f"summary.json unreadable, rewritten: {exc}")
        summary = RunSummary(kind=kind, params=params)
    write_summary(run_dir, summary.model_copy(update={"error": message, "passed": False, "status": status}))


def run_notebook_case(notebook: str, params_file: Path, overrides: dict[str, Any], out: Path | None,
                      show_input: bool = False, force: bool = False,
                      preflight: Callable[[Any, Path], None] | None = None,
                      on_finished: Callable[[Path, ExitCode], None] | None = None) -> ExitCode:
    """Validate, execute the notebook into a run folder, render the report, map the outcome to an exit code.

    Bad input raises (`ParamsError` and other `BadInputError`s: exit 2) before anything starts; `preflight`
    is the flow's own check of the params. Every process the run starts is remembered (`ProcessTree`), and
    none outlives it: not on success, an error, a dead kernel, or a cancel (SIGTERM/SIGINT, exit 4),
    after which summary.json and report.html say "cancelled" and keep what had finished. `on_finished(run_dir,
    exit_code)` is called once the run folder is final (report and summary written or given up on), whatever
    the outcome: the CI outputs are written from it.
    """
    params = load_params(params_file, overrides)
    if preflight is not None:
        preflight(params, params_file)
    run_dir, lock = claim_run_folder(out, params_file, force)
    kind = "audit" if notebook.startswith("no_sync") else "correctness"
    executed = run_dir / notebook
    print(f"[workbench] {params_file} -> {run_dir}", flush=True)
    started_at, started = utc_now(), time.monotonic()
    tree = ProcessTree(os.getpid())  # the kernel, the engine children, vLLM's processes: all remembered
    exit_code = ExitCode.ERROR  # what on_finished hears when an error escapes
    try:
        try:
            with cancellable(tree) as cancelled, progress_lines(run_dir):
                outcome = execute(notebook_path(notebook), executed,
                                  {"params_file": str(Path(params_file).resolve()), "overrides": overrides,
                                   "run_dir": str(run_dir)}, cwd=run_dir)
            if cancelled:
                _log(run_dir, f"cancelled by {cancelled[0]}; the notebook ended with: {outcome.message}")
                outcome = NotebookOutcome("cancelled", f"cancelled by {cancelled[0]}: every process of the run "
                                                       "was stopped; what had finished is kept")
        finally:
            leftovers = tree.kill()  # a dead kernel leaves its engines running
            tree.stop()
            if leftovers:
                _log(run_dir, f"stopped {len(leftovers)} process(es) the run left behind: {leftovers}")
        stamp_environment(run_dir, started_at, time.monotonic() - started, kind=kind, params=params,
                          case=case_name(params_file))
        exit_code = _report_and_exit(run_dir, executed, kind, params, outcome, show_input)
        return exit_code
    except OSError as exc:  # unwritable or full disk while writing the report or summary
        _log(run_dir, traceback.format_exc())
        raise RunFolderError(f"{run_dir}: cannot write the run's files: {exc.strerror or exc}", path=run_dir) from exc
    except KeyboardInterrupt:  # Ctrl-C after the notebook, while the report renders
        exit_code = ExitCode.CANCELLED
        raise
    finally:
        lock.release()
        if on_finished is not None:
            on_finished(run_dir, exit_code)


BANNERS = {"error": "ERROR", "cancelled": "CANCELLED"}


def injection_banner(run_dir: Path, params: Any) -> str | None:
    """The report's first words when the case injected a fault on purpose (`inject`): which, at what rate,
    and how many rows it corrupted, so nobody mistakes the run for a real regression or a real pass."""
    name = getattr(params, "inject", None)
    if not name:
        return None
    injection = None
    if (run_dir / "summary.json").exists():
        try:
            injection = load_summary(run_dir).injection
        except WorkbenchError:
            injection = None
    if injection is not None:
        how = f"rate {injection.rate:g}, seed {injection.seed}; {injection.events} rows corrupted"
    else:
        rate = params.inject_rate
        how = f"rate {'the fault default' if rate is None else format(rate, 'g')}, seed {params.inject_seed}"
    return (f"INJECTED FAULT {name} ({how}) in the speculative engine only: a positive control, "
            "its checks are meant to fail")


def _report_and_exit(run_dir: Path, executed: Path, kind: str, params: Any, outcome: NotebookOutcome,
                     show_input: bool) -> ExitCode:
    summary_path = run_dir / "summary.json"
    if outcome.status in BANNERS:
        _finish_summary(run_dir, kind, params, outcome.status, outcome.message)
    html = None
    if executed.exists():
        injected = injection_banner(run_dir, params)
        try:  # the verdict (and why a run stopped) comes from summary.json, which says it by now
            html = render_report(run_dir, executed, show_input, notes=[injected] if injected else None)
        except Exception as exc:  # the summary is on disk already; the report is lost, not the run
            _log(run_dir, traceback.format_exc())
            _finish_summary(run_dir, kind, params, "error", f"report not rendered: {type(exc).__name__}: {exc}")
            print(f"[workbench] ERROR report not rendered: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            return ExitCode.ERROR
    print(f"[workbench] report: {html or '(not written: the notebook did not start)'}", flush=True)
    print(f"[workbench] summary: {summary_path}", flush=True)
    if outcome.status == "ok":
        print("[workbench] PASSED", flush=True)
        return ExitCode.OK
    if outcome.status == "assertion":
        print(f"[workbench] FAILED {outcome.message}", flush=True)
        return ExitCode.CHECKS_FAILED
    if outcome.status == "cancelled":
        print(f"[workbench] CANCELLED {outcome.message}", file=sys.stderr, flush=True)
        return ExitCode.CANCELLED
    print(f"[workbench] ERROR {outcome.message.splitlines()[0] if outcome.message else ''}", file=sys.stderr,
          flush=True)
    return ExitCode.ERROR
