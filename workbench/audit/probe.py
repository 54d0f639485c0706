"""The seq_lens_cpu probe of the no-sync audit: it runs inside every vLLM process.

Mirrors the probe of upstream vLLM's `test_no_sync_with_spec_decode` (tests/v1/e2e/spec_decode):
it counts the lazy initialisations of `CommonAttentionMetadata.seq_lens_cpu`; each one is an
implicit device->host copy of `seq_lens`, a sync that breaks async scheduling.

How it reaches the process that runs the model
    Upstream patches the class in the pytest process and relies on `fork` to carry the patch
    into the engine processes. vLLM's CPU platform forces `spawn`, so that is not enough here.
    The audit child (`workbench.audit.child`) installs the probe into itself before importing
    vLLM and puts the `sitecustomize.py` of `workbench.audit.hook` first on `PYTHONPATH`: every
    Python process vLLM starts below it (EngineCore, workers; spawned or forked) runs
    `install_from_env()` at interpreter start, before vLLM is imported. The probe patches the
    class through the core's import hook (`workbench.core.hook.after_import`) the moment
    `vllm.v1.attention.backend` (or the older `...backends.utils`) is executed. Every event goes,
    one JSON line, to the probe log with its process id, so the counts survive the process
    boundaries (`read_events`, `count_events`).

vLLM 0.32 no longer has the lazy property
    Upstream removed the deprecated `seq_lens_cpu` / `num_computed_tokens_cpu` properties; 0.32
    has only the eager `seq_lens_cpu_upper_bound` field. Where the property exists the probe
    wraps it exactly as upstream does (counts when `_seq_lens_cpu is None`); where it does not,
    the probe installs a counting stand-in with the deprecated semantics (lazy
    `seq_lens.to("cpu")`, cached), so a caller that still uses it (an out-of-tree backend, the
    positive control) is counted instead of crashing. The summary's `probe.mode` says which.

Positive control
    When the audit child switches the control file to `positive_control` (`set_phase`), the probe
    reads `seq_lens_cpu` on the real `CommonAttentionMetadata` objects the model runner builds,
    on purpose. Those lazy initialisations are tagged and never added to `sync_count`.

Second, independent count on CUDA
    Where CUDA is present, the probe arms `torch.cuda.set_sync_debug_mode("warn")` in the model
    process during the `generate` phase and counts torch's "synchronizing CUDA operation"
    warnings (`cuda_sync_count`).

This module imports nothing but the standard library (and `workbench.core.hook`, itself standard
library only) at import time: the generated `sitecustomize` loads it at the start of every engine
process.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.core import hook

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
    """Append one event to the probe log (`workbench.core.hook.append_event`: whole lines from many processes)."""
    hook.append_event(_STATE.log_path or os.environ.get(PROBE_LOG_ENV), event)


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


def reset(log_path: str | Path | None = None, control_path: str | Path | None = None, cuda: bool = True) -> None:
    """A fresh probe state in this process (phase `startup`, nothing forced); hooks no import.

    For callers that instrument their own classes with `install_on_class` (the tests); `install`
    is what engine processes use.
    """
    global _STATE
    _STATE = _ProbeState(log_path=str(log_path) if log_path else None,
                         control_path=str(control_path) if control_path else None, cuda=cuda)


def install(log_path: str | Path, control_path: str | Path | None = None, cuda: bool = True) -> None:
    """Install the probe into this process; safe before or after vLLM is imported, and twice."""
    _STATE.log_path = str(log_path)
    _STATE.control_path = str(control_path) if control_path else None
    _STATE.cuda = cuda
    for name in TARGET_MODULES:  # patched the moment it is imported (now, if it already is)
        hook.after_import(name, _patch_module)
    _poll_control()


def install_from_env() -> bool:
    """Entry point of the generated `sitecustomize.py`: install when the audit asked for it."""
    log_path = os.environ.get(PROBE_LOG_ENV)
    if not log_path:
        return False
    install(log_path, os.environ.get(PROBE_CONTROL_ENV) or None, os.environ.get(PROBE_CUDA_ENV, "1") != "0")
    return True


# ------------------------------------------------------------------ reading the probe log (in the audit's parent)


def read_events(log_path: str | Path) -> list[dict[str, Any]]:
    """Every event of a probe log, from all processes; a line cut short is skipped."""
    return hook.read_events(log_path)


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
