"""What the no-sync audit notebook shows: the case, the counts, the outputs and the stacks."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from workbench.audit.child import AUDIT_PROMPTS, AUDIT_SAMPLING
from workbench.audit.stages import AuditContext
from workbench.core.case_header import case_header
from workbench.core.pages import number
from workbench.core.params import case_name


def describe_case(ctx: AuditContext) -> str:
    """HTML header of the report: what ran, on what (params text escaped)."""
    p = ctx.params
    rows = [
        ("model", p.model + (" (placeholder weights, load_format: dummy)" if p.load_format == "dummy" else "")),
        ("speculative", f"{p.speculative_config()}, async_scheduling=True, enforce_eager {p.enforce_eager}"),
        ("prompts", f"{len(AUDIT_PROMPTS)}, greedy, {AUDIT_SAMPLING['max_tokens']} new tokens "
                    "(upstream: 1 prompt, 10 tokens)"),
        ("listed for the audit (audit: true)", "yes" if p.audit else "no, run on request"),
        ("intended hardware", p.intended_hardware),
        ("run folder", str(ctx.run_dir)),
    ]
    return case_header(case_name(ctx.params_file), p.description or p.model, rows)


def counts_frame(result: dict[str, Any]) -> pd.DataFrame:
    """The audit's numbers, one row each."""
    probe = result.get("probe") or {}
    rows = {
        "async scheduling active": result.get("async_scheduling_active"),
        "lazy seq_lens_cpu initialisations (sync_count)": result.get("sync_count"),
        "  by phase": json.dumps(result["sync_count_by_phase"]) if result.get("sync_count_by_phase") else None,
        "positive control count": result.get("positive_control_count"),
        "CUDA sync-debug count (generation)": result.get("cuda_sync_count"),
        "probe mode": probe.get("mode"),
        "probe installed in": ", ".join(f"{i['process']} (pid {i['pid']})" for i in probe.get("installed_in", [])),
    }
    return pd.DataFrame({"value": [number(v) for v in rows.values()]}, index=list(rows))  # None: a dash


def outputs_frame(result: dict[str, Any]) -> pd.DataFrame:
    """The measured generation's completions."""
    return pd.DataFrame(result.get("outputs", []), columns=["prompt", "completion", "num_tokens", "finish_reason"])


def stacks_text(stacks: list[dict[str, Any]], limit: int = 5) -> str:
    """The first `limit` probe events' short stacks, as text."""
    if not stacks:
        return "(none)"
    blocks = []
    for i, s in enumerate(stacks[:limit], start=1):
        blocks.append(f"#{i} {s.get('process')} pid {s.get('pid')} phase {s.get('phase')}\n    "
                      + "\n    ".join(s.get("stack", [])))
    more = len(stacks) - limit
    return "\n".join(blocks) + (f"\n... {more} more in records/probe_events.jsonl" if more > 0 else "")
