"""Reference vs speculative: exact output match, and why two greedy outputs diverge.

Upstream's check compares texts exactly. Where kernels round differently (bf16 on CPUs with and
without AMX, a verifier scoring two tokens per step), a greedy argmax between two tokens whose
logprobs differ by less than the dtype can resolve flips between engines. Each mismatch is
therefore classified at its first divergent token from both engines' top logprobs, the rule
vLLM's model tests use (`check_logprobs_close`) plus a bound on the reference's top-2 gap:

- `near_tie`: each engine's token is in the other's top-N, and the reference's top-2 gap is at
  most `tie_margin` (nats): a rounding-level tie;
- `divergence`: anything else, a real disagreement.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

MatchClass = Literal["near_tie", "divergence"]
MATCH_MODES = ("exact", "tie_aware")

# Spacing of representable values between 1 and 2 (machine epsilon) per dtype.
DTYPE_EPSILON = {"bfloat16": 2.0 ** -7, "float16": 2.0 ** -10, "float32": 2.0 ** -23}
TIE_MARGIN_LOGIT_SCALE = 16.0
"""A near-tie's gap, in units of the dtype's epsilon: one spacing of representable values for
logits of magnitude 16-32 (the shipped model's top logits lie there), i.e. 0.125 nats in bf16."""


def first_divergence(a: Sequence[int], b: Sequence[int]) -> int | None:
    """Index of the first differing token; None when the two token lists are identical."""
    for index, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return index
    return None if len(a) == len(b) else min(len(a), len(b))


def required_matches(total: int, required_share: float) -> int:
    """Upstream's rule: `int(share * n) + 1` matches (81 of 100 at 0.8), at most n."""
    return min(total, int(required_share * total) + 1) if total else 0


def model_dtype(dtype: str, model: str) -> str:
    """The dtype the engine computes in: the params' `dtype`, or the checkpoint's when `auto`."""
    if dtype != "auto":
        return {"bf16": "bfloat16", "half": "float16", "fp16": "float16", "float": "float32"}.get(dtype, dtype)
    config_file = Path(model) / "config.json"
    if config_file.is_file():
        config = json.loads(config_file.read_text(encoding="utf-8"))
        for scope in (config, config.get("text_config") or {}):
            found = scope.get("dtype") or scope.get("torch_dtype")
            if found:
                return str(found)
    return "bfloat16"  # hub checkpoints of the cases here (Qwen3.5, MiMo, DeepSeek) are bf16


def default_tie_margin(dtype: str) -> tuple[float, str]:
    """(margin in nats, how it was derived) for a dtype."""
    epsilon = DTYPE_EPSILON.get(dtype, DTYPE_EPSILON["bfloat16"])
    margin = TIE_MARGIN_LOGIT_SCALE * epsilon
    return margin, (f"{margin:g} nats = {TIE_MARGIN_LOGIT_SCALE:g} x {dtype} epsilon ({epsilon:g}): one step "
                    f"between representable logits of magnitude 16-32")


def _top_at(record: dict[str, Any], position: int | None) -> list[dict[str, Any]] | None:
    tops = record.get("top_logprobs")
    if tops is None or position is None or position >= len(tops):
        return None
    return tops[position]


def _in_top(token: int | None, top: list[dict[str, Any]] | None, top_n: int) -> bool:
    return token is not None and top is not None and any(e["id"] == token and e["rank"] <= top_n for e in top)


def top2_margin(top: list[dict[str, Any]] | None) -> float | None:
    """Gap between the best and the second-best logprob at one position."""
    if not top or len(top) < 2:
        return None
    best = sorted(e["logprob"] for e in top)[::-1]
    return best[0] - best[1]


def classify_divergence(ref_token: int | None, spec_token: int | None, ref_top: list[dict] | None,
                        spec_top: list[dict] | None, top_n: int, tie_margin: float) -> MatchClass:
    """`near_tie` when each token is in the other's top-N and the reference's top-2 gap <= tie_margin."""
    margin = top2_margin(ref_top)
    crossed = _in_top(spec_token, ref_top, top_n) and _in_top(ref_token, spec_top, top_n)
    return "near_tie" if crossed and margin is not None and margin <= tie_margin else "divergence"


def _at(tokens: Sequence[int], position: int | None) -> int | None:
    if position is None or position >= len(tokens):
        return None
    return tokens[position]


def _token_text(top: list[dict[str, Any]] | None, token: int | None) -> str | None:
    for entry in top or []:
        if entry["id"] == token:
            return entry.get("text")
    return None


def output_match(reference: list[dict], speculative: list[dict], kinds: Sequence[str] | None = None,
                 required_share: float = 0.8, mode: str = "exact", top_n: int = 5,
                 tie_margin: float = 0.125, required_share_by_kind: dict[str, float] | None = None) -> dict[str, Any]:
    """Upstream's check (identical texts) plus the class of every mismatch and the verdict's counts.

    `matched`/`share` are always the exact ones; `judged_matched` is what the check compares with
    `required_matches`: exact matches, plus near-ties in `tie_aware` mode. `required_share_by_kind`
    adds upstream's split rule: int(share x n_kind) + 1 of each named kind.
    """
    if len(reference) != len(speculative):
        raise ValueError(f"{len(reference)} reference vs {len(speculative)} speculative outputs")
    if mode not in MATCH_MODES:
        raise ValueError(f"match mode must be one of {MATCH_MODES}, got {mode!r}")
    mismatches = []
    by_kind: dict[str, dict[str, int]] = {}
    for index, (ref, spec) in enumerate(zip(reference, speculative)):
        kind = kinds[index] if kinds is not None else "all"
        tally = by_kind.setdefault(kind, {"matched": 0, "total": 0, "near_ties": 0, "divergences": 0})
        tally["total"] += 1
        if ref["completion"] == spec["completion"]:
            tally["matched"] += 1
            continue
        position = first_divergence(ref["token_ids"], spec["token_ids"])
        ref_token, spec_token = _at(ref["token_ids"], position), _at(spec["token_ids"], position)
        ref_top, spec_top = _top_at(ref, position), _top_at(spec, position)
        verdict = classify_divergence(ref_token, spec_token, ref_top, spec_top, top_n, tie_margin)
        tally["near_ties" if verdict == "near_tie" else "divergences"] += 1
        mismatches.append({
            "prompt_id": index, "kind": kind, "first_divergent_token": position, "class": verdict,
            "reference_token": ref_token, "speculative_token": spec_token,
            "reference_token_text": _token_text(ref_top, ref_token),
            "speculative_token_text": _token_text(spec_top, spec_token),
            "reference_margin": top2_margin(ref_top),
            "reference_top_logprobs": ref_top, "speculative_top_logprobs": spec_top,
            "reference": ref["completion"], "speculative": spec["completion"],
        })
    total = len(reference)
    matched = sum(t["matched"] for t in by_kind.values())
    near_ties = sum(t["near_ties"] for t in by_kind.values())
    judged = matched + (near_ties if mode == "tie_aware" else 0)
    by_kind_needed = {kind: required_matches(by_kind[kind]["total"], share)
                      for kind, share in (required_share_by_kind or {}).items() if kind in by_kind}
    return {
        "matched": matched, "total": total, "share": matched / total if total else None,
        "required_share": required_share, "required_matches": required_matches(total, required_share),
        "required_share_by_kind": required_share_by_kind or None, "required_matches_by_kind": by_kind_needed or None,
        "mode": mode, "judged_matched": judged, "judged_share": judged / total if total else None,
        "top_n": top_n, "tie_margin": tie_margin,
        "near_ties": {"total": near_ties, "by_kind": {k: t["near_ties"] for k, t in by_kind.items()}},
        "divergences": {"total": total - matched - near_ties,
                        "by_kind": {k: t["divergences"] for k, t in by_kind.items()}},
        "by_kind": by_kind,
        "mismatches": mismatches,
    }


def judged_by_kind(match: dict[str, Any]) -> dict[str, int]:
    """Per kind, what the check counts as matching: exact, plus near-ties in `tie_aware` mode."""
    tie_aware = match.get("mode") == "tie_aware"
    return {kind: t["matched"] + (t.get("near_ties", 0) if tie_aware else 0) for kind, t in match["by_kind"].items()}


def with_control(match: dict[str, Any], control: dict[str, Any], batching: dict[str, Any] | None) -> dict[str, Any]:
    """Add the noise floor to a reference-vs-speculative result: the control's counts (reference vs
    reference), and on each mismatch whether the prompt differs in the control as well."""
    noisy = {m["prompt_id"] for m in control["mismatches"]}
    for mismatch in match["mismatches"]:
        mismatch["in_control"] = mismatch["prompt_id"] in noisy
    keys = ("matched", "total", "share", "by_kind", "near_ties", "divergences")
    match["control"] = {**{k: control[k] for k in keys}, **(batching or {})}
    match["control_mismatches"] = control["mismatches"]
    return match


def gsm8k_divergences(reference: list[dict], speculative: list[dict]) -> list[dict[str, Any]]:
    """For each GSM8k question whose completions differ, the first divergent token."""
    rows = []
    for ref, spec in zip(reference, speculative):
        if ref["token_ids"] != spec["token_ids"]:
            position = first_divergence(ref["token_ids"], spec["token_ids"])
            rows.append({"question_id": ref["question_id"], "first_divergent_token": position,
                         "reference_tokens": len(ref["token_ids"]), "speculative_tokens": len(spec["token_ids"])})
    return rows
