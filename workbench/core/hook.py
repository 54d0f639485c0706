"""Getting workbench code into every process vLLM starts, and hearing back from it.

vLLM's CPU platform starts its EngineCore and workers with `spawn`, so a class patched in the
engine child never reaches the process that runs the model. What does reach it is the
environment: a generated `sitecustomize.py`, first on `PYTHONPATH`, runs at the start of every
Python process started below the child and installs the modules it was given (each behind its
own environment variable), before anything imports vLLM. Those modules then patch vLLM lazily,
through `after_import`, the moment the target module has executed, and report what they did as
JSON lines appended to a log (`append_event`, `read_events`), so counts survive the process
boundaries.

Two flows use it: the no-sync audit's probe (`workbench.audit.probe`) and the injected faults
(`workbench.inject`). This module imports nothing but the standard library: the generated
`sitecustomize` and the modules it installs load it at interpreter start.
"""

from __future__ import annotations

import importlib.abc
import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class SiteHook:
    """One module the generated `sitecustomize` installs: `module.function()` runs when `env` is set."""

    env: str
    module: str
    function: str = "install_from_env"
    label: str = "workbench"


_HEADER = '''\
# Written by the workbench for one run. Every Python process started with this folder first on
# PYTHONPATH (vLLM's EngineCore and workers) installs the modules below at interpreter start,
# before anything imports vLLM; each only when its environment variable is set.
import os as _os
import sys as _sys
'''

_ENTRY = '''
if _os.environ.get({env!r}):
    try:
        from {module} import {function} as _install

        _install()
    except Exception as _exc:  # never stop a process here; the flow sees the missing install
        print(f"[{label}] not installed: {{_exc!r}}", file=_sys.stderr)
'''


def sitecustomize_text(hooks: Iterable[SiteHook]) -> str:
    """The generated `sitecustomize.py`: one guarded install per hook."""
    return _HEADER + "".join(_ENTRY.format(env=h.env, module=h.module, function=h.function, label=h.label)
                             for h in hooks)


def write_sitecustomize(folder: str | Path, hooks: Iterable[SiteHook]) -> Path:
    """`folder/sitecustomize.py` installing `hooks` (the folder is created)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sitecustomize.py"
    path.write_text(sitecustomize_text(hooks), encoding="utf-8")
    return path


def package_root() -> Path:
    """The folder that holds the `workbench` package (a checkout's root, or site-packages)."""
    return Path(__file__).resolve().parents[2]  # <root>/workbench/core/hook.py


def site_env(site_dir: str | Path, env: dict[str, str]) -> dict[str, str]:
    """`env` plus a `PYTHONPATH` with `site_dir` first, then the folder that holds `workbench`.

    So the generated `sitecustomize` is the one Python finds, and `import workbench...` works in
    every process started with this environment.
    """
    path = [str(site_dir), str(package_root())] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {**env, "PYTHONPATH": os.pathsep.join(dict.fromkeys(path))}


# ------------------------------------------------------------------ patching a module the moment it is imported


class _AfterImport(importlib.abc.MetaPathFinder):
    """Import hook: run the registered callbacks right after a watched module has executed."""

    def __init__(self) -> None:
        self.callbacks: dict[str, list[Callable[[Any], None]]] = {}

    def find_spec(self, fullname, path, target=None):
        callbacks = self.callbacks.get(fullname)
        if not callbacks:
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
            for callback in list(callbacks):
                callback(module)

        loader.exec_module = exec_module  # this loader instance serves this one module
        return spec


_FINDER: _AfterImport | None = None


def after_import(module_name: str, callback: Callable[[Any], None]) -> None:
    """Call `callback(module)` once `module_name` has executed in this process (now, if it already has).

    The callback runs inside the import: an exception it raises fails that import, which is how a
    patch that cannot be applied stops the engine instead of letting it run unpatched.
    """
    global _FINDER
    if _FINDER is None:
        _FINDER = _AfterImport()
        sys.meta_path.insert(0, _FINDER)
    callbacks = _FINDER.callbacks.setdefault(module_name, [])
    if callback not in callbacks:
        callbacks.append(callback)
    if module_name in sys.modules:  # already imported (fork, or a late install)
        callback(sys.modules[module_name])


# ------------------------------------------------------------------ events, one JSON line each, from every process


def process_label() -> str:
    """The process title (vLLM renames its processes, e.g. `VLLM::Worker`), else its name or argv[0]."""
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


def append_event(path: str | Path | None, event: dict[str, Any]) -> None:
    """Append one event (with pid, process and time) to a JSON-lines log; O_APPEND keeps lines whole
    when many processes write. No path: nothing is written."""
    if not path:
        return
    event = {"pid": os.getpid(), "process": process_label(), "time": time.time(), **event}
    line = (json.dumps(event, default=str) + "\n").encode()
    fd = os.open(str(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def read_events(path: str | Path) -> list[dict[str, Any]]:
    """Every event of a JSON-lines log, from all processes; a line cut short (a killed process) is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
    return events
