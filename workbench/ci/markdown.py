"""The Markdown both CI pages show (GitHub's step summary, Buildkite's annotations): one table row per
case, verdict first, then the numbers a reader checks, what failed, and where the report is.

Every text that comes from params, models or engines goes through `markdown_text`, so a pipe or a
newline in a description cannot break the table and `<script>` stays text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from workbench.ci.results import CaseResult, KeyNumbers
from workbench.ci.text import markdown_text

CELL_LIMIT = 600
"""Characters of one message in a cell; the JUnit file and report.html keep the whole text."""

HEADER = ("verdict", "case", "acceptance length", "output match", "accuracy reference / speculative",
          "failing checks", "report")


def _number(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _accuracy(numbers: KeyNumbers) -> str:
    if numbers.reference_accuracy is None and numbers.speculative_accuracy is None:
        return "—"
    scorer = f" ({markdown_text(numbers.primary_scorer)})" if numbers.primary_scorer else ""
    return f"{_number(numbers.reference_accuracy)} / {_number(numbers.speculative_accuracy)}{scorer}"


def _output_match(numbers: KeyNumbers) -> str:
    if numbers.output_match_total is None:
        return "—"
    near_ties = f" ({numbers.output_match_near_ties} near-ties)" if numbers.output_match_near_ties else ""
    return f"{numbers.output_match_matched}/{numbers.output_match_total}{near_ties}"


def _failing(result: CaseResult) -> str:
    """Each failed check with its message; an error or a cancel first, with what stopped the run."""
    lines = []
    if result.error is not None:
        lines.append(f"**{result.verdict.lower()}**: {markdown_text(result.error, CELL_LIMIT)}")
    for check in result.failed_checks:
        lines.append(f"**{markdown_text(check.name)}**: {markdown_text(check.message, CELL_LIMIT)}")
    return "<br>".join(lines) or "—"


def case_row(result: CaseResult, report_cell: Callable[[CaseResult], str]) -> str:
    numbers = result.numbers
    cells = (f"**{result.verdict}**", markdown_text(result.name), _number(numbers.acceptance_length),
             _output_match(numbers), _accuracy(numbers), _failing(result), report_cell(result))
    return "| " + " | ".join(cells) + " |"


def results_table(results: Sequence[CaseResult], report_cell: Callable[[CaseResult], str]) -> str:
    """A GFM table, one row per case; `report_cell` renders where each case's report.html is."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += [case_row(result, report_cell) for result in results]
    return "\n".join(lines)


def tally(results: Sequence[CaseResult]) -> str:
    """`2 passed, 1 failed` in verdict order, only the verdicts that occur."""
    counts = {verdict: sum(r.verdict == verdict for r in results) for verdict in ("PASSED", "FAILED", "ERROR",
                                                                                   "CANCELLED")}
    return ", ".join(f"{n} {verdict.lower()}" for verdict, n in counts.items() if n) or "no cases"
