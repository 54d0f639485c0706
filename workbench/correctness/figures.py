"""Figures of a correctness run. DataFrames / dicts in, matplotlib Figures out."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

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
        # vLLM attaches per-request counts to some outputs only; say how many this histogram covers
        ax_hist.set_title(f"{len(per_prompt)} of {len(prompts)} prompts carry per-request counts", fontsize=9)
    else:
        ax_hist.text(0.5, 0.5, "no per-prompt counts from this vLLM", ha="center", va="center")
        ax_hist.set_axis_off()
    fig.suptitle("Acceptance length (1 + accepted / drafts)")
    fig.tight_layout()
    return fig


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
