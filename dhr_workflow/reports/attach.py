"""The PDF the scheduled partnership report email carries: one review's report, as
`dhr-workflow report --review REF --format pdf` would write it, unless it is larger than the
partnership attaches (DHR_REPORT_ATTACH_MB): then the email says so instead, and where to get
it. The caller (the rule engine, when it renders the report email) puts :attr:`Attached.line`
in the email and :attr:`Attached.attachment`, if any, on the message."""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from dhr_workflow.messages import Attachment
from dhr_workflow.reports import build
from dhr_workflow.reports.data import Request


@dataclass(frozen=True)
class Attached:
    attachment: Attachment | None
    line: str  # one sentence for the email: attached, or why not and where to get it
    size: int  # bytes of the PDF made


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB" if n >= 1024 * 1024 else f"{max(1, round(n / 1024))} KB"


def partnership_report_pdf(
    session: Session,
    *,
    review: str,
    as_of: dt.date,
    since: dt.date,
    tz: ZoneInfo,
    partnership: str | None,
    marking: str,
    limit_mb: float,
) -> Attached:
    """One review's PDF report for its partnership report email, within ``limit_mb``."""
    req = Request(review, as_of, since, tz)
    with tempfile.TemporaryDirectory(prefix="dhr-attach-") as folder:
        path = Path(folder) / "report.pdf"
        build.write(session, req, "pdf", path, partnership=partnership, marking=marking)
        content = path.read_bytes()
    if len(content) > limit_mb * 1024 * 1024:
        return Attached(
            None,
            f"The full report ({_size(len(content))} as a PDF) is larger than the "
            f"{limit_mb:g} MB this partnership attaches to email: download it from the "
            "review's page in the DHR action plans app (Download report).",
            len(content),
        )
    name = build.file_name(review, "pdf", as_of)
    return Attached(
        Attachment(name, content, "application", "pdf"),
        f"The full report is attached ({name}, {_size(len(content))}).",
        len(content),
    )
