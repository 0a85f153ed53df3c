"""Small text shapes shared by what the program writes out (feeds, reports)."""

from __future__ import annotations


def one_line(text: str | None) -> str:
    """Runs of whitespace, line breaks included, as one space; no space at either end."""
    return " ".join((text or "").split())
