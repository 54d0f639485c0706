"""The audit package's layout: the probe stays standard-library only (it is loaded into every vLLM
process), modules share nothing private, and the notebook is built deterministically."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys

import nbformat

from conftest import REPO
from workbench.audit import hook

AUDIT_DIR = REPO / "workbench" / "audit"
HEAVY = {"pydantic", "pandas", "numpy", "vllm", "torch", "yaml"}

IMPORT_PROBE = """
import json, sys
before = set(sys.modules)
import workbench.audit.probe
print(json.dumps(sorted({m.split('.')[0] for m in set(sys.modules) - before})))
"""


def test_importing_the_probe_pulls_in_only_the_standard_library() -> None:
    """In a fresh interpreter, as the generated sitecustomize imports it in every engine process."""
    result = subprocess.run([sys.executable, "-c", IMPORT_PROBE], cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    new = set(json.loads(result.stdout))
    assert not new & HEAVY
    assert new - set(sys.stdlib_module_names) == {"workbench"}


def test_the_sitecustomize_imports_the_probe_and_the_path_finds_the_package(tmp_path) -> None:
    site = hook.write_sitecustomize(tmp_path / "probe")
    text = site.read_text()
    assert "from workbench.audit.probe import install_from_env" in text
    compile(text, str(site), "exec")
    path = hook.probe_env(tmp_path / "log", tmp_path / "phase", tmp_path / "probe")["PYTHONPATH"].split(os.pathsep)
    assert path[0] == str(tmp_path / "probe")
    assert (hook.package_root() / "workbench" / "audit" / "probe.py").is_file()
    assert path[1] == str(hook.package_root())


def test_the_old_single_module_is_gone() -> None:
    assert importlib.util.find_spec("workbench.audit.flow") is None


def test_no_private_name_is_imported_across_modules() -> None:
    offenders = []
    for path in sorted(AUDIT_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("workbench"):
                offenders += [f"{path.name}: from {node.module} import {a.name}" for a in node.names
                              if a.name.startswith("_")]
    assert offenders == []


def test_the_audit_notebook_is_built_deterministically(tmp_path) -> None:
    packaged = REPO / "workbench" / "resources" / "notebooks" / "no_sync_audit.ipynb"
    built = tmp_path / "no_sync_audit.ipynb"
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "build_audit_notebook.py"), str(built)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert built.read_bytes() == packaged.read_bytes(), "rebuild: python scripts/build_audit_notebook.py"
    nb = nbformat.read(str(built), as_version=4)
    assert [c.id for c in nb.cells] == [f"cell-{i:02d}" for i in range(len(nb.cells))]
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata["tags"] and "assertion" in code[-1].metadata["tags"]
    sources = "\n".join(c.source for c in code)
    assert "workbench.audit.flow" not in sources and "from workbench.audit import stages, views" in sources
