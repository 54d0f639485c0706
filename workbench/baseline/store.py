"""Recording a baseline from a finished run, and refusing a baseline that cannot judge this run.

A baseline judges only a run that could reproduce it: the same model files (content hash), the same
method and num_speculative_tokens, and the same hardware (bf16 kernels differ between CPUs with and
without AMX, and between GPU generations), as vLLM's acceptance-length tests name the hardware their
expected values were measured on. Anything else is refused before an engine starts (exit 2); another
vLLM version is allowed, and the checks' messages say so.
"""

from __future__ import annotations

import re
import sys
from datetime import datetime, timezone
from pathlib import Path

from workbench.core.errors import BadInputError, ParamsError, RecordError
from workbench.core.fingerprint import Hardware, engine_versions, hardware, model_hash
from workbench.core.params import CaseParams
from workbench.records import (Baseline, BaselineOutputMatch, BaselineUsed, MatchShare, ScorerAccuracy,
                               load_baseline, load_summary, write_record)

BASELINES_DIR = Path("baselines")


def hardware_slug(machine: Hardware) -> str:
    """A file-name-safe name of the hardware, e.g. `cpu-intel-r-xeon-r-processor-amx-bf16`."""
    text = f"{machine.device} {machine.name} {machine.bf16 or ''}".lower()
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def default_baseline_path(baseline: Baseline) -> Path:
    """`baselines/<case>-<hardware>.json` in the current folder: one baseline per case and machine, to commit."""
    return BASELINES_DIR / f"{baseline.case}-{hardware_slug(baseline.hardware)}.json"


def record_baseline(run_dir: str | Path, allow_failed: bool = False) -> Baseline:
    """The baseline of a finished correctness run; a run that did not finish (or failed, unless
    `allow_failed`) is refused, since a later run would be held to numbers nobody vouched for."""
    run_dir = Path(run_dir).resolve()
    summary = load_summary(run_dir)
    where = run_dir / "summary.json"

    def refuse(why: str) -> RecordError:
        return RecordError(f"{where}: {why}", path=where)

    if summary.kind != "correctness":
        raise refuse(f"a {summary.kind} run, not a correctness run (workbench run): it has no acceptance to keep")
    if summary.status not in ("passed", "failed"):
        raise refuse(f"the run did not finish (status {summary.status or 'unknown'}"
                     + (f": {summary.error.splitlines()[0]}" if summary.error else "") + ")")
    if summary.status == "failed" and not allow_failed:
        failed = ", ".join(c.name for c in summary.checks if c.status == "failed")
        raise refuse(f"its checks failed ({failed}); record a run that passed, or pass --allow-failed")
    params, spec = summary.params, summary.speculative
    if params is None or spec is None or spec.acceptance_length is None or summary.num_questions is None:
        raise refuse("no params, question count or speculative acceptance recorded")
    machine = hardware()
    if spec.device_type and spec.device_type != machine.device:
        raise refuse(f"its engines ran on {spec.device_type}, this machine computes on {machine.device} "
                     f"({machine.label}): record the baseline on the machine that ran it")
    if Path(params.model).is_absolute() and not Path(params.model).is_dir():
        raise refuse(f"its model folder {params.model} is gone: the baseline keeps the model's content hash")
    questions = summary.num_questions
    accuracy = {scorer: ScorerAccuracy(accuracy=value, correct=round(value * questions), questions=questions)
                for scorer, value in spec.accuracy.items()}
    match = summary.output_match
    output_match = None if match is None else BaselineOutputMatch(
        matched=match.matched, total=match.total, share=match.share,
        control=None if match.control is None else MatchShare(matched=match.control.matched,
                                                              total=match.control.total, share=match.control.share))
    return Baseline(
        case=summary.case or run_dir.name, method=params.method, num_speculative_tokens=params.num_speculative_tokens,
        acceptance_length=spec.acceptance_length, acceptance_rate_per_position=spec.acceptance_rate_per_position,
        primary_scorer=summary.primary_scorer or params.primary_scorer, accuracy=accuracy, output_match=output_match,
        hardware=machine, vllm=summary.versions.vllm or engine_versions()["vllm"], model=params.model,
        model_hash=model_hash(params.model), date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        source_run=str(run_dir))


def write_baseline(baseline: Baseline, to: Path, force: bool = False) -> Path:
    """Write a baseline file; an existing one is replaced only with `force` (a baseline changes on purpose)."""
    if to.exists() and not force:
        raise BadInputError(f"--to {to}: already exists; pass --force to replace it", key="--to", path=to)
    if to.exists() and not to.is_file():
        raise BadInputError(f"--to {to}: exists and is not a file", key="--to", path=to)
    to.parent.mkdir(parents=True, exist_ok=True)
    return write_record(to, baseline)


def check_baseline(params: CaseParams, params_file: str | Path) -> Baseline | None:
    """The case's baseline, proven to fit this run (exists, readable, this hardware, model, method and draft
    length); else a `ParamsError` naming key `baseline` and the file. None when the case sets no baseline."""
    if params.baseline is None:
        return None
    path = Path(params.baseline)

    def refuse(why: str) -> ParamsError:
        return ParamsError(f"{params_file}: key 'baseline': {path}: {why}", key="baseline", path=params_file)

    if not path.is_file():
        raise refuse("not found (a relative path is looked up beside the params file, then in the current folder)")
    try:
        baseline = load_baseline(path)
    except RecordError as exc:
        raise refuse(f"not a readable baseline file ({exc.message})") from exc
    except OSError as exc:
        raise refuse(f"cannot be read ({exc.strerror or exc})") from exc
    machine, recorded_on = hardware(), baseline.hardware
    if (recorded_on.device, recorded_on.name, recorded_on.bf16) != (machine.device, machine.name, machine.bf16):
        raise refuse(f"recorded on {recorded_on.device} {recorded_on.label}, this machine is {machine.device} "
                     f"{machine.label}: acceptance and accuracy move with the hardware; record a baseline here "
                     "(workbench baseline record RUN_DIR)")
    this_model = model_hash(params.model)
    if baseline.model_hash != this_model:
        raise refuse(f"recorded for another model ({baseline.model}, content hash {baseline.model_hash}); this case's "
                     f"model {params.model} hashes to {this_model}")
    if (baseline.method, baseline.num_speculative_tokens) != (params.method, params.num_speculative_tokens):
        raise refuse(f"recorded for {baseline.method} with num_speculative_tokens {baseline.num_speculative_tokens}, "
                     f"this case runs {params.method} with {params.num_speculative_tokens}")
    if params.primary_scorer not in baseline.accuracy:
        raise refuse(f"has no accuracy under this case's primary scorer {params.primary_scorer!r}")
    installed = engine_versions()["vllm"]
    if baseline.vllm and installed and baseline.vllm != installed:
        print(f"workbench: warning: baseline {path} was recorded with vLLM {baseline.vllm}, vLLM {installed} is "
              "installed: its numbers may move (the checks' messages say so)", file=sys.stderr)
    return baseline


def baseline_used(params: CaseParams) -> BaselineUsed | None:
    """What the summary keeps of the case's baseline (its file and numbers), so the checks read the summary only."""
    if params.baseline is None:
        return None
    path = Path(params.baseline).resolve()
    return BaselineUsed(**load_baseline(path).model_dump(), path=str(path))
