"""The correctness run, stage by stage: params -> engine runs -> records -> scores -> comparisons.

Each stage writes what it produced into the run folder at once, so a failure later on (an
engine crash, a failed check) loses nothing already computed. Engine records are written by the
children as `EngineRecord`, output_match.json as `OutputMatch`, summary.json as `RunSummary`.
The notebook `notebooks/mtp_correctness.ipynb` calls these functions and nothing else of note.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench import gsm8k
from workbench.correctness import prompts, reference_cache
from workbench.core.checks import all_passed, evaluate_checks
from workbench.core.caches import compile_cache_dir, compile_cache_env
from workbench.core.engine import omp_binding_env, start_engine_job, wait_engine_jobs
from workbench.core.environment import collect_environment, utc_now
from workbench.core.errors import EngineError
from workbench.core.case_header import case_header
from workbench.core.params import CaseParams, case_name
from workbench.records import (EngineSummary, EngineVersions, OutputMatch, OutputMatchSummary, ReferenceSource,
                               RunSummary, SpeculativeSummary, Timings, write_record)
from workbench.core.rundir import open_run_folder, run_versions, write_summary
from workbench.correctness import checks as _registers_correctness_checks  # noqa: F401  (registration)
from workbench.baseline import checks as _registers_baseline_checks  # noqa: F401  (registration)
from workbench.baseline.store import baseline_used
from workbench.correctness.compare import (default_tie_margin, first_divergence, gsm8k_divergences, model_dtype,
                                           output_match, required_matches, with_control)
from workbench.correctness.generation import EngineJob, correctness_child
from workbench.correctness.metrics import acceptance_stats, per_prompt_acceptance
from workbench.inject import stages as inject

if TYPE_CHECKING:  # pandas is imported where a table is built: prepare and the engine start do without it
    import pandas as pd

RUN_LABELS = ("reference", "speculative")


@dataclass
class RunContext:
    """One correctness run: its params, folder, questions and prompts (rendered in their formats)."""

    params: CaseParams
    params_file: str
    run_dir: Path
    prompt_sets: prompts.PromptSets
    reused_reference: dict[str, Any] | None = None
    """The reference record of an earlier run (`reference_record`): its engine is not started again."""
    prompts_written: dict[str, Any] | None = None
    """records/prompts.json as written (what a reused reference's prompts must equal)."""
    reference_key: reference_cache.ReferenceKey | None = None
    reference_source: ReferenceSource | None = None
    pending_reference: Path | None = None
    """A reference record another case of the lane is still producing (`reference_wait_s`)."""
    started_at: datetime = field(default_factory=utc_now)
    """When the run started (prepare): the environment's start, and its wall time up to the summary."""

    @property
    def questions(self) -> list[gsm8k.GSM8kItem]:
        return self.prompt_sets.questions

    @property
    def match_kinds(self) -> list[str]:
        return [p.kind for p in self.prompt_sets.output_match]

    @property
    def match_prompts(self) -> list[str]:
        """The output-match prompts as texts (chat ones rendered through the model's template)."""
        return [p.prompt for p in self.prompt_sets.output_match]


def _engine_input(rendered: list[prompts.RenderedPrompt]) -> list[Any]:
    """What the engine is sent: conversations for `llm.chat`, texts for `llm.generate`."""
    return [p.messages if p.format == "chat" else p.prompt for p in rendered]


def prepare(params_file: str | Path, overrides: dict[str, Any] | None = None, run_dir: str | Path = "") -> RunContext:
    """Validate params, build and render every prompt, and write them into the run folder (records/prompts.json)."""
    params, folder = open_run_folder(params_file, overrides, run_dir)
    inject.check_params(params, params_file)  # an unknown fault: ParamsError before any engine
    test = gsm8k.load_gsm8k("test", params.dataset)
    train = gsm8k.load_gsm8k("train", params.dataset)
    sets = prompts.build_prompt_sets(params, test, train, str(params_file))
    written = prompts_record(sets)
    (folder / "records" / "prompts.json").write_text(json.dumps(written), encoding="utf-8")
    ctx = RunContext(params, str(params_file), folder, sets, prompts_written=json.loads(json.dumps(written)))
    ctx.reference_key = reference_key(params, sets)
    key = ctx.reference_key.digest()
    ctx.reference_source = ReferenceSource(kind="computed", key=key)
    if params.reference_record:
        record = Path(params.reference_record)
        if not record.is_file() and params.reference_wait_s > 0:
            ctx.pending_reference = record  # the lane's shared reference, still being computed
            ctx.reference_source = ReferenceSource(kind="lane", record=str(record), key=key)
        else:
            ctx.reused_reference = reuse_reference(ctx, record, ctx.prompts_written)
            cached_from = reference_cache.entry_source(record)
            ctx.reference_source = ReferenceSource(kind="cache" if cached_from else "earlier run", record=str(record),
                                                   run_dir=cached_from or str(record.parent.parent), key=key)
    elif params.reuse_reference and (cached := reference_cache.lookup(params, ctx.reference_key)) is not None:
        ctx.reused_reference = reuse_reference(ctx, cached, ctx.prompts_written)
        ctx.reference_source = ReferenceSource(kind="cache", record=str(cached), key=key,
                                               run_dir=reference_cache.entry_source(cached))
    return ctx


def prompts_record(sets: prompts.PromptSets) -> dict[str, Any]:
    """records/prompts.json: every prompt as rendered, with its messages and format."""
    return {
        "gsm8k_format": sets.gsm8k_format, "output_match_format": sets.match_format,
        "gsm8k": [{"question_id": q.question_id, "prompt": p.prompt, "messages": p.messages}
                  for q, p in zip(sets.questions, sets.gsm8k)],
        "output_match": [{"prompt_id": i, "kind": p.kind, "prompt": p.prompt, "messages": p.messages}
                         for i, p in enumerate(sets.output_match)],
    }


def reference_key(params: CaseParams, sets: prompts.PromptSets) -> reference_cache.ReferenceKey:
    """The reference cache key of a case: everything that decides its reference engine's outputs."""
    written = json.loads(json.dumps(prompts_record(sets)))
    return reference_cache.reference_key(params, llm_kwargs(params, "reference"), sampling_settings(params),
                                         control_batch_size(params, len(sets.output_match)), written)


def case_reference_key(params_file: str | Path, overrides: dict[str, Any] | None = None) -> reference_cache.ReferenceKey:
    """A case's reference key without a run folder (a lane groups its cases by it before starting any)."""
    from workbench.core.params import load_params

    params = load_params(params_file, overrides)
    test = gsm8k.load_gsm8k("test", params.dataset)
    train = gsm8k.load_gsm8k("train", params.dataset)
    return reference_key(params, prompts.build_prompt_sets(params, test, train, str(params_file)))


def reuse_reference(ctx: RunContext, source: Path, prompts_written: dict[str, Any]) -> dict[str, Any]:
    """The earlier reference record named by `reference_record`, proven to be this run's reference (same
    engine arguments, prompts, sampling and workload) and copied into this run folder; else bad input.

    What makes the comparison meaningful is checked, not assumed: a reference of other prompts or
    engine arguments would judge the speculative engine against the wrong outputs.
    """
    import yaml

    from workbench.core.errors import ParamsError
    from workbench.records import load_engine_record

    def refuse(why: str) -> ParamsError:
        return ParamsError(f"{ctx.params_file}: key 'reference_record': {source}: {why}", key="reference_record",
                           path=ctx.params_file)

    record = load_engine_record(source)
    if not record.ok or record.label != "reference":
        raise refuse(f"not a finished reference record (label {record.label!r}, ok {record.ok})")
    earlier_params = source.parent.parent / "params.yaml"
    earlier_prompts = source.parent / "prompts.json"
    if not earlier_params.is_file() or not earlier_prompts.is_file():
        raise refuse("its run folder lacks params.yaml or records/prompts.json")
    earlier = CaseParams(**{**yaml.safe_load(earlier_params.read_text(encoding="utf-8")),
                            "reference_record": None})
    expected = json.loads(json.dumps(llm_kwargs(ctx.params, "reference")))
    differ = sorted(k for k in set(expected) | set(record.llm_kwargs) if expected.get(k) != record.llm_kwargs.get(k)
                    and not (k in ("model", "tokenizer") and _same_files(expected.get(k), record.llm_kwargs.get(k))))
    if differ:
        raise refuse(f"its engine arguments differ from this run's ({', '.join(differ)})")
    if sampling_settings(earlier) != sampling_settings(ctx.params):
        raise refuse("its sampling settings differ from this run's")
    if (earlier.workload, control_batch_size(earlier, len(ctx.match_prompts))) != \
            (ctx.params.workload, control_batch_size(ctx.params, len(ctx.match_prompts))):
        raise refuse("its workload or control batching differs from this run's")
    if json.loads(earlier_prompts.read_text(encoding="utf-8")) != prompts_written:
        raise refuse("its prompts differ from this run's")
    reference = record.model_dump(mode="json", exclude_none=True)
    (ctx.run_dir / "records" / "reference.json").write_text(json.dumps(reference), encoding="utf-8")
    return reference


def _same_files(first: Any, second: Any) -> bool:
    """Two checkpoint folders with the same files (a copy elsewhere is the same model)."""
    from workbench.core.fingerprint import model_hash

    if not (isinstance(first, str) and isinstance(second, str) and Path(first).is_dir() and Path(second).is_dir()):
        return False
    return model_hash(first) == model_hash(second)


def llm_kwargs(params: CaseParams, label: str) -> dict[str, Any]:
    """`vllm.LLM(...)` arguments of one of the two engines; they differ only in speculation."""
    kwargs: dict[str, Any] = {
        "model": params.model, "dtype": params.dtype, "max_model_len": params.max_model_len,
        "gpu_memory_utilization": params.gpu_memory_utilization, "tensor_parallel_size": params.tensor_parallel_size,
        "enforce_eager": params.enforce_eager, "seed": params.seed, "trust_remote_code": params.trust_remote_code,
        "disable_log_stats": False,  # spec-decode counters come from llm.get_metrics() only with stats on
    }
    optional = {"tokenizer": params.tokenizer, "limit_mm_per_prompt": params.limit_mm_per_prompt,
                "load_format": params.load_format, "additional_config": params.additional_config,
                "enable_prefix_caching": params.enable_prefix_caching, "max_num_seqs": params.max_num_seqs}
    kwargs.update({k: v for k, v in optional.items() if v is not None})
    if params.workload == "churn" and params.churn_kv_blocks:
        kwargs["num_gpu_blocks_override"] = params.churn_kv_blocks
    if label == "speculative":
        kwargs["speculative_config"] = params.speculative_config()
        kwargs["per_request_spec_decode_metrics"] = "summary"
    kwargs.update(params.engine_kwargs)
    return kwargs


def sampling_settings(params: CaseParams) -> dict[str, dict[str, Any]]:
    """`SamplingParams` of both prompt sets, as upstream sets them; the one place the pipeline gets them.

    GSM8k: greedy, upstream's stop strings, `max_tokens` (256). Output match: greedy for
    `output_match_max_tokens` (10), as `greedy_sampling()`, plus top-N logprobs to classify mismatches
    (logprobs are read off the logits; they do not change which token greedy sampling picks).
    """
    gsm8k_sampling = {**gsm8k.sampling_kwargs(), "max_tokens": params.max_tokens}
    match_sampling = {"temperature": 0.0, "max_tokens": params.output_match_max_tokens,
                      "logprobs": params.match_logprobs}
    return {"gsm8k": gsm8k_sampling, "output_match": match_sampling}


def tie_margin(params: CaseParams) -> tuple[float, str]:
    """The near-tie bound of this case: the params' `tie_margin`, or derived from the compute dtype."""
    if params.tie_margin is not None:
        return params.tie_margin, f"{params.tie_margin:g} nats (tie_margin in params)"
    return default_tie_margin(model_dtype(params.dtype, params.model))


def control_batch_size(params: CaseParams, num_prompts: int) -> int | None:
    """Batch size of the noise-floor generation (None: no control): `control_batch_size`, or a quarter of
    the prompts, so that the batches differ from the first pass's one batch of all of them."""
    if not params.output_match_control or not num_prompts:
        return None
    return params.control_batch_size or max(1, num_prompts // 4)


def engine_job(ctx: RunContext, label: str) -> EngineJob:
    """The child's job for one of the two engines; its record lands in records/<label>.json.

    With `inject` set, the speculative engine's environment installs that fault in every process
    it starts (`workbench.inject`); the reference's never does.
    """
    if label not in RUN_LABELS:
        raise ValueError(f"label must be one of {RUN_LABELS}, got {label!r}")
    params = ctx.params
    env = {"VLLM_CPU_KVCACHE_SPACE": str(params.cpu_kvcache_space_gib)} if params.cpu_kvcache_space_gib else {}
    if params.engine_cpu_binding:
        env["VLLM_CPU_OMP_THREADS_BIND"] = params.engine_cpu_binding[RUN_LABELS.index(label)]
        if params.engine_in_process:  # no worker process of vLLM's to bind: this child's threads are bound instead
            env.update(omp_binding_env(env["VLLM_CPU_OMP_THREADS_BIND"]))
    env.update(compile_cache_env(compile_cache_dir(params.cache_dir)))  # vLLM, Triton, Inductor, FlashInfer caches
    if label == "speculative":
        env.update(inject.engine_env(params, ctx.run_dir))
    sampling = sampling_settings(params)
    sets = ctx.prompt_sets
    return EngineJob(
        label=label, llm_kwargs=llm_kwargs(params, label),
        gsm8k_prompts=_engine_input(sets.gsm8k), gsm8k_chat=sets.gsm8k_format == "chat",
        gsm8k_sampling=sampling["gsm8k"],
        match_prompts=_engine_input(sets.output_match), match_chat=sets.match_format == "chat",
        match_sampling=sampling["output_match"],
        control_batch_size=control_batch_size(params, len(sets.output_match)) if label == "reference" else None,
        workload=params.workload, workload_seed=params.seed, engine_in_process=params.engine_in_process,
        record_path=str(ctx.run_dir / "records" / f"{label}.json"),
        log_path=str(ctx.run_dir / "logs" / f"{label}.log"), env=env)


def _with_question_ids(ctx: RunContext, record: dict[str, Any]) -> dict[str, Any]:
    for row, question in zip(record["gsm8k"], ctx.questions):
        row["question_id"] = question.question_id
    return record


def _injection_error(ctx: RunContext, speculative_finished: bool) -> EngineError | None:
    """The injected fault's failure, if any: not installed (always), or never fired (once the speculative
    engine finished). Such a run must end as an error, never as a clean run."""
    try:
        inject.verify(ctx.params, ctx.run_dir, finished=speculative_finished)
    except EngineError as failed:
        return failed
    return None


def _raise_errors(errors: list[EngineError]) -> None:
    """The causes on the first line (what the command prints), then each one's details (log tails)."""
    if len(errors) == 1:
        raise errors[0]
    if errors:
        causes = "; ".join(str(e).splitlines()[0] for e in errors)
        raise EngineError(causes + "\n\n" + "\n\n".join(str(e) for e in errors))


def run_engine(ctx: RunContext, label: str, on_progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the reference or the speculative engine alone."""
    running = start_engine_job(engine_job(ctx, label), correctness_child)
    result = wait_engine_jobs([running], ctx.params.engine_timeout_s, stall_s=ctx.params.engine_stall_timeout_s,
                              on_progress=on_progress)[0]
    errors = [result] if isinstance(result, EngineError) else []
    if label == "speculative":
        errors = [e for e in [_injection_error(ctx, not errors)] if e] + errors
    _raise_errors(errors)
    return _with_question_ids(ctx, result)


def _progress_display() -> Callable[[str], None] | None:
    """In a notebook, one line that shows each engine's progress and is updated in place (the report keeps
    its final state); elsewhere nothing."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return None
    if get_ipython() is None:
        return None
    handle = display({"text/plain": "engines: starting"}, raw=True, display_id=True)
    return lambda text: handle.update({"text/plain": f"engines: {text}"}, raw=True)


@dataclass
class StartedEngines:
    """Engines started by `start_engines`, waited for by `wait_engines`: the notebook starts them as soon as the
    prompts exist and sets up the rest of the report while they run."""

    labels: list[str]
    running: list[Any]
    show: Callable[[str], None] | None = None


def start_engines(ctx: RunContext) -> StartedEngines:
    """Start what can start now: both engines side by side (`parallel_engines`), the reference alone (one after
    the other), or only the speculative engine when the reference is reused or shared in a lane."""
    show = _progress_display()
    if ctx.pending_reference is not None or ctx.reused_reference is not None:
        labels = ["speculative"]
    else:
        labels = list(RUN_LABELS) if ctx.params.parallel_engines else ["reference"]
    return StartedEngines(labels, [start_engine_job(engine_job(ctx, label), correctness_child) for label in labels],
                          show)


def _wait(ctx: RunContext, running: list[Any], show: Callable[[str], None] | None) -> list[Any]:
    return wait_engine_jobs(running, ctx.params.engine_timeout_s, stall_s=ctx.params.engine_stall_timeout_s,
                            on_progress=show)


def wait_engines(ctx: RunContext, started: StartedEngines) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both engines' records, once they finished (the speculative one started after the reference when they run
    one after the other). Engines side by side are watched together: one that dies is reported within seconds,
    the other is then stopped, and a record already written stays on disk. A finished reference is stored in
    the reference cache even when the speculative engine failed."""
    results = dict(zip(started.labels, _wait(ctx, started.running, started.show)))
    finished_reference = "reference" in results and not isinstance(results["reference"], EngineError)
    if finished_reference:
        _store_reference(ctx)
    if "speculative" not in results and finished_reference:
        running = [start_engine_job(engine_job(ctx, "speculative"), correctness_child)]
        results["speculative"] = _wait(ctx, running, started.show)[0]
    errors = [r for r in results.values() if isinstance(r, EngineError)]
    injection = None
    if "speculative" in results:
        injection = _injection_error(ctx, not isinstance(results["speculative"], EngineError))
    _raise_errors([injection, *errors] if injection else errors)
    if ctx.pending_reference is not None:
        shared = wait_for_reference(ctx, started.show)
        ctx.reused_reference = reuse_reference(ctx, shared, ctx.prompts_written or {})
        if ctx.reference_source is not None:
            ctx.reference_source.run_dir = reference_cache.entry_source(shared)
    reference = results["reference"] if "reference" in results else ctx.reused_reference
    return _with_question_ids(ctx, reference), _with_question_ids(ctx, results["speculative"])


def run_engines(ctx: RunContext) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both engines' records: `start_engines` then `wait_engines`."""
    return wait_engines(ctx, start_engines(ctx))


def wait_for_reference(ctx: RunContext, show: Callable[[str], None] | None = None) -> Path:
    """The lane's shared reference record, once the case computing it has stored it (`reference_wait_s`)."""
    import time

    path = ctx.pending_reference
    assert path is not None
    deadline = time.monotonic() + ctx.params.reference_wait_s
    while not path.is_file():
        if time.monotonic() > deadline:
            raise EngineError(f"the shared reference {path} did not appear within reference_wait_s "
                              f"{ctx.params.reference_wait_s:.0f} s (the lane case computing it did not finish)")
        if show is not None:
            show("speculative done; waiting for the lane's shared reference")
        time.sleep(1.0)
    return path


def _store_reference(ctx: RunContext) -> None:
    """Put this run's finished reference into the reference cache (a failure to store only warns)."""
    if not ctx.params.store_reference or ctx.reference_key is None:
        return
    try:
        stored = reference_cache.store(ctx.params, ctx.reference_key, ctx.run_dir)
    except OSError as exc:
        print(f"warning: the reference was not stored in the cache: {exc}")
        return
    if ctx.reference_source is not None:
        ctx.reference_source.stored = str(stored)


def score(ctx: RunContext, reference: dict, speculative: dict) -> pd.DataFrame:
    """One row per question: both completions and correctness under every scorer (questions.csv)."""
    import pandas as pd

    table = pd.DataFrame({
        "question_id": [q.question_id for q in ctx.questions],
        "question": [q.question for q in ctx.questions],
        "reference_answer": [gsm8k.reference_number(q.answer) for q in ctx.questions],
    })
    for label, record in (("reference", reference), ("speculative", speculative)):
        completions = [r["completion"] for r in record["gsm8k"]]
        table[f"{label}_completion"] = completions
        for scorer, flags in gsm8k.score_completions(completions, ctx.questions).items():
            table[f"{label}_correct_{scorer}"] = flags
        for scorer, flags in gsm8k.invalid_completions(completions).items():
            table[f"{label}_invalid_{scorer}"] = flags
    table["first_divergent_token"] = [
        first_divergence(r["token_ids"], s["token_ids"]) for r, s in zip(reference["gsm8k"], speculative["gsm8k"])]
    table.to_csv(ctx.run_dir / "questions.csv", index=False)
    return table


def accuracy_by_scorer(table: pd.DataFrame, label: str) -> dict[str, float]:
    return {s: gsm8k.accuracy(table[f"{label}_correct_{s}"].tolist()) for s in gsm8k.SCORERS}


def invalid_rate_by_scorer(table: pd.DataFrame, label: str) -> dict[str, float]:
    """Share of completions each scorer reads no answer from (upstream's eval reports its scorer's)."""
    return {s: gsm8k.accuracy(table[f"{label}_invalid_{s}"].tolist()) for s in gsm8k.SCORERS
            if f"{label}_invalid_{s}" in table}


def _per_run(table: pd.DataFrame, by_scorer: Callable[[pd.DataFrame, str], dict[str, float]]) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame({label: by_scorer(table, label) for label in RUN_LABELS}).T
    frame.index.name = "run"
    return frame


def accuracy_table(table: pd.DataFrame) -> pd.DataFrame:
    """Rows: reference / speculative; columns: every scorer's accuracy, side by side."""
    return _per_run(table, accuracy_by_scorer)


def invalid_rate_table(table: pd.DataFrame) -> pd.DataFrame:
    """Rows: reference / speculative; columns: every scorer's invalid rate (no answer found)."""
    return _per_run(table, invalid_rate_by_scorer)


def score_frame(table: pd.DataFrame) -> pd.DataFrame:
    """Accuracy and invalid rate per run and scorer, as the report shows them."""
    import pandas as pd

    return pd.concat({"accuracy": accuracy_table(table), "invalid rate": invalid_rate_table(table)}, axis=1)


def compare_outputs(ctx: RunContext, reference: dict, speculative: dict) -> dict[str, Any]:
    """Reference vs speculative on the output-match prompts, beside reference vs reference (the control)."""
    params = ctx.params
    margin, margin_source = tie_margin(params)

    def compare(first: list[dict], second: list[dict]) -> dict[str, Any]:
        return output_match(first, second, ctx.match_kinds, params.required_match_share, params.match_mode,
                            params.match_logprobs, margin, params.required_match_share_by_kind)

    result = compare(reference["output_match"], speculative["output_match"])
    result["tie_margin_source"] = margin_source
    result["prompt_format"] = ctx.prompt_sets.match_format
    control = reference.get("output_match_control") or []
    if control and len(control) == len(reference["output_match"]):
        result = with_control(result, compare(reference["output_match"], control), reference.get("control_batching"))
    result["gsm8k_divergences"] = gsm8k_divergences(reference["gsm8k"], speculative["gsm8k"])
    write_record(ctx.run_dir / "output_match.json", OutputMatch.model_validate(result))
    return result


def acceptance(speculative: dict) -> dict[str, Any]:
    """Whole-run acceptance (GSM8k phase) plus a per-prompt table where vLLM reports one."""
    stats = acceptance_stats(speculative.get("spec_counters", {}))
    stats["per_prompt"] = [per_prompt_acceptance(r.get("spec")) for r in speculative["gsm8k"]]
    return stats


def timings(record: dict) -> dict[str, Any]:
    return {k: record.get(k) for k in Timings.model_fields}


def preemptions(record: dict) -> int | None:
    """Requests the engine preempted (KV cache full) while generating both prompt sets; None if unreported."""
    counts = [(record.get(key) or {}).get("vllm:num_preemptions") for key in ("spec_counters", "match_spec_counters")]
    known = [int(c) for c in counts if c is not None]
    return sum(known) if known else None


def _engine_fields(table: pd.DataFrame, label: str, record: dict) -> dict[str, Any]:
    """What the summary says of either engine: scores per scorer, timings, its start by phase, scheduling,
    preemptions."""
    return {"accuracy": accuracy_by_scorer(table, label), "invalid_rate": invalid_rate_by_scorer(table, label),
            "timings": Timings(**timings(record)), "async_scheduling": record.get("async_scheduling"),
            "device_type": record.get("device_type"), "engine_in_process": record.get("engine_in_process"),
            "preemptions": preemptions(record),
            "start_breakdown": record.get("start_breakdown"), "start_cache_hit": record.get("start_cache_hit")}


def build_summary(ctx: RunContext, reference: dict, speculative: dict, table: pd.DataFrame,
                  match: dict, accept: dict) -> RunSummary:
    """summary.json: every number the report shows, plus the registered checks and `passed`."""
    params = ctx.params
    scorer = params.primary_scorer
    ref, spec = _engine_fields(table, "reference", reference), _engine_fields(table, "speculative", speculative)
    summary = RunSummary(
        kind="correctness",
        case=case_name(ctx.params_file),
        params=params,
        primary_scorer=scorer,
        num_questions=len(ctx.questions),
        threshold=params.threshold,
        margin=min(ref["accuracy"][scorer], spec["accuracy"][scorer]) - params.threshold,
        reference=EngineSummary(**ref),
        speculative=SpeculativeSummary(
            **spec,
            acceptance_rate=accept["acceptance_rate"], acceptance_length=accept["acceptance_length"],
            acceptance_rate_per_position=accept["acceptance_rate_per_position"],
            counters={k: accept[k] for k in ("num_drafts", "num_draft_tokens", "num_accepted_tokens",
                                             "num_accepted_tokens_per_pos")}),
        output_match=OutputMatchSummary.model_validate(
            {k: v for k, v in match.items() if k in OutputMatchSummary.model_fields}),
        gsm8k_identical_completions=int(table["first_divergent_token"].isna().sum()),
        injection=inject.injection_record(params, ctx.run_dir),
        baseline=baseline_used(params),
        reference_source=ctx.reference_source,
        versions=run_versions(EngineVersions.model_validate(reference.get("versions", {})), params.model),
        environment=collect_environment(ctx.started_at, (utc_now() - ctx.started_at).total_seconds()),
    )
    summary.checks = evaluate_checks(summary)
    summary.passed = all_passed(summary.checks)
    summary.status = "passed" if summary.passed else "failed"
    write_summary(ctx.run_dir, summary)
    return summary


# ------------------------------------------------------------------ tables the notebook shows


def describe_case(ctx: RunContext) -> str:
    """HTML header of the report: what ran, on what, with which thresholds (params text escaped)."""
    p = ctx.params
    placeholder = " (placeholder weights, load_format: dummy: numbers are meaningless)" \
        if p.placeholder_weights or p.load_format == "dummy" else ""
    needed = required_matches(len(ctx.match_prompts), p.required_match_share)
    by_kind = "".join(f"; at least int({share} x n) + 1 of the {kind} prompts"
                      for kind, share in (p.required_match_share_by_kind or {}).items())
    control_size = control_batch_size(p, len(ctx.match_prompts))
    control = (f"; control (noise floor): the reference engine again, reversed order, batches of {control_size}"
               if control_size else "; no control (output_match_control off)")
    injected = inject.describe(p)
    rows = [
        *([("INJECTED FAULT", injected)] if injected else []),
        ("model", f"{p.model}{placeholder}"),
        ("speculative", str(p.speculative_config())),
        ("GSM8k", f"{len(ctx.questions)} test questions, {p.num_shots}-shot {ctx.prompt_sets.gsm8k_format} prompts, "
                  f"greedy, max_tokens {p.max_tokens}; "
                  f"threshold {p.threshold} on the {p.primary_scorer} scorer"
                  + (" (switched off)" if not p.threshold else "")
                  + (f"; source: {p.threshold_source}" if p.threshold_source else "")),
        ("output match", f"{len(ctx.match_prompts)} prompts, {p.output_match_max_tokens} new tokens, mode "
                         f"{p.match_mode}, at least {needed} of {len(ctx.match_prompts)} required (upstream: "
                         f"int({p.required_match_share} x n) + 1)"
                         + (" counting near-ties as matches" if p.match_mode == "tie_aware" else " identical texts")
                         + f"; near-tie: each token in the other's top {p.match_logprobs} and a reference top-2 "
                           f"gap <= {tie_margin(p)[1]}{by_kind}; sent as {ctx.prompt_sets.match_format} prompts"
                           + (" (the model's chat template, llm.chat, as upstream)"
                              if ctx.prompt_sets.match_format == "chat" else " (plain text)") + control),
        ("workload", "batch: every prompt at once (upstream)" if p.workload == "batch" else
         "churn: the same prompts in shuffled waves with filler requests of staggered max_tokens (only scheduling "
         "changes)" + (f"; KV cache {p.churn_kv_blocks} blocks, to force preemption" if p.churn_kv_blocks else "")),
        ("intended hardware", p.intended_hardware),
        ("run folder", str(ctx.run_dir)),
    ]
    return case_header(case_name(ctx.params_file), p.description or p.model, rows)


def acceptance_frame(accept: dict[str, Any]) -> pd.DataFrame:
    import pandas as pd

    keys = ("num_drafts", "num_draft_tokens", "num_accepted_tokens", "acceptance_rate", "acceptance_length")
    row = {k: accept[k] for k in keys}
    for i, rate in enumerate(accept["acceptance_rate_per_position"], start=1):
        row[f"acceptance_rate_pos{i}"] = rate
    return pd.DataFrame([row], index=["speculative"])


def match_frame(match: dict[str, Any]) -> pd.DataFrame:
    """Per kind and overall: exact matches, near-ties, divergences and the exact share of speculative vs
    reference, beside reference vs reference (the control: the engine's own noise) and what is required."""
    import pandas as pd

    control = match.get("control") or {}
    needed_by_kind = match.get("required_matches_by_kind") or {}

    def row(tally: dict[str, Any], near: int, divergent: int, control_tally: dict[str, Any] | None,
            needed: int | None) -> dict[str, Any]:
        out = {"matched": tally["matched"], "near_ties": near, "divergences": divergent, "total": tally["total"],
               "share": tally["matched"] / tally["total"] if tally["total"] else None}
        if control:
            out["control matched"] = control_tally["matched"] if control_tally else None
            out["control share"] = (control_tally["matched"] / control_tally["total"]
                                    if control_tally and control_tally["total"] else None)
        out["required"] = needed
        return out

    rows = {kind: row(v, v.get("near_ties", 0), v.get("divergences", 0), control.get("by_kind", {}).get(kind),
                      needed_by_kind.get(kind))
            for kind, v in match["by_kind"].items()}
    rows["all"] = row(match, (match.get("near_ties") or {}).get("total", 0),
                      (match.get("divergences") or {}).get("total", 0), control or None, match.get("required_matches"))
    frame = pd.DataFrame.from_dict(rows, orient="index")
    return frame.astype({"matched": int, "near_ties": int, "divergences": int, "total": int})


def _top_text(top: list[dict[str, Any]] | None) -> str:
    if not top:
        return "(no logprobs)"
    return ", ".join(f"{e['text']!r} {e['logprob']:.3f}" for e in top)


def mismatch_frame(match: dict[str, Any], limit: int = 30) -> pd.DataFrame:
    """Per mismatch: where it diverges, both tokens as text, both engines' top logprobs there, its class."""
    import pandas as pd

    def source(m: dict[str, Any]) -> str:
        if m.get("in_control") is None:
            return "(no control)"
        return "engine noise (differs in the control too)" if m["in_control"] else "only with speculation"

    rows = [{
        "prompt_id": m["prompt_id"], "kind": m["kind"], "position": m["first_divergent_token"],
        "class": m.get("class", "divergence"), "also in control": source(m),
        "reference token": repr(m.get("reference_token_text")), "speculative token": repr(m.get("speculative_token_text")),
        "reference top-2 gap": m.get("reference_margin"),
        "reference top logprobs": _top_text(m.get("reference_top_logprobs")),
        "speculative top logprobs": _top_text(m.get("speculative_top_logprobs")),
        "reference": m["reference"], "speculative": m["speculative"],
    } for m in match["mismatches"][:limit]]
    columns = ["prompt_id", "kind", "position", "class", "also in control", "reference token", "speculative token", "reference top-2 gap",
               "reference top logprobs", "speculative top logprobs", "reference", "speculative"]
    return pd.DataFrame(rows, columns=columns).set_index("prompt_id")


def disagreement_frame(table: pd.DataFrame, scorer: str, limit: int = 20) -> pd.DataFrame:
    """Questions where exactly one of the two runs is correct, completions side by side."""
    differ = table[table[f"reference_correct_{scorer}"] != table[f"speculative_correct_{scorer}"]]
    columns = ["question_id", "reference_answer", f"reference_correct_{scorer}", f"speculative_correct_{scorer}",
               "first_divergent_token", "reference_completion", "speculative_completion"]
    return differ[columns].head(limit).set_index("question_id")


def checks_frame(summary: RunSummary) -> pd.DataFrame:
    """One row per check, its numbers written for people; a switched-off (skipped) check requires nothing: "off"."""
    import pandas as pd

    from workbench.core.pages import number

    return pd.DataFrame([{"name": c.name, "status": c.status, "observed": number(c.observed),
                          "required": "off" if c.status == "skipped" else number(c.required), "message": c.message}
                         for c in summary.checks]).set_index("name")
