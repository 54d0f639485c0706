"""Real `vllm.LLM` runs, each in its own child process: the frame every flow's engine child runs in.

Why a child: vLLM's CPU backend wants engines started under `__main__` or in a spawned
process, teardown between two engines in one process is fragile, and a crash in the child
becomes a reported `EngineError` (with the log tail) instead of a hung notebook kernel.
The child writes its full record to a JSON file, so nothing computed is lost when a
later stage fails.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import re
import sys
import time
import traceback
from dataclasses import dataclass, field
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench.core.errors import EngineError
from workbench.core.processes import ProcessTree, command_line

SPEC_COUNTERS = (
    "vllm:spec_decode_num_drafts",
    "vllm:spec_decode_num_draft_tokens",
    "vllm:spec_decode_num_accepted_tokens",
    "vllm:spec_decode_num_accepted_tokens_per_pos",
    "vllm:num_preemptions",  # not a spec-decode counter: whether a workload forced preemption
)


def read_spec_counters(metrics: list[Any]) -> dict[str, Any]:
    """Sum vLLM's spec-decode counters (Counter.value, Vector.values) over engines."""
    out: dict[str, Any] = {}
    for metric in metrics:
        if metric.name not in SPEC_COUNTERS:
            continue
        if hasattr(metric, "values"):
            previous = out.get(metric.name) or [0] * len(metric.values)
            out[metric.name] = [a + b for a, b in zip(previous, metric.values)]
        else:
            out[metric.name] = out.get(metric.name, 0) + metric.value
    return out


def counters_delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """What one generate call added to the engine's cumulative counters."""
    delta: dict[str, Any] = {}
    for name, value in after.items():
        old = before.get(name)
        if isinstance(value, list):
            old = old or [0] * len(value)
            delta[name] = [a - b for a, b in zip(value, old)]
        else:
            delta[name] = value - (old or 0)
    return delta


def top_logprobs(position_logprobs: dict[int, Any]) -> list[dict[str, Any]]:
    """One position's logprobs (vLLM's {token id: Logprob}) as plain rows, best first."""
    rows = [{"id": int(token), "logprob": float(lp.logprob), "rank": int(lp.rank) if lp.rank is not None else None,
             "text": lp.decoded_token} for token, lp in position_logprobs.items()]
    return sorted(rows, key=lambda row: -row["logprob"])


def completion_record(prompt_id: int, output: Any, keep_prompt: bool = False) -> dict[str, Any]:
    """One request's output as a plain row; `keep_prompt` keeps the prompt text the engine rendered (chat)."""
    completion = output.outputs[0]
    spec = getattr(completion, "spec_decode_metrics", None)
    record = {
        "prompt_id": prompt_id,
        "completion": completion.text,
        "token_ids": list(completion.token_ids),
        "finish_reason": completion.finish_reason,
        "spec": spec.to_dict() if spec is not None else None,
    }
    if completion.logprobs is not None:  # asked for (output-match prompts): top-N per generated token
        record["top_logprobs"] = [top_logprobs(position) for position in completion.logprobs]
    if keep_prompt:
        record["prompt"] = output.prompt
    return record


def progress_path(job: Any) -> Path:
    """Where an engine child writes its progress: beside its log, `<label>.progress.json`."""
    return Path(job.log_path).with_name(f"{job.label}.progress.json")


def write_progress(path: Path, phase: str, done: int | None = None, total: int | None = None) -> None:
    """One engine's progress (replaced whole, so a reader never sees half a file)."""
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(json.dumps({"phase": phase, "done": done, "total": total, "time": time.time()}),
                       encoding="utf-8")
    os.replace(partial, path)


def progress_bar(path: Path, phase: str) -> Any:
    """A tqdm class for `LLM.generate(use_tqdm=...)` that writes vLLM's real request progress to `path`."""
    from tqdm import tqdm

    class FileProgress(tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["file"] = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 (tqdm closes nothing it got)
            super().__init__(*args, **kwargs)
            self._written = 0.0
            self._write(force=True)

        def update(self, n: float | None = 1) -> bool | None:
            shown = super().update(n)
            self._write()
            return shown

        def close(self) -> None:
            self._write(force=True)
            super().close()

        def _write(self, force: bool = False) -> None:
            if force or time.time() - self._written >= 1.0:
                write_progress(path, phase, int(self.n), int(self.total) if self.total else None)
                self._written = time.time()

    return FileProgress


Submit = Callable[[Any, list[Any], dict[str, Any], Any, bool], list[Any]]
"""How prompts reach the engine: (llm, prompts, sampling kwargs, progress class, chat) -> RequestOutputs in
prompt order. The default sends them all at once (`llm.generate` / `llm.chat`), as upstream does."""


def submit_batch(llm: Any, prompts: list[Any], sampling: dict[str, Any], progress: Any, chat: bool) -> list[Any]:
    """Upstream's workload: every prompt at once."""
    from vllm import SamplingParams

    send = llm.chat if chat else llm.generate
    return send(prompts, SamplingParams(**sampling), use_tqdm=progress or False)


def generate(llm: Any, prompts: list[str] | list[list[dict[str, str]]], sampling: dict[str, Any],
             progress: Any = None, chat: bool = False, submit: Submit | None = None) -> tuple[list[dict], float, dict]:
    """Generate, with vLLM's counters before and after; `progress` is a `progress_bar` class or None.

    `chat`: `prompts` are conversations, sent through `llm.chat` (the model's chat template) as
    upstream's test sends them; each row then keeps the prompt text the engine rendered.
    `submit`: how the prompts reach the engine (default: all at once).
    """
    before = read_spec_counters(llm.get_metrics())
    started = time.perf_counter()
    outputs = (submit or submit_batch)(llm, prompts, sampling, progress, chat)
    seconds = time.perf_counter() - started
    counters = counters_delta(read_spec_counters(llm.get_metrics()), before)
    return [completion_record(i, out, keep_prompt=chat) for i, out in enumerate(outputs)], seconds, counters


def scheduling_facts(llm: Any) -> dict[str, Any]:
    """How the built engine schedules, read back from its config as upstream reads it: whether async
    scheduling is active, and the device type (vLLM turns async scheduling off on CPU)."""
    config = llm.llm_engine.vllm_config
    return {"async_scheduling": bool(config.scheduler_config.async_scheduling),
            "device_type": str(getattr(config.device_config, "device_type", "?"))}


def supported_llm_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Drop observability keys an older vLLM (e.g. CUDA 0.26) does not know."""
    from dataclasses import fields as dc_fields

    from vllm.engine.arg_utils import EngineArgs

    known = {f.name for f in dc_fields(EngineArgs)}
    optional = {"per_request_spec_decode_metrics"}
    return {k: v for k, v in kwargs.items() if k in known or k not in optional}


def shutdown_engine(llm: Any) -> None:
    """Stop vLLM's engine-core processes before the child exits.

    `os._exit` skips vLLM's own teardown; without this its EngineCore outlives the child and keeps
    its GPU memory, so a second engine on the same GPU would start short of memory. Whatever is
    still alive below this process afterwards is killed.
    """
    try:
        if llm is not None:
            llm.llm_engine.engine_core.shutdown()
    except Exception:  # teardown is best effort; the kill below is the guarantee
        with contextlib.suppress(Exception):
            traceback.print_exc()
    try:
        import psutil

        for process in psutil.Process().children(recursive=True):
            process.kill()
    except Exception:
        with contextlib.suppress(Exception):
            traceback.print_exc()


ENGINE_MULTIPROCESSING_ENV = "VLLM_ENABLE_V1_MULTIPROCESSING"


def place_engine_core(in_process: bool | None, llm_kwargs: dict[str, Any]) -> bool:
    """Whether vLLM's engine core runs in this engine child (True) or in a process vLLM spawns for it (False);
    sets vLLM's switch before the engine is built.

    In process saves the second import of vLLM and torch that the engine-core process pays (about 13 of
    the 23 s of a warm engine start on an H100 machine). `None` chooses: in process on a CUDA GPU with one
    tensor-parallel rank; elsewhere vLLM's own process (its CPU backend binds OpenMP threads only in a worker
    process of its own: an in-process CPU engine needs `omp_binding_env`, or two engines on two cores run 5x
    slower).
    """
    if in_process is None:
        from vllm.platforms import current_platform

        in_process = bool(current_platform.is_cuda()) and int(llm_kwargs.get("tensor_parallel_size") or 1) == 1
    if in_process:
        os.environ[ENGINE_MULTIPROCESSING_ENV] = "0"
    return in_process


def omp_binding_env(cpus: str) -> dict[str, str]:
    """OpenMP's binding of an engine child whose engine core runs in it, as vLLM binds its CPU worker process
    (`VLLM_CPU_OMP_THREADS_BIND`, e.g. `0` or `0-3,8`): one thread per listed CPU, each bound to its place.
    Read when OpenMP starts, so it goes into the child's environment before torch is imported. Nothing for
    `auto` and `nobind` (no CPU list to bind to) nor for one list per tensor-parallel rank (`0-3|4-7`: those
    ranks run in worker processes, which vLLM binds itself)."""
    if cpus in ("auto", "nobind") or "|" in cpus:
        return {}
    ids: list[str] = []
    for part in cpus.split(","):
        first, _, last = part.strip().partition("-")
        ids += [str(i) for i in range(int(first), int(last or first) + 1)]
    return {"OMP_NUM_THREADS": str(len(ids)), "OMP_PLACES": "{" + ",".join(ids) + "}", "OMP_PROC_BIND": "true"}


@dataclass(kw_only=True)
class ChildJob:
    """What every engine child needs from the parent: plain data, so it pickles across spawn.

    Flows extend it with their prompts and settings (`EngineJob`, `AuditJob`).
    """

    label: str
    llm_kwargs: dict[str, Any]
    record_path: str
    log_path: str
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class ChildState:
    """What a child body fills in: its record, and the engine it built (for teardown)."""

    record: dict[str, Any]
    llm: Any = None


def _record_text(record: dict[str, Any], record_model: Any) -> str:
    """The record as its model validates it; a record that does not validate is written raw with why."""
    if record_model is not None:
        try:
            return record_model.model_validate(record).model_dump_json()
        except Exception as exc:  # never lose the record: keep it raw and say so
            record = {**record, "ok": False, "error": f"record does not match {record_model.__name__}: {exc}"}
    return json.dumps(record, default=str)


def child_frame(job: Any, body: Callable[[ChildState], None], setup: Callable[[], None] | None = None,
                record_model: Any = None) -> None:
    """The frame every engine child runs in, whatever its body does.

    Output goes to the job's log, the job's environment is set (then `setup` runs, before vLLM is
    imported), the record always lands on disk (with the error when the body raised; validated by
    `record_model` when given), vLLM is shut down, and the exit code says whether the body finished.
    """
    log = open(job.log_path, "a", buffering=1, encoding="utf-8")
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout = sys.stderr = log
    os.environ.update(job.env)
    if setup is not None:
        setup()
    state = ChildState({"label": job.label, "llm_kwargs": job.llm_kwargs, "ok": False, "error": None})
    write_progress(progress_path(job), "starting")
    try:
        import torch
        import vllm

        state.record["versions"] = {"vllm": vllm.__version__, "torch": torch.__version__,
                                    "python": sys.version.split()[0]}
        body(state)
        state.record["ok"] = True
    except BaseException as exc:  # the record must say why, whatever happened
        state.record["error"] = f"{type(exc).__name__}: {exc}"
        state.record["traceback"] = traceback.format_exc()
        with contextlib.suppress(Exception):  # the log itself may be on a full disk
            traceback.print_exc()
    finally:
        code = 0 if state.record["ok"] else 1
        try:
            try:
                Path(job.record_path).write_text(_record_text(state.record, record_model), encoding="utf-8")
            except OSError as exc:  # a full disk: no half record, and the errno reaches the parent in the exit code
                code = RECORD_UNWRITTEN_EXIT + (exc.errno or 0) % 100
                with contextlib.suppress(OSError):
                    Path(job.record_path).unlink(missing_ok=True)
            with contextlib.suppress(Exception):
                write_progress(progress_path(job), "done" if state.record["ok"] else "failed")
            shutdown_engine(state.llm)  # always, or vLLM's EngineCore keeps this child from exiting
            with contextlib.suppress(Exception):
                log.flush()
        finally:
            os._exit(code)


RECORD_UNWRITTEN_EXIT = 100
"""A child that could not write its record exits with this plus the errno (mod 100), so the parent can say why."""


def _unwritten_record_reason(exitcode: int | None) -> str | None:
    """`No space left on device` from a child's exit code, when it could not write its record."""
    if exitcode is None or not RECORD_UNWRITTEN_EXIT <= exitcode < RECORD_UNWRITTEN_EXIT + 100:
        return None
    errno_value = exitcode - RECORD_UNWRITTEN_EXIT
    return os.strerror(errno_value) if errno_value else "an I/O error"


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


ENGINE_LABEL_ENV = "WORKBENCH_ENGINE"
"""The engine child is started with its label in this variable, so tools can tell the two engines apart."""


@dataclass
class RunningEngine:
    """A started engine child: wait for it with `wait_engine_job`."""

    job: Any
    process: Any
    started: float
    tree: ProcessTree
    log_start: int = 0  # the log's size when the child started: what came before is another run's


def start_engine_job(job: Any, target: Callable[[Any], None]) -> RunningEngine:
    """Spawn the child that builds one engine and generates; return at once."""
    record_path, log_path = Path(job.record_path), Path(job.log_path)
    record_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    record_path.unlink(missing_ok=True)
    log_start = log_path.stat().st_size if log_path.exists() else 0
    context = multiprocessing.get_context("spawn")
    process = context.Process(target=target, args=(job,), name=f"engine-{job.label}")
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()  # the parent's helper, started before the label is set: not this engine's
    previous = os.environ.get(ENGINE_LABEL_ENV)
    os.environ[ENGINE_LABEL_ENV] = job.label  # spawn execs the child with this environment
    started = time.perf_counter()
    try:
        process.start()
    finally:
        if previous is None:
            os.environ.pop(ENGINE_LABEL_ENV, None)
        else:
            os.environ[ENGINE_LABEL_ENV] = previous
    return RunningEngine(job, process, started, ProcessTree(process.pid), log_start)


ENGINE_CORE_MARK = "EngineCore"
"""vLLM names its engine-core process `VLLM::EngineCore` (setproctitle)."""
_VLLM_SAW_DEATH = re.compile(r"EngineDeadError|Failed core proc\(s\): \{[^}]*: -\d+")
"""vLLM's own words for a core that died (a negative exit code is the signal that killed it)."""
DEATH_GRACE_S = 10.0
"""After its EngineCore is gone, how long a child may take to notice, write its record and exit."""


_VLLM_START_FAILED = "EngineCore failed to start"
"""vLLM's log line when its engine core raised while starting (the client is told, unless the core hangs in its
own teardown: on an H100 pair, tensor-parallel workers that hit an illegal memory access kept it there)."""
LOG_TAIL_BYTES = 65536


def _start_failure(running: RunningEngine) -> str | None:
    """vLLM's own report that the engine failed to start, from the end of what this child logged."""
    try:
        with open(running.job.log_path, "rb") as log:
            log.seek(max(running.log_start, log.seek(0, os.SEEK_END) - LOG_TAIL_BYTES))
            tail = log.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    if _VLLM_START_FAILED not in tail:
        return None
    return f"vLLM logged '{_VLLM_START_FAILED}' and the engine did not end within {DEATH_GRACE_S:.0f} s"


def _death(running: RunningEngine) -> str | None:
    """Why this engine is dead while its child lives: an EngineCore seen before is gone, or vLLM logged that
    it failed to start, and no record is written.

    The child writes its record before it shuts vLLM down, so a core gone before the record is a
    death, not a shutdown. A start failure is given the same grace: vLLM normally raises it in the child,
    which then writes its record and exits; a child still there after the grace is stuck, not starting.
    """
    if Path(running.job.record_path).exists():
        return None
    cores = running.tree.ever_seen(ENGINE_CORE_MARK)
    if not cores:
        return _start_failure(running)
    alive = {p.pid for p in running.tree.alive()}
    if set(cores) & alive:
        return _start_failure(running)
    return f"its EngineCore (pid {', '.join(map(str, sorted(cores)))}) exited while the engine was running"


@dataclass
class _Waiting:
    running: RunningEngine
    death: str | None = None
    death_seen_at: float | None = None
    timed_out: bool = False
    stopped_because: str | None = None
    done: bool = False


def _finish(state: _Waiting, timeout_s: float) -> dict[str, Any] | EngineError:
    """Collect one ended child: its record, or the error that says how it ended."""
    running = state.running
    job, process = running.job, running.process
    record_path, log_path = Path(job.record_path), Path(job.log_path)
    if process.is_alive():
        process.kill()
    process.join()
    orphans = running.tree.kill()  # nothing of this engine outlives its child, however the child ended
    running.tree.stop()
    try:
        record = json.loads(record_path.read_text(encoding="utf-8")) if record_path.exists() else None
    except ValueError:  # cut short (the child was killed while writing): as good as none
        record = None
    if record is not None:
        record["wall_s"] = time.perf_counter() - running.started
        record["orphans_killed"] = orphans  # vLLM processes the child left behind (a clean shutdown leaves none)
        record_path.write_text(json.dumps(record), encoding="utf-8")
    tail = _log_tail(log_path, 25)
    unwritten = _unwritten_record_reason(process.exitcode)
    if record is None and unwritten:
        return EngineError(f"{job.label} engine could not write its record {record_path}: {unwritten}; "
                           f"log {log_path}:\n{tail}")
    if state.death:
        said = f"; the engine child reported: {record.get('error')}" if record else ""
        return EngineError(f"{job.label} engine died: {state.death}{said}; log {log_path}:\n{tail}")
    if state.timed_out:
        return EngineError(f"{job.label} engine timed out after {timeout_s:.0f} s; log {log_path}:\n{tail}")
    if state.stopped_because and (record is None or not record.get("ok")):
        return EngineError(f"{job.label} engine stopped: {state.stopped_because}; log {log_path}:\n{tail}")
    if record is None:
        return EngineError(f"{job.label} engine died (exit code {process.exitcode}) without a record; "
                           f"log {log_path}:\n{tail}")
    if not record.get("ok") and _VLLM_SAW_DEATH.search(str(record.get("error"))):  # vLLM saw its core die first
        return EngineError(f"{job.label} engine died: vLLM reported {record.get('error')}; log {log_path}:\n{tail}")
    if not record.get("ok"):
        return EngineError(f"{job.label} engine failed: {record.get('error')}; log {log_path}:\n{tail}")
    return record


def _stalled(running: RunningEngine, stall_s: float | None) -> str | None:
    """No progress written for `stall_s` seconds (the child writes it at start and as requests finish)."""
    if stall_s is None:
        return None
    path = progress_path(running.job)
    last = path.stat().st_mtime if path.exists() else None
    quiet = time.time() - last if last is not None else time.perf_counter() - running.started
    return f"no progress for {quiet:.0f} s (engine_stall_timeout_s {stall_s:.0f})" if quiet > stall_s else None


def describe_progress(path: Path) -> str | None:
    """`reference generating gsm8k 120/200` from one progress file; None while there is none to read."""
    try:
        progress = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    count = f" {progress['done']}/{progress['total']}" if progress.get("total") else ""
    return f"{path.name.removesuffix('.progress.json')} {progress['phase']}{count}"


def progress_text(jobs: list[Any]) -> str:
    """One line: each engine's phase and request count."""
    return ", ".join(describe_progress(progress_path(job)) or f"{job.label} starting" for job in jobs)


def wait_engine_jobs(runnings: list[RunningEngine], timeout_s: float, poll_s: float = 1.0,
                     stall_s: float | None = None,
                     on_progress: Callable[[str], None] | None = None) -> list[dict[str, Any] | EngineError]:
    """Wait for started children together; each ends as its record or an `EngineError`.

    All engines are watched at once, so a death is seen while it happens: an EngineCore gone under
    a live child is given `DEATH_GRACE_S` to end in order (vLLM may raise EngineDeadError itself,
    or block for as long as `generate` runs), then the child is stopped and the death reported,
    within seconds rather than at the timeout. When one engine fails, the others are stopped
    too: the comparison cannot finish, and records already written stay on disk.
    """
    states = [_Waiting(r) for r in runnings]
    results: dict[int, dict[str, Any] | EngineError] = {}
    shown_at = 0.0
    while len(results) < len(states):
        if on_progress is not None and time.time() - shown_at >= 5.0:
            on_progress(progress_text([r.job for r in runnings]))
            shown_at = time.time()
        for index, state in enumerate(states):
            if index in results:
                continue
            process = state.running.process
            process.join(poll_s / len(states))
            if process.is_alive():
                stalled = _stalled(state.running, stall_s)
                if time.perf_counter() - state.running.started > timeout_s:
                    state.timed_out = True
                elif stalled:
                    state.stopped_because = f"stalled: {stalled}"
                else:
                    state.death = _death(state.running)
                    if state.death is None:
                        state.death_seen_at = None
                        continue
                    state.death_seen_at = state.death_seen_at or time.perf_counter()
                    if time.perf_counter() - state.death_seen_at < DEATH_GRACE_S:
                        state.death = None
                        continue
            results[index] = _finish(state, timeout_s)
            if isinstance(results[index], EngineError):
                for other_index, other in enumerate(states):
                    if other_index not in results and other.running.process.is_alive():
                        other.stopped_because = f"the {state.running.job.label} engine failed"
                        other.running.process.kill()
    if on_progress is not None:
        on_progress(progress_text([r.job for r in runnings]))
    return [results[i] for i in range(len(states))]


def wait_engine_job(running: RunningEngine, timeout_s: float, stall_s: float | None = None) -> dict[str, Any]:
    """Wait for a started child; return its record or raise `EngineError`."""
    result = wait_engine_jobs([running], timeout_s, stall_s=stall_s)[0]
    if isinstance(result, EngineError):
        raise result
    return result


def run_engine_job(job: Any, timeout_s: float, target: Callable[[Any], None],
                   stall_s: float | None = None) -> dict[str, Any]:
    """Run one engine in a spawned child; return its record or raise `EngineError`.

    `target` is the child's entry point; any job with `label`, `record_path` and `log_path`
    works, so the correctness and the audit flows run their own bodies in the same frame.
    """
    return wait_engine_job(start_engine_job(job, target), timeout_s, stall_s)
