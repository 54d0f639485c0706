"""controls.html: the verdict first (a clean run that failed, with its checks' numbers; each injection no check
caught; each run an error stopped), the key numbers and environment, the detection table (injection x workload),
then per injection the first outputs it changed. Every text from params, datasets or models is escaped (Jinja2
autoescape); the page loads nothing from the network."""

from __future__ import annotations

from pathlib import Path

from workbench.core import pages
from workbench.core.pages import Verdict, environment_rows, group_environment, member_failures, page_head
from workbench.records import ControlsSummary, read_summary

SECTIONS = [("clean", "Clean runs"), ("detection", "Detection"), ("effects", "What each injection did")]


def controls_verdict(summary: ControlsSummary) -> Verdict:
    """PASSED when every clean run passed and every injection was caught; else each reason, with its numbers."""
    failed = [line for workload, clean in summary.clean.by_workload.items() if not clean.passed
              for line in member_failures(f"clean run ({workload})", read_summary(clean.run_dir))]
    failed += [f"{name}: missed (no check failed on the injected run)" for name in summary.missed]
    failed += [f"{i.name}@{i.workload}: {i.status or 'error'}: {i.error or 'no summary'} (an error is not a catch)"
               for i in summary.injections if not i.caught and i.status != "passed"]
    caught = sum(i.caught for i in summary.injections)
    return Verdict(word="PASSED" if summary.passed else "FAILED", failed=failed,
                   reason=f"{caught} of {len(summary.injections)} injected runs caught")


def controls_keys(summary: ControlsSummary) -> list[tuple[str, str]]:
    clean = summary.clean.by_workload
    rows = [("clean runs passed", f"{sum(c.passed for c in clean.values())} of {len(clean)} "
                                  f"({', '.join(clean)})"),
            ("injections", ", ".join(dict.fromkeys(i.name for i in summary.injections)) or "none")]
    if summary.churn_only:
        rows.append(("caught only under churn", ", ".join(summary.churn_only)))
    return rows


def render(summary: ControlsSummary, out_dir: Path) -> str:
    """The page's HTML; links to each run's report are relative to `out_dir`."""
    names = list(dict.fromkeys(i.name for i in summary.injections))
    by_cell = {(i.name, i.workload): i for i in summary.injections}

    def rel(run_dir: str) -> str:
        try:
            return Path(run_dir).resolve().relative_to(out_dir.resolve()).as_posix()
        except ValueError:
            return Path(run_dir).as_posix()

    def rate(name: str) -> str:
        rates = {i.rate for i in summary.injections if i.name == name and i.rate is not None}
        return ", ".join(f"{r:g}" for r in sorted(rates)) or "—"

    recorded = [s for s in map(read_summary, summary.run_dirs) if s is not None]
    head = page_head(controls_verdict(summary), controls_keys(summary),
                     environment_rows(*group_environment(recorded, summary.wall_s)),
                     f"positive controls of {summary.case}",
                     sections=SECTIONS)
    return pages.render("controls.html.j2", s=summary, names=names, cell=lambda n, w: by_cell.get((n, w)), rel=rel,
                  rate=rate, head=head)


def write_report(summary: ControlsSummary, out_dir: Path) -> Path:
    path = out_dir / "controls.html"
    path.write_text(render(summary, out_dir), encoding="utf-8")
    return path
