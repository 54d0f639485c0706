"""Two runs side by side: every number with its difference, the checks of both, the params that differ, the
questions whose correctness differs (with both completions, from questions.csv) and the paired test on them
(exact McNemar, `calibration.stats.paired_comparison`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, Field

from workbench.calibration.stats import paired_comparison
from workbench.core.pages import Verdict, environment_rows, render, verdict_of
from workbench.records import Check, RunSummary, load_summary

ENGINES = ("reference", "speculative")
NOT_NUMBERS = {"schema_version", "params", "checks", "versions", "environment", "baseline", "reference_source",
               "sync_stacks", "probe", "positive_control_processes"}
"""Summary keys that are not the run's own measurements (shown elsewhere on the page, or process ids)."""


class NumberRow(BaseModel):
    name: str
    a: float | None = None
    b: float | None = None

    @property
    def diff(self) -> float | None:
        return None if self.a is None or self.b is None else self.b - self.a

    @property
    def differs(self) -> bool:
        return self.a != self.b


class CheckRow(BaseModel):
    name: str
    a: Check | None = None
    b: Check | None = None


class ParamRow(BaseModel):
    key: str
    a: str
    b: str


class QuestionRow(BaseModel):
    question_id: int
    question: str
    reference_answer: str
    a_correct: bool
    b_correct: bool
    a_completion: str
    b_completion: str


class PairedTest(BaseModel):
    """Exact McNemar on the questions both runs answered: only the discordant ones carry evidence."""

    questions: int
    both_correct: int
    only_a: int
    only_b: int
    both_wrong: int
    a_accuracy: float
    b_accuracy: float
    pvalue: float


class EngineDiff(BaseModel):
    """One engine (reference or speculative) of both runs: the questions whose correctness differs."""

    engine: str
    test: PairedTest | None = None
    differing: int = 0
    rows: list[QuestionRow] = Field(default_factory=list)
    note: str | None = None


class Side(BaseModel):
    name: str
    path: str
    report: str | None = None
    verdict: Verdict
    environment: list[tuple[str, str]]
    case: str | None = None


class Comparison(BaseModel):
    a: Side
    b: Side
    scorer: str | None = None
    numbers: list[NumberRow] = Field(default_factory=list)
    checks: list[CheckRow] = Field(default_factory=list)
    params: list[ParamRow] = Field(default_factory=list)
    engines: list[EngineDiff] = Field(default_factory=list)

    @property
    def environment(self) -> list[tuple[str, str, str]]:
        """Both runs' environment rows side by side (a GPU run has rows a CPU run lacks)."""
        a, b = dict(self.a.environment), dict(self.b.environment)
        return [(label, a.get(label, "—"), b.get(label, "—")) for label in dict.fromkeys([*a, *b])]


def flatten(value: Any, prefix: str = "") -> dict[str, float]:
    """Every number in a nested record, by dotted path (`speculative.acceptance_length`, `...per_position[2]`)."""
    found: dict[str, float] = {}
    if isinstance(value, bool) or value is None:
        return found
    if isinstance(value, (int, float)):
        return {prefix: float(value)}
    if isinstance(value, dict):
        for key, item in value.items():
            found.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        for i, item in enumerate(value, start=1):
            found[f"{prefix}[{i}]"] = float(item)
    return found


def numbers(summary: RunSummary) -> dict[str, float]:
    found = flatten(summary.model_dump(mode="json", exclude=NOT_NUMBERS))
    if summary.environment is not None and summary.environment.wall_s is not None:
        found["wall time (s)"] = summary.environment.wall_s
    return found


def _params(summary: RunSummary) -> dict[str, str]:
    if summary.params is None:
        return {}
    return {k: json.dumps(v, sort_keys=True) for k, v in summary.params.model_dump(mode="json").items()}


def _correct(frame: pd.DataFrame, column: str) -> pd.Series:
    return frame[column].astype(str).str.strip().str.lower().isin(("true", "1", "1.0"))


def engine_diff(a_dir: Path, b_dir: Path, engine: str, scorer: str, limit: int) -> EngineDiff:
    column = f"{engine}_correct_{scorer}"
    try:
        a = pd.read_csv(a_dir / "questions.csv")
        b = pd.read_csv(b_dir / "questions.csv")
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        return EngineDiff(engine=engine, note=f"questions.csv not readable in both runs ({exc})")
    missing = [name for name, frame in (("A", a), ("B", b)) if column not in frame or "question_id" not in frame]
    if missing:
        return EngineDiff(engine=engine, note=f"no column {column} in run {' and '.join(missing)}'s questions.csv")
    both = a.merge(b, on="question_id", suffixes=("_a", "_b"))
    if both.empty:
        return EngineDiff(engine=engine, note="the two runs asked no question in common")
    a_ok, b_ok = _correct(both, f"{column}_a"), _correct(both, f"{column}_b")
    result = paired_comparison(a_ok.tolist(), b_ok.tolist())
    test = PairedTest(questions=result["questions"], both_correct=result["both_correct"],
                      only_a=result["reference_only"], only_b=result["speculative_only"],
                      both_wrong=result["both_wrong"], a_accuracy=result["reference_accuracy"],
                      b_accuracy=result["speculative_accuracy"], pvalue=result["mcnemar_pvalue"])
    differ = both[a_ok != b_ok]
    rows = [QuestionRow(question_id=int(r["question_id"]), question=str(r.get("question_a", "")),
                        reference_answer=str(r.get("reference_answer_a", "")), a_correct=bool(ok_a),
                        b_correct=bool(ok_b),
                        a_completion=str(r.get(f"{engine}_completion_a", "")),
                        b_completion=str(r.get(f"{engine}_completion_b", "")))
            for (_, r), ok_a, ok_b in zip(differ.head(limit).iterrows(), a_ok[differ.index], b_ok[differ.index])]
    note = None if len(a) == len(b) == len(both) else (f"compared on the {len(both)} questions both runs asked "
                                                       f"(A asked {len(a)}, B {len(b)})")
    return EngineDiff(engine=engine, test=test, differing=len(differ), rows=rows, note=note)


def side(summary: RunSummary, folder: Path, report: str | None) -> Side:
    return Side(name=folder.name, path=str(folder), report=report, verdict=verdict_of(summary), case=summary.case,
                environment=environment_rows(summary.environment, summary.versions,
                                             summary.params.model if summary.params else None))


def compare(a_dir: Path, b_dir: Path, a_report: str | None = None, b_report: str | None = None,
            limit: int = 50) -> Comparison:
    """Run A and run B side by side (B - A for every difference)."""
    a, b = load_summary(a_dir), load_summary(b_dir)
    a_numbers, b_numbers = numbers(a), numbers(b)
    names = list(dict.fromkeys([*a_numbers, *b_numbers]))
    check_names = list(dict.fromkeys([c.name for c in a.checks] + [c.name for c in b.checks]))
    a_params, b_params = _params(a), _params(b)
    scorer = a.primary_scorer or b.primary_scorer
    engines = []
    if (a_dir / "questions.csv").is_file() and (b_dir / "questions.csv").is_file() and scorer:
        engines = [engine_diff(a_dir, b_dir, engine, scorer, limit) for engine in ENGINES]
    return Comparison(
        a=side(a, a_dir, a_report), b=side(b, b_dir, b_report), scorer=scorer,
        numbers=[NumberRow(name=n, a=a_numbers.get(n), b=b_numbers.get(n)) for n in names],
        checks=[CheckRow(name=n, a=a.check(n), b=b.check(n)) for n in check_names],
        params=[ParamRow(key=k, a=a_params.get(k, "—"), b=b_params.get(k, "—"))
                for k in dict.fromkeys([*a_params, *b_params]) if a_params.get(k) != b_params.get(k)],
        engines=engines)


def write_comparison(comparison: Comparison, path: Path, index: str | None = None,
                     case_page: str | None = None) -> Path:
    """The comparison page; `index` and `case_page` are links back into a site (relative to the page)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render("compare.html.j2", c=comparison, index=index, case_page=case_page), encoding="utf-8")
    return path
