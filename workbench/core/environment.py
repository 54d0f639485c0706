"""Where and when a run ran: the machine (`fingerprint.hardware`), its GPU driver and CUDA, the workbench's git
commit, the start and the wall time, recorded into summary.json (`RunSummary.environment`) at run time.

Reports and the site read it from there; nothing is re-derived later on another machine. Nothing here imports
vLLM or torch (torch's CUDA version is read from its `version.py`).
"""

from __future__ import annotations

import functools
import importlib.util
import re
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from workbench.core.errors import WorkbenchError
from workbench.core.fingerprint import engine_versions, hardware
from workbench.records import Environment, RunSummary, Versions, load_summary, write_record

PACKAGE_ROOT = Path(__file__).resolve().parents[2]
"""The folder holding the `workbench` package: a git checkout when run from one."""


def _command(args: list[str], cwd: Path | None = None) -> str | None:
    """A command's stripped stdout, or None when it is missing, fails or hangs."""
    if shutil.which(args[0]) is None:
        return None
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=20, cwd=cwd)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_commit(root: Path = PACKAGE_ROOT) -> str:
    """The commit of the checkout the workbench runs from, `+dirty` when tracked files changed; `unknown` when the
    package does not sit at the top of a git checkout (an installed wheel)."""
    top = _command(["git", "rev-parse", "--show-toplevel"], cwd=root)
    if top is None or Path(top).resolve() != root:
        return "unknown"
    commit = _command(["git", "rev-parse", "HEAD"], cwd=root)
    if not commit:
        return "unknown"
    changed = _command(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root)
    return commit + ("+dirty" if changed else "")


@functools.cache
def gpu_driver() -> tuple[int, str | None]:
    """(GPU count, NVIDIA driver version) as nvidia-smi reports them; (0, None) without one."""
    out = _command(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    versions = [line.strip() for line in (out or "").splitlines() if line.strip()]
    return len(versions), (versions[0] if versions else None)


@functools.cache
def torch_cuda() -> str | None:
    """The CUDA version torch was built with, read from torch/version.py (torch is not imported)."""
    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    try:
        text = (Path(spec.origin).parent / "version.py").read_text(encoding="utf-8")
    except OSError:
        return None
    found = re.search(r"^cuda\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", text, re.M)
    return found.group(1) if found else None


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


def collect_environment(started_at: datetime | None = None, wall_s: float | None = None) -> Environment:
    """This machine and checkout, with the run's start and wall time."""
    machine = hardware()
    count, driver = gpu_driver()
    return Environment(hardware=machine, gpu_count=count or None, driver=driver,
                       cuda=torch_cuda() if machine.device == "cuda" else None, git_commit=git_commit(),
                       started_at=iso(started_at) if started_at else None,
                       wall_s=round(wall_s, 1) if wall_s is not None else None)


def installed_versions(versions: Versions) -> Versions:
    """The run's versions, with what no engine reported filled in from the installed packages."""
    found = engine_versions()
    return versions.model_copy(update={k: v for k, v in found.items() if getattr(versions, k, None) is None})


def stamp_environment(run_dir: Path, started_at: datetime, wall_s: float, **new_summary: Any) -> Path | None:
    """Write the environment of a finished (or stopped) run into its summary.json.

    The summary the run wrote is kept; a run that stopped before writing one gets a bare one (`new_summary`:
    kind, case, params), so that its report and the site still say where and when it ran. None when the
    summary cannot be read (it is then rewritten by whoever reports the error) or written.
    """
    path = run_dir / "summary.json"
    try:
        summary = load_summary(run_dir) if path.exists() else RunSummary(**new_summary)
    except WorkbenchError:
        return None
    environment = collect_environment(started_at, wall_s)
    try:  # a full disk fails the summary and report writes that follow, with their own message
        return write_record(path, summary.model_copy(update={
            "environment": environment, "case": summary.case or new_summary.get("case"),
            "versions": installed_versions(summary.versions)}))
    except OSError:
        return None
