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


def table_html(frame: Any) -> str:
    """A DataFrame as a notebook shows it, with numbers for people and missing values as a dash (never NaN)."""
    import pandas as pd

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
    match = summary.output_match
    if match is not None:
        control = f" (control {share(match.control.matched, match.control.total)})" if match.control else ""
        rows.append(("output match", share(match.matched, match.total) + control))
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
        rows.append(("model", f"{model or MISSING}, config hash {versions.model_config_hash or MISSING}"))
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


def environment_block(environment: RunEnvironment | None, versions: Versions | None = None,
                      model: str | None = None) -> Markup:
    """The environment block as HTML (every value escaped), for pages that are not built from a summary."""
    return Markup(render("environment.html.j2", rows=environment_rows(environment, versions, model)))


def report_head(summary: RunSummary | None, notes: list[str] | None = None, title: str | None = None) -> str:
    """The top of a report: verdict, notes (an injected fault, ...), key numbers, environment, contents.

    The contents are filled in from the rendered page's sections by `insert_toc`.
    """
    summary = summary or RunSummary(status="error", error="summary.json was not written")
    model = summary.params.model if summary.params else None
    return render("head.html.j2", verdict=verdict_of(summary), notes=notes or [], keys=key_numbers(summary),
                  environment=environment_rows(summary.environment, summary.versions, model),
                  title=title or summary.case, kind=summary.kind, toc_mark=Markup(TOC_MARK))


HEADING = re.compile(r'<h2 id="([^"]+)">(.*?)<a class="anchor-link"', re.S)


def insert_toc(body: str) -> str:
    """Fill the head's table of contents with the page's sections (nbconvert's `<h2 id=...>` headings)."""
    if TOC_MARK not in body:
        return body
    # the heading texts are nbconvert's HTML already (escaped once): kept as they are, tags dropped
    links = [(anchor, Markup(re.sub(r"<[^>]+>", "", text).strip())) for anchor, text in HEADING.findall(body)]
    toc = render("toc.html.j2", links=links)
    return body.replace(TOC_MARK, toc, 1)
