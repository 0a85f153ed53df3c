"""The report's action rows as CSV, in the column schema of docs/report-schema.md: one row per
action, stable column names, ISO dates, RFC 4180 (UTF-8, CRLF, quoted where needed).
Written a review at a time. New columns only ever go at the end."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path
from typing import Any, TextIO

from dhr_workflow.reports.data import Cover, Request, ReviewReport, Row

COLUMNS = (
    "schema_version",
    "partnership",
    "report_as_of",
    "review_ref",
    "review_title",
    "recommendation_ref",
    "recommendation_section",
    "recommendation_text",
    "action_id",
    "action_ref",
    "action_text",
    "lead_agency",
    "status",
    "rag",
    "target_text",
    "due_date",
    "completed_on",
    "completed_on_time",
    "days_overdue",
    "needs_review",
    "messages_sent",
    "escalations_sent",
    "last_chased_on",
    "outcome",
)
SCHEMA_VERSION = "1"


def _iso(value: dt.date | None) -> str:
    return value.isoformat() if value else ""


def _bool(value: bool | None) -> str:
    return "" if value is None else ("true" if value else "false")


def row_values(row: Row, partnership: str | None, as_of: dt.date) -> list[Any]:
    return [
        SCHEMA_VERSION, partnership or "", as_of.isoformat(), row.review_ref, row.review_title,
        row.recommendation_ref, row.section, row.recommendation_text, row.action_id,
        row.action_ref, row.text, row.lead_agency or "", row.status, row.rag,
        row.target_text or "", _iso(row.due_date), _iso(row.completed_on), _bool(row.on_time),
        "" if row.days_overdue is None else row.days_overdue, _bool(row.needs_review),
        row.chase.sent, row.chase.escalations, _iso(row.chase.last_sent),
        " ".join((row.outcome or "").split()),
    ]  # fmt: skip


class Writer:
    needs_cover = False

    def __init__(self, path: Path, partnership: str | None, req: Request) -> None:
        self.partnership, self.req = partnership, req
        self.fh: TextIO = path.open("w", encoding="utf-8", newline="")
        self.out = csv.writer(self.fh, lineterminator="\r\n")
        self.out.writerow(COLUMNS)

    def start(self, cover: Cover | None) -> None:
        pass

    def review(self, rep: ReviewReport) -> None:
        self.out.writerows(row_values(r, self.partnership, self.req.as_of) for r in rep.rows)

    def finish(self) -> None:
        self.fh.close()
