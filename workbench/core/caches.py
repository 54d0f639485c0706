"""One folder for the compile caches that make an engine's second start fast (`cache_dir`).

A cold GPU start compiles the model (torch.compile: Dynamo, then Inductor writing Triton kernels), JIT-compiles
and autotunes Triton kernels on the first forward passes (the Gated-DeltaNet ones of the Qwen3.5 models), and
may JIT-build FlashInfer kernels. Each tool keeps what it built in its own cache, by default somewhere under
the home folder or /tmp. The engine children get these variables, so that all of them live under one folder
that later runs on the same machine reuse and that CI can keep between jobs:

| variable | read by | subfolder |
|---|---|---|
| `VLLM_CACHE_ROOT` | vLLM: its compile cache (`torch_compile_cache/`, AOT artifacts, with Inductor's and Triton's output for each compiled model) | `vllm/` |
| `TRITON_CACHE_DIR` | Triton: every other JIT-compiled kernel, and autotuning results | `triton/` |
| `TORCHINDUCTOR_CACHE_DIR` | torch Inductor, where vLLM does not point it under `VLLM_CACHE_ROOT` (older vLLM) | `inductor/` |
| `FLASHINFER_WORKSPACE_BASE` | FlashInfer (`<base>/.cache/flashinfer`: JIT-built ops, downloaded cubins) | `flashinfer/` |
| `CUDA_CACHE_PATH` | the CUDA driver's PTX JIT cache | `cuda/` |

plus `TRITON_CACHE_AUTOTUNING=1` (vLLM 0.32 sets it itself; older ones do not) unless the environment says
otherwise, so that Triton's autotuning results are kept too. Caches hold what was built from the same inputs:
they change how long a start takes, never what an engine computes, so they are not part of the reference key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from workbench.core.errors import ParamsError

CACHE_DIR_ENV = "WORKBENCH_COMPILE_CACHE"
"""The default `cache_dir` when the params leave it null (e.g. a CI job's persistent volume)."""

CACHE_VARIABLES: dict[str, str] = {
    "VLLM_CACHE_ROOT": "vllm",
    "TRITON_CACHE_DIR": "triton",
    "TORCHINDUCTOR_CACHE_DIR": "inductor",
    "FLASHINFER_WORKSPACE_BASE": "flashinfer",
    "CUDA_CACHE_PATH": "cuda",
}
"""Environment variable -> its subfolder of `cache_dir`."""


def compile_cache_dir(chosen: str | None, environ: Mapping[str, str] = os.environ) -> Path:
    """`cache_dir`, else $WORKBENCH_COMPILE_CACHE, else the user's cache folder ($XDG_CACHE_HOME or ~/.cache)
    /mtp-workbench/compile."""
    if chosen:
        return Path(chosen).expanduser()
    if environ.get(CACHE_DIR_ENV):
        return Path(environ[CACHE_DIR_ENV]).expanduser()
    user_cache = Path(environ["XDG_CACHE_HOME"]) if environ.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return user_cache.expanduser() / "mtp-workbench" / "compile"


def compile_cache_env(root: Path, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The engine children's environment that puts every compile cache under `root`."""
    env = {variable: str(root / sub) for variable, sub in CACHE_VARIABLES.items()}
    if "TRITON_CACHE_AUTOTUNING" not in environ:
        env["TRITON_CACHE_AUTOTUNING"] = "1"
    return env


def check_cache_dir(chosen: str | None, where: str) -> Path:
    """The cache folder, created now; one that cannot be created or written is bad input (`ParamsError`), refused
    before any engine starts rather than failing in vLLM's compile."""
    root = compile_cache_dir(chosen)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ParamsError(f"{where}: key 'cache_dir': {root} cannot be created: {exc.strerror or exc}",
                          key="cache_dir", path=where) from exc
    if not os.access(root, os.W_OK | os.X_OK):
        raise ParamsError(f"{where}: key 'cache_dir': {root} is not writable", key="cache_dir", path=where)
    return root
