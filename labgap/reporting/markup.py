"""Text from the database made safe to put in markdown, which the Prefect UI renders with HTML on.

A name, reason or error must not break a table, start a tag, a link or an image (which a browser
would load), or close a code block. Escapes are CommonMark backslash escapes applied only where a
character could do one of those, so ordinary text reads the same in a terminal.
"""

import re

_SPECIAL = re.compile(r"[\\|`]|<(?=[A-Za-z/!?])|&(?=#?\w+;)|\](?=[(\[:])")
"""A backslash or pipe, a backtick, `<` opening a tag or autolink, an entity, `]` closing a link."""


def text(value) -> str:
    """Inline text on one line, safe in a table cell, a list item or a paragraph."""
    return _SPECIAL.sub(r"\\\g<0>", " ".join(str(value).splitlines()))


def _ticks(body: str, least: int) -> str:
    """A run of backticks longer than any run inside `body`, so the text cannot close it."""
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    return "`" * max(least, longest + 1)


def code(value) -> str:
    """An inline code span (markup inside it is shown as is), on one line."""
    body = " ".join(str(value).splitlines())
    ticks = _ticks(body, 1)
    pad = " " if body.startswith("`") or body.endswith("`") else ""
    return f"{ticks}{pad}{body}{pad}{ticks}"


def fence(body: str, info: str = "") -> list[str]:
    """A fenced code block's lines."""
    ticks = _ticks(body, 3)
    return [f"{ticks}{info}", body, ticks]
