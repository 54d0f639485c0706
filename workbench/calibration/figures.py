"""Figures, tables and the threshold slider of `notebooks/calibrate_threshold.ipynb`.

Presentation only: every number comes from `workbench.calibration`; the notebook's cells just
call these helpers, so the notebook stays thin and the same views work in JupyterLab and
under papermill (where the slider renders once and nothing blocks).
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from workbench.calibration import stats as calibration
from workbench.core.pages import number


def _display(obj: Any) -> None:
    from IPython.display import display

    display(obj)


def _note(text: str) -> None:
    from IPython.display import Markdown

    _display(Markdown(text))


def current_threshold(result: dict[str, Any], threshold: float | None = None) -> float | None:
    """The threshold in force: the one named, else the runs' own (summary.json), else none."""
    if threshold is not None:
        return float(threshold)
    current = result.get("current") or {}
    return current.get("threshold")


# --------------------------------------------------------------------------- tables


def overview_frame(result: dict[str, Any]) -> pd.DataFrame:
    """The headline numbers, one per row."""
    low, high = result["accuracy_interval"]
    rows = {
        "reference accuracy": result["accuracy"],
        "questions": result["questions"],
        "95% interval (Wilson)": f"[{low:.4f}, {high:.4f}]",
        "max false-failure probability (per run)": result["max_false_failure"],
        "recommended threshold": result["recommended_threshold"],
        "recommended threshold, exact bound": result.get("recommended_threshold_exact"),
        "recommended threshold if accuracy were the interval's low end":
            result.get("recommended_threshold_at_interval_low"),
        "threshold evaluated": result["threshold_evaluated"],
        "margin (accuracy - threshold)": result["margin"],
        "false-failure probability (per run)": result["false_failure_probability"],
        "false-failure probability (either run, union bound)": result.get("false_failure_probability_either_run"),
        f"detectable drop at {result.get('power', 0.9):.0%} power": result["detectable_drop"],
    }
    return pd.DataFrame({"value": {name: number(value) for name, value in rows.items()}})  # None: a dash


def spread_frame(result: dict[str, Any]) -> pd.DataFrame | None:
    """Run-to-run spread of reference and speculative accuracy (runs only)."""
    if "spread" not in result:
        return None
    return pd.DataFrame({"reference": result["spread"], "speculative": result["speculative_spread"]}).T


def paired_frame(paired: dict[str, Any]) -> pd.DataFrame:
    """McNemar's 2x2 table with margins."""
    table = pd.DataFrame(paired["table"], index=["reference correct", "reference wrong"],
                         columns=["speculative correct", "speculative wrong"])
    return table


def thresholds_frame(result: dict[str, Any], threshold: float | None = None) -> pd.DataFrame:
    """The recommended threshold against the one in force and upstream's 0.20, side by side."""
    accuracy, questions = result["accuracy"], result["questions"]
    named = {"recommended": result["recommended_threshold"]}
    current = current_threshold(result, threshold)
    if current is not None:
        named["current"] = current
    if current != 0.20:
        named["upstream 0.20"] = 0.20
    rows = []
    for name, value in named.items():
        rows.append({"threshold": name, "value": value, "margin": accuracy - value,
                     "false_failure_probability": calibration.false_failure_probability(accuracy, questions, value),
                     "detectable_drop": calibration.detectable_drop(value, questions, accuracy)})
    return pd.DataFrame(rows).set_index("threshold")


# --------------------------------------------------------------------------- notebook sections


def show_accuracy(result: dict[str, Any], threshold: float | None = None) -> Figure:
    """Interval of the reference accuracy, run-to-run spread, and a figure of both."""
    _display(overview_frame(result))
    spread = spread_frame(result)
    if spread is None:
        _note("_What-if numbers: no runs, so no run-to-run spread._")
    else:
        _display(spread)
    return accuracy_figure(result, threshold)


def show_paired(result: dict[str, Any], runs: list[dict[str, Any]], scorer: str, limit: int = 50) -> None:
    """McNemar on the first run's reference vs speculative, and the disagreeing questions side by side."""
    paired = result.get("paired_comparison")
    if paired is None or not runs:
        _note("_What-if numbers: no runs, so no paired comparison._")
        return
    _display(paired_frame(paired))
    _note(f"Discordant pairs: reference only correct **{paired['reference_only']}**, speculative only correct "
          f"**{paired['speculative_only']}**; McNemar exact p-value **{paired['mcnemar_pvalue']:.4g}** "
          f"(accuracy difference {paired['difference']:+.4f}).")
    table = calibration.disagreement_table(runs[0], scorer, limit)
    if table.empty:
        _note("Reference and speculative agree on every question.")
    else:
        # model completions are shown as text: Styler does not escape unless told to
        _display(table.style.format(escape="html").set_properties(**{"white-space": "pre-wrap", "text-align": "left"}))


def show_acceptance(result: dict[str, Any]) -> Figure | None:
    """The acceptance-length gate, or why there is none."""
    gate = result.get("acceptance_length")
    if gate is None:
        _note("_What-if numbers: no runs, so no acceptance-length gate._")
        return None
    shown = {k: gate.get(k) for k in ("status", "n", "mean", "std", "gate", "gate_normal", "gate_rounded",
                                      "detectable_drop", "max_false_failure", "message", "assumptions")}
    _display(pd.DataFrame({"value": shown}).astype(object))
    return None


def show_output_match(result: dict[str, Any]) -> None:
    """False-failure probability of the output-match check in both modes, from the runs' counts."""
    match = result.get("output_match")
    if not match:
        _note("_No runs with output-match prompts: nothing to estimate._")
        return
    _note(f"{match['runs']} runs of {match['prompts_per_run']} prompts; a run fails when fewer than "
          f"{match['required_matches']} count as matching. The runs judged in `{result.get('output_match_mode')}` "
          f"mode. {match['model']}.")
    _show_rows({mode: match[mode] for mode in ("exact", "tie_aware")},
               ("failing_prompts_per_run", "runs_failed", "failure_rate", "failure_rate_upper",
                "false_failure_probability", "false_failure_probability_upper", "message"))


def _show_rows(rows: dict[str, dict[str, Any]], keys: tuple[str, ...]) -> None:
    """One table row per entry of `rows`, with the columns `keys` (missing ones empty)."""
    _display(pd.DataFrame({name: {key: row.get(key) for key in keys} for name, row in rows.items()}).T.astype(object))


def show_output_match_control(result: dict[str, Any]) -> None:
    """The output-match share the engine's own noise allows: overall and per prompt kind, from the controls."""
    control = result.get("output_match_control")
    if not control:
        _note("_No run measured a control (reference vs reference): set `output_match_control: true`._")
        return
    _note(f"{control['runs']} control(s): the reference engine against itself under other batching. "
          f"{control['model']}. The recommended share keeps P(a healthy run fails) at or under "
          f"{control['max_false_failure']:g}; paste it as `required_match_share` (overall) or "
          f"`required_match_share_by_kind`.")
    _show_rows({"all": control["overall"], **control["by_kind"]},
               ("prompts_per_run", "control_failing", "control_prompts", "noise_rate", "noise_rate_upper",
                "failures_allowed", "recommended_share", "required_matches", "false_failure_probability"))


def show_controls(result: dict[str, Any]) -> None:
    """Measured detection of injected regressions (workbench controls) beside the computed power."""
    rows = result.get("controls_detection")
    if not rows:
        _note("_No controls given: run `workbench controls PARAMS` and pass its folder as `controls`._")
        return
    _note("Each injected run: what the checks measured (caught or missed), and the probability the binomial model "
          "gives each check to catch an effect of the size the injection had.")
    _display(pd.DataFrame(rows).set_index(["injection", "workload"]).astype(object))


# --------------------------------------------------------------------------- figures


def accuracy_figure(result: dict[str, Any], threshold: float | None = None) -> Figure:
    """Reference (and speculative) accuracy per run with the interval, the recommended and current thresholds."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    low, high = result["accuracy_interval"]
    refs = result.get("reference_accuracies") or [result["accuracy"]]
    specs = result.get("speculative_accuracies") or []
    x = np.arange(len(refs))
    ax.plot(x, refs, "o", color="tab:blue", label="reference")
    if specs:
        ax.plot(x + 0.1, specs, "s", color="tab:orange", label="speculative")
    ax.axhspan(low, high, color="tab:blue", alpha=0.12, label="95% Wilson interval, mean accuracy")
    ax.axhline(result["recommended_threshold"], color="tab:green", ls="--", label="recommended threshold")
    current = current_threshold(result, threshold)
    if current is not None:
        ax.axhline(current, color="tab:red", ls=":", label="current threshold")
    ax.set_xticks(x, [f"run {i + 1}" for i in x] if "runs" in result else ["what-if"])
    ax.set_ylabel("GSM8k accuracy")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    fig.tight_layout()
    return fig


def threshold_curves_figure(result: dict[str, Any], threshold: float | None = None, points: int = 401) -> Figure:
    """False-failure probability (log) and detectable drop against the threshold, key thresholds marked."""
    accuracy, questions = result["accuracy"], result["questions"]
    grid = np.linspace(0.0, min(1.0, accuracy + 0.05), points)
    curves = calibration.threshold_curves(accuracy, questions, grid)
    fig, (ax_ff, ax_drop) = plt.subplots(1, 2, figsize=(11, 3.8))
    ff = curves["false_failure_probability"].where(curves["false_failure_probability"] > 0)
    ax_ff.semilogy(curves["threshold"], ff, color="tab:blue")
    ax_ff.axhline(result["max_false_failure"], color="gray", lw=0.8, label="max false-failure")
    positive = ff.dropna()
    ax_ff.set_ylim(max(float(positive.min()) if len(positive) else 1e-40, 1e-40), 2)
    ax_ff.set_ylabel("P(healthy build fails)")
    drop = curves["detectable_drop"].replace([np.inf, -np.inf], np.nan)
    ax_drop.plot(curves["threshold"], drop, color="tab:purple")
    ax_drop.set_ylabel(f"detectable drop ({result.get('power', 0.9):.0%} power)")
    current = current_threshold(result, threshold)
    for ax in (ax_ff, ax_drop):
        ax.axvline(result["recommended_threshold"], color="tab:green", ls="--",
                   label=f"recommended {result['recommended_threshold']:g}")
        if current is not None:
            ax.axvline(current, color="tab:red", ls=":", label=f"current {current:g}")
        ax.axvline(accuracy, color="black", lw=0.6, alpha=0.5, label=f"accuracy {accuracy:.3f}")
        ax.set_xlabel("threshold")
        ax.grid(alpha=0.3)
    ax_ff.legend(fontsize=8, loc="upper left")
    fig.suptitle(f"{questions} questions, reference accuracy {accuracy:.4f}", fontsize=10)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- slider


def _explorer_html(accuracy: float, questions: int, value: float) -> str:
    ff = calibration.false_failure_probability(accuracy, questions, value)
    drop = calibration.detectable_drop(value, questions, accuracy)
    drop_text = "never fails (check off)" if not np.isfinite(drop) else f"{drop:.4f}"
    return (f"<table><tr><td>margin</td><td><b>{accuracy - value:+.4f}</b></td></tr>"
            f"<tr><td>false-failure probability (per run)</td><td><b>{ff:.3g}</b></td></tr>"
            f"<tr><td>detectable drop (90% power)</td><td><b>{drop_text}</b></td></tr></table>")


def threshold_explorer(result: dict[str, Any], threshold: float | None = None) -> Any:
    """A FloatSlider over the threshold updating margin / false-failure / detectable drop live.

    Built from observe() callbacks, not a blocking loop: under papermill it renders once with
    the starting value (shown as static text too, for the HTML report).
    """
    import ipywidgets as widgets

    accuracy, questions = result["accuracy"], result["questions"]
    start = current_threshold(result, threshold)
    start = result["recommended_threshold"] if start is None else start
    slider = widgets.FloatSlider(value=start, min=0.0, max=1.0, step=0.001, readout_format=".3f",
                                 description="threshold", continuous_update=True,
                                 layout=widgets.Layout(width="600px"))
    readout = widgets.HTML(_explorer_html(accuracy, questions, start))

    def update(change: dict[str, Any]) -> None:
        readout.value = _explorer_html(accuracy, questions, float(change["new"]))

    slider.observe(update, names="value")
    return widgets.VBox([slider, readout])
