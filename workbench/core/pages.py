"""What every report and site page opens with, and how it writes numbers for people.

`report_head` is the first thing in each report.html: the verdict (PASSED / FAILED / ERROR / CANCELLED, each
failed check with its observed and required numbers), a key-numbers line, the environment block (from
summary.json's `environment`, recorded at run time) and a table of contents. The pages are Jinja2 templates
(`workbench/templates/pages/`) with autoescape on: every text from params, datasets or models is escaped. The
pages load nothing from the network: styles and scripts are inline.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from pydantic import BaseModel, Field

from workbench.records import Environment as RunEnvironment
from workbench.records import RunSummary, Versions

PAGES = Path(str(files("workbench") / "templates" / "pages"))
TOC_MARK = "<!-- workbench:toc -->"
MISSING = "—"


# ------------------------------------------------------------------ numbers for people


def number(value: Any, digits: int = 4) -> str:
    """A number as people read it: thousands grouped, at most `digits` significant digits below 100, no
    six-decimal floats; None and NaN as a dash."""
    if value is None or isinstance(value, str):
        return MISSING if value is None else value
    if isinstance(value, bool):
        return "yes" if value else "no"
    try:
        value = float(value) if not isinstance(value, int) else value
    except (TypeError, ValueError):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if math.isnan(value):
        return MISSING
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    size = abs(value)
    if value.is_integer() and size < 1e15:
        return f"{int(value):,}"
    if size >= 1000:
        return f"{value:,.0f}"
    if size >= 100:
        return f"{value:.1f}"
    if size == 0:
        return "0"
    if size < 1e-3:
        return f"{value:.2g}"
    return f"{value:.{digits}g}"


def signed(value: Any) -> str:
    """A difference: always with its sign (+0.012, -3), a dash when unknown."""
    text = number(value)
    return text if text == MISSING or text.startswith(("-", "+")) or text == "0" else f"+{text}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return MISSING
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def when(stamp: str | None) -> str:
    """An ISO 8601 time as `2026-11-26 03:33 UTC`."""
    if not stamp:
        return MISSING
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return stamp
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def commit(value: str | None) -> str:
    """A git commit shortened to 10 characters (`+dirty` kept)."""
    if not value:
        return MISSING
    sha, plus, rest = value.partition("+")
    return sha[:10] + plus + rest


def share(matched: int | None, total: int | None) -> str:
    return MISSING if matched is None or not total else f"{matched}/{total}"


def match_text(match: Any, control: Any = None) -> str:
    """An output match with its control, `97/100 (control 100/100)` (records with matched and total; the control
    is the match's own `control` unless given)."""
    control = control if control is not None else getattr(match, "control", None)
    return share(match.matched, match.total) + (f" (control {share(control.matched, control.total)})"
                                                if control is not None else "")


def table_html(frame: Any) -> str:
    """A DataFrame as a notebook shows it, with numbers for people and missing values as a dash (never NaN); a
    table without rows as the word, not as a header row over nothing."""
    import pandas as pd

    if frame.empty:
        return '<p class="wb-empty"><em>none</em></p>'

    return frame.to_html(notebook=True, na_rep=MISSING, float_format=number,
                         max_rows=pd.get_option("display.max_rows"), max_cols=pd.get_option("display.max_columns"))


def use_people_tables() -> None:
    """In a notebook (and its report): every DataFrame shown through `table_html`, its text form with `number`."""
    import pandas as pd

    pd.set_option("display.float_format", number)
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        shell.display_formatter.formatters["text/html"].for_type(pd.DataFrame, table_html)


# ------------------------------------------------------------------ the verdict


VERDICT_CSS = {"PASSED": "pass", "FAILED": "fail", "ERROR": "error", "CANCELLED": "error", "CALIBRATED": "pass",
               "BAD INPUT": "error", "UNKNOWN": "error"}
EXIT_VERDICTS = {0: "PASSED", 1: "FAILED", 2: "BAD INPUT", 3: "ERROR", 4: "CANCELLED"}
"""A command's exit code (`ExitCode`) as the word a page shows: a lane's, a sweep's, one of their runs'."""


def exit_verdict(code: int | None) -> str:
    return EXIT_VERDICTS.get(code, "ERROR") if code is not None else "ERROR"


class Verdict(BaseModel):
    """A run's verdict as pages show it: the word, why (an error's first line) and each failed check."""

    word: str
    reason: str | None = None
    detail: str | None = Field(None, description="the whole error message, when it has more than its first line")
    failed: list[str] = Field(default_factory=list, description="each failed check with observed and required")
    off: list[str] = Field(default_factory=list, description="checks switched off (skipped)")

    @property
    def css(self) -> str:
        return VERDICT_CSS.get(self.word, "error")


def verdict_word(summary: RunSummary) -> str:
    if summary.status is not None:
        return summary.status.upper()
    if summary.kind == "calibration":
        return "CALIBRATED" if summary.passed and not summary.error else "ERROR"
    if summary.error:
        return "ERROR"
    return "PASSED" if summary.passed else ("FAILED" if any(c.status == "failed" for c in summary.checks)
                                            else "UNKNOWN")


def verdict_of(summary: RunSummary) -> Verdict:
    failed = [f"{c.name}: observed {number(c.observed)}, required {number(c.required)} ({c.message})"
              for c in summary.checks if c.status == "failed"]
    error = (summary.error or "").strip()
    return Verdict(word=verdict_word(summary), reason=error.split("\n")[0] or None,
                   detail=error if "\n" in error else None,
                   failed=failed, off=[c.name for c in summary.checks if c.status == "skipped"])


def member_failures(label: str, summary: RunSummary | None, error: str | None = None) -> list[str]:
    """Why one run of a group (a lane's case, a sweep's cell, a control's clean run) did not pass, as lines of the
    group's verdict: each failed check with its observed and required numbers, else the run's error."""
    if summary is None:
        return [f"{label}: {error or 'summary.json was not written'}"]
    verdict = verdict_of(summary)
    lines = [f"{label}: {line}" for line in verdict.failed]
    if verdict.reason or not lines:
        lines.append(f"{label}: {verdict.word}" + (f": {verdict.reason}" if verdict.reason else ""))
    return lines


def group_verdict(exit_code: int, members: list[tuple[str, bool, RunSummary | None, str | None]],
                  noun: str) -> Verdict:
    """A lane's or sweep's verdict: its exit code as a word, how many of its runs passed, and why each other did
    not. `members`: (label, passed, its summary, its error) per run."""
    failed = [line for label, passed, summary, error in members if not passed
              for line in member_failures(label, summary, error)]
    passed = sum(member[1] for member in members)
    return Verdict(word=exit_verdict(exit_code), reason=f"{passed} of {len(members)} {noun} passed", failed=failed)


def per_member(values: list[tuple[str, str | None]]) -> str:
    """One key number over a group's runs: `k=1 1.73, k=2 2.1` (a run without it left out)."""
    return ", ".join(f"{label} {value}" for label, value in values if value not in (None, MISSING)) or MISSING


# ------------------------------------------------------------------ key numbers and environment


def variant(summary: RunSummary) -> str | None:
    """What a correctness run measured, beyond its case: method and draft length, a non-default workload,
    an injected fault (the same case with k=1 and k=3 is two histories, not one)."""
    params = summary.params
    if params is None:
        return None
    parts = [f"{params.method} k={params.num_speculative_tokens}"]
    if params.workload != "batch":
        parts.append(params.workload)
    if params.inject:
        parts.append(f"injected {params.inject}")
    return ", ".join(parts)


def key_numbers(summary: RunSummary) -> list[tuple[str, str]]:
    """The headline numbers of a run, as (label, text) pairs: what a reader wants before the sections."""
    if summary.kind == "audit":
        return [("async scheduling", number(summary.async_scheduling_active)),
                ("implicit syncs counted", number(summary.sync_count)),
                ("positive control", number(summary.positive_control_count))]
    if summary.kind == "calibration" and summary.calibration is not None:
        c = summary.calibration
        return [("recommended threshold", number(c.recommended_threshold)),
                ("P(healthy run fails)", number(c.false_failure_probability)),
                ("reference accuracy", f"{number(c.accuracy)} on {number(c.questions)} questions"),
                ("runs", number(len(c.runs)))]
    rows: list[tuple[str, str]] = []
    scorer = summary.primary_scorer
    if summary.reference is not None and summary.speculative is not None and scorer:
        rows.append((f"accuracy ({scorer})", f"reference {number(summary.reference.accuracy.get(scorer))}, "
                                             f"speculative {number(summary.speculative.accuracy.get(scorer))}"))
        rows.append(("margin", f"{signed(summary.margin)} over threshold {number(summary.threshold)}"
                     if summary.threshold else "off (threshold 0)"))
    if summary.speculative is not None:
        gate = summary.params.min_acceptance_length if summary.params else None
        notes = [f"gate {number(gate)}" if gate is not None else "no gate"]
        if summary.baseline is not None:
            notes.append(f"baseline {number(summary.baseline.acceptance_length)}")
        rows.append(("acceptance length", f"{number(summary.speculative.acceptance_length)} ({', '.join(notes)})"))
    if summary.output_match is not None:
        rows.append(("output match", match_text(summary.output_match)))
    if summary.reference is not None and summary.speculative is not None:
        rows.append(("output tokens/s", f"reference {number(summary.reference.timings.output_tokens_per_s)}, "
                                        f"speculative {number(summary.speculative.timings.output_tokens_per_s)}"))
    return rows


def environment_rows(environment: RunEnvironment | None, versions: Versions | None = None,
                     model: str | None = None) -> list[tuple[str, str]]:
    """The environment block: hardware, driver and CUDA (where there is a GPU), versions and commit, the model's
    config hash, when and how long. A run recorded before environments were kept says so."""
    env = environment or RunEnvironment()
    versions = versions or Versions()
    hardware = MISSING
    if env.hardware is not None:
        hardware = env.hardware.label + (f" ({env.gpu_count} GPU{'s' if env.gpu_count > 1 else ''})"
                                         if env.gpu_count else "")
    rows = [("hardware", hardware if environment else "not recorded")]
    if env.driver or (env.hardware and env.hardware.device == "cuda"):
        rows += [("driver", env.driver or MISSING), ("CUDA", env.cuda or MISSING)]
    rows += [("vLLM", versions.vllm or MISSING), ("torch", versions.torch or MISSING),
             ("workbench", f"{versions.workbench or MISSING}, commit {commit(env.git_commit)}")]
    if model or versions.model_config_hash:
        config = f"config hash {versions.model_config_hash or MISSING}"
        rows.append(("model", f"{model}, {config}" if model else config))
    rows += [("when", when(env.started_at)), ("how long", duration(env.wall_s))]
    return rows


def group_environment(summaries: list[RunSummary], wall_s: float | None = None
                      ) -> tuple[RunEnvironment | None, Versions | None]:
    """The environment of a group of runs (a lane's cases, a controls' runs), from its runs' recorded ones: the
    first run's machine and versions, the earliest start, the group's own wall time."""
    recorded = [s for s in summaries if s.environment is not None]
    if not recorded:
        return None, None
    starts = sorted(s.environment.started_at for s in recorded if s.environment.started_at)
    environment = recorded[0].environment.model_copy(update={"started_at": starts[0] if starts else None,
                                                             "wall_s": wall_s})
    return environment, recorded[0].versions


# ------------------------------------------------------------------ rendering


@cache
def jinja_env() -> Environment:
    """The pages' Jinja2 environment: autoescape on for every template, the number filters registered."""
    env = Environment(loader=FileSystemLoader(str(PAGES)),
                      autoescape=select_autoescape(default=True, default_for_string=True))
    env.filters.update(num=number, signed=signed, duration=duration, when=when, commit=commit)
    return env


def render(template: str, **context: Any) -> str:
    return jinja_env().get_template(template).render(**context)


def page_head(verdict: Verdict, keys: list[tuple[str, str]], environment: list[tuple[str, str]], subtitle: str,
              notes: list[str] | None = None, sections: list[tuple[str, str]] | None = None,
              style: bool = False) -> Markup:
    """The top of every report: verdict, notes, key numbers, environment, contents, in that order.

    `sections` (anchor, title) are the contents; without them the contents are left to `insert_toc` (an nbconvert
    page, whose sections are only known once rendered). `style`: the page has no workbench stylesheet of its own.
    """
    toc = Markup(TOC_MARK) if sections is None else Markup(render("toc.html.j2", links=sections))
    return Markup(render("head.html.j2", verdict=verdict, notes=notes or [], keys=keys, environment=environment,
                         subtitle=subtitle, toc=toc, style=style))


def report_head(summary: RunSummary | None, notes: list[str] | None = None) -> str:
    """The top of a run's report.html (an nbconvert page): its summary's verdict, key numbers and environment."""
    summary = summary or RunSummary(status="error", error="summary.json was not written")
    model = summary.params.model if summary.params else None
    subtitle = f"{summary.kind} run" + (f" of {summary.case}" if summary.case else "")
    return page_head(verdict_of(summary), key_numbers(summary),
                     environment_rows(summary.environment, summary.versions, model), subtitle, notes, style=True)


HEADING = re.compile(r'<h2 id="([^"]+)">(.*?)<a class="anchor-link"', re.S)


def insert_toc(body: str) -> str:
    """Fill the head's table of contents with the page's sections (nbconvert's `<h2 id=...>` headings)."""
    if TOC_MARK not in body:
        return body
    # the heading texts are nbconvert's HTML already (escaped once): kept as they are, tags dropped
    links = [(anchor, Markup(re.sub(r"<[^>]+>", "", text).strip())) for anchor, text in HEADING.findall(body)]
    toc = render("toc.html.j2", links=links)
    return body.replace(TOC_MARK, toc, 1)
