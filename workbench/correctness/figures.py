"""Figures of a correctness run. DataFrames / dicts in, matplotlib Figures out."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from workbench.records import StartBreakdown

COLORS = {"reference": "#4C72B0", "speculative": "#DD8452"}


def accuracy_vs_threshold(accuracy: pd.DataFrame, threshold: float, primary_scorer: str) -> plt.Figure:
    """Accuracy of both runs under every scorer, the threshold line and the margin written on it."""
    fig, ax = plt.subplots(figsize=(7.5, 4))
    scorers = list(accuracy.columns)
    x = np.arange(len(scorers))
    width = 0.38
    for offset, run in zip((-width / 2, width / 2), accuracy.index):
        values = accuracy.loc[run].to_numpy(dtype=float)
        bars = ax.bar(x + offset, values, width, label=run, color=COLORS.get(run))
        ax.bar_label(bars, labels=[f"{v:.3f}" for v in values], fontsize=8, padding=2)
    if threshold > 0:
        ax.axhline(threshold, color="crimson", linestyle="--", linewidth=1.2, label=f"threshold {threshold:.3f}")
        margin = float(accuracy[primary_scorer].min()) - threshold
        ax.text(0.99, 0.97, f"margin ({primary_scorer}): {margin:+.3f}", transform=ax.transAxes, ha="right", va="top",
                fontsize=10, color="crimson" if margin < 0 else "darkgreen",
                bbox={"facecolor": "white", "edgecolor": "lightgray"})
    else:
        ax.text(0.99, 0.97, "accuracy check switched off (threshold 0)", transform=ax.transAxes, ha="right",
                va="top", fontsize=9, color="gray")
    ax.set_xticks(x, [f"{s}{' (primary)' if s == primary_scorer else ''}" for s in scorers])
    top = max(float(np.nanmax(accuracy.to_numpy(dtype=float))), threshold)
    ax.set_ylim(0, max(0.05, top * 1.3))
    ax.set_ylabel("GSM8k accuracy")
    ax.set_title("GSM8k accuracy: reference vs speculative")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def acceptance_length(accept: dict[str, Any], num_speculative_tokens: int) -> plt.Figure:
    """Overall acceptance length, and its distribution over prompts where vLLM reports per-prompt counts."""
    fig, (ax_bar, ax_hist) = plt.subplots(1, 2, figsize=(9, 3.6), gridspec_kw={"width_ratios": [1, 2]})
    overall = accept.get("acceptance_length")
    ax_bar.bar(["acceptance\nlength"], [overall or 0], color=COLORS["speculative"])
    ax_bar.axhline(1 + num_speculative_tokens, color="gray", linestyle=":", label=f"max {1 + num_speculative_tokens}")
    ax_bar.set_ylim(0, 1.15 * (1 + num_speculative_tokens))
    if overall is not None:
        ax_bar.text(0, overall, f"{overall:.3f}", ha="center", va="bottom")
    ax_bar.legend(fontsize=8)
    prompts = accept.get("per_prompt", [])
    per_prompt = [p["acceptance_length"] for p in prompts if p and p["acceptance_length"]]
    if per_prompt:
        ax_hist.hist(per_prompt, bins=20, color=COLORS["speculative"], alpha=0.85)
        ax_hist.set_xlabel("acceptance length per GSM8k prompt")
        ax_hist.set_ylabel("prompts")
        ax_hist.set_title(f"{len(per_prompt)} of {len(prompts)} prompts carry per-request counts", fontsize=9)
    else:
        ax_hist.text(0.5, 0.5, f"none of the {len(prompts)} prompts carries per-request counts", ha="center",
                     va="center", fontsize=9)
        ax_hist.set_axis_off()
    if len(per_prompt) < len(prompts):
        fig.text(0.5, 0.01, PER_REQUEST_NOTE, ha="center", va="bottom", fontsize=7.5, color="dimgray", wrap=True)
    fig.suptitle("Acceptance length (1 + accepted / drafts)")
    fig.tight_layout(rect=(0, 0.09 if len(per_prompt) < len(prompts) else 0, 1, 1))
    return fig


PER_REQUEST_NOTE = ("Why so few: vLLM attaches per-request counts only to requests its engine core finishes (EOS token "
                    "or max_tokens). A request ended by a stop string (GSM8k's \"Question\") is finished by vLLM's "
                    "front end and carries none.\nThe overall acceptance length (left) counts every prompt.")
"""Why the per-request histogram covers only some prompts (vLLM's scheduler sends `spec_decode_metrics` with
a request's final output only when it finishes the request itself; stop strings are checked in the front end)."""


def per_position_acceptance(rates: list[float]) -> plt.Figure:
    """Acceptance rate of draft position 1..k (accepted at that position / drafts)."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    positions = np.arange(1, len(rates) + 1)
    bars = ax.bar(positions, rates, color=COLORS["speculative"])
    ax.bar_label(bars, labels=[f"{r:.3f}" for r in rates], fontsize=8)
    ax.set_xticks(positions)
    ax.set_xlabel("draft position")
    ax.set_ylabel("acceptance rate")
    ax.set_ylim(0, 1.05)
    ax.set_title("Per-position acceptance rate")
    fig.tight_layout()
    return fig


def disagreement(table: pd.DataFrame, scorer: str) -> plt.Figure:
    """Where reference and speculative disagree: per question on correctness, and where their text diverges."""
    ref = table[f"reference_correct_{scorer}"].to_numpy(bool)
    spec = table[f"speculative_correct_{scorer}"].to_numpy(bool)
    ids = table["question_id"].to_numpy()
    fig, (ax_q, ax_div) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [3, 2]})
    categories = [("only reference correct", ref & ~spec, COLORS["reference"]),
                  ("only speculative correct", ~ref & spec, COLORS["speculative"])]
    for row, (name, mask, color) in enumerate(categories):
        ax_q.scatter(ids[mask], np.full(mask.sum(), row), marker="|", s=300, color=color)
    ax_q.set_yticks(range(len(categories)), [f"{name}: {int(mask.sum())}" for name, mask, _ in categories])
    ax_q.set_xlim(-0.5, max(int(ids.max()) if len(ids) else 0, 1) + 0.5)
    ax_q.set_ylim(-0.7, len(categories) - 0.3)
    ax_q.set_xlabel("GSM8k test question id")
    ax_q.set_title(f"Questions where exactly one run is correct ({scorer}); "
                   f"both correct {int((ref & spec).sum())}, both wrong {int((~ref & ~spec).sum())}", fontsize=9)
    diverged = table["first_divergent_token"].dropna()
    if len(diverged):
        ax_div.hist(diverged, bins=30, color="gray")
        ax_div.set_ylabel("completions")
        ax_div.set_xlabel("first divergent token")
    else:
        ax_div.text(0.5, 0.5, "all GSM8k completions identical", ha="center", va="center")
        ax_div.set_axis_off()
    ax_div.set_title(f"{len(diverged)} of {len(table)} GSM8k completions differ", fontsize=9)
    fig.tight_layout()
    return fig


MATCH_CLASS_COLORS = {"exact match": "#55A868", "near-tie": "#E1B12C", "divergence": "#C44E52"}


def match_classes(match: dict[str, Any]) -> plt.Figure:
    """Output-match prompts per kind: exact matches, near-ties and divergences with speculation, and
    beside each kind the control (reference vs reference under other batching): the engine's own noise."""
    control = match.get("control") or {}
    rows: list[tuple[str, dict[str, Any]]] = []
    for kind, tally in match["by_kind"].items():
        rows.append((f"{kind}: speculative vs reference", tally))
        if control.get("by_kind", {}).get(kind):
            rows.append((f"{kind}: control (reference vs reference)", control["by_kind"][kind]))
    labels = [label for label, _ in rows]
    parts = {"exact match": [t["matched"] for _, t in rows],
             "near-tie": [t.get("near_ties", 0) for _, t in rows],
             "divergence": [t.get("divergences", t["total"] - t["matched"]) for _, t in rows]}
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.5 * len(rows)))
    left = np.zeros(len(rows))
    for name, values in parts.items():
        bars = ax.barh(labels, values, left=left, color=MATCH_CLASS_COLORS[name], label=name)
        ax.bar_label(bars, labels=[str(v) if v else "" for v in values], label_type="center", fontsize=8)
        left += np.asarray(values, dtype=float)
    ax.set_xlabel("output-match prompts")
    mode = match.get("mode", "exact")
    judged = match.get("judged_matched", match["matched"])
    ax.set_title(f"Greedy outputs per prompt kind ({mode} mode: {judged}/{match['total']} counted as matching, "
                 f"{match.get('required_matches', '?')} required)", fontsize=9)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    ax.invert_yaxis()
    fig.tight_layout()
    return fig


START_PHASE_COLORS = {"weights_load": "#4C72B0", "compile": "#C44E52", "profile_kv_cache_warmup": "#DD8452",
                      "cuda_graph_capture": "#8172B3", "other": "#B0B0B0"}
"""One color per phase of `records.StartBreakdown`, in its field order."""
START_PHASE_LABELS = {"weights_load": "weights load", "compile": "compile (torch.compile)",
                      "profile_kv_cache_warmup": "profiling, KV cache, warmup", "cuda_graph_capture": "CUDA graph capture",
                      "other": "other (processes, imports, config)"}


def _cache_text(hit: bool | None) -> str:
    return {True: "compile cache hit", False: "compiled afresh", None: "nothing compiled"}[hit]


def start_breakdown(records: dict[str, dict[str, Any]]) -> plt.Figure:
    """Each engine's start as one stacked bar: its phases (`start_breakdown`, read from vLLM's log) adding up to
    its measured start (`init_s`), with whether compiling hit vLLM's compile cache."""
    labels = list(records)
    breakdowns = [StartBreakdown.model_validate(r["start_breakdown"]) if r.get("start_breakdown") else None
                  for r in records.values()]
    fig, ax = plt.subplots(figsize=(9, 1.4 + 0.6 * len(labels)))
    left = np.zeros(len(labels))
    for phase in StartBreakdown.model_fields:
        values = np.array([getattr(b, phase) if b else 0.0 for b in breakdowns])
        bars = ax.barh(labels, values, left=left, color=START_PHASE_COLORS[phase], label=START_PHASE_LABELS[phase])
        total = np.maximum(np.array([b.total if b else 0.0 for b in breakdowns]), 1e-9)
        ax.bar_label(bars, labels=[f"{v:.1f}" if v / t >= 0.06 else "" for v, t in zip(values, total)],
                     label_type="center", fontsize=8)
        left += values
    for row, (label, record, b) in enumerate(zip(labels, records.values(), breakdowns)):
        text = (f"{b.total:.1f} s, {_cache_text(record.get('start_cache_hit'))}" if b else
                "no start breakdown in this record")
        ax.text(left[row] if b else 0, row, f"  {text}", va="center", fontsize=8)
    ax.set_xlim(0, max(float(left.max()), 1.0) * 1.35)
    ax.set_xlabel("seconds of engine start (vllm.LLM(...)), from vLLM's own timing lines; other = the rest")
    ax.set_title("Where each engine's start went", fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.35 - 0.1 / len(labels)), ncol=3, fontsize=8, frameon=False)
    ax.invert_yaxis()
    fig.tight_layout()
    return fig
