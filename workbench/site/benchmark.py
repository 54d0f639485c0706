"""`--benchmark-json FILE` (`workbench run`, `workbench lane`): a run's headline numbers in the format trend tools
already read: github-action-benchmark's custom format, a JSON list of `{name, unit, value, range, extra}`.

That tool reads one direction per file (`tool: customBiggerIsBetter` or `customSmallerIsBetter`). The file holds
**bigger-is-better numbers only**, for `customBiggerIsBetter`: GSM8k accuracy of both engines (primary scorer,
its 95 % Wilson interval as `range`), acceptance length, the output-match share and its control's, and both
engines' output tokens/s. Times (wall, engine start), where smaller is better, are left out. Each entry's name
is stable across runs of the same case and variant (`tiny-qwen3_5-cpu (mtp k=1): acceptance length`), so the
tool charts one line per name; `extra` names the run folder, commit, hardware, vLLM and the verdict.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from workbench.core.errors import BadInputError, WorkbenchError
from workbench.core.pages import commit, number, variant, verdict_of
from workbench.records import LaneSummary, RunSummary, load_summary

TOOL = "customBiggerIsBetter"


class BenchmarkEntry(BaseModel):
    """One number as github-action-benchmark's custom tools read it."""

    name: str
    unit: str
    value: float
    range: str | None = None
    extra: str | None = None


def _accuracy_range(accuracy: float, questions: int | None) -> str | None:
    if not questions:
        return None
    from workbench.calibration.stats import accuracy_interval  # scipy: only when a benchmark file is written

    low, high = accuracy_interval(round(accuracy * questions), questions)
    return f"± {number(max(accuracy - low, high - accuracy), 3)}"


def summary_entries(summary: RunSummary, run_name: str, label: str | None = None) -> list[BenchmarkEntry]:
    """The bigger-is-better headline numbers of one correctness run (none for a run without numbers)."""
    label = label or f"{summary.case} ({variant(summary)})"
    env = summary.environment
    extra = "; ".join(filter(None, [f"run {run_name}", f"commit {commit(env.git_commit)}" if env else None,
                                    env.hardware.label if env and env.hardware else None,
                                    f"vLLM {summary.versions.vllm}" if summary.versions.vllm else None,
                                    verdict_of(summary).word]))
    scorer = summary.primary_scorer
    found: list[tuple[str, str, float | None, str | None]] = []
    for engine in ("speculative", "reference"):
        numbers = getattr(summary, engine)
        accuracy = numbers.accuracy.get(scorer) if numbers is not None and scorer else None
        found.append((f"{engine} accuracy ({scorer})", "share of questions", accuracy,
                      _accuracy_range(accuracy, summary.num_questions) if accuracy is not None else None))
    spec, ref, match = summary.speculative, summary.reference, summary.output_match
    found += [
        ("acceptance length", "tokens per step", spec.acceptance_length if spec else None, None),
        ("output match", "share of prompts", match.share if match else None, None),
        ("output match control", "share of prompts", match.control.share if match and match.control else None, None),
        ("speculative output tokens/s", "tokens/s", spec.timings.output_tokens_per_s if spec else None, None),
        ("reference output tokens/s", "tokens/s", ref.timings.output_tokens_per_s if ref else None, None),
    ]
    return [BenchmarkEntry(name=f"{label}: {name}", unit=unit, value=value, range=spread, extra=extra)
            for name, unit, value, spread in found if value is not None]


def run_entries(run_dir: Path, label: str | None = None) -> list[BenchmarkEntry]:
    try:
        summary = load_summary(run_dir)
    except WorkbenchError:
        return []
    return summary_entries(summary, Path(run_dir).name, label) if summary.kind == "correctness" else []


def lane_entries(lane: LaneSummary) -> list[BenchmarkEntry]:
    """Every case of a lane, each named by its lane case name."""
    return [entry for case in lane.cases for entry in run_entries(Path(case.run_dir), case.name)]


def check_benchmark_path(path: Path | None) -> None:
    """Bad input (exit 2) before anything starts: a folder where the file should go."""
    if path is not None and path.is_dir():
        raise BadInputError(f"--benchmark-json {path}: is a folder, not a file", path=path, key="--benchmark-json")


def write_benchmark_json(path: Path, entries: list[BenchmarkEntry]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([e.model_dump(exclude_none=True) for e in entries], indent=2) + "\n", encoding="utf-8")
    return path


def benchmark_on_finished(path: Path | None, then: Callable[[Path, int], None] | None = None
                          ) -> Callable[[Path, int], None] | None:
    """`run_notebook_case`'s `on_finished`: `then` (the CI outputs), then the benchmark file, whatever the outcome
    (a run without numbers writes an empty list)."""
    if path is None:
        return then

    def finished(run_dir: Path, exit_code: int) -> None:
        try:
            if then is not None:
                then(run_dir, exit_code)
        finally:
            try:
                write_benchmark_json(path, run_entries(run_dir))
            except OSError as exc:
                print(f"[workbench] benchmark file not written: {path}: {exc}", flush=True)

    return finished
