"""Notebooks in git stay clean (no outputs) and keep their stable cell tags."""

from __future__ import annotations

import nbformat
import pytest

from conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
NEEDS_ASSERTION = {"mtp_correctness.ipynb", "no_sync_audit.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_clean_and_tagged(path) -> None:
    nb = nbformat.read(str(path), as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "outputs committed"
    tags = [c.metadata.get("tags", []) for c in code]
    assert "parameters" in tags[0], "the first code cell must be tagged `parameters`"
    if path.name in NEEDS_ASSERTION:
        assert "assertion" in tags[-1], "the last cell must be tagged `assertion`"
    # thin notebooks: no function or class definitions hide in cells
    assert not any(line.lstrip().startswith(("def ", "class ")) for c in code for line in c.source.splitlines())


def test_correctness_notebook_parameters_match_the_cli() -> None:
    nb = nbformat.read(str(REPO / "notebooks" / "mtp_correctness.ipynb"), as_version=4)
    source = nb.cells[[c.cell_type for c in nb.cells].index("code")].source
    for name in ("params_file", "overrides", "run_dir"):
        assert f"{name} =" in source


BUILDERS = {"mtp_correctness.ipynb": "build_correctness_notebook.py",
            "calibrate_threshold.ipynb": "build_calibrate_notebook.py",
            "no_sync_audit.ipynb": "build_audit_notebook.py",
            "sweep.ipynb": "build_sweep_notebook.py"}


@pytest.mark.parametrize("notebook", sorted(BUILDERS))
def test_builder_reproduces_the_committed_notebook(notebook, tmp_path) -> None:
    """Builders are deterministic (stable cell ids): a rebuild is byte-identical to what is committed."""
    import subprocess
    import sys

    out = tmp_path / notebook
    subprocess.run([sys.executable, str(REPO / "scripts" / BUILDERS[notebook]), str(out)], cwd=REPO, check=True)
    committed = REPO / "workbench" / "resources" / "notebooks" / notebook
    assert out.read_text() == committed.read_text(), f"rebuild scripts/{BUILDERS[notebook]} and commit {notebook}"
