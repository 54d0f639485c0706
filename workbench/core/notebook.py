"""The notebook runner: execute a flow's notebook with papermill into a run folder, render the
self-contained HTML report with nbconvert, and map how it ended to an exit code."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from workbench.core.errors import ExitCode
from workbench.core.params import load_params
from workbench.records import RunSummary, load_summary
from workbench.core.resources import notebook_path
from workbench.core.rundir import new_run_dir, write_summary

KERNEL_NAME = "mtp-workbench"
TEMPLATES = Path(str(files("workbench") / "templates"))  # workbench_report: lab without web-loaded scripts


@dataclass
class NotebookOutcome:
    """How an executed notebook ended: ok, a failed assertion cell, or an error elsewhere."""

    status: str  # "ok" | "assertion" | "error"
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
                                   cwd=str(cwd), progress_bar=False, log_output=False)
    except PapermillExecutionError as exc:
        tags = _failed_cell_tags(output)
        status = "assertion" if exc.ename == "AssertionError" and "assertion" in tags else "error"
        return NotebookOutcome(status, f"{exc.ename}: {exc.evalue}", tags)
    except Exception as exc:  # kernel died, notebook unreadable, ...
        return NotebookOutcome("error", f"{type(exc).__name__}: {exc}")
    return NotebookOutcome("ok")


def export_html(executed: Path, html: Path, show_input: bool = False, drop_tags: tuple[str, ...] = ("widget",)) -> Path:
    """Self-contained HTML (figures are embedded PNG), code cells hidden unless asked for.

    Cells tagged `widget` (live JupyterLab controls) are dropped: a static page cannot run them.
    """
    import nbformat
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import TagRemovePreprocessor

    exporter = HTMLExporter(template_name="workbench_report", extra_template_basedirs=[str(TEMPLATES)],
                            exclude_input=not show_input, exclude_input_prompt=True, exclude_output_prompt=True)
    exporter.register_preprocessor(TagRemovePreprocessor(remove_cell_tags=set(drop_tags), enabled=True), enabled=True)
    notebook = nbformat.read(str(executed), as_version=4)
    if drop_tags:
        notebook.metadata.pop("widgets", None)  # the dropped widgets' saved state would be embedded otherwise
    body, _ = exporter.from_notebook_node(notebook)
    html.write_text(body, encoding="utf-8")
    return html


def run_notebook_case(notebook: str, params_file: Path, overrides: dict[str, Any], out: Path | None,
                      show_input: bool = False) -> ExitCode:
    """Validate, execute the notebook into a run folder, render the report, map the outcome to an exit code.

    Params errors raise `ParamsError` before anything starts (the caller exits 2).
    """
    params = load_params(params_file, overrides)
    run_dir = (out or new_run_dir(params_file)).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    executed = run_dir / notebook
    print(f"[workbench] {params_file} -> {run_dir}", flush=True)
    outcome = execute(notebook_path(notebook), executed,
                      {"params_file": str(Path(params_file).resolve()), "overrides": overrides,
                       "run_dir": str(run_dir)}, cwd=run_dir)
    html = None
    if executed.exists():
        html = export_html(executed, run_dir / "report.html", show_input=show_input)
    summary_path = run_dir / "summary.json"
    if outcome.status == "error":
        summary = load_summary(run_dir) if summary_path.exists() else RunSummary(
            kind="audit" if notebook.startswith("no_sync") else "correctness", params=params)
        write_summary(run_dir, summary.model_copy(update={"error": outcome.message, "passed": False}))
    print(f"[workbench] report: {html or '(not written: the notebook did not start)'}", flush=True)
    print(f"[workbench] summary: {summary_path}", flush=True)
    if outcome.status == "ok":
        print("[workbench] PASSED", flush=True)
        return ExitCode.OK
    if outcome.status == "assertion":
        print(f"[workbench] FAILED {outcome.message}", flush=True)
        return ExitCode.CHECKS_FAILED
    print(f"[workbench] ERROR {outcome.message}", file=sys.stderr, flush=True)
    return ExitCode.ERROR
