"""Text from params, models and engine logs made safe for CI pages: XML-valid, and inert as Markdown.

Error messages carry engine log tails, which may hold ANSI colour codes and other control characters
that XML 1.0 cannot represent at all (a JUnit file holding one does not parse); descriptions and
messages may hold `|`, `<` or newlines, which would break a Markdown table or inject markup.
"""

from __future__ import annotations

import re

ANSI_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
NOT_XML_CHAR = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
MARKDOWN_SIGNIFICANT = re.compile(r"([\\`*_\[\]<>|~&$#!])")


def clean_text(text: str) -> str:
    """Without ANSI escape sequences, and with every character XML 1.0 cannot hold replaced by U+FFFD."""
    return NOT_XML_CHAR.sub("\ufffd", ANSI_ESCAPE.sub("", text))


def markdown_text(text: str, limit: int | None = None) -> str:
    """Literal text inside a Markdown (GFM) table cell: significant characters backslash-escaped, line
    breaks as `<br>` (the only markup added), cut at `limit` characters with an ellipsis."""
    text = clean_text(text)
    if limit is not None and len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    escaped = MARKDOWN_SIGNIFICANT.sub(r"\\\1", text)
    return "<br>".join(line for line in escaped.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
