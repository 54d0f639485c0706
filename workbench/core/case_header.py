"""The header of every report: what ran, as HTML in which every text from params, datasets or models is escaped.

Markdown would pass raw HTML through (a `description: <img onerror=...>` would run in report.html),
so the header is built as HTML here, with each value escaped once.
"""

from __future__ import annotations

from html import escape


def case_header(case: str, description: str, rows: list[tuple[str, str]]) -> str:
    """`<b>Case</b> name — description` and one list item per (label, value) row, all escaped."""
    items = "".join(f"<li>{escape(label)}: {escape(value)}</li>" for label, value in rows)
    return f"<p><b>Case</b> <code>{escape(case)}</code> — {escape(description)}</p><ul>{items}</ul>"
