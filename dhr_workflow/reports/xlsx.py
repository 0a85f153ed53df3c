"""The report as a spreadsheet (openpyxl, write-only: rows go to disk as they are written).

A "Summary" sheet first — the figures by review and by lead agency, the RAG rules, and the
charts as pictures — then one sheet per review with every action in the CSV's columns. Every
table has a frozen header row and a filter; dates are dates. Text from the plan is always
text: a cell that starts with "=" is never a formula.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from pathlib import Path
from typing import Any, cast

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.drawing.image import Image
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from dhr_workflow.reports import charts, html
from dhr_workflow.reports.csv import COLUMNS, row_values
from dhr_workflow.reports.data import RAG_RULES, RAG_WORDS, RAGS, Cover, Rate, Request, ReviewReport

BOLD = Font(bold=True)
TITLE = Font(bold=True, size=14)
HEADER_FILL = PatternFill("solid", fgColor="DDE7F3")
RAG_FILLS = {c: PatternFill("solid", fgColor=charts.COLOURS[c].lstrip("#")) for c in RAGS}
RAG_FONTS = {c: Font(bold=True, color=charts.INK[c].lstrip("#").upper()) for c in RAGS}
WRAP = Alignment(wrap_text=True, vertical="top")
DATE_FORMAT = "yyyy-mm-dd"
WIDTHS = {  # by column name; others get 12
    "partnership": 18, "review_title": 30, "recommendation_text": 40,
    "recommendation_section": 18, "action_text": 60, "lead_agency": 28,
    "target_text": 18, "outcome": 40, "report_as_of": 12, "due_date": 12,
    "completed_on": 12, "last_chased_on": 14, "review_ref": 14,
}  # fmt: skip
DATE_COLUMNS = {"report_as_of", "due_date", "completed_on", "last_chased_on"}
RATE_HEADERS = ("Actions", "Withdrawn", "Completed", "Completed %", "On time %", "Overdue",
                *(RAG_WORDS[c] for c in RAGS))  # fmt: skip
_BAD_SHEET = re.compile(r"[\[\]:*?/\\]")


def _cell(ws: WriteOnlyWorksheet, value: Any, **style: Any) -> Any:
    cell = WriteOnlyCell(ws, value=value)
    if isinstance(value, str) and value.startswith("="):
        cell.data_type = "s"  # plan text, never a formula
    if isinstance(value, dt.date):
        cell.number_format = DATE_FORMAT
    for key, setting in style.items():
        setattr(cell, key, setting)
    return cell


def _header(ws: WriteOnlyWorksheet, names: list[str]) -> list[Any]:
    return [_cell(ws, n, font=BOLD, fill=HEADER_FILL) for n in names]


def _rate_row(ws: WriteOnlyWorksheet, first: list[Any], r: Rate) -> list[Any]:
    pct = [None if p is None else round(p / 100, 4) for p in (r.completed_pct, r.on_time_pct)]
    cells = [_cell(ws, v) for v in first]
    cells += [r.actions, r.withdrawn, r.completed]
    cells += [_cell(ws, p, number_format="0%") for p in pct]
    cells += [r.overdue, *(r.rag[c] for c in RAGS)]
    return cells


class Writer:
    needs_cover = True

    def __init__(self, path: Path, meta: html.Meta, req: Request) -> None:
        self.path, self.meta, self.req = path, meta, req
        self.book = Workbook(write_only=True)
        self.names: set[str] = set()

    def start(self, cover: Cover | None) -> None:
        assert cover is not None
        ws = self.book.create_sheet("Summary")
        self.names.add("summary")
        for col, width in zip(
            "ABCDEFGHIJKL", (34, 40, 9, 10, 10, 12, 11, 9, 7, 7, 7, 7), strict=True
        ):
            ws.column_dimensions[col].width = width
        ws.freeze_panes = "A5"  # before the first row: write-only sheets write their view first
        ws.append([_cell(ws, self.meta.title, font=TITLE)])
        period = f"Period reported on: {self.req.since.isoformat()} to {self.req.as_of.isoformat()}"
        facts = [self.meta.partnership or "", f"As of {self.meta.as_of.isoformat()}", period]
        ws.append([_cell(ws, " · ".join(f for f in facts if f))])
        ws.append([_cell(ws, self.meta.marking, font=BOLD)] if self.meta.marking else [])
        ws.append(_header(ws, ["Review", "Title", *RATE_HEADERS]))
        first = 5
        for ref, title, rate in cover.reviews:
            ws.append(_rate_row(ws, [ref, title], rate))
        last = first + len(cover.reviews) - 1
        ws.auto_filter.ref = f"A4:{get_column_letter(2 + len(RATE_HEADERS))}{max(last, 4)}"
        ws.append(_rate_row(ws, ["All reviews", ""], cover.total))
        ws.append([])
        ws.append(_header(ws, ["Lead agency", "", *RATE_HEADERS]))
        for rate in cover.by_agency():
            ws.append(_rate_row(ws, [rate.name, ""], rate))
        ws.append([])
        ws.append([_cell(ws, "RAG rating", font=BOLD), _cell(ws, "Rule", font=BOLD)])
        for c in RAGS:
            rule = RAG_RULES[c]
            ws.append([_cell(ws, RAG_WORDS[c], fill=RAG_FILLS[c], font=RAG_FONTS[c]),
                       _cell(ws, rule[:1].upper() + rule[1:])])  # fmt: skip
        ws.append([_cell(ws, "Implementation rate: of the actions in the plan (withdrawn ones "
                             "left out), the share completed, and the share completed on or "
                             "before the due date it has now.")])  # fmt: skip
        self._pictures(ws, cover)

    def _pictures(self, ws: WriteOnlyWorksheet, cover: Cover) -> None:
        svgs = html.cover_charts(cover, self.req)
        row = 4
        for key in ("agency", "quarters", "trend"):
            picture = Image(io.BytesIO(charts.png(svgs[key])))
            picture.width, picture.height = int(picture.width / 1.5), int(picture.height / 1.5)
            cast(Any, ws).add_image(picture, f"N{row}")
            row += int(picture.height / 20) + 2

    def _sheet_name(self, ref: str) -> str:
        base = _BAD_SHEET.sub("-", ref).strip("'")[:31] or "Review"
        name, n = base, 2
        while name.lower() in self.names:
            suffix = f" ({n})"
            name, n = base[: 31 - len(suffix)] + suffix, n + 1
        self.names.add(name.lower())
        return name

    def review(self, rep: ReviewReport) -> None:
        ws = self.book.create_sheet(self._sheet_name(rep.ref))
        for n, name in enumerate(COLUMNS, start=1):
            ws.column_dimensions[get_column_letter(n)].width = WIDTHS.get(name, 12)
        ws.freeze_panes = "C2"
        ws.append(_header(ws, list(COLUMNS)))
        rag_at = COLUMNS.index("rag")
        dates = {i for i, c in enumerate(COLUMNS) if c in DATE_COLUMNS}
        count = 0
        for row in rep.rows:
            values = row_values(row, self.meta.partnership, self.req.as_of)
            cells = []
            for i, value in enumerate(values):
                if value == "":
                    value = None
                elif i in dates:
                    value = dt.date.fromisoformat(value)
                elif value in ("true", "false"):
                    value = value == "true"
                cells.append(_cell(ws, value))
            cells[rag_at] = _cell(ws, row.rag, fill=RAG_FILLS[row.rag], font=RAG_FONTS[row.rag])
            ws.append(cells)
            count += 1
        ws.auto_filter.ref = f"A1:{get_column_letter(len(COLUMNS))}{count + 1}"

    def finish(self) -> None:
        self.book.save(str(self.path))
