"""The `ray` executor: each cell a Ray task, on an existing cluster (`--ray-address`) or a local one it starts.

A task asks for the cell's GPUs (`num_gpus` = tensor_parallel_size) on a cluster with GPUs, and on a
CPU cluster for a whole node's CPUs: vLLM's CPU backend uses every core it is given, so two cells on
one node would only slow each other (a 2-core local cluster runs one cell at a time, as `local` does).

Workers may share no file system with the driver. A task gets the params (a packaged case by name,
else the params as resolved, with absolute model and dataset paths) and the overrides, runs the cell
with `workbench run` under a temporary root laid out as the sweep folder is, and returns that folder as
tar.gz; the driver unpacks it into the sweep folder and rewrites the worker's paths in its records. A
reference key's leader returns its stored cache entry as a second object, and the key's other cells
(followers) run only their speculative engine against it. On a cluster with GPUs a follower gets that
object inside a list, which Ray does not wait for: it starts at once, as the local executor's do, and a
thread of its task fetches the reference when the leader has stored it (two GPUs then sweep four cells in
two waves, not three). On a CPU cluster, where a cell takes a whole node, a follower started early would
only hold the node its leader needs, so it takes the object itself and Ray starts it once it exists. A
task that raises, or whose worker or node dies, fails its cell (exit 3, the cause in sweep.json) and the
cells waiting for its reference, never the sweep. Tasks are not retried: a retry would start the engines
again.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from workbench.core.errors import BadInputError, EngineError, ExitCode
from workbench.core.params import load_params
from workbench.core.resources import CASES_DIR, resolve_case
from workbench.sweep.archive import pack, relocate, unpack
from workbench.sweep.executors import CellJob, CellResult, Echo, start_cell
from workbench.sweep.spec import SweepCellSpec

CACHE = "reference-cache"
WORKER_SET = ("reference_record", "reference_wait_s", "reference_cache_dir")
"""Overrides that name driver paths: a worker sets its own."""


class CellTask(BaseModel):
    """What a worker needs to run one cell, with no file of the driver's."""

    name: str
    sweep: str = "sweep"
    role: str
    packaged_case: str | None = None
    params_name: str
    params_yaml: str = ""
    overrides: dict[str, Any]
    leader: str | None = None
    reference_entry: list[str] = []  # a follower's reference record inside the cache: key folder, records, file
    reference_wait_s: float = 3600.0

    @classmethod
    def for_job(cls, job: CellJob, sweep: str) -> CellTask:
        packaged = job.params_file.resolve().parent == CASES_DIR.resolve()
        resolved = "" if packaged else yaml.safe_dump(load_params(job.params_file).model_dump(), sort_keys=False)
        return cls(name=job.name, sweep=sweep, role=job.role, packaged_case=job.params_file.stem if packaged else None,
                   params_name=job.params_file.name, params_yaml=resolved,
                   overrides={k: v for k, v in job.overrides.items() if k not in WORKER_SET}, leader=job.leader,
                   reference_entry=list(Path(job.record).parts[-3:]) if job.record else [],
                   reference_wait_s=float(job.overrides.get("reference_wait_s", 3600.0)))

    def params_file(self, root: Path) -> Path:
        if self.packaged_case:
            return resolve_case(self.packaged_case)
        copy = root / "params" / self.params_name
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(self.params_yaml, encoding="utf-8")
        return copy


class TaskResult(BaseModel):
    """What a worker sends back: the exit code, its root (to rewrite paths), and the folder as tar.gz."""

    exit_code: int
    root: str
    archive: bytes = b""
    wall_s: float | None = None
    device: str | None = None
    error: str | None = None


def _device() -> str:
    import os

    try:
        import ray

        node = ray.util.get_node_ip_address()
    except Exception:
        node = socket.gethostname()
    gpus = os.environ.get("CUDA_VISIBLE_DEVICES")
    return f"{node} {'cuda ' + gpus if gpus else 'cpu'}"


class ReferenceFetch:
    """A follower's reference, fetched while its speculative engine already runs: Ray's `get` of the leader's
    cache entry in a thread, unpacked beside the cache and moved in whole, so the run waiting for the record
    (`reference_wait_s`) never reads half a file."""

    def __init__(self, entry: Any, cache: Path, leader: str | None) -> None:
        self.failure: str | None = None
        self.leader = leader
        self._thread = threading.Thread(target=self._fetch, args=(entry, cache), daemon=True)
        self._thread.start()

    def _fetch(self, entry: Any, cache: Path) -> None:
        import ray

        try:
            data = ray.get(entry)
        except Exception as exc:  # the leader's task failed, or its worker died
            self.failure = f"its reference cell {self.leader} failed: {_cause(exc)}"
            return
        if not data:
            self.failure = f"its reference cell {self.leader} ended without a reference"
            return
        incoming = Path(tempfile.mkdtemp(prefix=".incoming-", dir=cache.parent))
        for name in unpack(data, incoming):
            cache.mkdir(parents=True, exist_ok=True)
            os.replace(incoming / name, cache / name)
        shutil.rmtree(incoming, ignore_errors=True)


def _wait_cell(process: Any, fetch: ReferenceFetch | None) -> tuple[int, str | None]:
    """The cell's exit code; a follower whose reference will never come is stopped at once (as a cancel stops a
    run: what finished is kept) rather than at `reference_wait_s`."""
    try:
        while True:
            try:
                return process.wait(timeout=1.0), None
            except subprocess.TimeoutExpired:
                pass
            if fetch is not None and fetch.failure:
                process.terminate()
                process.wait()
                return ExitCode.ERROR, fetch.failure
    except KeyboardInterrupt:  # ray.cancel: the run stops as a cancel stops it
        process.terminate()
        return process.wait(), None


def run_cell_task(task: CellTask, reference: Any = None) -> tuple[TaskResult, bytes]:
    """On a worker: run the cell in a temporary folder; return its result and (a leader) its stored reference entry.

    A follower's `reference` is the leader's cache entry (bytes: Ray waited for it), or a list holding the
    object that will carry it (Ray did not wait: the cell starts now and fetches it meanwhile)."""
    scratch = Path(tempfile.mkdtemp(prefix="workbench-sweep-cell-"))
    root = scratch / task.sweep
    cache = root / CACHE
    started = time.perf_counter()
    fetch = None
    try:
        overrides = dict(task.overrides)
        if task.role == "leader":
            overrides["reference_cache_dir"] = str(cache)
        elif task.role == "follower" and isinstance(reference, list):
            root.mkdir(parents=True, exist_ok=True)
            fetch = ReferenceFetch(reference[0], cache, task.leader)
            overrides.update(reference_record=str(cache.joinpath(*task.reference_entry)),
                             reference_wait_s=task.reference_wait_s)
        elif task.role == "follower":
            if reference:
                unpack(reference, cache)
            record = next(cache.glob("*/records/reference.json"), None)
            if record is None:
                return TaskResult(exit_code=ExitCode.ERROR, root=str(root), device=_device(),
                                  error="its reference cell ended without a reference"), b""
            overrides.update(reference_record=str(record), reference_wait_s=0.0)
        log = root / "logs" / f"{task.name}.out"
        process = start_cell(task.params_file(root), overrides, root / task.name, log)
        code, failure = _wait_cell(process, fetch)  # a failure: a follower's leader gave it no reference
        stored = sorted(p.name for p in cache.iterdir() if p.is_dir()) if task.role == "leader" and cache.is_dir() \
            else []
        result = TaskResult(exit_code=code, root=str(root), device=_device(), wall_s=time.perf_counter() - started,
                            error=failure,
                            archive=pack(root, [task.name, f"logs/{task.name}.out", *([CACHE] if stored else [])]))
        return result, pack(cache, stored) if stored else b""
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def check_address(address: str, timeout_s: float = 5.0) -> None:
    """An unreachable `--ray-address` is bad input, refused before anything starts (exit 2)."""
    if address == "auto":
        return
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise BadInputError(f"--ray-address {address}: expected HOST:PORT (the head node's GCS address, e.g. "
                            "127.0.0.1:6379), ray://HOST:PORT or auto", key="--ray-address")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise BadInputError(f"--ray-address {address}: unreachable ({exc.strerror or exc}); is a Ray head node "
                            "running there (`ray start --head`)?", key="--ray-address") from exc


def _cause(error: Exception) -> str:
    cause = getattr(error, "cause", None)  # RayTaskError: what the task raised
    if cause is not None:
        return f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}"
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


class RayExecutor:
    """Each cell a Ray task (see the module's docstring)."""

    name = "ray"

    def __init__(self, address: str | None = None, task: Callable[..., Any] | None = None,
                 object_store_bytes: int = 1 << 30) -> None:
        self.address = address
        self.task = task or run_cell_task
        self.object_store_bytes = object_store_bytes
        self.connected = False
        self.gpus_per_node = 0.0
        self.cpus_per_cell = 1.0

    def check(self, cells: list[SweepCellSpec]) -> None:
        """Connect (or start a local cluster) and refuse cells the cluster cannot run, before any engine starts."""
        try:
            import ray
        except ImportError:
            raise BadInputError("--executor ray: Ray is not installed; pip install 'mtp-workbench[ray]' (make installs "
                                "it into .venv)", key="--executor") from None
        if self.address:
            check_address(self.address)
        common = {"log_to_driver": False, "namespace": "workbench-sweep", "logging_level": "warning"}
        for attempt in (1, 2):
            try:
                with warnings.catch_warnings():  # Ray's notes on its future defaults are not the sweep's
                    warnings.simplefilter("ignore", FutureWarning)
                    if self.address:
                        ray.init(address=self.address, **common)
                    else:  # a cluster of this machine only, stopped by close()
                        ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False,
                                 object_store_memory=self.object_store_bytes, **common)
                break
            except Exception as exc:
                ray.shutdown()
                if self.address:
                    raise BadInputError(f"--ray-address {self.address}: cannot connect: {_cause(exc)}",
                                        key="--ray-address") from exc
                if attempt == 2:  # a busy machine can miss one of Ray's startup deadlines once
                    raise EngineError(f"--executor ray: the local Ray cluster did not start (twice): {_cause(exc)}; "
                                      "see /tmp/ray/session_latest/logs/raylet.out") from exc
        self.connected = True
        nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
        self.gpus_per_node = max((node.get("GPU", 0.0) for node in nodes), default=0.0)
        self.cpus_per_cell = min((node.get("CPU", 1.0) for node in nodes), default=1.0)
        for cell in cells:
            if self.gpus_per_node and cell.tensor_parallel_size > self.gpus_per_node:
                raise BadInputError(f"cell {cell.name}: tensor_parallel_size {cell.tensor_parallel_size} needs that "
                                    f"many GPUs of one node; the cluster's largest node has {self.gpus_per_node:g}",
                                    key="tensor_parallel_size")

    def close(self) -> None:
        if self.connected:
            import ray

            ray.shutdown()  # stops the local cluster it started; only disconnects from another
            self.connected = False

    def _options(self, job: CellJob) -> dict[str, Any]:
        resources = ({"num_gpus": job.gpus, "num_cpus": 1} if self.gpus_per_node
                     else {"num_cpus": self.cpus_per_cell})
        return {**resources, "num_returns": 2, "max_retries": 0, "name": f"workbench-sweep:{job.name}"}

    def run(self, jobs: list[CellJob], out: Path, echo: Echo, cancelled: list[str]) -> dict[str, CellResult]:
        import ray

        remote = ray.remote(self.task)
        entries: dict[str, Any] = {}
        pending: dict[Any, CellJob] = {}
        for job in sorted(jobs, key=lambda job: job.role == "follower"):
            task = CellTask.for_job(job, out.name)
            entry = entries.get(job.leader or "")
            early = entry is not None and self.gpus_per_node  # see the module's docstring
            result, entry = remote.options(**self._options(job)).remote(task, [entry] if early else entry)
            if job.role == "leader":
                entries[job.name] = entry
            pending[result] = job
            echo(f"[sweep] {job.name}: submitted ({job.role}{' of ' + job.leader if job.leader else ''})")
        results: dict[str, CellResult] = {}
        roots: dict[str, str] = {}
        cancel_sent = False
        while pending:
            if cancelled and not cancel_sent:
                for ref in pending:
                    ray.cancel(ref)
                cancel_sent = True
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in ready:
                job = pending.pop(ref)
                results[job.name] = self._collect(ref, job, out, results, roots, cancelled)
                echo(f"[sweep] {job.name}: exit {results[job.name].exit_code}"
                     + (f" ({results[job.name].error})" if results[job.name].error else ""))
        relocate([*(out / CACHE).glob("*/key.json"), *(out / CACHE).glob("*/params.yaml"),
                  *[out / job.name / name for job in jobs for name in ("summary.json", "params.yaml")]], roots)
        return results

    def _collect(self, ref: Any, job: CellJob, out: Path, results: dict[str, CellResult], roots: dict[str, str],
                 cancelled: list[str]) -> CellResult:
        import ray

        try:
            result: TaskResult = ray.get(ref)
        except ray.exceptions.TaskCancelledError:
            return CellResult(exit_code=ExitCode.CANCELLED, error=f"the sweep was cancelled ({cancelled[0]})"
                              if cancelled else "its Ray task was cancelled")
        except ray.exceptions.RayError as exc:
            leader = results.get(job.leader or "")
            why = (f"its reference cell {job.leader} failed: {leader.error}" if leader and leader.error
                   else f"its Ray task failed: {_cause(exc)}")
            (out / "logs").mkdir(parents=True, exist_ok=True)
            (out / "logs" / f"{job.name}.out").write_text(f"{why}\n\n{exc}\n", encoding="utf-8")
            return CellResult(exit_code=ExitCode.ERROR, error=why)
        if result.archive:
            unpack(result.archive, out)
        roots[result.root] = str(out)
        return CellResult(exit_code=result.exit_code, wall_s=result.wall_s, device=result.device, error=result.error)
