"""Reference vs speculative: exact output match and where two greedy outputs diverge."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def first_divergence(a: Sequence[int], b: Sequence[int]) -> int | None:
    """Index of the first differing token; None when the two token lists are identical."""
    for index, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return index
    return None if len(a) == len(b) else min(len(a), len(b))


def output_match(reference: list[dict], speculative: list[dict], kinds: Sequence[str] | None = None,
                 required_share: float = 0.8) -> dict[str, Any]:
    """Upstream's check: how many prompts give exactly the same text under both engines."""
    if len(reference) != len(speculative):
        raise ValueError(f"{len(reference)} reference vs {len(speculative)} speculative outputs")
    mismatches = []
    matched_by_kind: dict[str, list[int]] = {}
    for index, (ref, spec) in enumerate(zip(reference, speculative)):
        kind = kinds[index] if kinds is not None else "all"
        same = ref["completion"] == spec["completion"]
        tally = matched_by_kind.setdefault(kind, [0, 0])
        tally[0] += int(same)
        tally[1] += 1
        if not same:
            position = first_divergence(ref["token_ids"], spec["token_ids"])
            mismatches.append({
                "prompt_id": index, "kind": kind, "first_divergent_token": position,
                "reference_token": _at(ref["token_ids"], position), "speculative_token": _at(spec["token_ids"], position),
                "reference": ref["completion"], "speculative": spec["completion"],
            })
    total = len(reference)
    matched = total - len(mismatches)
    return {
        "matched": matched, "total": total, "share": matched / total if total else None,
        "required_share": required_share,
        "by_kind": {k: {"matched": m, "total": t} for k, (m, t) in matched_by_kind.items()},
        "mismatches": mismatches,
    }


def _at(tokens: Sequence[int], position: int | None) -> int | None:
    if position is None or position >= len(tokens):
        return None
    return tokens[position]


def gsm8k_divergences(reference: list[dict], speculative: list[dict]) -> list[dict[str, Any]]:
    """For each GSM8k question whose completions differ, the first divergent token."""
    rows = []
    for ref, spec in zip(reference, speculative):
        if ref["token_ids"] != spec["token_ids"]:
            position = first_divergence(ref["token_ids"], spec["token_ids"])
            rows.append({"question_id": ref["question_id"], "first_divergent_token": position,
                         "reference_tokens": len(ref["token_ids"]), "speculative_tokens": len(spec["token_ids"])})
    return rows
