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
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from workbench.core.errors import RecordError
from workbench.core.fingerprint import Hardware
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
    prompt: str | None = Field(None, description="the prompt text as the engine rendered it (chat prompts)")


class EngineVersions(Record):
    vllm: str | None = None
    torch: str | None = None
    python: str | None = None


SpecCounters = dict[str, int | float | list[int] | list[float]]
"""vLLM's spec-decode counters by metric name (`vllm:spec_decode_num_drafts`, ...), as one generate call added."""


class ControlBatching(Record):
    """How the control generation was batched: another order and batch size than the first pass."""

    order: Literal["reversed"] = "reversed"
    batch_size: int


class StartBreakdown(Record):
    """Where one engine's start (`init_s`, the `vllm.LLM(...)` call) went, phase -> seconds, read from vLLM's own
    timing lines in the engine's log (`workbench.core.startlog`). `other` is the remainder, so the phases always
    add up to `init_s`."""

    weights_load: float = Field(0.0, description="building the model and loading its weights (the drafter's "
                                                 "too): vLLM's \"Model loading took\", else \"Initializing model\" "
                                                 "plus \"Loading weights\"")
    compile: float = Field(0.0, description="torch.compile (Dynamo and Inductor, or loading their output from the "
                                            "compile cache): the \"compilation\" of vLLM's \"init engine\" line")
    profile_kv_cache_warmup: float = Field(
        0.0, description="the rest of vLLM's \"init engine (profile, create kv cache, warmup model)\": the first "
                         "forward passes (Triton JIT and autotuning), memory profiling, KV-cache allocation, warmup")
    cuda_graph_capture: float = Field(0.0, description="vLLM's \"Graph capturing finished in N secs\" (GPU only)")
    other: float = Field(0.0, description="the remainder of init_s, so that the phases add up to it: engine "
                                          "arguments and config, starting vLLM's EngineCore and worker processes "
                                          "(their imports), tokenizer, and anything vLLM did not log a time for")

    @property
    def total(self) -> float:
        return sum(getattr(self, phase) for phase in type(self).model_fields)


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
    start_breakdown: StartBreakdown | None = Field(None, description="init_s by phase, from vLLM's log lines")
    start_cache_hit: bool | None = Field(
        None, description="true: vLLM loaded every compiled graph from its compile cache; false: it compiled at least "
                          "one afresh; null: nothing was compiled (enforce_eager, a CPU engine without compile)")
    start_log: list[str] = Field(default_factory=list,
                                 description="the vLLM log lines the start breakdown and cache hit were read from")
    gsm8k: list[Completion] = Field(default_factory=list)
    generate_s: float | None = None
    output_tokens: int | None = None
    output_tokens_per_s: float | None = None
    spec_counters: SpecCounters = Field(default_factory=dict)
    output_match: list[Completion] = Field(default_factory=list)
    match_generate_s: float | None = None
    match_spec_counters: SpecCounters = Field(default_factory=dict)
    output_match_control: list[Completion] = Field(
        default_factory=list, description="reference only: the output-match prompts again under other batching")
    control_generate_s: float | None = None
    control_batching: ControlBatching | None = None
    workload: str | None = Field(None, description="how the prompts reached the engine: batch or churn")
    async_scheduling: bool | None = Field(None, description="scheduler_config.async_scheduling of the built engine")
    device_type: str | None = Field(None, description="the engine's device type (cpu, cuda, ...)")
    engine_in_process: bool | None = Field(
        None, description="vLLM's engine core ran inside the engine child (true) or in a process of its own")
    wall_s: float | None = None
    orphans_killed: list[int] = Field(default_factory=list,
                                      description="pids of this engine's processes killed after its child ended")


# ------------------------------------------------------------------ stages of the correctness flow


class Timings(Record):
    init_s: float | None = None
    generate_s: float | None = None
    output_tokens: int | None = None
    output_tokens_per_s: float | None = None
    match_generate_s: float | None = None
    control_generate_s: float | None = None
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


class MatchControl(Record):
    """The noise floor: the reference engine against itself under other batching (order, batch size).

    A prompt that differs here differs without speculation: engine noise, not the drafter's fault.
    """

    matched: int
    total: int
    share: float | None
    by_kind: dict[str, KindTally] = Field(default_factory=dict)
    near_ties: ClassTally | None = None
    divergences: ClassTally | None = None
    order: str | None = None
    batch_size: int | None = None


class OutputMatchSummary(Record):
    """Upstream's output-match check: exact counts always; near-ties and divergences from top logprobs."""

    matched: int
    total: int
    share: float | None
    required_share: float
    by_kind: dict[str, KindTally] = Field(default_factory=dict)
    prompt_format: Literal["chat", "completion"] | None = Field(
        None, description="how the prompts were sent: chat (the model's template, llm.chat) or completion")
    control: MatchControl | None = Field(None, description="reference vs reference: the engine's own noise floor")
    required_share_by_kind: dict[str, float] | None = None
    required_matches_by_kind: dict[str, int] | None = None
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
    in_control: bool | None = Field(
        None, description="the prompt differs in the control too (engine noise); false: only with speculation")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class GSM8kDivergence(Record):
    question_id: int
    first_divergent_token: int | None
    reference_tokens: int
    speculative_tokens: int


class OutputMatch(OutputMatchSummary):
    """output_match.json: the summary's counts plus every mismatch with its class and logprobs."""

    mismatches: list[Mismatch] = Field(default_factory=list)
    control_mismatches: list[Mismatch] = Field(
        default_factory=list, description="reference vs control; the `speculative*` fields hold the control's")
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
    invalid_rate: dict[str, float] = Field(
        default_factory=dict, description="per scorer: share of completions where it finds no answer (upstream's "
                                          "invalid_rate is the upstream scorer's)")
    timings: Timings = Field(default_factory=Timings)
    async_scheduling: bool | None = Field(None, description="the engine's scheduler_config.async_scheduling")
    device_type: str | None = None
    engine_in_process: bool | None = Field(
        None, description="vLLM's engine core ran inside the engine child (true) or in a process of its own (false)")
    preemptions: int | None = Field(None, description="requests preempted for KV-cache space (the churn workload "
                                                      "forces some)")
    start_breakdown: StartBreakdown | None = Field(
        None, description="the engine's start (timings.init_s) by phase, phase -> seconds; `other` is the remainder, "
                          "so the phases add up to the start")
    start_cache_hit: bool | None = Field(
        None, description="the start loaded every compiled graph from vLLM's compile cache (true), compiled afresh "
                          "(false), or compiled nothing (null)")


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


class SpeculativeActive(Record):
    """The speculative config as the engine holds it after construction."""

    method: str | None = None
    num_speculative_tokens: int | None = None


class ProbeStack(Record):
    """One probe event with its short stack (innermost last), as `sync_stacks` lists them."""

    pid: int
    process: str | None = None
    phase: str | None = None
    device: str | None = None
    shape: list[int] | None = None
    stack: list[str] = Field(default_factory=list)


class ProbeInstall(Record):
    """One process the probe was installed in, and how (`wrapped` or `stand-in`)."""

    pid: int
    process: str | None = None
    mode: str | None = None
    target: str | None = None


class AuditProbe(Record):
    """Where the no-sync probe sat and in which mode; `in_model_process` makes a count of 0 mean something."""

    what: str
    mode: str | list[str] | None = Field(None, description="one mode, or every mode seen when processes differ")
    installed_in: list[ProbeInstall] = Field(default_factory=list)
    llm_pid: int | None = None
    in_model_process: bool = False
    warnings: list[str | None] = Field(default_factory=list)
    note: str | None = None


class CalibrationHeadline(Record):
    """The calibration folder's headline; calibration.json keeps every number."""

    runs: list[str] = Field(default_factory=list)
    accuracy: float
    questions: int
    recommended_threshold: float
    false_failure_probability: float
    output_match_mode: MatchMode | None = None


# ------------------------------------------------------------------ regression baselines (workbench baseline)


class ScorerAccuracy(Record):
    """One scorer's accuracy with the count it came from: a test against it needs the number of questions."""

    accuracy: float
    correct: int
    questions: int


class MatchShare(Record):
    matched: int
    total: int
    share: float | None


class BaselineOutputMatch(MatchShare):
    """The baseline run's output match, beside its control (the engine's own noise floor then)."""

    control: MatchShare | None = Field(None, description="reference vs reference under other batching")


class Baseline(Record):
    """A finished run's numbers that later runs of the same model, method and machine are held to, as vLLM's
    acceptance-length tests and TensorRT-LLM's reference accuracies keep theirs (`workbench baseline record`)."""

    schema_version: int = SCHEMA_VERSION
    kind: Literal["baseline"] = "baseline"
    case: str = Field(description="the case (params file name) of the run it was recorded from")
    method: str
    num_speculative_tokens: int
    acceptance_length: float
    acceptance_rate_per_position: list[float] = Field(default_factory=list)
    primary_scorer: str
    accuracy: dict[str, ScorerAccuracy] = Field(description="the speculative engine's GSM8k accuracy per scorer")
    output_match: BaselineOutputMatch | None = None
    hardware: Hardware = Field(description="where it was measured: a baseline is refused on other hardware")
    vllm: str | None = Field(None, description="the vLLM version of the run; another one is allowed, and noted")
    model: str = Field(description="the model as the run resolved it")
    model_hash: str = Field(description="content hash of the model's files: a baseline is refused for another model")
    date: str = Field(description="when it was recorded (ISO 8601, UTC)")
    source_run: str = Field(description="the run folder it was recorded from")


class BaselineUsed(Baseline):
    """The baseline a run was held to, as its summary keeps it: the file and its numbers."""

    path: str


# ------------------------------------------------------------------ injected faults (positive controls)


class InjectionInstall(Record):
    """One engine process the fault was installed in, and the vLLM function it patched there."""

    pid: int
    process: str | None = None
    engine: str | None = Field(None, description="the engine the process belongs to (always speculative)")
    target: str


class Injection(Record):
    """A fault injected on purpose into the speculative engine only (a positive control): which, how often,
    which upstream bugs it mirrors, and how many rows it corrupted."""

    name: str
    rate: float = Field(description="share of eligible rows the fault corrupts")
    seed: int
    default_rate: float | None = Field(None, description="the fault's default rate (caught by the checks at it)")
    summary: str = Field("", description="what the fault breaks")
    mirrors: list[str] = Field(default_factory=list, description="the upstream bugs whose effect it re-creates")
    target: str = Field("", description="the vLLM function it patches")
    events: int = Field(0, description="rows corrupted: one per row and engine step")
    calls: int = Field(0, description="patched calls that corrupted at least one row")
    first_spec_rows: int | None = Field(
        None, description="GDN faults: corrupted rows at a request's first speculative step (the prefill-to-spec step)")
    installed_in: list[InjectionInstall] = Field(default_factory=list)
    log: str = Field("records/inject_events.jsonl", description="every event, one JSON line each")
    warnings: list[str] = Field(default_factory=list)


# ------------------------------------------------------------------ where a run's reference came from


class ReferenceSource(Record):
    """Which run computed the reference this run compared against; a reused one is named, never hidden."""

    kind: Literal["computed", "earlier run", "cache", "lane"] = Field(
        description="computed: this run's own reference engine; earlier run: `reference_record`; cache: the "
                    "reference cache (same key); lane: another case of the same lane computed it")
    record: str | None = Field(None, description="the reused reference record")
    run_dir: str | None = Field(None, description="the run folder whose reference engine produced it")
    key: str | None = Field(None, description="the reference cache key (digest) of this run's reference")
    stored: str | None = Field(None, description="where this run's own reference was stored in the cache")


# ------------------------------------------------------------------ where and when a run ran


class Environment(Record):
    """Where and when a run ran, recorded at run time so that reports and the site show it without re-deriving:
    the machine, its driver and CUDA, the workbench's git commit, the start and the wall time."""

    hardware: Hardware | None = Field(None, description="the compute device: GPU names with count, or the CPU model")
    gpu_count: int | None = Field(None, description="GPUs nvidia-smi lists (null: none)")
    driver: str | None = Field(None, description="the NVIDIA driver version (null without a GPU)")
    cuda: str | None = Field(None, description="the CUDA version of torch's build, where there is a GPU")
    git_commit: str | None = Field(None, description="the workbench checkout's commit (`unknown` outside a git "
                                                     "checkout), `+dirty` when it has uncommitted changes")
    started_at: str | None = Field(None, description="when the run started (ISO 8601, UTC)")
    wall_s: float | None = Field(None, description="how long the run took, start to summary, in seconds")


# ------------------------------------------------------------------ summary.json


class RunSummary(Record):
    """summary.json of every run folder; the keys of each kind stay what they were before versioning."""

    schema_version: int = Field(SCHEMA_VERSION, description="readers refuse a version they do not know")
    kind: RunKind = Field("correctness", description="which flow wrote the folder")
    case: str | None = Field(None, description="the params file's name")
    params: CaseParams | None = Field(None, description="the params as resolved (also params.yaml)")
    checks: list[Check] = Field(default_factory=list, description="every registered check of this kind")
    passed: bool = Field(False, description="no check failed and no error")
    status: Literal["passed", "failed", "error", "cancelled"] | None = Field(
        None, description="how the run ended: its checks passed or failed, an error stopped it, or it was cancelled")
    error: str | None = Field(None, description="what stopped the run, when something did")
    versions: Versions = Field(default_factory=Versions)
    # correctness
    primary_scorer: str | None = Field(None, description="correctness: the scorer the threshold applies to")
    num_questions: int | None = Field(None, description="correctness: GSM8k questions asked")
    threshold: float | None = Field(None, description="correctness: GSM8k accuracy threshold (0 = off)")
    margin: float | None = Field(None, description="correctness: min accuracy of both runs - threshold")
    reference: EngineSummary | None = Field(None, description="correctness: the plain engine's numbers")
    speculative: SpeculativeSummary | None = Field(None, description="correctness: the speculative engine's numbers")
    output_match: OutputMatchSummary | None = Field(None, description="correctness: greedy output agreement")
    gsm8k_identical_completions: int | None = Field(None, description="correctness: identical GSM8k completions")
    injection: Injection | None = Field(
        None, description="correctness: the fault injected into the speculative engine on purpose (null: none)")
    reference_source: ReferenceSource | None = Field(
        None, description="correctness: which run computed the reference (this one, an earlier run, the cache, "
                          "another case of the lane)")
    baseline: BaselineUsed | None = Field(
        None, description="correctness: the baseline (`baseline` key) the *_vs_baseline checks held this run to")
    # audit
    async_scheduling_active: bool | None = Field(
        None, description="audit: the engine's scheduler_config.async_scheduling after construction")
    async_scheduling_reason: str | None = Field(None, description="audit: why async scheduling is (not) active")
    sync_count: int | None = Field(
        None, description="audit: lazy seq_lens_cpu initialisations (implicit device->host syncs), "
                          "the positive control's not counted")
    sync_count_by_phase: dict[str, int] | None = Field(
        None, description="audit: sync_count by phase (startup, generate, idle)")
    sync_stacks: list[ProbeStack] | None = Field(
        None, description="audit: a short stack of each counted sync (first 50)")
    positive_control_count: int | None = Field(
        None, description="audit: forced lazy initialisations the probe counted (null: control not run)")
    positive_control_processes: list[str] | None = Field(
        None, description="audit: the processes the positive control was counted in")
    cuda_sync_count: int | None = Field(
        None, description="audit: torch's CUDA sync-debug warnings during generation (null without CUDA)")
    probe: AuditProbe | None = Field(None, description="audit: where the no-sync probe sat and in which mode")
    speculative_active: SpeculativeActive | None = Field(None, description="audit: the engine's speculative config")
    timings: AuditTimings | None = Field(None, description="audit: engine start, generation and child wall seconds")
    # calibration
    calibration: CalibrationHeadline | None = None
    environment: Environment | None = Field(
        None, description="where and when the run ran: hardware, driver, CUDA, git commit, start, wall time")

    def check(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)


# ------------------------------------------------------------------ controls.json (workbench controls)


class CleanOutcome(Record):
    """The clean run of one workload: it must pass, or a caught injection proves nothing."""

    workload: str
    run_dir: str
    status: str | None = None
    passed: bool = False
    failed_checks: list[str] = Field(default_factory=list)


class DivergentOutput(Record):
    """One output-match prompt whose injected output differs from the reference, at its first divergent token."""

    prompt_id: int
    kind: str
    position: int | None = None
    reference: str
    speculative: str


class InjectionOutcome(Record):
    """One injected regression under one workload: was it caught, by which checks, and what it did."""

    name: str
    workload: str
    rate: float | None = None
    run_dir: str
    status: str | None = Field(None, description="the injected run's status: failed (checks), passed, error")
    caught: bool = Field(False, description="at least one check failed; an error is not a catch")
    caught_by: list[str] = Field(default_factory=list, description="the checks that failed")
    events: int | None = Field(None, description="rows the fault corrupted, as the fault counted them")
    output_match_matched: int | None = None
    output_match_judged: int | None = None
    output_match_total: int | None = None
    output_match_divergences: int | None = None
    reference_accuracy: float | None = None
    speculative_accuracy: float | None = None
    acceptance_length: float | None = None
    first_divergences: list[DivergentOutput] = Field(default_factory=list)
    error: str | None = None


class CleanVerdict(Record):
    passed: bool
    by_workload: dict[str, CleanOutcome] = Field(default_factory=dict)


class ControlsSummary(Record):
    """controls.json: the clean runs, every injection's outcome, and the verdict."""

    schema_version: int = SCHEMA_VERSION
    kind: Literal["controls"] = "controls"
    case: str
    overrides: dict[str, Any] = Field(default_factory=dict)
    workloads: list[str]
    clean: CleanVerdict
    injections: list[InjectionOutcome] = Field(default_factory=list)
    missed: list[str] = Field(default_factory=list, description="NAME@WORKLOAD of injections no check caught")
    churn_only: list[str] = Field(default_factory=list, description="injections only the churn workload caught")
    errors: list[str] = Field(default_factory=list, description="runs an error stopped (not catches)")
    passed: bool = Field(False, description="every clean run passed and every injection was caught")
    wall_s: float | None = Field(None, description="how long the controls took, first run's start to the last "
                                                   "run's end, in seconds")

    @property
    def run_dirs(self) -> list[str]:
        """Every run of the controls: the clean ones, then the injected ones."""
        return [c.run_dir for c in self.clean.by_workload.values()] + [i.run_dir for i in self.injections]


# ------------------------------------------------------------------ lane.json (workbench lane)


class LaneCaseOutcome(Record):
    """One case of a lane: where it ran, how it ended, and where its reference came from."""

    name: str
    params: str = Field(description="the case's params file")
    run_dir: str
    exit_code: int = Field(description="the case's own `workbench run` exit code")
    passed: bool
    status: str | None = Field(None, description="passed, failed, error or cancelled (summary.json)")
    failed_checks: list[str] = Field(default_factory=list)
    error: str | None = None
    reference: str | None = Field(None, description="computed (this case's reference engine), lane (another "
                                                    "case's), cache or earlier run")
    reference_key: str | None = Field(None, description="the reference cache key the case was grouped by")
    reference_engine_started: bool = Field(False, description="this case started a reference engine")
    wall_s: float | None = None


class LaneSummary(Record):
    """lane.json: every case's outcome, how many reference engines the lane started, and the lane's exit code."""

    schema_version: int = SCHEMA_VERSION
    kind: Literal["lane"] = "lane"
    lane: str = Field(description="the lane file")
    description: str = ""
    cases: list[LaneCaseOutcome] = Field(default_factory=list)
    reference_runs: int = Field(0, description="reference engines started (one per distinct reference key without a "
                                               "cached reference)")
    reference_keys: int = Field(0, description="distinct reference keys among the cases")
    reused_from_cache: int = Field(0, description="cases whose reference came from the reference cache")
    exit_code: int = Field(0, description="the worst of the cases (3 over 1 over 0); 4 when the lane was cancelled")
    passed: bool = False
    wall_s: float | None = None


def load_lane_summary(folder: str | Path) -> LaneSummary:
    path = Path(folder) / "lane.json"
    return _validated(LaneSummary, _read_json(path), path)


# ------------------------------------------------------------------ sweep.json (workbench sweep)


class SweepCell(Record):
    """One cell of a sweep: the varied values it ran with, how it ended, and its numbers (from its summary.json)."""

    name: str = Field(description="the cell's run folder under the sweep folder: KEY-VALUE joined by `_`")
    values: dict[str, Any] = Field(description="the varied keys' values of this cell")
    run_dir: str
    exit_code: int = Field(description="the cell's `workbench run` exit code; 3 when its worker failed or was lost")
    passed: bool
    status: str | None = Field(None, description="passed, failed, error or cancelled (summary.json)")
    failed_checks: list[str] = Field(default_factory=list)
    error: str | None = None
    reference: str | None = Field(None, description="computed (this cell's reference engine) or cache (another "
                                                    "cell's, through the sweep's reference cache)")
    reference_key: str | None = Field(None, description="the reference key the cell was grouped by")
    reference_engine_started: bool = Field(False, description="this cell started a reference engine (its run folder "
                                                              "has logs/reference.log)")
    device: str | None = Field(None, description="where it ran: cpu, the GPUs it was given, a Ray node")
    wall_s: float | None = None
    primary_scorer: str | None = None
    threshold: float | None = Field(None, description="GSM8k accuracy threshold (0 = off)")
    reference_accuracy: dict[str, float] = Field(default_factory=dict, description="per scorer")
    speculative_accuracy: dict[str, float] = Field(default_factory=dict, description="per scorer")
    acceptance_length: float | None = None
    acceptance_rate: float | None = None
    acceptance_rate_per_position: list[float] = Field(default_factory=list)
    counters: AcceptanceCounters | None = Field(None, description="drafts, draft and accepted tokens (per position)")
    output_match: MatchShare | None = Field(None, description="speculative vs reference: identical greedy texts")
    output_match_judged_share: float | None = Field(None, description="the share the check judged (tie_aware: "
                                                                      "near-ties count)")
    required_match_share: float | None = None
    output_match_control: MatchShare | None = Field(None, description="reference vs reference under other batching: "
                                                                      "the engine's own noise floor")
    reference_tokens_per_s: float | None = Field(None, description="GSM8k output tokens/s of the reference engine")
    speculative_tokens_per_s: float | None = Field(None, description="GSM8k output tokens/s of the speculative engine")
    speedup: float | None = Field(None, description="speculative_tokens_per_s / reference_tokens_per_s")


class SweepSummary(Record):
    """sweep.json: the varied keys, every cell's outcome, the reference engines started, and the exit code."""

    schema_version: int = SCHEMA_VERSION
    kind: Literal["sweep"] = "sweep"
    params: str = Field(description="the params file every cell starts from")
    overrides: dict[str, Any] = Field(default_factory=dict, description="-p overrides of every cell")
    vary: dict[str, list[Any]] = Field(default_factory=dict, description="each varied key's values; the cells are "
                                                                         "their Cartesian product")
    executor: Literal["local", "ray"] = "local"
    ray_address: str | None = Field(None, description="the Ray cluster (null: a local one the sweep started)")
    cells: list[SweepCell] = Field(default_factory=list)
    reference_runs: int = Field(0, description="reference engines started: cells whose run folder has "
                                               "logs/reference.log")
    reference_keys: int = Field(0, description="distinct reference keys among the cells")
    fastest_passing: str | None = Field(None, description="the passing cell with the most speculative output tokens/s")
    exit_code: int = Field(0, description="the worst cell (3 over 2 over 1 over 0); 4 when the sweep was cancelled")
    passed: bool = False
    wall_s: float | None = None


def load_sweep_summary(folder: str | Path) -> SweepSummary:
    path = Path(folder) / "sweep.json"
    return _validated(SweepSummary, _read_json(path), path)


def load_controls_summary(folder: str | Path) -> ControlsSummary:
    path = Path(folder) / "controls.json"
    return _validated(ControlsSummary, _read_json(path), path)


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


def read_summary(run_dir: str | Path) -> RunSummary | None:
    """A run folder's summary, or None when it has none or one that cannot be read (a run that never wrote one)."""
    try:
        return load_summary(run_dir)
    except RecordError:
        return None


def load_engine_record(path: str | Path) -> EngineRecord:
    return _validated(EngineRecord, _read_json(Path(path)), Path(path))


def load_baseline(path: str | Path) -> Baseline:
    return _validated(Baseline, _read_json(Path(path)), Path(path))


def write_record(path: str | Path, record: Record) -> Path:
    """A record as JSON (by alias, so `class` stays the key name), written whole."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    try:  # whole or not at all: a full disk must not leave a truncated summary behind
        partial.write_text(record.model_dump_json(indent=2, by_alias=True) + "\n", encoding="utf-8")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def _type_of(spec: dict[str, Any]) -> str:
    if "$ref" in spec:
        return f"`{spec['$ref'].rsplit('/', 1)[-1]}`"
    if "anyOf" in spec:
        return " or ".join(_type_of(option) for option in spec["anyOf"])
    if "const" in spec:
        return repr(spec["const"])
    if "enum" in spec:
        return " \\| ".join(repr(v) for v in spec["enum"])
    kind = spec.get("type", "any")
    if kind == "array":
        return f"list of {_type_of(spec.get('items', {}))}"
    if kind == "object" and "additionalProperties" in spec:
        value = spec["additionalProperties"]
        return f"map of {_type_of(value) if isinstance(value, dict) else 'any'}"
    return kind


def _model_table(name: str, schema: dict[str, Any]) -> str:
    lines = [f"#### `{name}`", "", schema.get("description", "").split("\n")[0], "",
             "| key | type | default | meaning |", "|---|---|---|---|"]
    required = set(schema.get("required", []))
    for key, spec in schema.get("properties", {}).items():
        default = ("required" if key in required else f"`{json.dumps(spec['default'])}`" if "default" in spec
                   else "empty")
        lines.append(f"| `{key}` | {_type_of(spec)} | {default} | {spec.get('description', '')} |")
    return "\n".join(lines) + "\n"


def schema_markdown() -> str:
    """The run-folder files' schemas as Markdown tables, generated from the models (docs/DESIGN.md)."""
    parts = [f"Schema version {SCHEMA_VERSION}. Files: `summary.json` is `RunSummary`, `records/<label>.json` is "
             "`EngineRecord`, `output_match.json` is `OutputMatch`, `controls.json` (workbench controls) is "
             "`ControlsSummary`, a baseline file (workbench baseline record) is `Baseline`, `sweep.json` (workbench "
             "sweep) is `SweepSummary`.\n"]
    seen: dict[str, dict[str, Any]] = {}
    for model in (RunSummary, EngineRecord, OutputMatch, ControlsSummary, Baseline, SweepSummary):
        schema = model.model_json_schema(by_alias=True)
        seen.setdefault(model.__name__, schema)
        for def_name, definition in schema.get("$defs", {}).items():
            seen.setdefault(def_name, definition)
    parts += [_model_table(name, definition) for name, definition in seen.items()]
    return "\n".join(parts)


DESIGN_BEGIN = "<!-- schema: generated by `python -m workbench.records docs/DESIGN.md`; do not edit -->"
DESIGN_END = "<!-- end of generated schema -->"


def update_design_doc(path: str | Path) -> bool:
    """Rewrite the generated schema section of docs/DESIGN.md; True when it changed."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    head, _, rest = text.partition(DESIGN_BEGIN)
    _, _, tail = rest.partition(DESIGN_END)
    new = f"{head}{DESIGN_BEGIN}\n{schema_markdown()}\n{DESIGN_END}{tail}"
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


if __name__ == "__main__":
    import sys

    update_design_doc(sys.argv[1] if len(sys.argv) > 1 else "docs/DESIGN.md")
