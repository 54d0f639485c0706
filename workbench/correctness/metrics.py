"""Speculative-decoding acceptance, from vLLM's counters, defined as upstream defines it.

acceptance rate = accepted / draft tokens; acceptance length = 1 + accepted / drafts;
per-position acceptance rate = accepted_per_pos / drafts.
"""

from __future__ import annotations

from typing import Any


def acceptance_stats(counters: dict[str, Any]) -> dict[str, Any]:
    """Acceptance figures; None where the engine made no drafts (a plain run)."""
    drafts = counters.get("vllm:spec_decode_num_drafts", 0) or 0
    draft_tokens = counters.get("vllm:spec_decode_num_draft_tokens", 0) or 0
    accepted = counters.get("vllm:spec_decode_num_accepted_tokens", 0) or 0
    per_pos = counters.get("vllm:spec_decode_num_accepted_tokens_per_pos") or []
    return {
        "num_drafts": drafts,
        "num_draft_tokens": draft_tokens,
        "num_accepted_tokens": accepted,
        "num_accepted_tokens_per_pos": list(per_pos),
        "acceptance_rate": accepted / draft_tokens if draft_tokens else None,
        "acceptance_length": 1.0 + accepted / drafts if drafts else None,
        "acceptance_rate_per_position": [a / drafts for a in per_pos] if drafts else [],
    }


def per_prompt_acceptance(spec: dict[str, Any] | None) -> dict[str, Any] | None:
    """One prompt's counters from vLLM's per-request histogram (accepted count j per step)."""
    if not spec:
        return None
    histogram = list(spec.get("acceptance_histogram", []))
    drafts = sum(histogram)
    accepted = sum(j * n for j, n in enumerate(histogram))
    # position i is accepted in every step that accepted more than i tokens
    per_pos = [sum(histogram[j] for j in range(i + 1, len(histogram))) for i in range(len(histogram) - 1)]
    return acceptance_stats({
        "vllm:spec_decode_num_drafts": drafts,
        "vllm:spec_decode_num_draft_tokens": spec.get("num_draft_tokens", 0),
        "vllm:spec_decode_num_accepted_tokens": accepted,
        "vllm:spec_decode_num_accepted_tokens_per_pos": per_pos,
    })
