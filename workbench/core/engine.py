"""Real `vllm.LLM` runs, each in its own child process: the frame every flow's engine child runs in.

Why a child: vLLM's CPU backend wants engines started under `__main__` or in a spawned
process, teardown between two engines in one process is fragile, and a crash in the child
becomes a reported `EngineError` (with the log tail) instead of a hung notebook kernel.
The child writes its full record to a JSON file, so nothing computed is lost when a
later stage fails.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench.core.errors import EngineError

SPEC_COUNTERS = (
    "vllm:spec_decode_num_drafts",
    "vllm:spec_decode_num_draft_tokens",
    "vllm:spec_decode_num_accepted_tokens",
    "vllm:spec_decode_num_accepted_tokens_per_pos",
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


def completion_record(prompt_id: int, output: Any) -> dict[str, Any]:
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
    return record


def generate(llm: Any, prompts: list[str], sampling: dict[str, Any]) -> tuple[list[dict], float, dict]:
    from vllm import SamplingParams

    before = read_spec_counters(llm.get_metrics())
    started = time.perf_counter()
    outputs = llm.generate(prompts, SamplingParams(**sampling), use_tqdm=False)
    seconds = time.perf_counter() - started
    counters = counters_delta(read_spec_counters(llm.get_metrics()), before)
    return [completion_record(i, out) for i, out in enumerate(outputs)], seconds, counters


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
        traceback.print_exc()
    try:
        import psutil

        for process in psutil.Process().children(recursive=True):
            process.kill()
    except Exception:
        traceback.print_exc()


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
        traceback.print_exc()
    finally:
        Path(job.record_path).write_text(_record_text(state.record, record_model), encoding="utf-8")
        shutdown_engine(state.llm)
        log.flush()
        os._exit(0 if state.record["ok"] else 1)


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


ENGINE_TAG_ENV = "WORKBENCH_ENGINE_TAG"
"""Set in every engine child's environment, so the child and every process vLLM starts below it
(EngineCore, workers) carry it, whatever session or parent they end up in."""


def tagged_processes(tag: str) -> list[Any]:
    """Live processes whose environment carries this engine tag."""
    import psutil

    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get(ENGINE_TAG_ENV) == tag:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return found


def kill_tagged(tag: str, grace_s: float = 3.0) -> list[int]:
    """Terminate, then kill, every process of one engine; returns the pids that were still alive."""
    import psutil

    processes = tagged_processes(tag)
    for process in processes:
        try:
            process.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(processes, timeout=grace_s)
    for process in alive:
        try:
            process.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=grace_s)
    return [p.pid for p in processes]


@dataclass
class RunningEngine:
    """A started engine child: wait for it with `wait_engine_job`."""

    job: Any
    process: Any
    started: float
    tag: str = ""


def start_engine_job(job: Any, target: Callable[[Any], None]) -> RunningEngine:
    """Spawn the child that builds one engine and generates; return at once."""
    import uuid

    record_path, log_path = Path(job.record_path), Path(job.log_path)
    record_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    record_path.unlink(missing_ok=True)
    tag = f"{job.label}-{uuid.uuid4().hex[:12]}"
    job.env = {**job.env, ENGINE_TAG_ENV: tag}
    context = multiprocessing.get_context("spawn")
    process = context.Process(target=target, args=(job,), name=f"engine-{job.label}")
    started = time.perf_counter()
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()  # the parent's helper, started untagged: it is not part of this engine
    previous = os.environ.get(ENGINE_TAG_ENV)
    os.environ[ENGINE_TAG_ENV] = tag  # spawn execs the child with this environment: the child is tagged too
    try:
        process.start()
    finally:
        if previous is None:
            os.environ.pop(ENGINE_TAG_ENV, None)
        else:
            os.environ[ENGINE_TAG_ENV] = previous
    return RunningEngine(job, process, started, tag)


def wait_engine_job(running: RunningEngine, timeout_s: float) -> dict[str, Any]:
    """Wait for a started child; return its record or raise `EngineError`."""
    job, process = running.job, running.process
    record_path, log_path = Path(job.record_path), Path(job.log_path)
    process.join(max(0.0, timeout_s - (time.perf_counter() - running.started)))
    timed_out = process.is_alive()
    if timed_out:
        process.kill()
        process.join()
    orphans = kill_tagged(running.tag)  # nothing of this engine outlives its child, however the child ended
    if timed_out:
        raise EngineError(f"{job.label} engine timed out after {timeout_s:.0f} s; log {log_path}:\n{_log_tail(log_path)}")
    if not record_path.exists():
        raise EngineError(f"{job.label} engine died (exit code {process.exitcode}) without a record; "
                          f"log {log_path}:\n{_log_tail(log_path)}")
    record = json.loads(record_path.read_text(encoding="utf-8"))
    record["wall_s"] = time.perf_counter() - running.started
    record["orphans_killed"] = orphans  # vLLM processes the child left behind (a clean shutdown leaves none)
    record_path.write_text(json.dumps(record), encoding="utf-8")
    if not record.get("ok"):
        raise EngineError(f"{job.label} engine failed: {record.get('error')}; log {log_path}:\n{_log_tail(log_path, 25)}")
    return record


def run_engine_job(job: Any, timeout_s: float, target: Callable[[Any], None]) -> dict[str, Any]:
    """Run one engine in a spawned child; return its record or raise `EngineError`.

    `target` is the child's entry point; any job with `label`, `record_path` and `log_path`
    works, so the correctness and the audit flows run their own bodies in the same frame.
    """
    return wait_engine_job(start_engine_job(job, target), timeout_s)
