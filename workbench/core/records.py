"""The typed, versioned records of a run folder: what engine children write and every reader loads.

One model tree, as inspect_ai keeps its eval log: `EngineRecord` per engine (`records/<label>.json`),
`OutputMatch` (`output_match.json`) and `RunSummary` (`summary.json`, with `schema_version` and
`kind`). Writers build these models and readers (`calibrate`, `summarize`, the reports) load
through `load_summary` / `load_engine_record`, so a folder of another shape or of an unknown
`schema_version` fails with a `RecordError` naming the file, instead of a KeyError three stages
later. `docs/DESIGN.md` shows the JSON schema generated from these models (`schema_markdown`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from workbench.core.errors import RecordError
from workbench.core.params import CaseParams

SCHEMA_VERSION = 1
"""Bumped when a key changes meaning or goes away; added optional keys keep the version."""

RunKind = Literal["correctness", "audit", "calibration"]
CheckStatus = Literal["passed", "failed", "skipped"]
MatchMode = Literal["exact", "tie_aware"]


class Record(BaseModel):
    """Base of every record: unknown keys are an error, so a typo or a foreign file is caught on load."""

    model_config = ConfigDict(extra="forbid")


# ------------------------------------------------------------------ engine records (records/<label>.json)


class TopLogprob(Record):
    """One candidate token at one position: vLLM's Logprob, flattened."""

    id: int
    logprob: float
    rank: int | None = None
    text: str | None = None


class Completion(Record):
    """One prompt's greedy completion as the engine returned it."""

    prompt_id: int
    completion: str
    token_ids: list[int]
    finish_reason: str | None = None
    spec: dict[str, Any] | None = Field(None, description="vLLM's per-request spec-decode metrics (to_dict)")
    top_logprobs: list[list[TopLogprob]] | None = Field(None, description="top-N per generated token, when asked")
    question_id: int | None = None


class EngineVersions(Record):
    vllm: str | None = None
    torch: str | None = None
    python: str | None = None


SpecCounters = dict[str, int | float | list[int] | list[float]]
"""vLLM's spec-decode counters by metric name (`vllm:spec_decode_num_drafts`, ...), as one generate call added."""


class EngineRecord(Record):
    """Everything one engine child produced: written by the child, even when it failed."""

    schema_version: int = SCHEMA_VERSION
    label: str
    llm_kwargs: dict[str, Any] = Field(description="the `vllm.LLM(...)` arguments, as passed")
    ok: bool
    error: str | None = None
    traceback: str | None = None
    versions: EngineVersions = Field(default_factory=EngineVersions)
    init_s: float | None = None
    gsm8k: list[Completion] = Field(default_factory=list)
    generate_s: float | None = None
    output_tokens: int | None = None
    output_tokens_per_s: float | None = None
    spec_counters: SpecCounters = Field(default_factory=dict)
    output_match: list[Completion] = Field(default_factory=list)
    match_generate_s: float | None = None
    match_spec_counters: SpecCounters = Field(default_factory=dict)
    wall_s: float | None = None


# ------------------------------------------------------------------ stages of the correctness flow


class Timings(Record):
    init_s: float | None = None
    generate_s: float | None = None
    output_tokens: int | None = None
    output_tokens_per_s: float | None = None
    match_generate_s: float | None = None
    wall_s: float | None = None


class AcceptanceCounters(Record):
    num_drafts: int | float = 0
    num_draft_tokens: int | float = 0
    num_accepted_tokens: int | float = 0
    num_accepted_tokens_per_pos: list[int | float] = Field(default_factory=list)


class Acceptance(AcceptanceCounters):
    """Acceptance as upstream defines it: rate = accepted / draft tokens, length = 1 + accepted / drafts."""

    acceptance_rate: float | None = None
    acceptance_length: float | None = None
    acceptance_rate_per_position: list[float] = Field(default_factory=list)
    per_prompt: list[Acceptance | None] | None = None


class KindTally(Record):
    matched: int
    total: int
    near_ties: int = 0
    divergences: int = 0


class ClassTally(Record):
    total: int
    by_kind: dict[str, int] = Field(default_factory=dict)


class OutputMatchSummary(Record):
    """Upstream's output-match check: exact counts always; near-ties and divergences from top logprobs."""

    matched: int
    total: int
    share: float | None
    required_share: float
    by_kind: dict[str, KindTally] = Field(default_factory=dict)
    mode: MatchMode = "exact"
    required_matches: int | None = None
    judged_matched: int | None = None
    judged_share: float | None = None
    near_ties: ClassTally | None = None
    divergences: ClassTally | None = None
    top_n: int | None = None
    tie_margin: float | None = None
    tie_margin_source: str | None = None


class Mismatch(Record):
    prompt_id: int
    kind: str
    first_divergent_token: int | None
    match_class: Literal["near_tie", "divergence"] = Field(alias="class")
    reference_token: int | None = None
    speculative_token: int | None = None
    reference_token_text: str | None = None
    speculative_token_text: str | None = None
    reference_margin: float | None = None
    reference_top_logprobs: list[TopLogprob] | None = None
    speculative_top_logprobs: list[TopLogprob] | None = None
    reference: str
    speculative: str

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class GSM8kDivergence(Record):
    question_id: int
    first_divergent_token: int | None
    reference_tokens: int
    speculative_tokens: int


class OutputMatch(OutputMatchSummary):
    """output_match.json: the summary's counts plus every mismatch with its class and logprobs."""

    mismatches: list[Mismatch] = Field(default_factory=list)
    gsm8k_divergences: list[GSM8kDivergence] = Field(default_factory=list)


class Check(Record):
    """One check's verdict: a switched-off check is `skipped`, never `passed`."""

    name: str
    status: CheckStatus
    observed: float | None = None
    required: float | None = None
    message: str


class EngineSummary(Record):
    accuracy: dict[str, float] = Field(description="accuracy per registered scorer")
    timings: Timings = Field(default_factory=Timings)


class SpeculativeSummary(EngineSummary):
    acceptance_rate: float | None = None
    acceptance_length: float | None = None
    acceptance_rate_per_position: list[float] = Field(default_factory=list)
    counters: AcceptanceCounters = Field(default_factory=AcceptanceCounters)


class Versions(Record):
    vllm: str | None = None
    torch: str | None = None
    python: str | None = None
    model_config_hash: str | None = None
    workbench: str | None = None


# ------------------------------------------------------------------ the audit flow


class AuditTimings(Record):
    init_s: float | None = None
    generate_s: float | None = None
    wall_s: float | None = None


class CalibrationHeadline(Record):
    """The calibration folder's headline; calibration.json keeps every number."""

    runs: list[str] = Field(default_factory=list)
    accuracy: float
    questions: int
    recommended_threshold: float
    false_failure_probability: float
    output_match_mode: MatchMode | None = None


# ------------------------------------------------------------------ summary.json


class RunSummary(Record):
    """summary.json of every run folder; the keys of each kind stay what they were before versioning."""

    schema_version: int = SCHEMA_VERSION
    kind: RunKind = "correctness"
    case: str | None = None
    params: CaseParams | None = None
    checks: list[Check] = Field(default_factory=list)
    passed: bool = False
    error: str | None = None
    versions: Versions = Field(default_factory=Versions)
    # correctness
    primary_scorer: str | None = None
    num_questions: int | None = None
    threshold: float | None = None
    margin: float | None = None
    reference: EngineSummary | None = None
    speculative: SpeculativeSummary | None = None
    output_match: OutputMatchSummary | None = None
    gsm8k_identical_completions: int | None = None
    # audit
    async_scheduling_active: bool | None = None
    async_scheduling_reason: str | None = None
    sync_count: int | None = None
    sync_count_by_phase: dict[str, int] | None = None
    sync_stacks: list[dict[str, Any]] | None = None
    positive_control_count: int | None = None
    positive_control_processes: list[str] | None = None
    cuda_sync_count: int | None = None
    probe: dict[str, Any] | None = Field(None, description="where the no-sync probe sat and in which mode")
    speculative_active: bool | None = None
    timings: AuditTimings | None = None
    # calibration
    calibration: CalibrationHeadline | None = None

    def check(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)


# ------------------------------------------------------------------ reading and writing


def _read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecordError(f"{path}: not found (not a finished run folder?)", path=path) from None
    except ValueError as exc:
        raise RecordError(f"{path}: not valid JSON ({exc})", path=path) from exc


def _validated(model: type[Record], data: Any, path: Path) -> Any:
    if not isinstance(data, dict):
        raise RecordError(f"{path}: expected a JSON object, got {type(data).__name__}", path=path)
    version = data.get("schema_version", SCHEMA_VERSION)  # files before versioning had this shape
    if version != SCHEMA_VERSION:
        raise RecordError(f"{path}: schema_version {version!r} is not one this workbench reads "
                          f"({SCHEMA_VERSION}); use the workbench version that wrote it", path=path, key="schema_version")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise RecordError(f"{path}: not a {model.__name__}: key {where!r}: {first['msg']} "
                          f"({exc.error_count()} problem(s))", path=path, key=where) from exc


def load_summary(run_dir: str | Path) -> RunSummary:
    """A run folder's summary.json, validated; a folder without one is named in the error."""
    path = Path(run_dir) / "summary.json"
    return _validated(RunSummary, _read_json(path), path)


def load_engine_record(path: str | Path) -> EngineRecord:
    return _validated(EngineRecord, _read_json(Path(path)), Path(path))


def write_record(path: str | Path, record: Record) -> Path:
    """A record as JSON (by alias, so `class` stays the key name), written whole."""
    path = Path(path)
    path.write_text(record.model_dump_json(indent=2, by_alias=True) + "\n", encoding="utf-8")
    return path


def schema_markdown() -> str:
    """The JSON schemas of the run-folder files, for docs/DESIGN.md (generated, never hand-written)."""
    parts = []
    for title, model in (("summary.json", RunSummary), ("records/<label>.json", EngineRecord),
                         ("output_match.json", OutputMatch)):
        schema = model.model_json_schema(by_alias=True)
        parts.append(f"### `{title}`: `{model.__name__}`\n\n```json\n{json.dumps(schema, indent=1)}\n```\n")
    return "\n".join(parts)
