"""The reference cache: a finished reference run, stored under a key of everything that decides its outputs.

The reference engine's completions depend on the model's files, its engine arguments, the prompts,
the sampling settings, the workload (and control batching), the KV-cache size, the machine (bf16
kernels differ) and the vLLM / torch / workbench versions. A run whose key matches all of these
reuses the stored record instead of starting the reference engine again (`reuse_reference`, on in
a lane); a change in any of them is another key, so it never reuses. Entries are folders shaped
like a run folder (`params.yaml`, `records/prompts.json`, `records/reference.json`), so the
reuse check (`pipeline.reuse_reference`) reads them as it reads any earlier run, and are published
by an atomic rename, so a reader never sees half an entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from workbench.core.fingerprint import Hardware, engine_versions, hardware, model_hash
from workbench.core.params import CaseParams

CACHE_ENV = "WORKBENCH_REFERENCE_CACHE"
ENTRY_RECORD = Path("records") / "reference.json"


class ReferenceKey(BaseModel):
    """Everything that decides the reference engine's outputs (paths replaced by content hashes)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="content hash of the checkpoint's files")
    tokenizer: str | None = Field(None, description="content hash of a separate tokenizer")
    llm_kwargs: dict[str, Any] = Field(description="the reference engine's LLM(...) arguments, paths left out")
    prompts: str = Field(description="sha256 of records/prompts.json (every prompt, rendered, and its format)")
    sampling: dict[str, dict[str, Any]]
    workload: str
    control_batch_size: int | None
    cpu_kvcache_space_gib: int | None
    engine_in_process: bool | None = Field(
        None, description="where the engine core runs (params; null = by device): it changes how the batches form")
    hardware: Hardware
    versions: dict[str, str | None] = Field(description="vllm, torch, workbench")

    def digest(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:24]


class CacheEntry(BaseModel):
    """key.json of a cache entry: the key, and the run that produced the reference."""

    key: ReferenceKey
    digest: str
    source_run_dir: str
    stored_at: float


def reference_key(params: CaseParams, llm_kwargs: dict[str, Any], sampling: dict[str, dict[str, Any]],
                  control_batch_size: int | None, prompts_written: dict[str, Any]) -> ReferenceKey:
    kwargs = {k: v for k, v in llm_kwargs.items() if k not in ("model", "tokenizer")}
    prompts_text = json.dumps(prompts_written, sort_keys=True, ensure_ascii=False)
    return ReferenceKey(
        model=model_hash(params.model), tokenizer=model_hash(params.tokenizer) if params.tokenizer else None,
        llm_kwargs=json.loads(json.dumps(kwargs, sort_keys=True, default=str)),
        prompts=hashlib.sha256(prompts_text.encode()).hexdigest(), sampling=sampling, workload=params.workload,
        control_batch_size=control_batch_size, cpu_kvcache_space_gib=params.cpu_kvcache_space_gib,
        engine_in_process=params.engine_in_process, hardware=hardware(), versions=engine_versions())


def cache_dir(params: CaseParams) -> Path:
    """`reference_cache_dir`, else $WORKBENCH_REFERENCE_CACHE, else ~/.cache/mtp-workbench/references."""
    chosen = params.reference_cache_dir or os.environ.get(CACHE_ENV)
    return Path(chosen).expanduser() if chosen else Path.home() / ".cache" / "mtp-workbench" / "references"


def entry_record(params: CaseParams, key: ReferenceKey) -> Path:
    """Where the reference record of this key is (or will be, once stored)."""
    return cache_dir(params) / key.digest() / ENTRY_RECORD


def lookup(params: CaseParams, key: ReferenceKey) -> Path | None:
    """The stored reference record of this key, or None."""
    record = entry_record(params, key)
    return record if record.is_file() else None


def store(params: CaseParams, key: ReferenceKey, run_dir: Path) -> Path:
    """Publish this run's finished reference under its key (first writer wins; an existing entry is kept)."""
    root = cache_dir(params)
    final = root / key.digest()
    if final.is_dir():
        return final / ENTRY_RECORD
    staging = root / f".staging-{key.digest()}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "records").mkdir(parents=True)
    try:
        shutil.copy2(run_dir / "params.yaml", staging / "params.yaml")
        for name in ("prompts.json", "reference.json"):
            shutil.copy2(run_dir / "records" / name, staging / "records" / name)
        entry = CacheEntry(key=key, digest=key.digest(), source_run_dir=str(run_dir), stored_at=time.time())
        (staging / "key.json").write_text(entry.model_dump_json(indent=1), encoding="utf-8")
        os.rename(staging, final)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not final.is_dir():
            raise
    return final / ENTRY_RECORD


def entry_source(record: Path) -> str | None:
    """The run folder a cached reference record came from (its entry's key.json), if it is a cache entry."""
    key_file = record.parent.parent / "key.json"
    try:
        return CacheEntry.model_validate_json(key_file.read_text(encoding="utf-8")).source_run_dir
    except (OSError, ValueError):
        return None
