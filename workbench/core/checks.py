"""The checks registry: each check is registered once, by name, for the run kinds it judges.

A check reads a `RunSummary` and returns a `Check`; `evaluate_checks` runs every check registered
for the summary's kind, in registration order, so the notebooks, reports, `summarize` and later
flows (lanes, sweeps) iterate one list instead of naming checks. A switched-off check is
`skipped`, never `passed`. Flows register their checks when their module is imported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from workbench.records import Check, RunKind, RunSummary

CheckFunction = Callable[[RunSummary], Check]


@dataclass(frozen=True)
class RegisteredCheck:
    name: str
    kinds: tuple[RunKind, ...]
    evaluate: CheckFunction
    description: str


CHECKS: dict[str, RegisteredCheck] = {}


def register_check(name: str, kinds: Iterable[RunKind], description: str = "") -> Callable[[CheckFunction], CheckFunction]:
    """Decorator: register `fn(summary) -> Check` under `name` for the given run kinds."""

    def decorate(fn: CheckFunction) -> CheckFunction:
        if name in CHECKS:
            raise ValueError(f"check {name!r} is already registered")
        CHECKS[name] = RegisteredCheck(name, tuple(kinds), fn, description or (fn.__doc__ or "").strip())
        return fn

    return decorate


def checks_for(kind: RunKind) -> list[RegisteredCheck]:
    return [c for c in CHECKS.values() if kind in c.kinds]


def evaluate_checks(summary: RunSummary) -> list[Check]:
    """Every check registered for this summary's kind."""
    return [registered.evaluate(summary) for registered in checks_for(summary.kind)]


def at_least(name: str, observed: float | None, required: float, what: str) -> Check:
    """A check that passes when `observed >= required`; an unmeasured value fails."""
    if observed is None:
        return Check(name=name, status="failed", observed=None, required=required,
                     message=f"{what}: not measured (required >= {required:.4g})")
    ok = observed >= required
    return Check(name=name, status="passed" if ok else "failed", observed=observed, required=required,
                 message=f"{what} {observed:.4f} {'>=' if ok else '<'} {required:.4f}")


def all_passed(checks: Iterable[Check]) -> bool:
    """No failed check (skipped ones do not fail a run, and do not pass it either)."""
    return all(c.status != "failed" for c in checks)


def assert_checks(checks: Iterable[Check | dict]) -> None:
    """Raise AssertionError naming every failed check with its numbers (the notebooks' last cell)."""
    rows = [c if isinstance(c, Check) else Check.model_validate(c) for c in checks]
    failed = [c for c in rows if c.status == "failed"]
    if failed:
        raise AssertionError("failed checks: " + "; ".join(f"{c.name}: {c.message}" for c in failed))


def verdict(checks: Iterable[Check]) -> str:
    """One line for people: passed or failed, and each check's status."""
    rows = list(checks)
    head = "all checks passed or skipped" if all_passed(rows) else "FAILED"
    return f"{head}: " + ", ".join(f"{c.name} {c.status}" for c in rows)
