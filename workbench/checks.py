"""The final checks. A switched-off check is `skipped`, never `passed`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Status = Literal["passed", "failed", "skipped"]


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    observed: float | None
    required: float | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _at_least(name: str, observed: float | None, required: float, what: str) -> CheckResult:
    if observed is None:
        return CheckResult(name, "failed", None, required, f"{what}: not measured (required >= {required:.4g})")
    ok = observed >= required
    verb = ">=" if ok else "<"
    return CheckResult(name, "passed" if ok else "failed", observed, required,
                       f"{what} {observed:.4f} {verb} {required:.4f}")


def output_match_check(match: dict[str, Any]) -> CheckResult:
    """Upstream's count rule, int(share x n) + 1; in `tie_aware` mode near-ties count as matches."""
    total, mode = match["total"], match.get("mode", "exact")
    needed = match.get("required_matches", min(total, int(match["required_share"] * total) + 1))
    near_ties = (match.get("near_ties") or {}).get("total", 0)
    judged = match["matched"] + (near_ties if mode == "tie_aware" else 0)
    ok = judged >= needed
    detail = (f"{match['matched']} exact + {near_ties} near-ties, "
              f"{(match.get('divergences') or {}).get('total', total - match['matched'])} divergences; "
              if mode == "tie_aware" else "")
    message = (f"output match ({mode}) {judged}/{total} {'>=' if ok else '<'} {needed} required "
               f"(int({match['required_share']} x {total}) + 1); {detail}exact share {match['matched'] / total:.4f}")
    return CheckResult("output_match", "passed" if ok else "failed", judged / total, needed / total, message)


def evaluate_checks(summary: dict[str, Any]) -> list[CheckResult]:
    """All checks of a correctness run, from its summary numbers."""
    params = summary["params"]
    scorer = summary["primary_scorer"]
    threshold = summary["threshold"]
    checks: list[CheckResult] = []
    for run in ("reference", "speculative"):
        name = f"{run}_accuracy"
        observed = summary[run]["accuracy"].get(scorer)
        if not threshold:
            checks.append(CheckResult(name, "skipped", observed, None,
                                      f"{run} accuracy ({scorer}) not checked: threshold is 0 (switched off, as upstream)"))
        else:
            checks.append(_at_least(name, observed, threshold, f"{run} GSM8k accuracy ({scorer})"))
    match = summary["output_match"]
    if match["total"]:
        checks.append(output_match_check(match))
    else:
        checks.append(CheckResult("output_match", "skipped", None, match["required_share"], "no output-match prompts"))
    minimum = params.get("min_acceptance_length")
    observed = summary["speculative"].get("acceptance_length")
    if minimum is None:
        checks.append(CheckResult("acceptance_length", "skipped", observed, None,
                                  "acceptance length not gated (min_acceptance_length not set)"))
    else:
        checks.append(_at_least("acceptance_length", observed, minimum, "acceptance length"))
    return checks


def assert_checks(checks: list[dict[str, Any]] | list[CheckResult]) -> None:
    """Raise AssertionError naming every failed check with its numbers."""
    rows = [c.as_dict() if isinstance(c, CheckResult) else c for c in checks]
    failed = [c for c in rows if c["status"] == "failed"]
    if failed:
        raise AssertionError("failed checks: " + "; ".join(f"{c['name']}: {c['message']}" for c in failed))
