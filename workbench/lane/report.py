"""The lane's report.html: the verdict first, then one row per case (verdict, numbers, where its reference came
from) with a link to the case's own report. Every text from params, lane files or models is escaped (Jinja2
autoescape); the page loads nothing from the network."""

from __future__ import annotations

import os
from pathlib import Path


from workbench.core.pages import jinja_env, environment_block, group_environment
from workbench.records import LaneSummary, RunSummary, load_summary

TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>lane: {{ s.lane }}</title>
<style>
body { font-family: sans-serif; margin: 2em; max-width: 1300px; }
.verdict { font-size: 1.4em; padding: .6em 1em; border-radius: 6px; }
.pass { background: #e3f4e6; color: #17602b; } .fail { background: #fbe3e4; color: #8a1f24; }
.error { background: #fff3cd; color: #6b4e00; }
table { border-collapse: collapse; margin: 1em 0; } td, th { border: 1px solid #ccc; padding: .3em .6em; vertical-align: top; }
</style></head><body>
<p class="verdict {{ css(s.exit_code) }}">{{ verdict(s.exit_code) }}: {{ passed }} of {{ s.cases | length }} cases
passed; {{ s.reference_runs }} reference engine(s) started for {{ s.reference_keys }} reference key(s)
{%- if s.reused_from_cache %}, {{ s.reused_from_cache }} case(s) reused a cached reference{% endif %}.</p>
<h1>Lane {{ name }}</h1>
{% if s.description %}<p>{{ s.description }}</p>{% endif %}
{{ environment }}
<table><tr><th>verdict</th><th>case</th><th>failed checks / error</th><th>acceptance length</th>
<th>output match</th><th>accuracy (reference / speculative)</th><th>reference</th><th>wall</th><th>report</th></tr>
{% for c in s.cases %}{% set r = runs[c.name] %}
<tr><td class="{{ css(c.exit_code) }}">{{ verdict(c.exit_code) }}</td><td>{{ c.name }}</td>
<td>{{ (c.failed_checks | join(', ')) or (c.error or '—') }}</td>
<td>{{ fmt(r.speculative.acceptance_length if r and r.speculative else none) }}</td>
<td>{% if r and r.output_match %}{{ r.output_match.matched }}/{{ r.output_match.total }}{% else %}—{% endif %}</td>
<td>{% if r and r.reference and r.speculative %}{{ fmt(r.reference.accuracy.get(r.primary_scorer)) }} /
{{ fmt(r.speculative.accuracy.get(r.primary_scorer)) }} ({{ r.primary_scorer }}){% else %}—{% endif %}</td>
<td>{{ c.reference or '—' }}{% if c.reference_engine_started %} (engine started here){% endif %}</td>
<td>{{ fmt(c.wall_s, '.0f') }}{% if c.wall_s is not none %} s{% endif %}</td>
<td><a href="{{ rel(c.run_dir) }}/report.html">report</a></td></tr>
{% endfor %}</table>
<p>lane.json holds every number of this page.</p>
</body></html>
"""

VERDICTS = {0: ("PASSED", "pass"), 1: ("FAILED", "fail"), 2: ("BAD INPUT", "error"), 3: ("ERROR", "error"),
            4: ("CANCELLED", "error")}


def _summary(run_dir: str) -> RunSummary | None:
    try:
        return load_summary(run_dir)
    except Exception:
        return None


def write_report(summary: LaneSummary, out: Path) -> Path:
    runs = {c.name: _summary(c.run_dir) for c in summary.cases}
    page = jinja_env().from_string(TEMPLATE).render(
        s=summary, name=Path(summary.lane).stem, passed=sum(c.passed for c in summary.cases), runs=runs,
        environment=environment_block(*group_environment([r for r in runs.values() if r], summary.wall_s)),
        verdict=lambda code: VERDICTS.get(code, ("ERROR", "error"))[0],
        css=lambda code: VERDICTS.get(code, ("ERROR", "error"))[1],
        fmt=lambda value, spec=".4f": "—" if value is None else format(value, spec),
        rel=lambda path: os.path.relpath(path, out))
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
