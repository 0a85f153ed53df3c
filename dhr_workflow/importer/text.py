"""Cell text clean-up: HTML fragments from PDF extraction to plain text."""

from __future__ import annotations

import re
from html.parser import HTMLParser

# Only these are read as markup; any other "<...>" is text (an address, "<high>").
_KNOWN_TAG = re.compile(
    r"<(?!/?(?:p|div|br|span|b|i|u|em|strong|ul|ol|li|table|tr|td|th|tbody|thead|h[1-6]|a|font|"
    r"script|style|sup|sub)\b)",
    re.I,
)
_DROP = {"script", "style"}
_BLOCK = {"p", "div", "br", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "table"}
_SPACES = re.compile(r"[ \t\u00a0]+")
_BULLET = re.compile(r"\s+[•▪●◦]\s+")
# Terminal colour codes and other control characters (NUL above all: PostgreSQL refuses it
# in text) come from copy-and-paste, never from the plan's meaning.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.dropping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _DROP:
            self.dropping += 1
        elif tag == "li":
            self.parts.append("\n• ")
        elif tag in _BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROP:
            self.dropping = max(0, self.dropping - 1)
        elif tag in _BLOCK or tag == "li":
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.dropping:
            self.parts.append(data)


def strip_controls(text: str) -> str:
    return _CONTROLS.sub("", _ANSI.sub("", text))


def clean(cell: str) -> str:
    """Plain text: tags removed (paragraphs and list items kept as lines), spaces tidied."""
    if "<" in cell or "&" in cell:
        parser = _Text()
        parser.feed(_KNOWN_TAG.sub("&lt;", cell))
        parser.close()
        cell = "".join(parser.parts)
    cell = strip_controls(cell)
    cell = _BULLET.sub("\n• ", cell)
    lines = (_SPACES.sub(" ", line).strip() for line in cell.splitlines())
    return "\n".join(line for line in lines if line)


def join(first: str, more: str) -> str:
    """A cell continued on the next row (a page or line break in the source)."""
    if not first:
        return more
    if not more:
        return first
    sep = "\n" if more.startswith("•") else " "
    return f"{first}{sep}{more}"
