"""The checks against a recorded baseline (`baseline` key), registered for correctness runs.

Acceptance length, and the acceptance rate of each draft position, must reach (1 - `baseline_rtol`) x
the baseline's, as vLLM's acceptance-length tests hold theirs (rtol 0.05). Accuracy must not be
significantly below the baseline's: a one-sided two-proportion z-test at `baseline_alpha` over both
question counts, as TensorRT-LLM derives its accuracy thresholds from a hypothesis test and the number
of samples rather than a fixed margin; the message gives the drop that test would catch. Without a
baseline each check is skipped, never passed. They read the summary only (`RunSummary.baseline`).
"""

from __future__ import annotations

import math


from workbench.core.checks import register_check
from workbench.correctness import checks as _run_checks_register_first  # noqa: F401  (a stable order in reports)
from workbench.records import Check, RunSummary

DETECTION_POWER = 0.8
"""The power at which the accuracy message quotes the detectable drop (TensorRT-LLM: beta 0.2)."""


def accuracy_drop_pvalue(correct: int, questions: int, baseline_correct: int, baseline_questions: int) -> float:
    """p-value of the one-sided two-proportion z-test whose alternative is "this run's accuracy is below the
    baseline's". Two accuracies of 0 (or of 1) have no spread to test: nothing speaks for a drop, p = 1."""
    pooled = (correct + baseline_correct) / (questions + baseline_questions)
    if pooled in (0.0, 1.0):
        return 1.0
    from statsmodels.stats.proportion import proportions_ztest  # imported when used: seconds

    _, pvalue = proportions_ztest([correct, baseline_correct], [questions, baseline_questions],
                                  alternative="smaller")
    return float(pvalue)


def detectable_accuracy_drop(baseline_accuracy: float, questions: int, baseline_questions: int, alpha: float,
                             power: float = DETECTION_POWER) -> float | None:
    """The smallest drop below `baseline_accuracy` that the test catches with `power` at `alpha`, from the
    effect size (Cohen's h, statsmodels' NormalIndPower) these question counts resolve; None when not even a
    drop to accuracy 0 is caught that often."""
    from statsmodels.stats.power import NormalIndPower  # imported when used: seconds

    effect = NormalIndPower().solve_power(effect_size=None, nobs1=questions, alpha=alpha, power=power,
                                          ratio=baseline_questions / questions, alternative="larger")
    angle = math.asin(math.sqrt(baseline_accuracy)) - effect / 2
    if angle < 0:
        return None
    return baseline_accuracy - math.sin(angle) ** 2


def _not_applicable(name: str, summary: RunSummary) -> Check | None:
    """Skipped without a baseline; failed if the case named one the summary does not carry."""
    if summary.baseline is not None:
        return None
    named = summary.params.baseline if summary.params else None
    if named:
        return Check(name=name, status="failed", message=f"baseline {named} set, but not recorded in the summary")
    return Check(name=name, status="skipped", message="no baseline set (params key baseline, or --baseline FILE)")


def _source(summary: RunSummary) -> str:
    """Which baseline judged the run, and a warning when it was recorded with another vLLM."""
    baseline = summary.baseline
    text = f"baseline {baseline.path} (from {baseline.source_run}, {baseline.date[:10]})"
    measured_with = summary.versions.vllm
    if baseline.vllm and measured_with and baseline.vllm != measured_with:
        text += f"; WARNING: recorded with vLLM {baseline.vllm}, this run used vLLM {measured_with}"
    return text


def _rtol(summary: RunSummary) -> float:
    return summary.params.baseline_rtol if summary.params else 0.05


def _at_least_share(value: float | None, expected: float, rtol: float) -> tuple[bool, float]:
    required = (1.0 - rtol) * expected
    return value is not None and value >= required, required


@register_check("acceptance_length_vs_baseline", kinds=("correctness",))
def acceptance_length_vs_baseline(summary: RunSummary) -> Check:
    """Acceptance length >= (1 - baseline_rtol) x the baseline's."""
    name = "acceptance_length_vs_baseline"
    if (skipped := _not_applicable(name, summary)) is not None:
        return skipped
    observed = summary.speculative.acceptance_length if summary.speculative else None
    expected, rtol = summary.baseline.acceptance_length, _rtol(summary)
    ok, required = _at_least_share(observed, expected, rtol)
    measured = "not measured" if observed is None else f"{observed:.4f} {'>=' if ok else '<'} {required:.4f} required"
    return Check(name=name, status="passed" if ok else "failed", observed=observed, required=required,
                 message=f"acceptance length {measured}: expected {expected:.4f}, tolerance rtol {rtol:g}; "
                         f"{_source(summary)}")


@register_check("acceptance_per_position_vs_baseline", kinds=("correctness",))
def acceptance_per_position_vs_baseline(summary: RunSummary) -> Check:
    """Each draft position's acceptance rate >= (1 - baseline_rtol) x the baseline's at that position."""
    name = "acceptance_per_position_vs_baseline"
    if (skipped := _not_applicable(name, summary)) is not None:
        return skipped
    measured = summary.speculative.acceptance_rate_per_position if summary.speculative else []
    expected, rtol = summary.baseline.acceptance_rate_per_position, _rtol(summary)
    if not expected or len(measured) != len(expected):
        return Check(name=name, status="failed", observed=None, required=None,
                     message=f"acceptance per position: measured {len(measured)} positions, the baseline has "
                             f"{len(expected)}; {_source(summary)}")
    positions = [(position, value, *_at_least_share(value, base, rtol), base)
                 for position, (value, base) in enumerate(zip(measured, expected), start=1)]
    ok = all(passed for _, _, passed, _, _ in positions)
    worst = min(positions, key=lambda p: p[1] - p[3])  # the smallest margin over its requirement
    detail = "; ".join(f"position {position} {value:.4f} {'>=' if passed else '<'} {required:.4f} required "
                       f"(expected {base:.4f})" for position, value, passed, required, base in positions)
    return Check(name=name, status="passed" if ok else "failed", observed=worst[1], required=worst[3],
                 message=f"acceptance rate per position: {detail}; tolerance rtol {rtol:g}; {_source(summary)}")


@register_check("accuracy_vs_baseline", kinds=("correctness",))
def accuracy_vs_baseline(summary: RunSummary) -> Check:
    """The speculative run's primary-scorer accuracy is not significantly below the baseline's (one-sided
    two-proportion z-test at baseline_alpha); observed is the p-value, required the alpha."""
    name = "accuracy_vs_baseline"
    if (skipped := _not_applicable(name, summary)) is not None:
        return skipped
    scorer, questions = summary.primary_scorer, summary.num_questions
    alpha = summary.params.baseline_alpha if summary.params else 0.05
    baseline = summary.baseline.accuracy.get(scorer)
    measured = summary.speculative.accuracy.get(scorer) if summary.speculative else None
    if baseline is None or measured is None or not questions:
        return Check(name=name, status="failed", observed=None, required=alpha,
                     message=f"accuracy ({scorer}): not measured, or the baseline has none; {_source(summary)}")
    correct = round(measured * questions)
    pvalue = accuracy_drop_pvalue(correct, questions, baseline.correct, baseline.questions)
    drop = detectable_accuracy_drop(baseline.accuracy, questions, baseline.questions, alpha)
    ok = pvalue >= alpha
    verdict = "not significantly below" if ok else "significantly below"
    detectable = (f"detectable drop at these counts {drop:.4f} (power {DETECTION_POWER:g})" if drop is not None
                  else f"not even a drop to 0 is detected with power {DETECTION_POWER:g} at these counts")
    return Check(name=name, status="passed" if ok else "failed", observed=pvalue, required=alpha,
                 message=f"speculative accuracy ({scorer}) {measured:.4f} ({correct}/{questions}) vs baseline "
                         f"{baseline.accuracy:.4f} ({baseline.correct}/{baseline.questions}): {verdict} "
                         f"(one-sided two-proportion z-test p = {pvalue:.3g} {'>=' if ok else '<'} alpha {alpha:g}); "
                         f"{detectable}; {_source(summary)}")
