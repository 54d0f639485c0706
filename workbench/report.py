"""Execute a notebook with papermill and render the self-contained HTML report with nbconvert."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KERNEL_NAME = "mtp-workbench"
TEMPLATES = Path(__file__).resolve().parent / "templates"  # workbench_report: lab without web-loaded scripts


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
