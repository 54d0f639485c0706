"""A case, declared in YAML: which model, which speculative method, which thresholds.

Params are validated before any engine starts: an unknown key, a wrong type or a model
path that does not exist is a `ParamsError` naming the key and the file (CLI exit 2).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator,
                      model_validator)

from workbench.core.errors import ParamsError
from workbench.core.resources import CASES_DIR, DEFAULT_CASE, resolve_case
from workbench.gsm8k.scorers import SCORERS

DEFAULT_PARAMS = CASES_DIR / f"{DEFAULT_CASE}.yaml"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


_CPU_LIST = r"\d+(-\d+)?(,\d+(-\d+)?)*"
CPU_BINDING = re.compile(rf"auto|nobind|{_CPU_LIST}(\|{_CPU_LIST})*")
"""What vLLM's CPU backend accepts in VLLM_CPU_OMP_THREADS_BIND."""


class CaseParams(BaseModel):
    """One evaluation case. Keys mirror vLLM's `LLM(...)` arguments where they can."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_assignment=True)

    # what is evaluated
    model: str = Field(description="local checkpoint folder (relative to the params file) or hub id")
    tokenizer: str | None = None
    description: str = ""
    intended_hardware: str = "CPU"
    placeholder_weights: bool = Field(False, description="true when load_format=dummy stands in for real weights")
    # speculative decoding
    method: str = "mtp"
    num_speculative_tokens: int = Field(1, ge=1)
    speculative_extra: dict[str, Any] = Field(default_factory=dict, description="more speculative_config keys")
    # the GSM8k check (upstream: threshold 0 switches it off)
    threshold: float = Field(0.0, ge=0.0, le=1.0)
    threshold_source: str | None = None
    primary_scorer: str = "upstream"
    num_questions: int | None = Field(None, ge=1, description="first N test questions; null = all 1319")
    num_shots: int = Field(5, ge=0)
    max_tokens: int = Field(256, ge=1)
    dataset: str | None = Field(None, description="GSM8k source: null = packaged copy, a folder, or a hub id")
    # the output-match check
    output_match_prompts: int = Field(100, ge=0)
    output_match_max_tokens: int = Field(10, ge=1)
    output_match_gsm8k_share: float = Field(0.5, ge=0.0, le=1.0)
    required_match_share: float = Field(0.8, ge=0.0, le=1.0)
    match_mode: Literal["exact", "tie_aware"] = Field(
        "exact", description="exact: upstream's rule, int(share x n) + 1 identical texts; tie_aware: near-ties "
                             "(bf16 rounding at a top-2 gap of at most tie_margin) count as matches")
    prompt_format: Literal["auto", "chat", "completion"] = Field(
        "auto", description="output-match prompts: chat = one user message through the model's chat template "
                            "(llm.chat, as upstream); completion = plain text; auto = chat when the tokenizer has a "
                            "template")
    gsm8k_prompt_format: Literal["completion", "chat"] = Field(
        "completion", description="GSM8k eval prompts: completion as upstream's eval, or chat for chat models")
    output_match_control: bool = Field(
        True, description="the noise floor: the reference engine generates the output-match prompts a second time "
                          "under other batching (reversed order, batches of control_batch_size)")
    control_batch_size: int | None = Field(
        None, ge=1, description="batch size of the control generation; null = a quarter of the prompts")
    required_match_share_by_kind: dict[str, float] | None = Field(
        None, description="per prompt kind (repeat, gsm8k): int(share x n_kind) + 1 matches required of that kind, "
                          "besides required_match_share overall (upstream split its assertion by kind)")
    match_logprobs: int = Field(5, ge=2, le=20, description="top-N logprobs kept per output-match token")
    tie_margin: float | None = Field(
        None, gt=0.0, description="largest reference top-2 logprob gap of a near-tie; null = from the dtype")
    expect_async_scheduling: bool = Field(
        True, description="the speculative engine must run with async scheduling where vLLM supports it "
                          "(upstream asserts it for MTP); skipped where vLLM turns it off (CPU)")
    reference_record: str | None = Field(
        None, description="records/reference.json of an earlier run with the same reference engine, prompts and "
                          "sampling: that engine is not started again (controls, lanes). Checked before any start")
    reference_wait_s: float = Field(
        0.0, ge=0.0, description="with reference_record: wait up to this long for a record another run of the same "
                                 "lane is still producing (the speculative engine runs meanwhile); 0 = it must exist")
    reuse_reference: bool = Field(
        False, description="look up the reference cache first: a finished reference run with the same key (model "
                           "files, reference engine arguments, prompts, sampling, workload, hardware, vLLM, torch and "
                           "workbench versions) is reused and that engine not started (workbench run "
                           "--reuse-reference; on by default in a lane)")
    store_reference: bool = Field(
        True, description="store this run's finished reference in the reference cache under its key")
    reference_cache_dir: str | None = Field(
        None, description="the reference cache; null = $WORKBENCH_REFERENCE_CACHE or "
                          "~/.cache/mtp-workbench/references")
    # how the prompts reach the engines
    workload: Literal["batch", "churn"] = Field(
        "batch", description="batch: every prompt at once (upstream); churn: the same prompts in waves with filler "
                             "requests of staggered max_tokens, so the batch condenses and reorders at every step")
    churn_kv_blocks: int | None = Field(
        None, ge=1, description="churn only: KV-cache blocks (vLLM num_gpu_blocks_override) small enough to force "
                                "preemption; null = the engine's own size")
    # optional acceptance gate
    min_acceptance_length: float | None = Field(None, ge=1.0)
    # a regression baseline (workbench baseline record): acceptance and accuracy held to a recorded run's
    baseline: str | None = Field(
        None, description="a baseline file (workbench baseline record; relative to the params file, else to the "
                          "current folder): adds the *_vs_baseline checks; refused before any engine starts when "
                          "recorded on other hardware, for another model, method or num_speculative_tokens")
    baseline_rtol: float = Field(
        0.05, ge=0.0, lt=1.0, description="acceptance length and each position's acceptance rate must reach "
                                          "(1 - baseline_rtol) x the baseline's")
    baseline_alpha: float = Field(
        0.05, gt=0.0, lt=1.0, description="significance of the one-sided test that accuracy is not below the "
                                          "baseline's")
    # engine
    dtype: str = "auto"
    max_model_len: int = Field(2048, ge=16)
    max_num_seqs: int | None = Field(None, ge=1)
    gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0)
    tensor_parallel_size: int = Field(1, ge=1)
    enforce_eager: bool = False
    enable_prefix_caching: bool | None = None
    limit_mm_per_prompt: dict[str, int] | None = None
    load_format: str | None = None
    trust_remote_code: bool = False
    additional_config: dict[str, Any] | None = None
    engine_kwargs: dict[str, Any] = Field(default_factory=dict, description="any other vllm.LLM keyword")
    cpu_kvcache_space_gib: int | None = Field(None, ge=1, description="sets VLLM_CPU_KVCACHE_SPACE")
    engine_timeout_s: float = Field(3600.0, gt=0, description="an engine still running after this long is stopped")
    engine_stall_timeout_s: float = Field(
        900.0, gt=0, description="an engine that reports no progress (start, finished requests) for this long is "
                                 "stopped as stalled")
    parallel_engines: bool = Field(
        False, description="run reference and speculative engines at the same time. On a GPU both share it: each "
                           "gets gpu_memory_utilization of it (2 x that must be free, checked before start) and a "
                           "fixed KV cache (engine_kwargs.kv_cache_memory_bytes), so neither sizes its cache from "
                           "memory the other is allocating")
    engine_in_process: bool | None = Field(
        None, description="run vLLM's engine core inside the engine child (VLLM_ENABLE_V1_MULTIPROCESSING=0) rather "
                          "than in a process of its own, which imports vLLM and torch a second time (about 13 s of "
                          "each engine start on an H100 machine); null = in process on a CUDA GPU with "
                          "tensor_parallel_size 1, its own process elsewhere. On the CPU, true binds the child's "
                          "OpenMP threads to its engine_cpu_binding, as vLLM binds its own worker process")
    engine_cpu_binding: list[str] | None = Field(
        None, description="CPU only: VLLM_CPU_OMP_THREADS_BIND of the reference and the speculative engine, e.g. "
                          "['0', '1']")
    cache_dir: str | None = Field(
        None, description="the folder of the compile caches the engines reuse between runs (vLLM's VLLM_CACHE_ROOT, "
                          "Triton, torch Inductor, FlashInfer, CUDA); null = $WORKBENCH_COMPILE_CACHE or "
                          "~/.cache/mtp-workbench/compile. Not part of the reference key: caches change start times, "
                          "not outputs")
    seed: int = 0
    # positive controls: a fault injected into the speculative engine only (workbench.inject)
    inject: str | None = Field(
        None, description="a registered fault (workbench.inject) installed into the speculative engine's processes "
                          "only, so that a check must fail; null = none")
    inject_rate: float | None = Field(
        None, ge=0.0, le=1.0, description="share of eligible rows the fault corrupts; null = the fault's default rate")
    inject_seed: int = Field(0, description="seed of the fault's choice of rows")
    # other notebooks
    audit: bool = Field(False, description="run the no-sync audit for this case (workbench audit)")

    @field_validator("primary_scorer")
    @classmethod
    def _known_scorer(cls, value: str) -> str:
        if value not in SCORERS:
            raise ValueError(f"unknown scorer {value!r}; known: {', '.join(SCORERS)}")
        return value

    @model_validator(mode="after")
    def _binding_pairs(self) -> CaseParams:
        if self.engine_cpu_binding is not None and len(self.engine_cpu_binding) != 2:
            raise ValueError("engine_cpu_binding: give two values, reference then speculative")
        for value in self.engine_cpu_binding or []:
            if not CPU_BINDING.fullmatch(value):
                raise ValueError(f"engine_cpu_binding: {value!r} is not a VLLM_CPU_OMP_THREADS_BIND value (auto, "
                                 "nobind, or CPU ids and ranges such as 0-3,8, one list per tensor-parallel rank "
                                 "joined by |)")
        return self

    @field_validator("inject_rate")
    @classmethod
    def _rate_needs_a_fault(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is not None and info.data.get("inject") is None:
            raise ValueError("a rate without a fault: set inject (the fault's name) too")
        return value

    @field_validator("required_match_share_by_kind")
    @classmethod
    def _known_kinds(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for kind, share in (value or {}).items():
            if kind not in ("repeat", "gsm8k"):
                raise ValueError(f"unknown prompt kind {kind!r}; kinds: repeat, gsm8k")
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"share of {kind!r} must be within [0, 1], got {share!r}")
        return value

    @model_validator(mode="after")
    def _gsm8k_fits(self) -> CaseParams:
        if self.num_questions is not None and self.num_questions > 1319 and self.dataset is None:
            raise ValueError("num_questions: the packaged GSM8k test split has 1319 questions")
        return self

    def speculative_config(self) -> dict[str, Any]:
        return {"method": self.method, "num_speculative_tokens": self.num_speculative_tokens,
                **self.speculative_extra}


def _field_of(error: dict) -> str:
    return ".".join(str(part) for part in error["loc"]) or "(top level)"


def resolve_model_path(value: str, params_file: Path) -> str:
    """A local folder (made absolute) or a hub id; anything else is an error.

    A relative path is looked up beside the params file, then in the current folder, so
    `-p model models/tiny-qwen3_5-mtp` means the folder here and is never sent to a hub.
    """
    beside_params = (params_file.parent / value).expanduser()
    here = Path(value).expanduser()
    candidate = beside_params if beside_params.exists() or not here.exists() else here
    if candidate.exists():
        if not (candidate / "config.json").exists():
            raise ParamsError(f"{params_file}: key 'model': {candidate} has no config.json", key="model",
                              path=params_file)
        return str(candidate.resolve())
    looks_like_path = value.startswith((".", "/", "~")) or value.count("/") != 1
    if looks_like_path or not _HUB_ID.match(value):
        raise ParamsError(f"{params_file}: key 'model': model path {value!r} not found "
                          f"(looked for {candidate.resolve()})", key="model", path=params_file)
    return value  # a hub id: fetched by vLLM on a connected machine


def _local_or_hub(value: str, params_file: Path) -> str:
    """A dataset folder beside the params file or here, made absolute (the notebook runs in the run folder)."""
    for candidate in ((params_file.parent / value).expanduser(), Path(value).expanduser()):
        if candidate.exists():
            return str(candidate.resolve())
    return value


def parse_override(key: str, raw: str) -> tuple[str, Any]:
    """`-p KEY VALUE`: the value is read as YAML, so `0.99`, `true`, `null`, `{a: 1}` work."""
    try:
        return key, yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ParamsError(f"-p {key}: cannot read value {raw!r} as YAML: {exc}", key=key) from exc


def load_params(path: str | Path, overrides: dict[str, Any] | None = None) -> CaseParams:
    """Read, override and validate a params file; relative model paths become absolute."""
    path = resolve_case(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}", path=path) from exc
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping of keys to values, got {type(data).__name__}", path=path)
    unknown_overrides = sorted(set(overrides or {}) - set(CaseParams.model_fields))
    if unknown_overrides:
        raise ParamsError(f"-p {unknown_overrides[0]}: unknown key (overriding {path}); "
                          f"known keys: {', '.join(CaseParams.model_fields)}", key=unknown_overrides[0], path=path)
    data = {**data, **(overrides or {})}
    unknown = sorted(set(data) - set(CaseParams.model_fields))
    if unknown:
        raise ParamsError(f"{path}: unknown key {unknown[0]!r}" + (f" (and {unknown[1:]})" if unknown[1:] else "")
                          + f"; known keys: {', '.join(CaseParams.model_fields)}", key=unknown[0], path=path)
    if "model" not in data:
        raise ParamsError(f"{path}: key 'model' is required", key="model", path=path)
    if isinstance(data["model"], str):
        data["model"] = resolve_model_path(data["model"], path)
    if isinstance(data.get("tokenizer"), str):
        data["tokenizer"] = resolve_model_path(data["tokenizer"], path)
    if isinstance(data.get("dataset"), str):
        data["dataset"] = _local_or_hub(data["dataset"], path)
    if isinstance(data.get("baseline"), str):  # beside the params file, else here; a missing one: preflight says so
        data["baseline"] = _local_or_hub(data["baseline"], path)
    if isinstance(data.get("reference_record"), str):
        record = Path(data["reference_record"]).expanduser()
        if not record.is_file() and not data.get("reference_wait_s"):
            raise ParamsError(f"{path}: key 'reference_record': {record} not found", key="reference_record", path=path)
        data["reference_record"] = str(record.resolve())
    try:
        return CaseParams(**data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ParamsError(f"{path}: key {_field_of(first)!r}: {first['msg']} (got {first.get('input')!r})",
                          key=_field_of(first), path=path) from exc


def case_name(path: str | Path) -> str:
    return Path(path).stem


def check_against_vllm(params: CaseParams, path: str | Path) -> None:
    """Keys the installed vLLM would reject, refused now (exit 2) instead of after an engine start.

    Read from vLLM's source (`workbench.core.vllm_facts`), so nothing is imported or started.
    """
    from workbench.core import vllm_facts

    version = vllm_facts.vllm_version() or "unknown"
    methods = vllm_facts.speculative_methods()
    if methods is not None and params.method not in methods:
        raise ParamsError(f"{path}: key 'method': {params.method!r} is not a speculative method of vLLM {version} "
                          f"(known: {', '.join(sorted(methods))})", key="method", path=path)
    spec_keys = vllm_facts.speculative_config_keys()
    unknown = sorted(set(params.speculative_extra) - spec_keys) if spec_keys is not None else []
    if unknown:
        raise ParamsError(f"{path}: key 'speculative_extra.{unknown[0]}': vLLM {version}'s speculative config has no "
                          f"key {unknown[0]!r}", key=f"speculative_extra.{unknown[0]}", path=path)
    engine_keys = vllm_facts.engine_argument_names()
    unknown = sorted(set(params.engine_kwargs) - engine_keys) if engine_keys is not None else []
    if unknown:
        raise ParamsError(f"{path}: key 'engine_kwargs.{unknown[0]}': not an engine argument of vLLM {version} "
                          f"(vllm.LLM / EngineArgs)", key=f"engine_kwargs.{unknown[0]}", path=path)
