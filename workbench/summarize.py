"""`workbench summarize RUN_DIR...`: a Markdown table of finished runs, from their summary.json.

The README's measured numbers are printed by this command, so anyone can rerun and compare.
Summaries are read through `RunSummary`; scorers come from the scorer registry.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from workbench.core.errors import BadInputError, ExitCode, WorkbenchError
from workbench.records import RunSummary, load_summary
from workbench.gsm8k.scorers import SCORERS


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def rows(summary: RunSummary) -> list[tuple[str, str]]:
    """(label, value) pairs of one correctness run."""
    params, ref, spec, match = summary.params, summary.reference, summary.speculative, summary.output_match
    names = " / ".join(SCORERS)
    acc = lambda run: " / ".join(_fmt(run.accuracy.get(s), 4) for s in SCORERS)  # noqa: E731
    rt, st = ref.timings, spec.timings
    near = f", {match.near_ties.total} near-ties" if match.near_ties is not None else ""
    return [
        ("speculative config", f"{params.method}, k={params.num_speculative_tokens}"),
        ("GSM8k questions", str(summary.num_questions)),
        (f"reference accuracy ({names})", acc(ref)),
        (f"speculative accuracy ({names})", acc(spec)),
        ("acceptance rate", _fmt(spec.acceptance_rate, 4)),
        ("acceptance length", _fmt(spec.acceptance_length, 4)),
        ("per-position acceptance", " / ".join(_fmt(r, 3) for r in spec.acceptance_rate_per_position)),
        (f"output match ({params.output_match_max_tokens} tokens)", f"{match.matched}/{match.total}{near}"),
        ("identical GSM8k completions", f"{_fmt(summary.gsm8k_identical_completions)}/{summary.num_questions}"),
        ("engine start s (reference / speculative)", f"{_fmt(rt.init_s, 1)} / {_fmt(st.init_s, 1)}"),
        ("GSM8k generation s (reference / speculative)", f"{_fmt(rt.generate_s, 1)} / {_fmt(st.generate_s, 1)}"),
        ("output tokens/s (reference / speculative)",
         f"{_fmt(rt.output_tokens_per_s, 0)} / {_fmt(st.output_tokens_per_s, 0)}"),
        ("checks", ", ".join(f"{c.name} {c.status}" for c in summary.checks)),
        ("vLLM / torch", f"{summary.versions.vllm} / {summary.versions.torch}"),
    ]


def markdown(run_dirs: list[Path]) -> str:
    summaries = [load_summary(d) for d in run_dirs]
    for folder, summary in zip(run_dirs, summaries):
        if summary.kind != "correctness" or summary.reference is None or summary.speculative is None:
            raise BadInputError(f"{folder}: not a finished correctness run ({summary.kind}"
                                 f"{', ended in an error' if summary.error else ''})", path=folder)
    table = [rows(s) for s in summaries]
    header = "| | " + " | ".join(Path(d).name for d in run_dirs) + " |"
    lines = [header, "|---" * (len(run_dirs) + 1) + "|"]
    for i, (label, _) in enumerate(table[0]):
        lines.append(f"| {label} | " + " | ".join(t[i][1] for t in table) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: workbench summarize RUN_DIR...", file=sys.stderr)
        return int(ExitCode.BAD_INPUT)
    missing = [d for d in argv if not (Path(d) / "summary.json").is_file()]
    if missing:
        print(f"workbench summarize: error: no summary.json in {missing[0]}", file=sys.stderr)
        return int(ExitCode.BAD_INPUT)
    try:
        print(markdown([Path(d) for d in argv]))
    except WorkbenchError as exc:
        print(f"workbench summarize: error: {exc}", file=sys.stderr)
        return int(ExitCode.BAD_INPUT)
    return int(ExitCode.OK)
