"""No-sync audit of async scheduling with speculative decoding (issue 6), stage by stage.

Mirrors upstream vLLM's `test_no_sync_with_spec_decode` (tests/v1/e2e/spec_decode): a probe
counts the lazy initialisations of `CommonAttentionMetadata.seq_lens_cpu` (each one is an
implicit device->host copy of `seq_lens`, a sync that breaks async scheduling), a real
`vllm.LLM` is built with `async_scheduling=True` and the case's speculative config, a few
prompts are generated, and the audit asserts that the probe counted nothing.

How the probe reaches the process that runs the model
    Upstream patches the class in the pytest process and relies on `fork` to carry the patch
    into the engine processes. vLLM's CPU platform forces `spawn`, so that is not enough here.
    The engine child (spawned like `workbench.core.engine`'s) sets `WORKBENCH_SYNC_PROBE_LOG`,
    installs the probe into itself before importing vLLM, and puts a generated
    `sitecustomize.py` (run folder `probe/`) first on `PYTHONPATH`: every Python process vLLM
    starts below it (EngineCore, workers; spawned or forked) runs `install_from_env()` at
    interpreter start, before vLLM is imported. The probe is an import hook: it patches the
    class the moment `vllm.v1.attention.backend` (or the older `...backends.utils`) is
    executed. Every event goes, one JSON line, to the probe log with its process id, so the
    counts survive the process boundaries.

vLLM 0.32 no longer has the lazy property
    Upstream removed the deprecated `seq_lens_cpu` / `num_computed_tokens_cpu` properties; 0.32
    has only the eager `seq_lens_cpu_upper_bound` field. Where the property exists the probe
    wraps it exactly as upstream does (counts when `_seq_lens_cpu is None`); where it does not,
    the probe installs a counting stand-in with the deprecated semantics (lazy
    `seq_lens.to("cpu")`, cached), so a caller that still uses it (an out-of-tree backend, the
    positive control) is counted instead of crashing. `summary["probe"]["mode"]` says which.

Positive control
    After the measured generation the child switches the probe's control file to
    `positive_control` and generates one more short prompt: inside the model process the probe
    then reads `seq_lens_cpu` on the real `CommonAttentionMetadata` objects the model runner
    builds, on purpose. Those lazy initialisations must be counted (>= 1), which proves the
    probe sits in the process that runs the model and that its counts arrive here. They are
    tagged and never added to `sync_count`.

Second, independent count on CUDA
    Where CUDA is present, the probe arms `torch.cuda.set_sync_debug_mode("warn")` in the model
    process during the measured generation and counts torch's "synchronizing CUDA operation"
    warnings (`cuda_sync_count`, informational: it sees every sync of that process, deliberate
    ones included). On CPU it is `null`.

This module's probe half imports nothing but the standard library at import time: it is loaded
by `sitecustomize` at the start of every engine process.
"""

from __future__ import annotations

import functools
import importlib.abc
import json
import os
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.core.checks import CheckResult

if TYPE_CHECKING:  # heavy imports stay out of the probe's import path
    import pandas as pd

    from workbench.core.engine import ChildState
    from workbench.core.params import CaseParams

PROBE_LOG_ENV = "WORKBENCH_SYNC_PROBE_LOG"
PROBE_CONTROL_ENV = "WORKBENCH_SYNC_PROBE_CONTROL"
PROBE_CUDA_ENV = "WORKBENCH_SYNC_PROBE_CUDA"  # "0" switches the CUDA sync-debug counter off
TARGET_MODULES = ("vllm.v1.attention.backend", "vllm.v1.attention.backends.utils")
TARGET_CLASS = "CommonAttentionMetadata"
LAZY_INIT = "seq_lens_cpu_lazy_init"
CUDA_SYNC = "cuda_sync"
INSTALLED = "installed"
POSITIVE_CONTROL = "positive_control"
PHASES = ("startup", "generate", "idle", POSITIVE_CONTROL)
STACK_FRAMES = 10
MAX_FORCED_PER_PROCESS = 8
_TORCH_SYNC_WARNING = "called a synchronizing CUDA operation"
_MARKER = "_workbench_sync_probe"

# Upstream's one prompt first; a few more so that the batch holds several requests. Greedy, 10 new
# tokens, as upstream.
AUDIT_PROMPTS = (
    "Hello, my name is",
    "The capital of France is",
    "Question: Tom has 3 apples and buys 5 more. How many apples does he have now?\nAnswer:",
    "Repeat the word cat five times: cat cat",
)
AUDIT_SAMPLING = {"temperature": 0.0, "max_tokens": 10}
POSITIVE_CONTROL_SAMPLING = {"temperature": 0.0, "max_tokens": 3}


# ------------------------------------------------------------------ the probe (runs in every engine process)


@dataclass
class _ProbeState:
    log_path: str | None = None
    control_path: str | None = None
    cuda: bool = True
    phase: str = "startup"
    control_stamp: tuple[int, int] | None = None
    forced: int = 0
    cuda_armed: bool = False
    cuda_hooked: bool = False
    local: threading.local = field(default_factory=threading.local)


_STATE = _ProbeState()
_FINDER: _PatchOnImport | None = None


def _process_label() -> str:
    """The process title (vLLM renames its processes, e.g. `VLLM::Worker`), else argv[0]."""
    try:
        with open("/proc/self/cmdline", "rb") as handle:
            first = handle.read().split(b"\0")[0].decode(errors="replace").strip()
        if first.startswith("VLLM::"):
            return first.split()[0]
    except OSError:
        pass
    mp = sys.modules.get("multiprocessing")  # a spawned child: its Process name (e.g. engine-audit)
    name = mp.current_process().name if mp is not None else "MainProcess"
    if name != "MainProcess":
        return name
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"


def _short_path(filename: str) -> str:
    for marker in ("site-packages/", "/workbench/"):
        if marker in filename:
            head = "workbench/" if marker == "/workbench/" else ""
            return head + filename.split(marker, 1)[1]
    return "/".join(Path(filename).parts[-3:])


def short_stack(limit: int = STACK_FRAMES) -> list[str]:
    """The caller's stack, innermost last, without the probe's own frames."""
    here = os.path.abspath(__file__)
    frames = [f for f in traceback.extract_stack() if os.path.abspath(f.filename) != here]
    return [f"{_short_path(f.filename)}:{f.lineno} in {f.name}" for f in frames[-limit:]]


def _emit(event: dict[str, Any]) -> None:
    """Append one event to the probe log (O_APPEND: lines from many processes stay whole)."""
    event = {"pid": os.getpid(), "process": _process_label(), "time": time.time(), **event}
    path = _STATE.log_path or os.environ.get(PROBE_LOG_ENV)
    if not path:
        return
    line = (json.dumps(event, default=str) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _source() -> str:
    return POSITIVE_CONTROL if getattr(_STATE.local, "forcing", False) else "engine"


def _record_lazy_init(metadata: Any) -> None:
    seq_lens = getattr(metadata, "seq_lens", None)
    _emit({"kind": LAZY_INIT, "phase": _STATE.phase, "source": _source(),
           "device": str(getattr(seq_lens, "device", "?")), "shape": list(getattr(seq_lens, "shape", ()) or ()),
           "stack": short_stack()})


def _poll_control() -> str:
    """Read the phase the engine child wrote (atomic rename: a new inode each time)."""
    path = _STATE.control_path
    if not path:
        return _STATE.phase
    try:
        stat = os.stat(path)
    except OSError:
        return _STATE.phase
    stamp = (stat.st_ino, stat.st_mtime_ns)
    if stamp != _STATE.control_stamp:
        _STATE.control_stamp = stamp
        try:
            phase = Path(path).read_text(encoding="utf-8").strip()
        except OSError:
            return _STATE.phase
        if phase in PHASES and phase != _STATE.phase:
            _STATE.phase = phase
            _set_cuda_counter(phase == "generate")
    return _STATE.phase


def set_phase(control_path: str | Path, phase: str) -> None:
    """Tell the probe in every engine process which phase this is (write + atomic rename)."""
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
    target = Path(control_path)
    tmp = target.with_name(target.name + f".{os.getpid()}.tmp")
    tmp.write_text(phase + "\n", encoding="utf-8")
    os.replace(tmp, target)


def _cuda_warning_hook(previous):
    def showwarning(message, category, filename, lineno, file=None, line=None):
        if _TORCH_SYNC_WARNING in str(message):
            if _STATE.cuda_armed:
                _emit({"kind": CUDA_SYNC, "phase": _STATE.phase, "source": _source(),
                       "message": str(message)[:200], "stack": short_stack()})
            return None
        return previous(message, category, filename, lineno, file, line)

    return showwarning


def _set_cuda_counter(on: bool) -> None:
    """Arm or disarm torch's sync debug mode in this process (only where CUDA is present)."""
    if not _STATE.cuda or "torch" not in sys.modules:
        return
    try:
        import torch

        if not torch.cuda.is_available() or not torch.cuda.is_initialized():
            return
        if on and not _STATE.cuda_hooked:
            import warnings

            warnings.showwarning = _cuda_warning_hook(warnings.showwarning)
            warnings.filterwarnings("always", message=f".*{_TORCH_SYNC_WARNING}", category=UserWarning)
            _STATE.cuda_hooked = True
        torch.cuda.set_sync_debug_mode("warn" if on else "default")
        _STATE.cuda_armed = on
    except Exception as exc:  # the counter is optional; never break the engine for it
        _emit({"kind": "probe_warning", "message": f"CUDA sync counter: {type(exc).__name__}: {exc}"})


def _force_lazy_init(metadata: Any) -> None:
    """The positive control: read `seq_lens_cpu` on purpose, as legacy backend code did."""
    if _STATE.forced >= MAX_FORCED_PER_PROCESS:
        return
    _STATE.forced += 1
    _STATE.local.forcing = True
    try:
        metadata.seq_lens_cpu  # noqa: B018 - the access is the point
    finally:
        _STATE.local.forcing = False


def install_on_class(cls: type) -> str:
    """Instrument one `CommonAttentionMetadata` class; returns the mode. Idempotent.

    `wrapped`: the class has upstream's lazy `seq_lens_cpu` property; it is wrapped exactly as
    upstream's probe does (count when `_seq_lens_cpu is None`, then the original getter).
    `stand-in`: the class has no such property (vLLM >= 0.32); a counting one with the
    deprecated semantics is installed.
    """
    existing = cls.__dict__.get(_MARKER)
    if existing:
        return existing["mode"]
    original = None
    for klass in cls.__mro__:
        if "seq_lens_cpu" in klass.__dict__:
            original = klass.__dict__["seq_lens_cpu"]
            break
    if isinstance(original, property) and original.fget is not None:
        mode, getter = "wrapped", original.fget

        def seq_lens_cpu(self):
            if self._seq_lens_cpu is None:  # upstream's test: each of these is one lazy init
                _record_lazy_init(self)
            return getter(self)
    elif original is None:
        mode = "stand-in"

        def seq_lens_cpu(self):
            cached = self.__dict__.get("_seq_lens_cpu")
            if cached is None:
                _record_lazy_init(self)
                cached = self.seq_lens.to("cpu")
                self.__dict__["_seq_lens_cpu"] = cached
            return cached
    else:  # a plain field: nothing lazy to count
        raise TypeError(f"{cls.__qualname__}.seq_lens_cpu is a {type(original).__name__}, not a lazy property")

    original_init = cls.__init__

    @functools.wraps(original_init)
    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        if _poll_control() == POSITIVE_CONTROL and not getattr(_STATE.local, "forcing", False):
            _force_lazy_init(self)

    cls.seq_lens_cpu = property(seq_lens_cpu, doc="seq_lens_cpu, counted by workbench.audit")
    cls.__init__ = __init__
    setattr(cls, _MARKER, {"mode": mode, "original": original, "init": original_init})
    _emit({"kind": INSTALLED, "mode": mode, "target": f"{cls.__module__}.{cls.__qualname__}"})
    return mode


def uninstall_from_class(cls: type) -> None:
    """Undo `install_on_class` (tests)."""
    marker = cls.__dict__.get(_MARKER)
    if not marker:
        return
    cls.__init__ = marker["init"]
    if marker["original"] is None:
        del cls.seq_lens_cpu
    else:
        cls.seq_lens_cpu = marker["original"]
    delattr(cls, _MARKER)


def _patch_module(module: Any) -> None:
    cls = getattr(module, TARGET_CLASS, None)
    if isinstance(cls, type):
        try:
            install_on_class(cls)
        except Exception as exc:
            _emit({"kind": "probe_warning", "message": f"{module.__name__}: {type(exc).__name__}: {exc}"})


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Import hook: patch `CommonAttentionMetadata` right after its module has executed."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in TARGET_MODULES:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        original_exec = loader.exec_module

        def exec_module(module):
            original_exec(module)
            _patch_module(module)

        loader.exec_module = exec_module  # this loader instance serves this one module
        return spec


def install(log_path: str | Path, control_path: str | Path | None = None, cuda: bool = True) -> None:
    """Install the probe into this process; safe before or after vLLM is imported, and twice."""
    global _FINDER
    _STATE.log_path = str(log_path)
    _STATE.control_path = str(control_path) if control_path else None
    _STATE.cuda = cuda
    if _FINDER is None:
        _FINDER = _PatchOnImport()
        sys.meta_path.insert(0, _FINDER)
    for name in TARGET_MODULES:  # already imported (fork, or a late install): patch now
        if name in sys.modules:
            _patch_module(sys.modules[name])
    _poll_control()


def install_from_env() -> bool:
    """Entry point of the generated `sitecustomize.py`: install when the audit asked for it."""
    log_path = os.environ.get(PROBE_LOG_ENV)
    if not log_path:
        return False
    install(log_path, os.environ.get(PROBE_CONTROL_ENV) or None, os.environ.get(PROBE_CUDA_ENV, "1") != "0")
    return True


SITECUSTOMIZE = '''\
# Written by workbench.audit for one no-sync audit run. Every Python process started with this
# folder first on PYTHONPATH (vLLM's EngineCore and workers) loads the seq_lens_cpu probe here,
# before anything imports vLLM.
import os as _os

if _os.environ.get("{env}"):
    try:
        from workbench.audit.flow import install_from_env as _install

        _install()
    except Exception as _exc:  # never stop an engine process for the probe
        import sys as _sys

        print(f"[workbench.audit] probe not installed: {{_exc!r}}", file=_sys.stderr)
'''


def write_sitecustomize(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sitecustomize.py"
    path.write_text(SITECUSTOMIZE.format(env=PROBE_LOG_ENV), encoding="utf-8")
    return path


def probe_env(log_path: Path, control_path: Path, site_dir: Path, cuda: bool = True) -> dict[str, str]:
    """Environment that loads the probe into every Python process started with it."""
    repo_root = Path(__file__).resolve().parent.parent  # so `import workbench` works there too
    path = [str(site_dir), str(repo_root)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {PROBE_LOG_ENV: str(log_path), PROBE_CONTROL_ENV: str(control_path),
            PROBE_CUDA_ENV: "1" if cuda else "0", "PYTHONPATH": os.pathsep.join(dict.fromkeys(path))}


def read_events(log_path: str | Path) -> list[dict[str, Any]]:
    path = Path(log_path)
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                events.append(json.loads(line))
            except ValueError:  # a line cut short by a killed process
                continue
    return events


def count_events(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts of a probe log: engine lazy inits (by phase), positive-control ones, CUDA syncs."""
    lazy = [e for e in events if e.get("kind") == LAZY_INIT]
    engine = [e for e in lazy if e.get("source") != POSITIVE_CONTROL]
    control = [e for e in lazy if e.get("source") == POSITIVE_CONTROL]
    cuda = [e for e in events if e.get("kind") == CUDA_SYNC and e.get("phase") == "generate"
            and e.get("source") != POSITIVE_CONTROL]
    by_phase: dict[str, int] = {}
    for e in engine:
        by_phase[e.get("phase", "?")] = by_phase.get(e.get("phase", "?"), 0) + 1
    return {"sync_count": len(engine), "sync_count_by_phase": by_phase, "sync_events": engine,
            "positive_control_count": len(control), "positive_control_events": control,
            "cuda_sync_count": len(cuda), "cuda_sync_events": cuda,
            "installed": [e for e in events if e.get("kind") == INSTALLED],
            "warnings": [e for e in events if e.get("kind") == "probe_warning"]}


# ------------------------------------------------------------------ the engine child


@dataclass
class AuditJob:
    """What the audit child needs; plain data, so it pickles across spawn."""

    label: str
    llm_kwargs: dict[str, Any]
    prompts: list[str]
    sampling: dict[str, Any]
    positive_control: bool
    record_path: str
    log_path: str
    probe_log: str
    control_path: str
    env: dict[str, str] = field(default_factory=dict)


def _async_reason(active: bool, requested: Any, device_type: str) -> str:
    if active:
        return f"async scheduling active (requested {requested!r}, device {device_type})"
    why = " (vLLM's CPU platform turns it off)" if device_type == "cpu" else ""
    return (f"requested async_scheduling={requested!r}, but the engine's scheduler_config.async_scheduling "
            f"is False after construction on device '{device_type}'{why}")


def _audit_body(job: AuditJob, state: ChildState) -> None:
    """Engine up, generate under the probe, then the positive control."""
    from vllm import LLM, SamplingParams

    from workbench.core.engine import _completion_record, _supported_llm_kwargs

    record = state.record
    record.update(llm_pid=os.getpid(), positive_control_run=False,
                  engine_multiprocessing=os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING", "1") != "0")
    started = time.perf_counter()
    state.llm = llm = LLM(**_supported_llm_kwargs(job.llm_kwargs))
    record["init_s"] = time.perf_counter() - started
    config = llm.llm_engine.vllm_config  # as upstream: read it back after construction
    active = bool(config.scheduler_config.async_scheduling)
    device_type = str(getattr(config.device_config, "device_type", "?"))
    spec = config.speculative_config
    record.update(async_scheduling_active=active, device_type=device_type,
                  async_scheduling_reason=_async_reason(active, job.llm_kwargs.get("async_scheduling"),
                                                        device_type),
                  speculative_active={"method": getattr(spec, "method", None),
                                      "num_speculative_tokens": getattr(spec, "num_speculative_tokens", None)}
                  if spec is not None else None)
    set_phase(job.control_path, "generate")
    started = time.perf_counter()
    outputs = llm.generate(job.prompts, SamplingParams(**job.sampling), use_tqdm=False)
    record["generate_s"] = time.perf_counter() - started
    set_phase(job.control_path, "idle")
    record["outputs"] = [{"prompt": prompt, **_completion_record(i, out)}
                         for i, (prompt, out) in enumerate(zip(job.prompts, outputs))]
    if job.positive_control:
        set_phase(job.control_path, POSITIVE_CONTROL)
        llm.generate(job.prompts[:1], SamplingParams(**POSITIVE_CONTROL_SAMPLING), use_tqdm=False)
        set_phase(job.control_path, "idle")
        record["positive_control_run"] = True


def _audit_child_main(job: AuditJob) -> None:
    """Runs in the spawned child: the probe goes in before vLLM is imported, then the audit body."""
    # the probe env and PYTHONPATH (job.env) reach every process vLLM starts; install_from_env
    # puts the probe into this process too
    from workbench.core.engine import child_frame

    child_frame(job, lambda state: _audit_body(job, state), setup=install_from_env)


def _run_child(job: AuditJob, timeout_s: float) -> dict[str, Any]:
    """`workbench.core.engine.run_engine_job` with this module's child body."""
    from workbench.core.engine import run_engine_job

    return run_engine_job(job, timeout_s, target=_audit_child_main)


# ------------------------------------------------------------------ the stages the notebook calls


@dataclass
class AuditContext:
    params: CaseParams
    params_file: str
    run_dir: Path


def prepare(params_file: str | Path, overrides: dict[str, Any] | None = None, run_dir: str | Path = "") -> AuditContext:
    """Validate params and write them into the run folder."""
    import yaml

    from workbench.core.params import load_params
    from workbench.correctness.pipeline import new_run_dir

    params = load_params(params_file, overrides)
    folder = Path(run_dir) if run_dir else new_run_dir(params_file)
    (folder / "records").mkdir(parents=True, exist_ok=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(params.model_dump(), sort_keys=False), encoding="utf-8")
    return AuditContext(params, str(params_file), folder)


def audit_llm_kwargs(params: CaseParams) -> dict[str, Any]:
    """The speculative engine's `vllm.LLM(...)` arguments plus `async_scheduling=True` (as upstream)."""
    from workbench.correctness.pipeline import llm_kwargs

    kwargs = llm_kwargs(params, "speculative")
    kwargs["async_scheduling"] = True
    return kwargs


def run_audit(params: CaseParams, run_dir: Path, positive_control: bool = True) -> dict[str, Any]:
    """One real engine with the probe in all its processes; returns counts, stacks and the record.

    Writes `records/audit.json` (the child's record), `records/probe_events.jsonl` (every probe
    event of every process) and `logs/audit.log`.
    """
    run_dir = Path(run_dir)
    records, probe_dir = run_dir / "records", run_dir / "probe"
    records.mkdir(parents=True, exist_ok=True)
    probe_log, control = records / "probe_events.jsonl", probe_dir / "phase"
    probe_log.unlink(missing_ok=True)
    write_sitecustomize(probe_dir)
    set_phase(control, "startup")
    env = probe_env(probe_log, control, probe_dir)
    if params.cpu_kvcache_space_gib:
        env["VLLM_CPU_KVCACHE_SPACE"] = str(params.cpu_kvcache_space_gib)
    job = AuditJob(label="audit", llm_kwargs=audit_llm_kwargs(params), prompts=list(AUDIT_PROMPTS),
                   sampling=dict(AUDIT_SAMPLING), positive_control=positive_control,
                   record_path=str(records / "audit.json"), log_path=str(run_dir / "logs" / "audit.log"),
                   probe_log=str(probe_log), control_path=str(control), env=env)
    record = _run_child(job, params.engine_timeout_s)
    return audit_result(record, read_events(probe_log))


def audit_result(record: dict[str, Any], events: list[dict[str, Any]]) -> dict[str, Any]:
    """Plain-data result of one audit from the child's record and the probe log."""
    counts = count_events(events)
    llm_pid = record.get("llm_pid")
    installed = [{"pid": e["pid"], "process": e.get("process"), "mode": e.get("mode"), "target": e.get("target")}
                 for e in counts["installed"]]
    modes = sorted({i["mode"] for i in installed if i.get("mode")})

    def stacks(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        keys = ("pid", "process", "phase", "device", "shape", "stack")
        return [{k: e.get(k) for k in keys if k in e} for e in items[:50]]

    return {
        "async_scheduling_active": record.get("async_scheduling_active"),
        "async_scheduling_requested": record.get("llm_kwargs", {}).get("async_scheduling"),
        "async_scheduling_reason": record.get("async_scheduling_reason"),
        "device_type": record.get("device_type"),
        "speculative_active": record.get("speculative_active"),
        "sync_count": counts["sync_count"],
        "sync_count_by_phase": counts["sync_count_by_phase"],
        "sync_stacks": stacks(counts["sync_events"]),
        "positive_control_run": bool(record.get("positive_control_run")),
        "positive_control_count": counts["positive_control_count"] if record.get("positive_control_run") else None,
        "positive_control_processes": sorted({f"{e.get('process')} (pid {e['pid']})"
                                              for e in counts["positive_control_events"]}),
        "positive_control_stacks": stacks(counts["positive_control_events"][:3]),
        "cuda_sync_count": counts["cuda_sync_count"] if record.get("device_type") == "cuda" else None,
        "cuda_sync_stacks": stacks(counts["cuda_sync_events"][:20]),
        "probe": {
            "what": "lazy initialisations of CommonAttentionMetadata.seq_lens_cpu (implicit device->host sync)",
            "mode": modes[0] if len(modes) == 1 else (modes or None),
            "installed_in": installed,
            "llm_pid": llm_pid,
            # the model runs below the LLM process unless vLLM's multiprocessing is switched off
            "in_model_process": any(i["pid"] != llm_pid for i in installed)
            or (record.get("engine_multiprocessing") is False and any(i["pid"] == llm_pid for i in installed)),
            "warnings": [e.get("message") for e in counts["warnings"]],
            "note": ("vLLM has the lazy seq_lens_cpu property; the probe wraps it as upstream's test does"
                     if modes == ["wrapped"] else
                     "this vLLM has no seq_lens_cpu property (removed upstream; only the eager "
                     "seq_lens_cpu_upper_bound remains); the probe installed a counting stand-in with the "
                     "deprecated lazy semantics, so in-tree code cannot trigger it and the positive control can"
                     if modes == ["stand-in"] else "probe not installed anywhere"),
        },
        "outputs": [{"prompt": o.get("prompt"), "completion": o.get("completion"),
                     "num_tokens": len(o.get("token_ids", [])), "finish_reason": o.get("finish_reason")}
                    for o in record.get("outputs", [])],
        "timings": {k: record.get(k) for k in ("init_s", "generate_s", "wall_s")},
        "versions": record.get("versions", {}),
        "llm_kwargs": record.get("llm_kwargs", {}),
    }


def audit_checks(result: dict[str, Any]) -> list[CheckResult]:
    """`no_sync` (skipped, never passed, where async scheduling is off) and `positive_control`."""
    count = result.get("sync_count")
    probe = result.get("probe") or {}
    checks: list[CheckResult] = []
    if not result.get("async_scheduling_active"):
        reason = result.get("async_scheduling_reason") or "the engine's scheduler_config.async_scheduling is False"
        checks.append(CheckResult("no_sync", "skipped", count, 0,
                                  f"not applicable: async scheduling is not active ({reason})"))
    elif not probe.get("in_model_process"):
        checks.append(CheckResult("no_sync", "failed", count, 0,
                                  "the probe was not installed in any engine process: a count of 0 would mean nothing"))
    elif count == 0:
        checks.append(CheckResult("no_sync", "passed", 0, 0,
                                  "0 lazy seq_lens_cpu initialisations (implicit device->host syncs) "
                                  "with async scheduling on"))
    else:
        phases = ", ".join(f"{k}: {v}" for k, v in (result.get("sync_count_by_phase") or {}).items())
        checks.append(CheckResult("no_sync", "failed", count, 0,
                                  f"{count} lazy seq_lens_cpu initialisation(s) with async scheduling on ({phases}); "
                                  "stacks in sync_stacks"))
    control = result.get("positive_control_count")
    if not result.get("positive_control_run"):
        checks.append(CheckResult("positive_control", "skipped", None, 1,
                                  "positive control not run (positive_control=False)"))
    elif control and control > 0:
        where = ", ".join(result.get("positive_control_processes") or [])
        checks.append(CheckResult("positive_control", "passed", control, 1,
                                  f"the probe counted {control} forced lazy seq_lens_cpu initialisation(s) in {where}"))
    else:
        checks.append(CheckResult("positive_control", "failed", control or 0, 1,
                                  "the probe counted nothing on forced lazy seq_lens_cpu initialisations: "
                                  "it is not in the process that runs the model, or it does not count"))
    return checks


def build_summary(ctx: AuditContext, result: dict[str, Any]) -> dict[str, Any]:
    """summary.json of the audit, same conventions as `pipeline.build_summary`."""
    import platform

    from workbench.core.params import case_name
    from workbench.correctness.pipeline import _workbench_version, model_config_hash, write_summary

    versions = dict(result.get("versions", {}))
    versions.update(python=platform.python_version(), model_config_hash=model_config_hash(ctx.params.model),
                    workbench=_workbench_version())
    checks = [c.as_dict() for c in audit_checks(result)]
    summary: dict[str, Any] = {
        "case": case_name(ctx.params_file),
        "params": ctx.params.model_dump(),
        "async_scheduling_active": result.get("async_scheduling_active"),
        "async_scheduling_reason": result.get("async_scheduling_reason"),
        "sync_count": result.get("sync_count"),
        "sync_count_by_phase": result.get("sync_count_by_phase"),
        "sync_stacks": result.get("sync_stacks"),
        "positive_control_count": result.get("positive_control_count"),
        "positive_control_processes": result.get("positive_control_processes"),
        "cuda_sync_count": result.get("cuda_sync_count"),
        "probe": result.get("probe"),
        "speculative_active": result.get("speculative_active"),
        "timings": result.get("timings"),
        "checks": checks,
        "passed": all(c["status"] != "failed" for c in checks),
        "error": None,
        "versions": versions,
    }
    write_summary(ctx.run_dir, summary)
    return summary


# ------------------------------------------------------------------ tables the notebook shows


def describe_case(ctx: AuditContext) -> str:
    p = ctx.params
    from workbench.core.params import case_name

    lines = [
        f"**Case** `{case_name(ctx.params_file)}` — {p.description or p.model}",
        f"- model: `{p.model}`" + (" — placeholder weights (load_format: dummy)" if p.load_format == "dummy" else ""),
        f"- speculative: `{p.speculative_config()}`, `async_scheduling=True`, enforce_eager {p.enforce_eager}",
        f"- {len(AUDIT_PROMPTS)} prompts, greedy, {AUDIT_SAMPLING['max_tokens']} new tokens "
        "(upstream: 1 prompt, 10 tokens)",
        f"- listed for the audit (`audit: true`): {'yes' if p.audit else 'no — run on request'}",
        f"- intended hardware: {p.intended_hardware}; run folder `{ctx.run_dir}`",
    ]
    return "\n".join(lines)


def counts_frame(result: dict[str, Any]) -> pd.DataFrame:
    import pandas as pd

    probe = result.get("probe") or {}
    rows = {
        "async scheduling active": result.get("async_scheduling_active"),
        "lazy seq_lens_cpu initialisations (sync_count)": result.get("sync_count"),
        "  by phase": json.dumps(result.get("sync_count_by_phase") or {}),
        "positive control count": result.get("positive_control_count"),
        "CUDA sync-debug count (generation)": result.get("cuda_sync_count"),
        "probe mode": probe.get("mode"),
        "probe installed in": ", ".join(f"{i['process']} (pid {i['pid']})" for i in probe.get("installed_in", [])),
    }
    return pd.DataFrame({"value": [str(v) for v in rows.values()]}, index=list(rows))


def outputs_frame(result: dict[str, Any]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(result.get("outputs", []), columns=["prompt", "completion", "num_tokens", "finish_reason"])


def stacks_text(stacks: list[dict[str, Any]], limit: int = 5) -> str:
    if not stacks:
        return "(none)"
    blocks = []
    for i, s in enumerate(stacks[:limit], start=1):
        blocks.append(f"#{i} {s.get('process')} pid {s.get('pid')} phase {s.get('phase')}\n    "
                      + "\n    ".join(s.get("stack", [])))
    more = len(stacks) - limit
    return "\n".join(blocks) + (f"\n... {more} more in records/probe_events.jsonl" if more > 0 else "")
