"""`workbench summarize RUN_DIR...`: a Markdown table of finished runs, from their summary.json.

The README's measured numbers are printed by this command, so anyone can rerun and compare.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) pairs of one run."""
    params, ref, spec = summary["params"], summary["reference"], summary["speculative"]
    match = summary["output_match"]
    acc = lambda run: " / ".join(_fmt(run["accuracy"][s], 4) for s in ("upstream", "strict", "flexible"))  # noqa: E731
    rt, st = ref["timings"], spec["timings"]
    return [
        ("speculative config", f"{params['method']}, k={params['num_speculative_tokens']}"),
        ("GSM8k questions", str(summary["num_questions"])),
        ("reference accuracy (upstream / strict / flexible)", acc(ref)),
        ("speculative accuracy (upstream / strict / flexible)", acc(spec)),
        ("acceptance rate", _fmt(spec["acceptance_rate"], 4)),
        ("acceptance length", _fmt(spec["acceptance_length"], 4)),
        ("per-position acceptance", " / ".join(_fmt(r, 3) for r in spec["acceptance_rate_per_position"])),
        ("output match (10 tokens)", f"{match['matched']}/{match['total']}"),
        ("identical GSM8k completions", f"{summary.get('gsm8k_identical_completions', '—')}/{summary['num_questions']}"),
        ("engine start s (reference / speculative)", f"{_fmt(rt['init_s'], 1)} / {_fmt(st['init_s'], 1)}"),
        ("GSM8k generation s (reference / speculative)", f"{_fmt(rt['generate_s'], 1)} / {_fmt(st['generate_s'], 1)}"),
        ("output tokens/s (reference / speculative)",
         f"{_fmt(rt['output_tokens_per_s'], 0)} / {_fmt(st['output_tokens_per_s'], 0)}"),
        ("checks", ", ".join(f"{c['name']} {c['status']}" for c in summary["checks"])),
        ("vLLM / torch", f"{summary['versions'].get('vllm')} / {summary['versions'].get('torch')}"),
    ]


def markdown(run_dirs: list[Path]) -> str:
    summaries = [json.loads((Path(d) / "summary.json").read_text(encoding="utf-8")) for d in run_dirs]
    table = [r for r in (rows(s) for s in summaries)]
    header = "| | " + " | ".join(Path(d).name for d in run_dirs) + " |"
    lines = [header, "|---" * (len(run_dirs) + 1) + "|"]
    for i, (label, _) in enumerate(table[0]):
        lines.append(f"| {label} | " + " | ".join(t[i][1] for t in table) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: workbench summarize RUN_DIR...", file=sys.stderr)
        return 2
    missing = [d for d in argv if not (Path(d) / "summary.json").is_file()]
    if missing:
        print(f"workbench summarize: error: no summary.json in {missing[0]}", file=sys.stderr)
        return 2
    print(markdown([Path(d) for d in argv]))
    return 0
