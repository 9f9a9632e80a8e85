"""Untrusted text made safe to show: message fields, S3 keys, stream names, log lines, quoted errors.

Such text comes from whoever can write to the queue, the bucket or the log group. Shown raw, an
escape sequence clears or retitles the operator's terminal, a bidi override reorders what they
read, and Rich markup (`[/x]`, `[link=...]`) crashes a table or plants a link. `visible` rewrites
every character that is not plain printable text into its Python escape (`\\x1b`, `\\u202e`), so
the text shows what was sent and does nothing; `plain` wraps the result in a Rich `Text`, which
Rich never parses as markup. The web view applies the same `visible` before HTML-escaping.
"""

from __future__ import annotations

import re

from rich.text import Text

# C0 and C1 controls, DEL, bidi embeddings/overrides/isolates and marks, zero-width and BOM
# characters, line/paragraph separators, and lone surrogates (undecodable bytes).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb\ud800-\udfff]")


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(value: object, limit: int | None = None) -> str:
    """`value` as one line of inert text: control, bidi and invisible characters written as escapes.

    With `limit`, the result is cut to about that many characters and says how much was left out.
    """
    text = value if isinstance(value, str) else str(value)
    if limit is not None and len(text) > limit:
        text = f"{text[:limit]}… ({len(text) - limit} more characters)"
    return _UNSAFE.sub(_escape, text)


def middle(value: str, keep: int = 12) -> str:
    """A long id shortened in its middle (`--json` shows it whole): its start and its end tell ids apart, as
    Kinesis Video's 47-digit fragment numbers differ at the end."""
    return value if len(value) <= 2 * keep + 1 else f"{value[:keep]}…{value[-keep:]}"


def plain(value: object, style: str = "", limit: int | None = None) -> Text:
    """A Rich `Text` of `visible(value)`: never parsed as markup, never an escape sequence."""
    return Text(visible(value, limit), style=style)


def join(*parts: Text | str | tuple[str, str]) -> Text:
    """Trusted literals (`"text"` or `("text", "style")`) and `plain` pieces in one `Text`; nothing is parsed as markup."""
    return Text.assemble(*parts)
