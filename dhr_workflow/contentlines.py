"""RFC 5545 content lines written as text, for the few value types a feed's events use.

icalendar builds an object per property and per parameter, then folds every line one
character at a time; for a feed of thousands of events that was nearly all of a render's
time. These functions write the same bytes icalendar 7.3 writes for the same values (its
TEXT escaping, its folding at 74 octets that never splits a backslash escape), which
tests/test_contentlines.py checks against icalendar itself. Only the wire form lives here:
what an event says is decided in :mod:`dhr_workflow.feeds`.
"""

from __future__ import annotations

import datetime as dt

LIMIT = 75  # icalendar folds before a line would reach this many octets
FOLD = "\r\n "


def text(value: str) -> str:
    """A TEXT value escaped (RFC 5545 3.3.11), replacements in icalendar's order."""
    return (
        value.replace(r"\N", "\n")
        .replace("\\", "\\\\")
        .replace(";", r"\;")
        .replace(",", r"\,")
        .replace("\r\n", r"\n")
        .replace("\n", r"\n")
        .replace("\r", r"\n")
    )


def date(day: dt.date) -> str:
    return f"{day.year:04}{day.month:02}{day.day:02}"


def utc(moment: dt.datetime) -> str:
    """A DATE-TIME in UTC form (``...Z``); the moment must be aware."""
    t = moment.astimezone(dt.UTC)
    return f"{t.year:04}{t.month:02}{t.day:02}T{t.hour:02}{t.minute:02}{t.second:02}Z"


def fold(line: str) -> str:
    """A content line folded as icalendar folds it: a break before the octet that would make
    a line 75 long, moved one character earlier when the line would end in ``\\`` or ``^``
    (so an escape is not split across lines)."""
    if len(line) < LIMIT and line.isascii():
        return line
    if not line.isascii():
        return _fold_octets(line)
    parts, start, end = [], 0, len(line)
    while end - start >= LIMIT:
        cut = start + LIMIT - 1
        if line[cut - 1] in "\\^":
            cut -= 1
        parts.append(line[start:cut])
        start = cut
    parts.append(line[start:])
    return FOLD.join(parts)


def _fold_octets(line: str) -> str:
    """:func:`fold` counting UTF-8 octets, for lines that are not plain ASCII."""
    parts: list[str] = []
    current: list[str] = []
    count = 0
    for char in line:
        size = len(char.encode())
        if current and count + size >= LIMIT:
            if len(current) > 1 and current[-1] in "\\^":
                carried = current.pop()
                parts.append("".join(current))
                current, count = [carried], len(carried.encode())
            else:
                parts.append("".join(current))
                current, count = [], 0
        current.append(char)
        count += size
    if current:
        parts.append("".join(current))
    return FOLD.join(parts)
