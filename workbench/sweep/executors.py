"""Where a sweep's cells run; the `local` executor (the `ray` one is in ray_executor.py).

Every cell is an ordinary `workbench run` child with its planned overrides, output in
`logs/<cell>.out` of the sweep folder. `local` runs them on this machine: on the CPU or one GPU one
after the other; with several GPUs visible (nvidia-smi, within CUDA_VISIBLE_DEVICES) one cell per GPU
at once, a cell with `tensor_parallel_size: N` on N of them (its `CUDA_VISIBLE_DEVICES`). Cells of one
reference key share the sweep folder: a follower may start while its leader runs and waits for the
stored reference (`reference_wait_s`); a leader that ends without storing one stops its followers,
which end as errors (exit 3) naming it. A cell's child dies with its parent (SIGTERM, a cancel), so a
killed sweep leaves no run behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from workbench.core.errors import BadInputError, ExitCode
from workbench.sweep.spec import SweepCellSpec

Echo = Callable[[str], None]


class CellJob(BaseModel):
    """A planned cell as an executor runs it: its overrides (with its role's reference plumbing) and role."""

    name: str
    params_file: Path
    overrides: dict[str, Any]
    role: str  # "leader" (runs both engines, stores the reference) | "follower" (reuses the leader's)
    leader: str | None = None
    record: Path | None = None  # where the key's reference record is stored (the sweep's reference cache)
    key: str
    gpus: int = 1


class CellResult(BaseModel):
    """How an executor saw a cell end: its exit code, and why the executor failed it, if it did."""

    exit_code: int
    wall_s: float | None = None
    device: str | None = None
    error: str | None = None


def cell_command(params_file: Path, overrides: dict[str, Any], run_dir: Path) -> list[str]:
    """`workbench run PARAMS --out RUN_DIR --force -p KEY VALUE...` (values as JSON, which YAML reads back exactly)."""
    pairs = [part for key, value in overrides.items() for part in ("-p", key, json.dumps(value))]
    return [sys.executable, "-m", "workbench.cli", "run", str(params_file), "--out", str(run_dir), "--force", *pairs]


def _die_with_parent() -> None:
    """In the child: SIGTERM when the process that started it dies (Linux), so a lost worker leaves no run."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def start_cell(params_file: Path, overrides: dict[str, Any], run_dir: Path, log: Path,
               env: dict[str, str] | None = None) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as out:
        return subprocess.Popen(cell_command(params_file, overrides, run_dir), stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})}, preexec_fn=_die_with_parent)


def visible_gpus() -> list[str]:
    """The GPUs this machine shows (nvidia-smi), as CUDA_VISIBLE_DEVICES narrows them; none on a CPU machine."""
    try:
        listed = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True,
                                text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return []
    found = [line.strip() for line in listed.stdout.splitlines() if line.strip()] if listed.returncode == 0 else []
    chosen = os.environ.get("CUDA_VISIBLE_DEVICES")
    if not found or chosen is None:
        return found
    return [device.strip() for device in chosen.split(",") if device.strip()]


@dataclass
class _Running:
    job: CellJob
    process: subprocess.Popen
    slots: list[str]
    started: float = field(default_factory=time.perf_counter)


class LocalExecutor:
    """This machine: one cell at a time on the CPU or one GPU; with several GPUs, one cell per free GPU set."""

    name = "local"

    def __init__(self, gpus: list[str] | None = None, poll_s: float = 0.5) -> None:
        self.gpus = visible_gpus() if gpus is None else gpus
        self.poll_s = poll_s

    def check(self, cells: list[SweepCellSpec]) -> None:
        """A cell needing more GPUs than this machine shows is refused before anything starts (exit 2)."""
        for cell in cells:
            if self.gpus and cell.tensor_parallel_size > len(self.gpus):
                raise BadInputError(f"cell {cell.name}: tensor_parallel_size {cell.tensor_parallel_size} needs that "
                                    f"many GPUs; this machine shows {len(self.gpus)} ({','.join(self.gpus)})",
                                    key="tensor_parallel_size")

    def close(self) -> None:
        pass

    def _device(self, slots: list[str]) -> str:
        return f"cuda {','.join(slots)}" if self.gpus else "cpu"

    def run(self, jobs: list[CellJob], out: Path, echo: Echo, cancelled: list[str]) -> dict[str, CellResult]:
        free = list(self.gpus) or ["cpu"]
        queue = sorted(jobs, key=lambda job: job.role == "follower")  # a follower never holds the slot its leader needs
        running: list[_Running] = []
        results: dict[str, CellResult] = {}
        stopped: dict[str, str] = {}
        try:
            while queue or running:
                if cancelled:
                    for item in running:
                        stopped.setdefault(item.job.name, f"the sweep was cancelled ({cancelled[0]})")
                        if item.process.poll() is None:
                            item.process.send_signal(signal.SIGTERM)
                    for job in queue:
                        results[job.name] = CellResult(exit_code=ExitCode.CANCELLED, error="the sweep was cancelled "
                                                                                            "before this cell started")
                    queue.clear()
                for job in list(queue):
                    leader = results.get(job.leader) if job.role == "follower" else None
                    if leader is not None and not (job.record and job.record.is_file()):
                        queue.remove(job)
                        results[job.name] = CellResult(exit_code=ExitCode.ERROR, error=(
                            f"its reference cell {job.leader} ended without a reference (exit {leader.exit_code})"))
                        echo(f"[sweep] {job.name}: not started ({results[job.name].error})")
                        continue
                    need = job.gpus if self.gpus else 1
                    if need > len(free):
                        continue
                    slots, free = free[:need], free[need:]
                    queue.remove(job)
                    env = {"CUDA_VISIBLE_DEVICES": ",".join(slots)} if self.gpus else {}
                    log = out / "logs" / f"{job.name}.out"
                    process = start_cell(job.params_file, job.overrides, out / job.name, log, env)
                    running.append(_Running(job, process, slots))
                    echo(f"[sweep] {job.name}: started ({job.role}{' of ' + job.leader if job.leader else ''}) on "
                         f"{self._device(slots)}")
                for item in list(running):
                    code = item.process.poll()
                    if code is None:
                        continue
                    running.remove(item)
                    free += item.slots
                    why = stopped.get(item.job.name)
                    if why is not None:
                        code = ExitCode.CANCELLED if cancelled else ExitCode.ERROR
                    results[item.job.name] = CellResult(exit_code=code, wall_s=time.perf_counter() - item.started,
                                                        device=self._device(item.slots), error=why)
                    echo(f"[sweep] {item.job.name}: exit {code}" + (f" ({why})" if why else ""))
                    if item.job.role == "leader" and not (item.job.record and item.job.record.is_file()):
                        for other in running:
                            if other.job.leader == item.job.name and other.process.poll() is None:
                                stopped[other.job.name] = (f"its reference cell {item.job.name} ended without a "
                                                           f"reference (exit {code})")
                                other.process.send_signal(signal.SIGTERM)
                time.sleep(self.poll_s)
        finally:
            for item in running:
                if item.process.poll() is None:
                    item.process.kill()
                    item.process.wait()
        return results
