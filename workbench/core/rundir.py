"""Run folders: where a run writes, what it records about the software, and its summary.json."""

from __future__ import annotations

import hashlib
import platform
from datetime import datetime
from pathlib import Path

from workbench.core.params import CaseParams, case_name, load_params
from workbench.records import EngineVersions, RunSummary, Versions, write_record
from workbench.core.resources import default_results_dir


def new_run_dir(params_file: str | Path, root: Path | None = None) -> Path:
    """`results/<case>-<timestamp>/` under the current folder (or `root`)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return (root or default_results_dir()) / f"{case_name(params_file)}-{stamp}"


def workbench_version() -> str:
    try:
        from importlib.metadata import version

        return version("mtp-workbench")
    except Exception:  # not installed as a distribution (e.g. run from a checkout)
        return "dev"


def model_config_hash(model: str) -> str:
    """sha256 of the checkpoint's config.json; of the id when the model lives on a hub."""
    config = Path(model) / "config.json"
    payload = config.read_bytes() if config.is_file() else model.encode()
    return hashlib.sha256(payload).hexdigest()[:16]


def run_versions(engine: EngineVersions | None, model: str) -> Versions:
    """vLLM and torch as the engine child saw them, plus this process's Python, the model and the workbench."""
    seen = engine.model_dump() if engine else {}
    return Versions(**{**seen, "python": platform.python_version(), "model_config_hash": model_config_hash(model),
                       "workbench": workbench_version()})


def write_summary(run_dir: str | Path, summary: RunSummary) -> Path:
    """summary.json, validated on the way out as it is on the way in."""
    return write_record(Path(run_dir) / "summary.json", summary)


def open_run_folder(params_file: str | Path, overrides: dict | None = None,
                    run_dir: str | Path = "") -> tuple[CaseParams, Path]:
    """Validate params, make the run folder (and `records/`), and write the params as resolved into it."""
    import yaml

    params = load_params(params_file, overrides)
    folder = Path(run_dir) if run_dir else new_run_dir(params_file)
    (folder / "records").mkdir(parents=True, exist_ok=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(params.model_dump(), sort_keys=False), encoding="utf-8")
    return params, folder
