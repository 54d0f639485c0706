"""controls.html: the verdict first, the detection table (injection x workload), then per injection
the first outputs it changed. Every text from params, datasets or models is escaped (Jinja2
autoescape); the page loads nothing from the network."""

from __future__ import annotations

from pathlib import Path


from workbench.core.pages import jinja_env, environment_block, group_environment
from workbench.records import ControlsSummary, read_summary

TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>controls: {{ s.case }}</title>
<style>
body { font-family: sans-serif; margin: 2em; max-width: 1200px; }
.verdict { font-size: 1.4em; padding: .6em 1em; border-radius: 6px; }
.pass { background: #e3f4e6; color: #17602b; } .fail { background: #fbe3e4; color: #8a1f24; }
table { border-collapse: collapse; margin: 1em 0; } td, th { border: 1px solid #ccc; padding: .3em .6em; vertical-align: top; }
td.caught { background: #e3f4e6; } td.missed { background: #fbe3e4; } td.error { background: #fff3cd; }
pre { white-space: pre-wrap; margin: 0; max-width: 40em; }
</style></head><body>
<p class="verdict {{ 'pass' if s.passed else 'fail' }}">
{% if s.passed %}PASSED: every clean run passed and every injection was caught
({{ s.injections | length }} injected runs under {{ s.workloads | join(', ') }}).
{% else %}FAILED:
{% if not s.clean.passed %} a clean run did not pass;{% endif %}
{% if s.missed %} missed: {{ s.missed | join(', ') }};{% endif %}
{% if s.errors %} errors: {{ s.errors | length }};{% endif %}
{% endif %}</p>
<h1>Positive controls: {{ s.case }}</h1>
{{ environment }}
{% if s.churn_only %}<p>Caught only under the churn workload: {{ s.churn_only | join(', ') }}.</p>{% endif %}
<h2>Clean runs</h2>
<table><tr><th>workload</th><th>status</th><th>failed checks</th><th>report</th></tr>
{% for w, c in s.clean.by_workload.items() %}
<tr><td>{{ w }}</td><td class="{{ 'caught' if c.passed else 'missed' }}">{{ c.status }}</td>
<td>{{ c.failed_checks | join(', ') or '—' }}</td><td><a href="{{ rel(c.run_dir) }}/report.html">report</a></td></tr>
{% endfor %}</table>
<h2>Detection</h2>
<p>A cell names the checks that failed on the injected run (a catch); MISSED when none did; an error is never a catch.</p>
<table><tr><th>injection</th><th>rate</th>{% for w in s.workloads %}<th>{{ w }}</th>{% endfor %}</tr>
{% for name in names %}<tr><td>{{ name }}</td><td>{{ rate(name) }}</td>
{% for w in s.workloads %}{% set i = cell(name, w) %}
{% if i is none %}<td>—</td>
{% elif i.caught %}<td class="caught">{{ i.caught_by | join(', ') }}</td>
{% elif i.status != 'passed' %}<td class="error">{{ i.status or 'error' }}: {{ i.error }}</td>
{% else %}<td class="missed">MISSED</td>{% endif %}
{% endfor %}</tr>{% endfor %}</table>
<h2>What each injection did</h2>
<table><tr><th>injection</th><th>workload</th><th>events</th><th>output match (exact / judged / total)</th>
<th>divergences</th><th>accuracy ref / spec</th><th>acceptance length</th><th>report</th></tr>
{% for i in s.injections %}<tr><td>{{ i.name }}</td><td>{{ i.workload }}</td><td>{{ i.events if i.events is not none else '—' }}</td>
<td>{{ i.output_match_matched }} / {{ i.output_match_judged }} / {{ i.output_match_total }}</td>
<td>{{ i.output_match_divergences }}</td><td>{{ fmt(i.reference_accuracy) }} / {{ fmt(i.speculative_accuracy) }}</td>
<td>{{ fmt(i.acceptance_length) }}</td><td><a href="{{ rel(i.run_dir) }}/report.html">report</a></td></tr>
{% endfor %}</table>
{% for i in s.injections %}{% if i.first_divergences %}
<h3>{{ i.name }} ({{ i.workload }}): first diverging outputs</h3>
<table><tr><th>prompt</th><th>kind</th><th>first divergent token</th><th>reference</th><th>injected speculative</th></tr>
{% for d in i.first_divergences %}<tr><td>{{ d.prompt_id }}</td><td>{{ d.kind }}</td><td>{{ d.position }}</td>
<td><pre>{{ d.reference }}</pre></td><td><pre>{{ d.speculative }}</pre></td></tr>{% endfor %}</table>
{% endif %}{% endfor %}
</body></html>
"""


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
    return jinja_env().from_string(TEMPLATE).render(
        s=summary, names=names, cell=lambda n, w: by_cell.get((n, w)), rel=rel, rate=rate,
        environment=environment_block(*group_environment(recorded)),
        fmt=lambda v: "—" if v is None else f"{v:.4f}")


def write_report(summary: ControlsSummary, out_dir: Path) -> Path:
    path = out_dir / "controls.html"
    path.write_text(render(summary, out_dir), encoding="utf-8")
    return path
