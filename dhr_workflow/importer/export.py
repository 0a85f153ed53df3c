"""A review written out in the import template, to be corrected in a spreadsheet and imported
back (`dhr-workflow export --review REF plan.xlsx`, then `dhr-workflow import plan.xlsx
--review REF`).

Each row carries its action's key, ``WCA-A17``: the review's ref, ``-A`` and the action's id.
The import finds the action by it, whatever else the row says. The ``A`` keeps a key from
reading as a number or a date in Excel ("2013-12" would become December 2013).

Formula injection: a cell whose text starts with ``=``, ``+``, ``-`` or ``@`` would run as a
formula in Excel or LibreOffice. In an XLSX such a cell is a text cell with Excel's quote
prefix (shown as written, never evaluated); in a CSV it is written with a leading apostrophe,
the usual neutraliser. A text that itself starts with apostrophes before such a character gets
one more, so the importer takes exactly one away (:func:`unquote`) and reads back what was
written.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from dhr_workflow import reviews
from dhr_workflow.errors import InvalidInput
from dhr_workflow.importer.parse import OVERVIEW
from dhr_workflow.models import Action, ActionStatus, Review


@dataclass(frozen=True)
class Column:
    header: str
    field: str  # the PlanRow field the importer reads the column into
    width: int  # in characters, as Excel counts them
    editable: bool = True


COLUMNS = (
    Column("Action key", "action_key", 16, editable=False),
    Column("Section", "section", 22),
    Column("Recommendation ref", "rec_ref", 12),
    Column("Recommendation", "rec_text", 48),
    Column("Scope", "scope", 12),
    Column("Action", "text", 48),
    Column("Lead Agency", "agency", 28),
    Column("Owner", "owner", 24),
    Column("Key Milestones", "milestones", 32),
    Column("Target Date", "target", 20),
    Column("Due date (parsed)", "due_date", 14, editable=False),
    Column("Workflow status", "status", 16),
    Column("Outcome", "outcome", 36),
    Column("Flags", "flags", 48, editable=False),
)
STATUSES = tuple(s.value for s in ActionStatus)
SUFFIXES = (".xlsx", ".csv")
KEY = re.compile(r"(?P<review>.+)-A(?P<id>[0-9]{1,10})")
# A cell Excel or LibreOffice would read as a formula, once its apostrophes are taken away.
_FORMULA = re.compile(r"'*\s*[=+\-@]")
_XLSX_CELL_LIMIT = 32767
# Characters an XLSX cannot hold (openpyxl refuses them): vertical tab and form feed become the
# line breaks the importer reads them as; the rest go, as the importer drops them too.
_BREAKS = re.compile(r"[\x0b\x0c]")
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1f]")


def action_key(review_ref: str, action_id: int) -> str:
    return f"{review_ref}-A{action_id}"


def parse_key(text: str) -> tuple[str, int] | None:
    """(review ref, action id) of a key, or None if it is not one."""
    m = KEY.fullmatch(text.strip())
    return (m["review"], int(m["id"])) if m else None


def unquote(text: str) -> str:
    """A cell as it was before :func:`csv_cell` or :func:`xlsx_cell` neutralised it."""
    if text.startswith("'") and _FORMULA.match(text[1:]):
        return text[1:].lstrip()
    return text


def row_values(action: Action) -> dict[str, Any]:
    """What the export writes for one action, by PlanRow field (and ``due_date``, ``flags``)."""
    rec = action.recommendation
    return {
        "action_key": action_key(action.review.ref, action.id),
        "section": rec.section if rec else OVERVIEW,
        "rec_ref": rec.ref if rec else "",
        "rec_text": rec.text if rec else "",
        "scope": (rec.scope if rec else None) or "",
        "text": action.text,
        "agency": action.lead_agency.name if action.lead_agency else "",
        "owner": action.owner_text or "",
        "milestones": action.milestones or "",
        "target": action.target_text or "",
        "due_date": action.due_date,
        "status": action.status,
        "outcome": action.outcome or "",
        "flags": "\n".join(action.review_reasons),
    }


def review_actions(session: Session, review_ref: str) -> list[Action]:
    """A review's actions in plan order (ids follow the rows of the imports that made them)."""
    return actions_of(session, reviews.get(session, review_ref))


def actions_of(session: Session, review: Review) -> list[Action]:
    """A review's actions with what a row shows of them, in plan order."""
    return list(
        session.scalars(
            select(Action)
            .where(Action.review_id == review.id)
            .options(
                joinedload(Action.review),
                joinedload(Action.recommendation),
                joinedload(Action.lead_agency),
            )
            .order_by(Action.id)
        )
    )


def export_review(session: Session, review_ref: str, path: Path) -> int:
    """Write the review to ``path`` (.xlsx or .csv, by its name); returns the action count."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise InvalidInput(f"{path}: export writes .xlsx or .csv files; name the file so")
    rows = [row_values(a) for a in review_actions(session, review_ref)]
    writer = _write_xlsx if suffix == ".xlsx" else _write_csv
    _atomically(path, lambda tmp: writer(tmp, rows))
    return len(rows)


def _atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Write beside the target and rename: a failed export never leaves half a file."""
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot write there ({exc.strerror})") from None
    os.close(fd)
    try:
        write(Path(name))
        os.replace(name, path)
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot write there ({exc.strerror})") from None
    finally:
        if os.path.exists(name):
            os.unlink(name)


# --- CSV ---------------------------------------------------------------------------------------


def csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.date):
        return value.isoformat()
    text = str(value).lstrip()
    return f"'{text}" if _FORMULA.match(text) else text


def _write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    # UTF-8 with a byte-order mark: Excel reads it as UTF-8 only then. Every cell quoted, so
    # the importer's guess of the delimiter cannot go wrong.
    with path.open("w", encoding="utf-8-sig", newline="") as out:
        writer = csv.writer(out, quoting=csv.QUOTE_ALL)
        writer.writerow([c.header for c in COLUMNS])
        for row in rows:
            writer.writerow([csv_cell(row[c.field]) for c in COLUMNS])


# --- XLSX --------------------------------------------------------------------------------------

GREY = "FFD9D9D9"
READ_ONLY_NOTE = "Read-only: the importer ignores this column."
NOTES = {
    "action_key": "The action this row corrects. Leave it as it is; clear it (or add a row "
    "without one) for a new action.",
    "due_date": "Read-only: worked out from Target Date, which decides. The importer ignores "
    "this column.",
    "status": "One of: " + ", ".join(STATUSES) + ". Blank or unchanged changes nothing.",
    "flags": "Read-only: why the action needs review. The importer ignores this column.",
}


def xlsx_cell(text: str) -> tuple[str, bool]:
    """The cell's text and whether it needs Excel's quote prefix (a formula-like start)."""
    text = _CONTROLS.sub("", _BREAKS.sub("\n", text)).lstrip()
    if len(text) > _XLSX_CELL_LIMIT:
        raise InvalidInput(
            f"a cell of {len(text)} characters is over Excel's limit of {_XLSX_CELL_LIMIT}; "
            "export as .csv instead"
        )
    if not _FORMULA.match(text):
        return text, False
    return (f"'{text}" if text.startswith("'") else text), True


def _write_xlsx(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None  # a new workbook has its sheet
    sheet.title = "Actions"
    _header(sheet)
    for number, row in enumerate(rows, start=2):
        for index, column in enumerate(COLUMNS, start=1):
            _put(sheet.cell(number, index), column, row[column.field])
    _validations(sheet, len(rows))
    sheet.freeze_panes = "B2"  # the header row and the key stay in view
    sheet.auto_filter.ref = sheet.dimensions
    book.save(path)


def _header(sheet: Any) -> None:
    from openpyxl.comments import Comment
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    for index, column in enumerate(COLUMNS, start=1):
        cell = sheet.cell(1, index, column.header)
        cell.font = Font(bold=True)
        cell.alignment = Alignment(wrap_text=True, vertical="top")
        if not column.editable:
            cell.fill = PatternFill("solid", fgColor=GREY)
        if column.field in NOTES:
            cell.comment = Comment(NOTES[column.field], "dhr-workflow")
        sheet.column_dimensions[get_column_letter(index)].width = column.width


def _put(cell: Any, column: Column, value: Any) -> None:
    from openpyxl.styles import Alignment, PatternFill

    cell.alignment = Alignment(wrap_text=True, vertical="top")
    if not column.editable:
        cell.fill = PatternFill("solid", fgColor=GREY)
    if isinstance(value, dt.date):
        cell.value = value
        cell.number_format = "DD/MM/YYYY"
        return
    text, quoted = xlsx_cell("" if value is None else str(value))
    if not text:
        return
    cell.value = text
    cell.data_type = "s"  # never a formula, whatever it starts with
    cell.quotePrefix = quoted


def _validations(sheet: Any, count: int) -> None:
    """A drop-down of statuses; the read-only columns refuse typing (a paste still gets in,
    and the importer ignores them anyway)."""
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet.datavalidation import DataValidation

    last = count + 1000  # rows added below for new actions get the drop-down too
    for index, column in enumerate(COLUMNS, start=1):
        letter = get_column_letter(index)
        if column.field == "status":
            rule = DataValidation(
                type="list", formula1=f'"{",".join(STATUSES)}"', allow_blank=True,
                showErrorMessage=True, errorTitle="Workflow status",
                error="Choose one of: " + ", ".join(STATUSES),
            )  # fmt: skip
        elif column.field in ("due_date", "flags"):
            rule = DataValidation(
                type="custom", formula1="FALSE", allow_blank=True, showErrorMessage=True,
                errorTitle="Read-only", error=READ_ONLY_NOTE,
            )  # fmt: skip
        else:
            continue
        rule.add(f"{letter}2:{letter}{last}")
        sheet.add_data_validation(rule)
