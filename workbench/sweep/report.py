"""What the sweep's report.html shows, from sweep.json: the verdict first (each failed cell's failed checks with
their numbers), key numbers and environment (`sweep_head`), then the cells as a table and figures against the
varied config (notebooks/sweep.ipynb).

Acceptance length and per-position acceptance per config, speed against the reference per config,
accuracy per config against the threshold, output match per config beside its control, and which
config is fastest among those that pass. Every text from params or models is escaped (Jinja2 autoescape,
pandas' HTML and `html.escape`).
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from workbench.core.pages import (Verdict, environment_rows, exit_verdict, group_environment, group_verdict,
                                  match_text, number, page_head, per_member, share)
from workbench.records import RunSummary, SweepCell, SweepSummary, load_sweep_summary, read_summary

SHORT = {"num_speculative_tokens": "k", "max_num_seqs": "seqs", "tensor_parallel_size": "tp"}
COLORS = {"reference": "#4C72B0", "speculative": "#DD8452", "control": "#8C8C8C"}


def load(sweep_dir: str | Path) -> SweepSummary:
    return load_sweep_summary(sweep_dir)


def label(cell: SweepCell) -> str:
    """A cell's config in few characters: `k=2`, `method=ngram, k=3` (its name when nothing varies)."""
    return ", ".join(f"{SHORT.get(key, key)}={value}" for key, value in cell.values.items()) or cell.name


def _num(value: float | None) -> float:
    return math.nan if value is None else float(value)


def sweep_verdict(summary: SweepSummary, runs: dict[str, RunSummary | None]) -> Verdict:
    """The sweep's exit code as a word, how many cells passed, and why each other cell did not."""
    return group_verdict(summary.exit_code, [(label(c), c.passed, runs.get(c.name), c.error) for c in summary.cells],
                         "cells")


def sweep_keys(summary: SweepSummary) -> list[tuple[str, str]]:
    """What varied, per cell acceptance length and output match (with its control), the fastest passing cell, and
    the reference engines the sweep started."""
    cells = summary.cells
    fastest = next((c for c in cells if c.name == summary.fastest_passing), None)
    speed = "none passed with a measured speed"
    if fastest is not None:
        speed = f"{label(fastest)}: {number(fastest.speculative_tokens_per_s)} output tokens/s" + (
            f", {number(fastest.speedup, 3)}x the reference" if fastest.speedup is not None else "")
    varied = "; ".join(f"{key} {', '.join(map(str, values))}" for key, values in summary.vary.items())
    return [("varied", f"{Path(summary.params).name}: {varied or 'nothing'}"),
            ("acceptance length", per_member([(label(c), number(c.acceptance_length)) for c in cells])),
            ("output match", per_member([(label(c), match_text(c.output_match, c.output_match_control))
                                         for c in cells if c.output_match])),
            ("fastest passing", speed),
            ("reference engines", f"{summary.reference_runs} started for {summary.reference_keys} reference key(s); "
                                  f"executor {summary.executor}"
                                  + (f" ({summary.ray_address})" if summary.ray_address else ""))]


def sweep_head(summary: SweepSummary, notes: list[str] | None = None) -> str:
    """The top of the sweep's report.html: verdict, notes, key numbers, environment (from its cells' runs)."""
    runs = {c.name: read_summary(c.run_dir) for c in summary.cells}
    environment, versions = group_environment([r for r in runs.values() if r], summary.wall_s)
    return page_head(sweep_verdict(summary, runs), sweep_keys(summary), environment_rows(environment, versions),
                     f"sweep of {Path(summary.params).stem}", notes, style=True)


def cells_frame(summary: SweepSummary) -> pd.DataFrame:
    """One row per cell: verdict, acceptance, accuracy, output match and control, speed, its reference's source."""
    rows = []
    for c in summary.cells:
        scorer = c.primary_scorer or "upstream"
        rows.append({
            "config": label(c), "verdict": exit_verdict(c.exit_code),
            "failed checks / error": ", ".join(c.failed_checks) or c.error or "",
            "acceptance length": c.acceptance_length,
            "per-position acceptance": " / ".join(number(r, 3) for r in c.acceptance_rate_per_position),
            f"accuracy ref / spec ({scorer})": f"{number(c.reference_accuracy.get(scorer))} / "
                                               f"{number(c.speculative_accuracy.get(scorer))}",
            "output match": share(c.output_match.matched, c.output_match.total) if c.output_match else "",
            "control": share(c.output_match_control.matched, c.output_match_control.total)
                       if c.output_match_control else "",
            "tokens/s ref / spec": f"{number(c.reference_tokens_per_s)} / {number(c.speculative_tokens_per_s)}",
            "speed-up": c.speedup,
            "reference": (c.reference or "") + (" (engine started here)" if c.reference_engine_started else ""),
            "device": c.device, "wall s": c.wall_s,
        })
    return pd.DataFrame(rows, index=[c.name for c in summary.cells])


def _axis(ax: plt.Axes, cells: list[SweepCell]) -> np.ndarray:
    x = np.arange(len(cells))
    ax.set_xticks(x, [label(c) for c in cells], rotation=20 if len(cells) > 4 else 0, ha="right" if len(cells) > 4
                  else "center")
    return x


def acceptance_figure(summary: SweepSummary) -> plt.Figure:
    """Acceptance length per config (dotted: its maximum, 1 + k) and acceptance rate per draft position."""
    cells = summary.cells
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    x = _axis(left, cells)
    lengths = [_num(c.acceptance_length) for c in cells]
    bars = left.bar(x, lengths, color=COLORS["speculative"])
    left.bar_label(bars, labels=["" if math.isnan(v) else f"{v:.3f}" for v in lengths], fontsize=8, padding=2)
    for i, c in enumerate(cells):
        if c.acceptance_rate_per_position:
            top = 1 + len(c.acceptance_rate_per_position)
            left.hlines(top, i - 0.4, i + 0.4, colors="gray", linestyles=":", label="max (1 + k)" if i == 0 else None)
    left.set_ylabel("acceptance length")
    left.set_title("Acceptance length per config")
    if left.get_legend_handles_labels()[0]:
        left.legend(fontsize=8)
    for c in cells:
        rates = c.acceptance_rate_per_position
        if rates:
            right.plot(range(1, len(rates) + 1), rates, marker="o", label=label(c))
    right.set_xlabel("draft position")
    right.set_ylabel("acceptance rate")
    right.set_ylim(0, 1.05)
    right.set_title("Per-position acceptance")
    if right.get_legend_handles_labels()[0]:
        right.legend(fontsize=8)
        right.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    return fig


def speed_figure(summary: SweepSummary) -> plt.Figure:
    """Speculative / reference output tokens per second per config (1.0: as fast as the reference)."""
    cells = summary.cells
    fig, ax = plt.subplots(figsize=(8, 3.8))
    x = _axis(ax, cells)
    ratios = [_num(c.speedup) for c in cells]
    bars = ax.bar(x, ratios, color=[COLORS["speculative"] if c.passed else "#c44e52" for c in cells])
    ax.bar_label(bars, labels=["" if math.isnan(r) else f"{r:.2f}x\n{_num(c.speculative_tokens_per_s):.0f} tok/s"
                               for r, c in zip(ratios, cells)], fontsize=8, padding=2)
    ax.axhline(1.0, color="gray", linestyle="--", linewidth=1, label="reference speed")
    finite = [r for r in ratios if not math.isnan(r)]
    ax.set_ylim(0, max([1.0, *finite]) * 1.35)
    ax.set_ylabel("speculative / reference tokens/s")
    ax.set_title("Speed against the reference (red: the cell did not pass)")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def accuracy_figure(summary: SweepSummary) -> plt.Figure:
    """GSM8k accuracy (primary scorer) of both engines per config, and each config's threshold."""
    cells = summary.cells
    scorer = next((c.primary_scorer for c in cells if c.primary_scorer), "upstream")
    fig, ax = plt.subplots(figsize=(8, 3.8))
    x = _axis(ax, cells)
    width = 0.38
    for offset, run, values in ((-width / 2, "reference", [c.reference_accuracy for c in cells]),
                                (width / 2, "speculative", [c.speculative_accuracy for c in cells])):
        heights = [_num(v.get(scorer)) for v in values]
        bars = ax.bar(x + offset, heights, width, label=run, color=COLORS[run])
        ax.bar_label(bars, labels=["" if math.isnan(h) else f"{h:.3f}" for h in heights], fontsize=7, padding=2)
    thresholds = [_num(c.threshold) for c in cells]
    if any(t > 0 for t in thresholds if not math.isnan(t)):
        ax.hlines(thresholds, x - 0.45, x + 0.45, colors="crimson", linestyles="--", label="threshold")
    else:
        ax.text(0.99, 0.97, "accuracy check switched off (threshold 0)", transform=ax.transAxes, ha="right",
                va="top", fontsize=9, color="gray")
    top = np.nanmax([*[_num(c.reference_accuracy.get(scorer)) for c in cells],
                     *[_num(c.speculative_accuracy.get(scorer)) for c in cells], *thresholds, 0.0])
    ax.set_ylim(0, max(0.05, float(top) * 1.35))
    ax.set_ylabel(f"GSM8k accuracy ({scorer})")
    ax.set_title("Accuracy per config against the threshold")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def match_figure(summary: SweepSummary) -> plt.Figure:
    """Output match per config (speculative vs reference) beside its control (reference vs reference), and the
    share the check requires."""
    cells = summary.cells
    fig, ax = plt.subplots(figsize=(8, 3.8))
    x = _axis(ax, cells)
    width = 0.38
    shares = [_num(c.output_match.share if c.output_match else None) for c in cells]
    controls = [_num(c.output_match_control.share if c.output_match_control else None) for c in cells]
    for offset, heights, name, color in ((-width / 2, shares, "speculative vs reference", COLORS["speculative"]),
                                         (width / 2, controls, "control: reference vs reference", COLORS["control"])):
        bars = ax.bar(x + offset, heights, width, label=name, color=color)
        ax.bar_label(bars, labels=["" if math.isnan(h) else f"{h:.2f}" for h in heights], fontsize=7, padding=2)
    required = [_num(c.required_match_share) for c in cells]
    ax.hlines(required, x - 0.45, x + 0.45, colors="crimson", linestyles="--", label="required share")
    judged = [_num(c.output_match_judged_share) for c in cells]
    if any(not math.isnan(j) and j != s for j, s in zip(judged, shares)):
        ax.scatter(x - width / 2, judged, marker="^", color="black", zorder=3, label="judged (near-ties count)")
    ax.set_ylim(0, 1.25)
    ax.set_ylabel("share of prompts identical")
    ax.set_title("Output match per config, with its control")
    ax.legend(fontsize=8, loc="upper left", ncol=2)
    fig.tight_layout()
    return fig


def fastest_html(summary: SweepSummary) -> str:
    """Which config is fastest among those that pass (speculative output tokens per second)."""
    cell = next((c for c in summary.cells if c.name == summary.fastest_passing), None)
    if cell is None:
        return "<p><strong>No passing config has a measured speed.</strong></p>"
    speedup = f", {number(cell.speedup, 3)}x the reference" if cell.speedup is not None else ""
    return (f"<p><strong>Fastest passing config: {html.escape(label(cell))}</strong> ({html.escape(cell.name)}): "
            f"{number(cell.speculative_tokens_per_s)} output tokens/s{speedup}, acceptance length "
            f"{number(cell.acceptance_length)}.</p>")
