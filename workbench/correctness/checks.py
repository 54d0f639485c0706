"""The correctness run's checks, registered for `correctness` summaries (and the flows built on them).

Each quotes observed, required and the rule, as vLLM's test assertions do.
"""

from __future__ import annotations

from workbench.core.checks import at_least, register_check
from workbench.records import Check, OutputMatch, OutputMatchSummary, RunSummary
from workbench.correctness.compare import required_matches


def _accuracy_check(summary: RunSummary, run: str) -> Check:
    name, scorer, threshold = f"{run}_accuracy", summary.primary_scorer, summary.threshold
    observed = getattr(summary, run).accuracy.get(scorer)
    if not threshold:
        return Check(name=name, status="skipped", observed=observed, required=None,
                     message=f"{run} accuracy ({scorer}) not checked: threshold is 0 (switched off, as upstream)")
    return at_least(name, observed, threshold, f"{run} GSM8k accuracy ({scorer})")


@register_check("reference_accuracy", kinds=("correctness",))
def reference_accuracy(summary: RunSummary) -> Check:
    """The reference run's GSM8k accuracy (primary scorer) against `threshold`."""
    return _accuracy_check(summary, "reference")


@register_check("speculative_accuracy", kinds=("correctness",))
def speculative_accuracy(summary: RunSummary) -> Check:
    """The speculative run's GSM8k accuracy (primary scorer) against `threshold`."""
    return _accuracy_check(summary, "speculative")


def output_match_check(match: OutputMatchSummary | dict) -> Check:
    """Upstream's count rule, int(share x n) + 1 (overall, and per kind where the case splits it);
    in `tie_aware` mode near-ties count as matches. The message quotes the control beside it."""
    match = match if isinstance(match, OutputMatchSummary) else OutputMatch.model_validate(match)
    total, mode = match.total, match.mode
    needed = match.required_matches if match.required_matches is not None else required_matches(
        total, match.required_share)
    near_ties = match.near_ties.total if match.near_ties else 0
    judged = match.matched + (near_ties if mode == "tie_aware" else 0)
    ok = judged >= needed
    divergences = match.divergences.total if match.divergences else total - match.matched
    detail = f"{match.matched} exact + {near_ties} near-ties, {divergences} divergences; " if mode == "tie_aware" else ""
    message = (f"output match ({mode}) {judged}/{total} {'>=' if ok else '<'} {needed} required "
               f"(int({match.required_share} x {total}) + 1); {detail}exact share {match.matched / total:.4f}")
    for kind, kind_needed in (match.required_matches_by_kind or {}).items():
        tally = match.by_kind[kind]
        kind_judged = tally.matched + (tally.near_ties if mode == "tie_aware" else 0)
        kind_ok = kind_judged >= kind_needed
        ok = ok and kind_ok
        share = (match.required_share_by_kind or {}).get(kind)
        message += (f"; {kind} {kind_judged}/{tally.total} {'>=' if kind_ok else '<'} {kind_needed} required "
                    f"(int({share} x {tally.total}) + 1)")
    if match.control is not None:
        message += (f"; control (reference vs reference, other batching) {match.control.matched}/"
                    f"{match.control.total} identical")
    return Check(name="output_match", status="passed" if ok else "failed", observed=judged / total,
                 required=needed / total, message=message)


@register_check("output_match", kinds=("correctness",))
def output_match(summary: RunSummary) -> Check:
    """Greedy outputs of both engines on the output-match prompts (upstream's rule, or tie-aware)."""
    match = summary.output_match
    if match is None or not match.total:
        return Check(name="output_match", status="skipped", observed=None,
                     required=match.required_share if match else None, message="no output-match prompts")
    return output_match_check(match)


@register_check("acceptance_length", kinds=("correctness",))
def acceptance_length(summary: RunSummary) -> Check:
    """The speculative run's acceptance length against `min_acceptance_length`, when set."""
    minimum = summary.params.min_acceptance_length if summary.params else None
    observed = summary.speculative.acceptance_length if summary.speculative else None
    if minimum is None:
        return Check(name="acceptance_length", status="skipped", observed=observed, required=None,
                     message="acceptance length not gated (min_acceptance_length not set)")
    return at_least("acceptance_length", observed, minimum, "acceptance length")


@register_check("async_scheduling", kinds=("correctness",))
def async_scheduling(summary: RunSummary) -> Check:
    """The speculative engine runs with async scheduling, as upstream asserts for MTP; skipped, never passed,
    where vLLM turns it off (CPU) or the case does not expect it."""
    spec = summary.speculative
    active = spec.async_scheduling if spec else None
    observed = None if active is None else float(active)
    expected = summary.params.expect_async_scheduling if summary.params else True
    if active is None:
        return Check(name="async_scheduling", status="skipped", observed=None, required=None,
                     message="async scheduling not recorded by the speculative engine")
    if not expected:
        return Check(name="async_scheduling", status="skipped", observed=observed, required=None,
                     message=f"not checked: the case sets expect_async_scheduling false (active: {active})")
    if spec.device_type == "cpu":
        return Check(name="async_scheduling", status="skipped", observed=observed, required=None,
                     message=f"not applicable: vLLM turns async scheduling off on CPU (active: {active})")
    method = summary.params.method if summary.params else "mtp"
    return Check(name="async_scheduling", status="passed" if active else "failed", observed=observed, required=1.0,
                 message=f"speculative engine: scheduler_config.async_scheduling is {active} on {spec.device_type} "
                         f"(expected True, as upstream asserts for {method})")
