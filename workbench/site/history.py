"""A case's history as charts: accuracy with its threshold, acceptance length with its gate or baseline, output
match with its control, generation speed; one line per variant (method and draft length), over the runs in the
order they ran, each labelled with its date and commit. Drawn with matplotlib as SVG and embedded as data URIs
(the page loads nothing)."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Callable

import matplotlib
from matplotlib.figure import Figure
from pydantic import BaseModel

from workbench.core.pages import commit
from workbench.site.runs import SiteRun

Value = Callable[[SiteRun], float | None]
# (label, value, line style): the measured series of a chart, and the lines it is held to
Series = tuple[str, Value, str]


class Chart(BaseModel):
    """One history chart: its title, what it shows in words (alt text), and the SVG as a data URI."""

    title: str
    alt: str
    src: str


CHARTS: list[tuple[str, str, list[Series], list[Series]]] = [
    ("Accuracy (primary scorer) and threshold", "accuracy",
     [("speculative", lambda r: r.speculative_accuracy, "-"), ("reference", lambda r: r.reference_accuracy, "--")],
     [("threshold", lambda r: r.threshold or None, ":")]),
    ("Acceptance length, gate and baseline", "acceptance length",
     [("acceptance length", lambda r: r.acceptance_length, "-")],
     [("gate", lambda r: r.acceptance_gate, "--"), ("baseline", lambda r: r.baseline_acceptance_length, ":")]),
    ("Output match and its control", "share of identical outputs",
     [("speculative vs reference", lambda r: r.output_match_share, "-")],
     [("control (reference vs reference)", lambda r: r.control_share, "--")]),
    ("Generation speed", "output tokens/s",
     [("speculative", lambda r: r.speculative_tokens_per_s, "-"), ("reference", lambda r: r.reference_tokens_per_s,
                                                                   "--")], []),
]


def tick_label(run: SiteRun) -> str:
    day = (run.started_at or "")[:16].replace("T", " ")
    return f"{day[5:] if day else '?'}\n{commit(run.commit)[:7]}"


def _svg(figure: Figure) -> str:
    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "workbench-site", "svg.fonttype": "none"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")  # the legend beside
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _points(runs: list[SiteRun], positions: dict[str, int], value: Value) -> tuple[list[int], list[float]]:
    xs = [positions[r.id] for r in runs]
    ys = [value(r) for r in runs]
    return xs, [math.nan if y is None else float(y) for y in ys]


def chronological(runs: list[SiteRun]) -> list[SiteRun]:
    """A case's correctness runs, oldest first: the x axis of its history. Runs with a fault injected on purpose
    (positive controls, meant to fail) are no part of the case's health: the case page lists them, unplotted."""
    return sorted((r for r in runs if r.kind == "correctness" and not r.injected),
                  key=lambda r: (r.started_at or "", r.id))


def _legend(ax, variants: list[str], colors: dict[str, str], drawn: dict[str, tuple[str, str]]) -> None:
    """One entry per variant (its colour) and one per series (its line style), beside the axes: a case with many
    variants gets a legend of variants + series entries, not their product, and it hides no point."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colors[v], marker="o", markersize=4, label=v) for v in variants
               if len(variants) > 1]
    handles += [Line2D([], [], color=color if len(variants) == 1 else "dimgray", linestyle=style, label=label)
                for label, (style, color) in drawn.items()]
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def history_figures(runs: list[SiteRun]) -> list[tuple[str, Figure]]:
    """(title, figure) of the four history charts of a case's correctness runs (given in any order)."""
    ordered = chronological(runs)
    if not ordered:
        return []
    positions = {r.id: i for i, r in enumerate(ordered)}
    variants = list(dict.fromkeys(r.variant or "?" for r in ordered))
    colors = {v: f"C{i % 10}" for i, v in enumerate(variants)}
    charts = []
    for title, ylabel, measured, limits in CHARTS:
        figure = Figure(figsize=(7.2, 3.3))
        ax = figure.subplots()
        drawn: dict[str, tuple[str, str]] = {}  # series label -> (line style, colour when one variant)
        for name in variants:
            members = [r for r in ordered if (r.variant or "?") == name]
            prefix = f"{name}: " if len(variants) > 1 else ""
            for label, value, style in measured:
                xs, ys = _points(members, positions, value)
                if any(not math.isnan(y) for y in ys):
                    ax.plot(xs, ys, style, marker="o", markersize=4, color=colors[name], label=prefix + label)
                    drawn.setdefault(label, (style, colors[name]))
            for label, value, style in limits:
                xs, ys = _points(members, positions, value)
                if any(not math.isnan(y) for y in ys):
                    color = "crimson" if label != "baseline" else "gray"
                    ax.step(xs, ys, style, where="mid", color=color, linewidth=1.1, label=prefix + label)
                    drawn.setdefault(label, (style, color))
        if drawn:
            _legend(ax, variants, colors, drawn)
        else:
            ax.text(0.5, 0.5, "not measured in these runs", ha="center", va="center", transform=ax.transAxes)
        step = max(1, math.ceil(len(ordered) / 10))
        shown = list(range(0, len(ordered), step))
        ax.set_xticks(shown, [tick_label(ordered[i]) for i in shown], fontsize=7)
        ax.set_xlim(-0.5, len(ordered) - 0.5)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(axis="y", alpha=0.3)
        figure.tight_layout()
        charts.append((title, figure))
    return charts


def history_charts(runs: list[SiteRun]) -> list[Chart]:
    """The history charts as the case page embeds them (SVG data URIs)."""
    count = len(chronological(runs))
    return [Chart(title=title, alt=f"{title} over {count} runs (date and commit on the x axis)", src=_svg(figure))
            for title, figure in history_figures(runs)]
