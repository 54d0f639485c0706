"""Run folders: where a run writes, what it records about the software, and its summary.json."""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
from datetime import datetime
from pathlib import Path

from workbench.core.errors import BadInputError, RunFolderError
from workbench.core.params import CaseParams, case_name, load_params
from workbench.records import EngineVersions, RunSummary, Versions, write_record
from workbench.core.resources import default_results_dir


def new_run_dir(params_file: str | Path, root: Path | None = None) -> Path:
    """A new `results/<case>-<timestamp>/` under the current folder (or `root`), created here.

    Creating it is atomic: two runs started in the same second get `...-<timestamp>` and
    `...-<timestamp>-2`, never one folder.
    """
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = (root or default_results_dir()) / f"{case_name(params_file)}-{stamp}"
    base.parent.mkdir(parents=True, exist_ok=True)
    for number in range(1, 1000):
        candidate = base if number == 1 else base.with_name(f"{base.name}-{number}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise RunFolderError(f"{base}: no free run folder name", path=base)


LOCK_NAME = ".workbench.lock"


class RunFolderLock:
    """An exclusive lock on a run folder for as long as the run lives (released by the OS if it dies)."""

    def __init__(self, folder: Path) -> None:
        import fcntl

        self.path = folder / LOCK_NAME
        self._file = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            raise BadInputError(f"{folder}: another run is writing into this folder (lock {self.path}); "
                                "choose another --out", path=folder, key="--out") from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(f"{os.getpid()}\n")
        self._file.flush()

    def release(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)


def claim_run_folder(out: Path | None, params_file: str | Path, force: bool = False) -> tuple[Path, RunFolderLock]:
    """The run's folder, created and locked: a new one, or `out` if it is free.

    A folder that already holds a run is refused (exit 2) unless `force`, which clears it first,
    so a summary never mixes two runs and a stale "passed" never survives a rerun.
    """
    if out is None:
        folder = new_run_dir(params_file)
    else:
        folder = Path(out).resolve()
        if folder.exists() and not folder.is_dir():
            raise BadInputError(f"--out {folder}: exists and is not a folder", path=folder, key="--out")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunFolderError(f"--out {folder}: cannot create the run folder: {exc.strerror or exc}",
                                 path=folder) from exc
    if not os.access(folder, os.W_OK):
        raise RunFolderError(f"--out {folder}: not writable", path=folder)
    lock = RunFolderLock(folder)
    leftovers = [p for p in folder.iterdir() if p.name != LOCK_NAME]
    if leftovers and not force:
        lock.release()
        raise BadInputError(f"--out {folder}: already holds a run ({', '.join(sorted(p.name for p in leftovers)[:4])}"
                            f"{', ...' if len(leftovers) > 4 else ''}); pass --force to clear it, or choose another "
                            "folder", path=folder, key="--out")
    for path in leftovers:
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    return folder, lock


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
