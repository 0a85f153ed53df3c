"""Importing action plans: readers (file -> lines), the table parser (lines -> rows) and apply
(rows -> store). :func:`read_plan` is the first two steps, shared by the CLI and the web app."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

from dhr_workflow.errors import InvalidInput
from dhr_workflow.importer.parse import ParsedPlan, parse_lines
from dhr_workflow.importer.readers import Format, Source, read_source


def read_plan(
    path: Path,
    fmt: Format | Literal["auto"] = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Source, ParsedPlan]:
    """Read and parse a plan file; a file with no actions is a one-line InvalidInput.
    ``progress`` hears (pages read, pages) while a PDF is read."""
    source = read_source(path, fmt, progress)
    plan = parse_lines(source.lines)
    if not plan.rows:
        raise InvalidInput(_no_actions(path, plan.headers_found))
    return source, plan


def _no_actions(path: Path, headers: int) -> str:
    if headers == 0:
        return (
            f"{path}: no table with a recognisable header (columns such as "
            "Recommendation, Action, Lead Agency, Target date; see README: Importing plans)"
        )
    return f"{path}: found the table header but no actions under it"
