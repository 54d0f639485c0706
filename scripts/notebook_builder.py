"""What every notebook builder shares: stable cell ids, the project's kernel, validation, the output path.

Builders are run as `python scripts/build_X_notebook.py [OUT]`; without OUT they write the packaged
notebook under workbench/resources/notebooks/ (the repository's notebooks/ links there).
"""

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_notebook

PACKAGED = Path(__file__).resolve().parent.parent / "workbench" / "resources" / "notebooks"


def write_notebook(cells: list, name: str) -> Path:
    """Number the cells (`cell-00`, ...) so a rebuild changes only what the builder changed, then write."""
    for number, cell in enumerate(cells):
        cell["id"] = f"cell-{number:02d}"
    nb = new_notebook(cells=cells, metadata={
        "kernelspec": {"display_name": "mtp-workbench", "language": "python", "name": "mtp-workbench"},
        "language_info": {"name": "python"}})
    nbformat.validate(nb)
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else PACKAGED / name
    nbformat.write(nb, str(out))
    return out
