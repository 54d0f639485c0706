"""Statistics to choose and defend the GSM8k threshold (issue 4).

Upstream picked 0.20 by hand for a reference accuracy of ~0.348 on 1319 questions; nobody
could say how likely 0.20 is to fail a healthy build, nor how large a regression it misses.
Every function here answers one of those questions with plain data in and out.

Model and its assumptions (read before trusting a number):

* The GSM8k check fails when a run's measured accuracy is *strictly* below the threshold,
  i.e. when its correct count k satisfies k < threshold * questions (`checks.py`).
* The number of correct answers of a build with true accuracy p is Binomial(questions, p):
  every question an independent draw. That is the sampling spread of a fresh question set.
  On the fixed GSM8k set with greedy decoding, a healthy build's run-to-run spread is usually
  *smaller* (only numerically fragile questions flip), so binomial false-failure
  probabilities err on the pessimistic side; `run_to_run_spread` measures the real spread.
* A threshold acts through its failing set {k < ceil(threshold*questions)}: all thresholds in
  ((K-1)/n, K/n] are the same test. Thresholds are read as the decimal a person wrote
  (0.2 means 1/5 exactly), so binary floating point never moves a count across the boundary.
* The check is applied to the reference *and* the speculative run; the probability that
  either fails a healthy build is at most twice the per-run value (union bound).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from datetime import date
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint

from workbench.core.errors import CalibrationError, RecordError
from workbench.records import load_summary

DEFAULT_POWER = 0.9
GSM8K_TEST_SIZE = 1319
HUMAN_DIGITS = 3  # recommended thresholds are written with at most 3 decimals


# --------------------------------------------------------------------------- helpers


def _fraction(value: float) -> Fraction:
    """The decimal a person wrote (shortest repr), exactly: 0.2 -> 1/5, not 0.2000000000000000111."""
    return Fraction(repr(float(value)))


def _failing_counts(threshold: float, questions: int) -> int:
    """K such that the check fails exactly when the correct count k < K (clipped to 0..n+1)."""
    bound = _fraction(threshold) * questions
    return max(0, min(questions + 1, math.ceil(bound)))


def _fail_prob_count(k_fail: int, questions: int, accuracy: float) -> float:
    """P(correct count < k_fail) under Binomial(questions, accuracy)."""
    if k_fail <= 0:
        return 0.0
    if k_fail > questions:
        return 1.0
    return float(stats.binom.cdf(k_fail - 1, questions, accuracy))


def _largest_safe_count(accuracy: float, questions: int, max_false_failure: float) -> int:
    """Largest K with P(k < K) <= max_false_failure (0 when even K=1 is too risky)."""
    k = int(stats.binom.ppf(max_false_failure, questions, accuracy))  # smallest k with cdf(k) >= alpha
    k = max(-1, min(k, questions))
    while k >= 0 and stats.binom.cdf(k, questions, accuracy) > max_false_failure:
        k -= 1
    while k + 1 <= questions and stats.binom.cdf(k + 1, questions, accuracy) <= max_false_failure:
        k += 1
    return k + 1


def _roundest_in(low_exclusive: Fraction, high_inclusive: Fraction, max_digits: int = 12) -> float | None:
    """The decimal with fewest digits (<= max_digits) in (low, high], floored from high; None if none."""
    for digits in range(0, max_digits + 1):
        scale = 10**digits
        candidate = Fraction(math.floor(high_inclusive * scale), scale)
        if candidate > low_exclusive:
            return float(candidate)
    return None


def _threshold_for_count(k_fail: int, questions: int, max_digits: int | None = HUMAN_DIGITS) -> float:
    """A readable threshold for the test {k < k_fail}, never above the exact bound k_fail/n.

    Preferred: the roundest decimal in ((k_fail-1)/n, k_fail/n] — every value there fails exactly
    the same counts, so false-failure probability and power are unchanged. When that interval
    holds no decimal of <= max_digits digits (possible once n > 10**max_digits), the bound is
    floored to max_digits decimals: a slightly lower threshold, so a slightly smaller
    false-failure probability and a slightly larger detectable drop. max_digits=None keeps the
    test exactly.
    """
    if k_fail <= 0:
        return 0.0
    low, high = Fraction(k_fail - 1, questions), Fraction(k_fail, questions)
    exact = _roundest_in(low, high, 12 if max_digits is None else max_digits)
    if exact is not None:
        return exact
    if max_digits is None:
        return float(high)
    scale = 10**max_digits
    return float(Fraction(math.floor(high * scale), scale))


def _finite_or_none(value: float) -> float | None:
    """JSON has no inf/nan: an impossible quantity is reported as null."""
    return float(value) if value is not None and math.isfinite(value) else None


def _check_accuracy(accuracy: float, questions: int) -> None:
    if not 0.0 <= accuracy <= 1.0:
        raise CalibrationError(f"accuracy must lie in [0, 1], got {accuracy}")
    if int(questions) != questions or questions < 1:
        raise CalibrationError(f"questions must be a positive integer, got {questions}")


# --------------------------------------------------------------------------- basic statistics


def accuracy_interval(correct: int, total: int, alpha: float = 0.05, method: str = "wilson") -> tuple[float, float]:
    """Two-sided 1-alpha interval for an accuracy: how far the measured value may sit from the true one.

    `wilson` (default) has near-nominal coverage at n in the hundreds; `beta` is Clopper-Pearson
    (exact, conservative).
    """
    if method not in ("wilson", "beta"):
        raise CalibrationError(f"method must be 'wilson' or 'beta', got {method!r}")
    if total < 1 or not 0 <= correct <= total:
        raise CalibrationError(f"need 0 <= correct <= total and total >= 1, got {correct}/{total}")
    low, high = proportion_confint(correct, total, alpha=alpha, method=method)
    return float(low), float(high)


def run_to_run_spread(accuracies: list[float]) -> dict[str, Any]:
    """Spread of repeated reference runs: the healthy noise any threshold must sit clear of."""
    values = np.asarray(list(accuracies), dtype=float)
    if values.size == 0:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None}
    return {
        "n": int(values.size),
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)) if values.size > 1 else None,  # sample std; undefined for one run
        "min": float(values.min()),
        "max": float(values.max()),
    }


@dataclass
class PairedComparison:
    """Reference vs speculative on the same questions: only the discordant pairs carry evidence."""

    table: list[list[int]]  # [[both correct, reference only], [speculative only, both wrong]]
    both_correct: int
    reference_only: int  # b: reference correct, speculative wrong
    speculative_only: int  # c: speculative correct, reference wrong
    both_wrong: int
    questions: int
    reference_accuracy: float
    speculative_accuracy: float
    difference: float  # speculative - reference
    mcnemar_pvalue: float
    reference_only_indices: list[int]
    speculative_only_indices: list[int]
    disagreeing_indices: list[int]


def paired_comparison(ref_correct: list[bool], spec_correct: list[bool]) -> dict[str, Any]:
    """McNemar exact test on the 2x2 table: is the speculative run's accuracy different from reference's?

    Paired, because both runs answer the same questions; an unpaired two-proportion test would
    throw away that pairing and be far less sensitive.
    """
    ref = np.asarray(list(ref_correct), dtype=bool)
    spec = np.asarray(list(spec_correct), dtype=bool)
    if ref.shape != spec.shape:
        raise CalibrationError(f"reference has {ref.size} answers, speculative {spec.size}: not paired")
    if ref.size == 0:
        raise CalibrationError("no questions to compare")
    a = int(np.sum(ref & spec))
    b = int(np.sum(ref & ~spec))
    c = int(np.sum(~ref & spec))
    d = int(np.sum(~ref & ~spec))
    table = [[a, b], [c, d]]
    pvalue = 1.0 if b + c == 0 else float(mcnemar(np.array(table), exact=True).pvalue)
    ref_only = [int(i) for i in np.flatnonzero(ref & ~spec)]
    spec_only = [int(i) for i in np.flatnonzero(~ref & spec)]
    result = PairedComparison(
        table=table, both_correct=a, reference_only=b, speculative_only=c, both_wrong=d,
        questions=int(ref.size), reference_accuracy=float(ref.mean()), speculative_accuracy=float(spec.mean()),
        difference=float(spec.mean() - ref.mean()), mcnemar_pvalue=min(1.0, pvalue),
        reference_only_indices=ref_only, speculative_only_indices=spec_only,
        disagreeing_indices=sorted(ref_only + spec_only))
    return asdict(result)


# --------------------------------------------------------------------------- threshold statistics


def false_failure_probability(accuracy: float, questions: int, threshold: float) -> float:
    """P(a healthy build with true accuracy `accuracy` measures strictly below `threshold`).

    Binomial CDF at the largest failing count; the failing set is computed exactly (see module doc).
    """
    _check_accuracy(accuracy, questions)
    return _fail_prob_count(_failing_counts(threshold, questions), questions, accuracy)


def detectable_drop(threshold: float, questions: int, baseline_accuracy: float, power: float = DEFAULT_POWER) -> float:
    """Smallest drop d in true accuracy that the threshold catches with probability >= power.

    Solves P(fail | baseline - d) = power with brentq (the binomial CDF is continuous and
    decreasing in p). Returns 0.0 when even the healthy build fails that often, and inf when the
    threshold cannot fail at all (threshold 0: the check is switched off).
    """
    _check_accuracy(baseline_accuracy, questions)
    k_fail = _failing_counts(threshold, questions)
    if k_fail <= 0:
        return math.inf
    if k_fail > questions or _fail_prob_count(k_fail, questions, baseline_accuracy) >= power:
        return 0.0
    # at p = 0 the count is 0 < k_fail: failure is certain, so the root lies in (0, baseline)
    p_star = optimize.brentq(lambda p: _fail_prob_count(k_fail, questions, p) - power, 0.0, baseline_accuracy,
                             xtol=1e-12, rtol=1e-12)
    return float(baseline_accuracy - p_star)


def recommend_threshold(accuracy: float, questions: int, max_false_failure: float = 1e-3) -> float:
    """Highest threshold whose false-failure probability stays <= max_false_failure.

    Searched over the attainable tests {k < K}; the exact bound K/n is then written as a
    decimal of at most 3 digits, never above the bound: the roundest value that is still the same
    test when one exists, else K/n floored to 3 decimals (on 1319 questions that costs at most
    two counts of sensitivity, and only lowers the false-failure probability).
    Returns 0.0 (check off) when no threshold is safe enough.
    """
    _check_accuracy(accuracy, questions)
    if not 0.0 < max_false_failure < 1.0:
        raise CalibrationError(f"max_false_failure must lie in (0, 1), got {max_false_failure}")
    return _threshold_for_count(_largest_safe_count(accuracy, questions, max_false_failure), questions)


def questions_needed(baseline_accuracy: float, min_drop: float, false_failure: float = 1e-3,
                     miss_rate: float = 0.1) -> dict[str, Any]:
    """Fewest questions that separate `baseline` from `baseline - min_drop` at both error rates.

    TensorRT-LLM accuracy-suite style: fix the smallest regression worth catching, the allowed
    false-failure rate (healthy build fails) and miss rate (regressed build passes); the
    normal approximation brackets n, then every n up to the bracket is checked exactly with
    the binomial (n is not monotone under discreteness, so the scan starts at 1).
    """
    _check_accuracy(baseline_accuracy, 1)
    bad = baseline_accuracy - min_drop
    if not 0.0 < min_drop <= baseline_accuracy:
        raise CalibrationError(f"min_drop must lie in (0, baseline_accuracy], got {min_drop}")
    if not (0.0 < false_failure < 1.0 and 0.0 < miss_rate < 1.0):
        raise CalibrationError("false_failure and miss_rate must lie in (0, 1)")
    z_a, z_b = stats.norm.isf(false_failure), stats.norm.isf(miss_rate)
    root = z_a * math.sqrt(baseline_accuracy * (1 - baseline_accuracy)) + z_b * math.sqrt(bad * (1 - bad))
    n_normal = max(1, math.ceil((root / min_drop) ** 2))
    upper = max(50, 2 * n_normal)
    while True:
        ns = np.arange(1, upper + 1)
        # largest safe failing count K per n: cdf(K-1; n, p0) <= false_failure
        k = stats.binom.ppf(false_failure, ns, baseline_accuracy).astype(np.int64)
        k = np.where(stats.binom.cdf(k, ns, baseline_accuracy) <= false_failure, k, k - 1)
        k = np.where(stats.binom.cdf(k + 1, ns, baseline_accuracy) <= false_failure, k + 1, k)  # float-edge
        power = np.where(k >= 0, stats.binom.cdf(k, ns, bad), 0.0)
        ok = np.flatnonzero((k >= 0) & (power >= 1 - miss_rate))
        if ok.size:
            break
        upper *= 2
        if upper > 10_000_000:
            raise CalibrationError("no question count up to 10M separates these accuracies")
    n = int(ns[ok[0]])
    k_fail = _largest_safe_count(baseline_accuracy, n, false_failure)
    threshold = _threshold_for_count(k_fail, n, max_digits=None)  # the exact test, however many digits
    return {
        "questions": n,
        "threshold": threshold,
        "normal_approximation": n_normal,
        "false_failure_probability": false_failure_probability(baseline_accuracy, n, threshold),
        "miss_probability": 1.0 - _fail_prob_count(k_fail, n, bad),
        "baseline_accuracy": baseline_accuracy,
        "min_drop": min_drop,
        "max_false_failure": false_failure,
        "max_miss_rate": miss_rate,
        "fits_gsm8k": n <= GSM8K_TEST_SIZE,
    }


def questions_needed_table(baseline_accuracy: float, drops: list[float] = (0.02, 0.03, 0.05, 0.10),
                           false_failures: list[float] = (1e-2, 1e-3, 1e-4), miss_rate: float = 0.1) -> pd.DataFrame:
    """questions_needed over a grid, for the notebook's table."""
    rows = [questions_needed(baseline_accuracy, d, f, miss_rate)
            for d in drops if d <= baseline_accuracy for f in false_failures]
    columns = ["min_drop", "max_false_failure", "max_miss_rate", "questions", "threshold",
               "false_failure_probability", "miss_probability", "normal_approximation", "fits_gsm8k"]
    return pd.DataFrame(rows, columns=columns)


def threshold_curves(accuracy: float, questions: int, thresholds: np.ndarray,
                     power: float = DEFAULT_POWER) -> pd.DataFrame:
    """False-failure probability and detectable drop across thresholds (the notebook's curves)."""
    values = np.asarray(thresholds, dtype=float)
    return pd.DataFrame({
        "threshold": values,
        "false_failure_probability": [false_failure_probability(accuracy, questions, t) for t in values],
        "detectable_drop": [detectable_drop(t, questions, accuracy, power) for t in values],
    })


# --------------------------------------------------------------------------- acceptance length


def acceptance_length_gate(samples: list[float], max_false_failure: float = 1e-3,
                           power: float = DEFAULT_POWER) -> dict[str, Any]:
    """A lower gate for `min_acceptance_length`, calibrated from repeated speculative runs.

    Assumes the runs are independent draws from one normal distribution (same model, hardware,
    prompts and settings). The gate is the one-sided t prediction bound for a *new* run,
    mean - t(1-alpha, n-1) * std * sqrt(1 + 1/n), so a healthy next run falls below it with
    probability alpha = max_false_failure even though mean and std are estimated. `gate_normal`
    (mean - z*std) is shown for comparison; it ignores estimation error and is too tight for few
    runs. `detectable_drop` is the fall in mean acceptance length that one run would catch with
    probability `power` (treating std as known). With identical runs (std 0) every drop trips
    the gate: use a relative tolerance instead.
    """
    values = [float(v) for v in samples if v is not None and math.isfinite(float(v))]
    n = len(values)
    base: dict[str, Any] = {"n": n, "max_false_failure": max_false_failure, "power": power,
                            "assumptions": "independent runs, normally distributed acceptance length, same setup"}
    if n < 2:
        base.update(status="insufficient runs", gate=None, gate_normal=None, gate_rounded=None, mean=(
            values[0] if values else None), std=None, detectable_drop=None,
                    message=f"need at least 2 speculative runs to estimate a spread, got {n}")
        return base
    mean, std = float(np.mean(values)), float(np.std(values, ddof=1))
    t = float(stats.t.isf(max_false_failure, n - 1))
    z = float(stats.norm.isf(max_false_failure))
    z_power = float(stats.norm.ppf(power))
    gate = mean - t * std * math.sqrt(1 + 1 / n)
    base.update(status="ok", mean=mean, std=std, min=min(values), max=max(values), t=t, z=z, gate=gate,
                gate_normal=mean - z * std, gate_rounded=math.floor(gate * 100) / 100,
                detectable_drop=mean - gate + z_power * std,
                message="identical runs: any drop trips this gate" if std == 0 else "")
    return base


# --------------------------------------------------------------------------- output match


def _match_failures(match: dict[str, Any], mode: str) -> int:
    """Prompts that count against the output-match check in `mode` (older summaries: exact only)."""
    if mode == "exact":
        return int(match["total"] - match["matched"])
    divergences = match.get("divergences")
    if divergences is None:
        raise CalibrationError("tie_aware needs near-tie classification (output_match.divergences), absent here")
    return int(divergences["total"])


def output_match_false_failure(matches: list[dict[str, Any]], required_share: float = 0.8,
                               confidence: float = 0.95) -> dict[str, Any]:
    """How often a healthy build fails the output-match check, estimated from repeated runs.

    Per mode, the prompts that count against the check (exact: every mismatch; tie_aware: the
    divergences) are pooled over runs into a per-prompt rate p, with its one-sided Clopper-Pearson
    upper bound. A run of n prompts fails when more than n - required do, required = int(share x n) + 1
    (upstream's rule), so P(fail) = P(Binomial(n, p) > n - required). Prompts are treated as
    independent; mismatches that repeat across identical prompts make the real tail heavier, so the
    per-run counts and the runs that failed are reported beside it.
    """
    if not matches:
        raise CalibrationError("no runs with an output match to calibrate from")
    totals = {int(m["total"]) for m in matches}
    if len(totals) != 1 or 0 in totals:
        raise CalibrationError(f"runs compared different numbers of output-match prompts: {sorted(totals)}")
    n = totals.pop()
    needed = min(n, int(required_share * n) + 1)
    allowed = n - needed
    out: dict[str, Any] = {"runs": len(matches), "prompts_per_run": n, "required_matches": needed,
                           "required_share": required_share, "confidence": confidence,
                           "model": "binomial(prompts, p) of failing prompts, p pooled over runs; "
                                    "fails when more than prompts - required fail"}
    for mode in ("exact", "tie_aware"):
        try:
            failures = [_match_failures(m, mode) for m in matches]
        except CalibrationError as exc:
            out[mode] = {"status": "unavailable", "message": str(exc)}
            continue
        pooled, prompts = sum(failures), n * len(matches)
        rate = pooled / prompts
        upper = float(stats.beta.ppf(confidence, pooled + 1, prompts - pooled)) if pooled < prompts else 1.0
        out[mode] = {
            "status": "ok", "failing_prompts_per_run": failures, "failure_rate": rate,
            "failure_rate_upper": upper, "runs_failed": sum(f > allowed for f in failures),
            "false_failure_probability": float(stats.binom.sf(allowed, n, rate)),
            "false_failure_probability_upper": float(stats.binom.sf(allowed, n, upper)),
        }
    return out


def _share_allowing(failures_allowed: int, n: int) -> float:
    """The largest `required_match_share` (in hundredths) whose upstream count int(share x n) + 1
    leaves `failures_allowed` failing prompts, i.e. requires n - failures_allowed matches."""
    needed = n - failures_allowed
    if needed <= 1:
        return 0.0
    return math.floor(100 * (needed - 1) / n) / 100  # int(share x n) + 1 <= needed, in round hundredths


def recommend_match_share(failing: int, prompts: int, n: int, max_false_failure: float = 1e-3,
                          confidence: float = 0.95) -> dict[str, Any]:
    """The strictest output-match share a healthy build passes with P(fail) <= max_false_failure, given
    `failing` of `prompts` control prompts (reference vs reference) that differed.

    The control measures the engine's own noise, which any speculative run carries too: a share
    stricter than this fails healthy builds. The per-prompt rate is taken at its one-sided
    Clopper-Pearson upper bound (few runs make a small, uncertain count).
    """
    rate = failing / prompts if prompts else 0.0
    upper = float(stats.beta.ppf(confidence, failing + 1, prompts - failing)) if failing < prompts else 1.0
    allowed = next(a for a in range(n + 1) if stats.binom.sf(a, n, upper) <= max_false_failure or a == n)
    share = _share_allowing(allowed, n)
    return {"prompts_per_run": n, "control_failing": failing, "control_prompts": prompts,
            "noise_rate": rate, "noise_rate_upper": upper, "failures_allowed": allowed,
            "recommended_share": share, "required_matches": min(n, int(share * n) + 1) if n else 0,
            "false_failure_probability": float(stats.binom.sf(n - (min(n, int(share * n) + 1)), n, upper))}


def output_match_share_from_control(matches: list[dict[str, Any]], max_false_failure: float = 1e-3,
                                    confidence: float = 0.95) -> dict[str, Any] | None:
    """Recommended `required_match_share` overall and `required_match_share_by_kind`, from the runs' controls
    (identical texts, as upstream's rule counts them). None when no run measured a control."""
    controls = [m["control"] for m in matches if m.get("control")]
    if not controls:
        return None

    def pooled(tallies: list[dict[str, Any]]) -> dict[str, Any]:
        failing = sum(int(t["total"] - t["matched"]) for t in tallies)
        prompts = sum(int(t["total"]) for t in tallies)
        return recommend_match_share(failing, prompts, int(tallies[0]["total"]), max_false_failure, confidence)
    kinds = sorted({k for c in controls for k in c.get("by_kind", {})})
    return {"runs": len(controls), "max_false_failure": max_false_failure, "confidence": confidence,
            "overall": pooled(controls),
            "by_kind": {k: pooled([c["by_kind"][k] for c in controls if k in c.get("by_kind", {})]) for k in kinds},
            "model": "control mismatches (reference vs reference, other batching) pooled over runs, rate at its "
                     "one-sided upper bound; a healthy run fails when more than n - required prompts differ"}


# --------------------------------------------------------------------------- positive controls


def detection_from_controls(controls_path: Path) -> list[dict[str, Any]]:
    """Per injected run of a `workbench controls` folder: what the binomial model says each check catches at
    the effect the injection had, beside what the checks measured (caught or missed).

    Computed power is taken at the observed effect, as if it were the true one: the accuracy check at the
    injected run's accuracy (P(correct < threshold x n)), the output-match check at its judged match rate
    (P(matches < required)). A measured miss where the computed power is high says the model is off; a
    computed power near 0.5 says the catch was luck.
    """
    from workbench.records import ControlsSummary

    path = Path(controls_path)
    if path.is_dir():
        path = path / "controls.json"
    if not path.is_file():
        raise CalibrationError(f"controls: {path} not found (a `workbench controls` folder or its controls.json)")
    controls = ControlsSummary.model_validate_json(path.read_text(encoding="utf-8"))
    rows = []
    for outcome in controls.injections:
        row: dict[str, Any] = {"injection": outcome.name, "workload": outcome.workload, "rate": outcome.rate,
                               "measured": "caught by " + ", ".join(outcome.caught_by) if outcome.caught
                               else ("MISSED" if outcome.status == "passed" else outcome.status or "error")}
        try:
            summary = load_summary(Path(outcome.run_dir))
        except Exception:
            rows.append(row)
            continue
        n, threshold = summary.num_questions or 0, summary.threshold or 0.0
        spec_acc = outcome.speculative_accuracy
        row["speculative_accuracy"] = spec_acc
        row["accuracy_check_power"] = (false_failure_probability(spec_acc, n, threshold)
                                       if threshold > 0 and spec_acc is not None and n else None)
        match = summary.output_match
        if match is not None and match.total:
            judged = match.judged_matched if match.judged_matched is not None else match.matched
            needed = match.required_matches or min(match.total, int(match.required_share * match.total) + 1)
            row["output_match_judged_share"] = judged / match.total
            row["output_match_check_power"] = float(stats.binom.cdf(needed - 1, match.total, judged / match.total))
        gate = summary.params.min_acceptance_length if summary.params else None
        row["acceptance_length"] = outcome.acceptance_length
        row["acceptance_gate"] = gate
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- calibrate


def calibrate(accuracy: float, questions: int, threshold: float | None = None,
              max_false_failure: float = 1e-3, power: float = DEFAULT_POWER) -> dict[str, Any]:
    """Everything needed to choose or defend a threshold from a reference accuracy and a question count.

    `false_failure_probability` and `detectable_drop` describe `threshold_evaluated`: the named
    threshold if one is given, else the recommended one; the recommended threshold's own
    numbers are always under `recommended`.
    """
    _check_accuracy(accuracy, questions)
    questions = int(questions)
    recommended = recommend_threshold(accuracy, questions, max_false_failure)
    exact_bound = _largest_safe_count(accuracy, questions, max_false_failure) / questions
    evaluated = recommended if threshold is None else float(threshold)
    ff = false_failure_probability(accuracy, questions, evaluated)
    correct = int(round(accuracy * questions))
    low, high = accuracy_interval(correct, questions)
    # the measured accuracy is itself uncertain: the recommendation if the truth sits at the interval's low end
    rec_low = recommend_threshold(low, questions, max_false_failure)
    return {
        "accuracy": float(accuracy),
        "questions": questions,
        "accuracy_interval": [low, high],
        "max_false_failure": float(max_false_failure),
        "power": float(power),
        "recommended_threshold": recommended,
        "recommended_threshold_exact": exact_bound,
        "threshold_evaluated": evaluated,
        "margin": float(accuracy) - evaluated,
        "false_failure_probability": ff,
        "false_failure_probability_either_run": min(1.0, 2 * ff),
        "detectable_drop": _finite_or_none(detectable_drop(evaluated, questions, accuracy, power)),
        "failing_counts_below": _failing_counts(evaluated, questions),
        "recommended": {
            "threshold": recommended,
            "false_failure_probability": false_failure_probability(accuracy, questions, recommended),
            "detectable_drop": _finite_or_none(detectable_drop(recommended, questions, accuracy, power)),
        },
        "recommended_threshold_at_interval_low": rec_low,
        "model": "binomial(questions, accuracy); fails when correct < threshold * questions",
    }


# --------------------------------------------------------------------------- run folders


def _as_bool(series: pd.Series, where: str) -> list[bool]:
    mapping = {True: True, False: False, "True": True, "False": False, "true": True, "false": False,
               1: True, 0: False, "1": True, "0": False}
    out = []
    for value in series.tolist():
        if value not in mapping:
            raise CalibrationError(f"{where}: not a boolean: {value!r}")
        out.append(mapping[value])
    return out


def load_runs(run_dirs: list[Path]) -> list[dict[str, Any]]:
    """Finished correctness run folders -> [{run_dir, summary (RunSummary), questions (questions.csv)}].

    summary.json is read through the typed record; a folder of another kind, one that ended in an
    error, or one with an empty questions.csv is refused with its name.
    """
    if not run_dirs:
        raise CalibrationError("no run folders given")
    runs = []
    for raw in run_dirs:
        folder = Path(raw)
        if not folder.is_dir():
            raise CalibrationError(f"run folder not found: {folder}", path=folder)
        questions_path = folder / "questions.csv"
        for path in (folder / "summary.json", questions_path):
            if not path.is_file():
                raise CalibrationError(f"{folder}: missing {path.name} (not a finished run folder?)", path=path)
        try:
            summary = load_summary(folder)
        except RecordError as exc:
            raise CalibrationError(str(exc), path=exc.path, key=exc.key) from exc
        if summary.kind != "correctness":
            raise CalibrationError(f"{folder}: a {summary.kind} run, not a correctness run", path=folder)
        if summary.error:
            raise CalibrationError(f"{folder}: the run ended in an error, its numbers are incomplete: "
                                   f"{summary.error.splitlines()[0]}", path=folder)
        try:
            questions = pd.read_csv(questions_path, keep_default_na=False)
        except pd.errors.EmptyDataError:
            raise CalibrationError(f"{questions_path}: empty", path=questions_path) from None
        runs.append({"run_dir": str(folder), "summary": summary, "questions": questions})
    return runs


def correctness(run: dict[str, Any], label: str, scorer: str) -> list[bool]:
    """One run's per-question correctness for `label` (reference|speculative) under `scorer`."""
    column = f"{label}_correct_{scorer}"
    table = run["questions"]
    if column not in table.columns:
        raise CalibrationError(f"{Path(run['run_dir']) / 'questions.csv'}: no column {column!r} (scorer {scorer!r})")
    return _as_bool(table[column], f"{Path(run['run_dir']) / 'questions.csv'} column {column}")


def calibrate_from_runs(run_dirs: list[Path], scorer: str = "upstream", max_false_failure: float = 1e-3,
                        threshold: float | None = None) -> dict[str, Any]:
    """Pool finished runs: mean reference accuracy, spread, paired comparison, acceptance gate, calibrate(...).

    `threshold` defaults to the recommended one; the first run's own threshold is evaluated
    under `current`.
    """
    runs = load_runs(run_dirs)
    counts = {r["run_dir"]: len(r["questions"]) for r in runs}
    if len(set(counts.values())) != 1:
        raise CalibrationError(f"runs answered different numbers of questions, cannot pool: {counts}")
    questions = next(iter(counts.values()))
    if questions < 1:
        raise CalibrationError(f"{runs[0]['run_dir']}/questions.csv has no rows")
    ref_acc = [float(np.mean(correctness(r, "reference", scorer))) for r in runs]
    spec_acc = [float(np.mean(correctness(r, "speculative", scorer))) for r in runs]
    accuracy = float(np.mean(ref_acc))
    first = runs[0]
    paired = paired_comparison(correctness(first, "reference", scorer), correctness(first, "speculative", scorer))
    lengths = [r["summary"].speculative.acceptance_length if r["summary"].speculative else None for r in runs]
    matches = [r["summary"].output_match.model_dump() for r in runs
               if r["summary"].output_match is not None and r["summary"].output_match.total]
    result = calibrate(accuracy, questions, threshold, max_false_failure)
    current = first["summary"].threshold
    result.update(
        runs=[r["run_dir"] for r in runs],
        scorer=scorer,
        reference_accuracies=ref_acc,
        speculative_accuracies=spec_acc,
        spread=run_to_run_spread(ref_acc),
        speculative_spread=run_to_run_spread(spec_acc),
        paired_comparison=paired,
        acceptance_length=acceptance_length_gate([v for v in lengths if v is not None], max_false_failure),
        output_match=output_match_false_failure(
            matches, float(matches[0].get("required_share", 0.8))) if matches else None,
        output_match_mode=(matches[0].get("mode", "exact") if matches else None),
        output_match_control=output_match_share_from_control(matches, max_false_failure),
        current=None if current is None else {
            "threshold": float(current),
            "margin": min(ref_acc[0], spec_acc[0]) - float(current),
            "false_failure_probability": false_failure_probability(accuracy, questions, float(current)),
            "detectable_drop": _finite_or_none(detectable_drop(float(current), questions, accuracy)),
        },
    )
    return result


def calibrate_inputs(run_dirs: list[str], accuracy: float | None, questions: int | None, threshold: float | None,
                     max_false_failure: float = 1e-3, scorer: str = "upstream",
                     controls: str | None = None) -> dict[str, Any]:
    """The notebook's and CLI's entry: run folders when given, else the what-if numbers; with `controls`
    (a `workbench controls` folder), measured detection beside the computed power."""
    if run_dirs:
        result = calibrate_from_runs([Path(p) for p in run_dirs], scorer, max_false_failure, threshold)
    elif accuracy is None or questions is None:
        raise CalibrationError("give run folders, or both accuracy and questions")
    else:
        result = calibrate(accuracy, questions, threshold, max_false_failure)
    if controls:
        result["controls_detection"] = detection_from_controls(Path(controls))
    return result


def disagreement_table(run: dict[str, Any], scorer: str = "upstream", limit: int | None = None) -> pd.DataFrame:
    """Questions where reference and speculative disagree on correctness, completions side by side."""
    ref, spec = correctness(run, "reference", scorer), correctness(run, "speculative", scorer)
    table = run["questions"]
    rows = [i for i, (r, s) in enumerate(zip(ref, spec)) if r != s]
    columns = [c for c in ("question_id", "question", "reference_answer", "reference_completion",
                           "speculative_completion") if c in table.columns]
    frame = table.iloc[rows][columns].copy()
    frame.insert(0, "correct", ["reference only" if ref[i] else "speculative only" for i in rows])
    return frame if limit is None else frame.head(limit)


# --------------------------------------------------------------------------- writing the threshold


def _provenance(result: dict[str, Any], source: str) -> str:
    ff = result["recommended"]["false_failure_probability"] if "recommended" in result \
        else result["false_failure_probability"]
    line = (f"calibrated from {source} on {date.today().isoformat()}: reference accuracy "
            f"{result['accuracy']:.4f} on {result['questions']} questions, false-failure {ff:.3g}")
    match, mode = result.get("output_match") or {}, result.get("output_match_mode") or "exact"
    if (match.get(mode) or {}).get("status") == "ok":
        estimate = match[mode]
        line += (f"; output match ({mode}, {match['required_matches']} of {match['prompts_per_run']} required) over "
                 f"{match['runs']} runs: failing prompts per run {estimate['failing_prompts_per_run']}, "
                 f"P(false failure) {estimate['false_failure_probability']:.3g} (upper {match['confidence']:.0%}: "
                 f"{estimate['false_failure_probability_upper']:.3g})")
        if mode != "exact" and (match.get("exact") or {}).get("status") == "ok":
            line += (f"; exact mode would fail {match['exact']['runs_failed']} of {match['runs']} runs, "
                     f"P {match['exact']['false_failure_probability']:.3g}")
    return " ".join(line.split())  # one line whatever `source` holds


def yaml_snippet(result: dict[str, Any], source: str) -> str:
    """The params lines to paste: threshold, its provenance, and the acceptance gate if one was calibrated."""
    import yaml

    text = f"threshold: {result['recommended_threshold']}\n"
    text += yaml.safe_dump({"threshold_source": _provenance(result, source)}, width=10**6, allow_unicode=True)
    gate = result.get("acceptance_length") or {}
    if gate.get("status") == "ok" and gate.get("gate_rounded") and gate["gate_rounded"] >= 1.0:
        text += f"# min_acceptance_length: {gate['gate_rounded']}  # from {gate['n']} runs, see calibration.json\n"
    control = result.get("output_match_control")
    if control:
        by_kind = {k: v["recommended_share"] for k, v in control["by_kind"].items()}
        text += (f"# required_match_share: {control['overall']['recommended_share']}  # the engine's own noise "
                 f"allows it (control of {control['runs']} run(s)); by kind: {by_kind}\n")
    return text


_TOP_THRESHOLD = re.compile(r"^threshold\s*:(?P<value>[^#\n]*?)(?P<comment>\s+#.*)?$")
_TOP_SOURCE = re.compile(r"^threshold_source\s*:")


def write_threshold(params_path: Path, result: dict[str, Any], source: str) -> None:
    """Set the top-level `threshold:` of a params YAML to the recommendation and record `threshold_source:`.

    Line-based, so comments and key order survive; an existing `threshold_source:` line is
    replaced, else one is inserted right after `threshold:`.
    """
    import yaml

    path = Path(params_path)
    if not path.is_file():
        raise CalibrationError(f"params file not found: {path}")
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    index = next((i for i, line in enumerate(lines) if _TOP_THRESHOLD.match(line.rstrip("\r\n"))), None)
    if index is None:
        raise CalibrationError(f"{path}: no top-level 'threshold:' key to update")
    ending = "\n" if not lines[index].endswith(("\n", "\r\n")) else lines[index][len(lines[index].rstrip("\r\n")):]
    match = _TOP_THRESHOLD.match(lines[index].rstrip("\r\n"))
    comment = match.group("comment") or ""
    lines[index] = f"threshold: {result['recommended_threshold']}{comment}{ending}"
    source_line = yaml.safe_dump({"threshold_source": _provenance(result, source)}, width=10**6,
                                 allow_unicode=True).rstrip("\n") + ending
    existing = next((i for i, line in enumerate(lines) if _TOP_SOURCE.match(line)), None)
    if existing is not None:
        lines[existing] = source_line
    else:
        lines.insert(index + 1, source_line)
    path.write_text("".join(lines), encoding="utf-8")


def to_json(result: dict[str, Any]) -> str:
    """calibration.json text (strict JSON: no NaN/Infinity)."""
    return json.dumps(result, indent=2, allow_nan=False, default=str) + "\n"
