"""The injected fault inside the speculative engine's processes: what the generated sitecustomize installs.

The correctness pipeline starts the speculative engine's child with `INJECT_ENV` (the fault's
name), its rate, seed and event log in the environment and the core's generated
`sitecustomize.py` first on `PYTHONPATH` (`workbench.core.hook`). Every Python process vLLM starts
below it (EngineCore, workers; the CPU platform spawns them) runs `install_from_env()` at
interpreter start: the fault's patch point is then applied the moment vLLM imports its module.
The reference engine's child never gets this environment, so the reference stays clean.

Events (one JSON line each, to the log in the run folder): `installed` (a process patched the
target), `install_error` (the target is missing: the import fails, and the engine with it),
`injected` (a patched call corrupted rows; `rows` says how many).

This module imports nothing but the standard library (and the workbench's standard-library-only
modules) at import time.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from workbench.core import hook
from workbench.inject import points
from workbench.inject.faults import FAULTS, Chance

INJECT_ENV = "WORKBENCH_INJECT"
INJECT_RATE_ENV = "WORKBENCH_INJECT_RATE"
INJECT_SEED_ENV = "WORKBENCH_INJECT_SEED"
INJECT_LOG_ENV = "WORKBENCH_INJECT_LOG"
INSTALLED = "installed"
INSTALL_ERROR = "install_error"
INJECTED = "injected"
LABEL = "workbench.inject"
ENGINE_ENV = "WORKBENCH_ENGINE"
"""The engine label every engine child is started with (`workbench.core.engine.ENGINE_LABEL_ENV`), inherited by the
processes vLLM starts: each event says which engine it came from, so a fault seen in the reference is caught."""

_RUN: points.FaultRun | None = None


def install(name: str, rate: float, seed: int, log_path: str | None) -> points.FaultRun:
    """Install fault `name` into this process: its patch point is applied when vLLM imports the target.

    Safe before or after vLLM is imported, and twice. An unknown name raises `InjectionError`.
    """
    global _RUN
    fault = FAULTS.get(name)
    if fault is None:
        raise points.InjectionError(f"unknown fault {name!r}; known: {', '.join(sorted(FAULTS))}")
    point = points.POINTS.get(fault.point)
    if point is None:
        raise points.InjectionError(f"fault {name!r}: unknown patch point {fault.point!r}")
    if _RUN is not None and _RUN.fault.name == name:
        return _RUN

    def emit(event: dict[str, Any]) -> None:
        hook.append_event(log_path, {**event, "engine": os.environ.get(ENGINE_ENV)})

    run = points.FaultRun(fault=fault, chance=Chance(rate, seed, name), emit=emit)

    def patch(module: Any) -> None:
        try:
            target = points.apply(point, module, run)
        except Exception as exc:
            emit({"kind": INSTALL_ERROR, "fault": name, "target": point.target, "message": str(exc)})
            print(f"[{LABEL}] cannot install fault {name!r}: {exc}", file=sys.stderr, flush=True)
            raise
        emit({"kind": INSTALLED, "fault": name, "target": target, "rate": rate, "seed": seed})

    _RUN = run
    hook.after_import(point.module, patch)
    return run


def install_from_env() -> bool:
    """Entry point of the generated `sitecustomize.py` (and the engine child's setup): install when asked."""
    name = os.environ.get(INJECT_ENV)
    if not name:
        return False
    install(name, float(os.environ.get(INJECT_RATE_ENV, "0")), int(os.environ.get(INJECT_SEED_ENV, "0")),
            os.environ.get(INJECT_LOG_ENV))
    return True


def fault_env(name: str, rate: float, seed: int, log_path: str) -> dict[str, str]:
    """The environment variables `install_from_env` reads."""
    return {INJECT_ENV: name, INJECT_RATE_ENV: repr(float(rate)), INJECT_SEED_ENV: str(int(seed)),
            INJECT_LOG_ENV: str(log_path)}
