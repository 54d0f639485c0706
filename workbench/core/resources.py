"""Where the packaged notebooks, params cases and the shipped model are, in a checkout or an installed wheel."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from workbench.core.errors import ParamsError

RESOURCES = Path(str(files("workbench.resources")))
NOTEBOOKS_DIR = RESOURCES / "notebooks"
CASES_DIR = RESOURCES / "params"
MODELS_DIR = RESOURCES / "models"
DEFAULT_CASE = "tiny-qwen3_5-cpu"


def notebook_path(name: str) -> Path:
    """A packaged notebook, e.g. `mtp_correctness.ipynb`."""
    return NOTEBOOKS_DIR / name


def case_names() -> list[str]:
    """The packaged params cases, by name (`workbench run NAME`)."""
    return sorted(p.stem for p in CASES_DIR.glob("*.yaml"))


def resolve_case(value: str | Path) -> Path:
    """A params file: an existing path as given, else a packaged case name (with or without `.yaml`)."""
    path = Path(value)
    if path.is_file():
        return path
    name = path.name[:-5] if path.name.endswith(".yaml") else path.name
    packaged = CASES_DIR / f"{name}.yaml"
    if path.parent == Path(".") and packaged.is_file():
        return packaged
    raise ParamsError(f"{value}: params file not found, and not a packaged case "
                      f"(known cases: {', '.join(case_names())})", path=value)


def default_results_dir() -> Path:
    """Run folders go under `./results` of the folder the command runs in."""
    return Path.cwd() / "results"
