"""Building a report file: read the reviews one at a time, hand each to the format's writer,
and put the file in place only when it is whole.

The file is written beside its destination under a temporary name, owner-only (0600: a report
holds plan text), and renamed over the destination at the end, so a failed or interrupted
report never leaves half a file where the finished one belongs.

Formats that open with a summary across reviews (the PDF and HTML of ``--all``, the
spreadsheet) read the reviews twice: once to add them up, once to write them. Each pass holds
one review's actions at a time.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sqlalchemy.orm import Session

from dhr_workflow import audit
from dhr_workflow.errors import InvalidInput
from dhr_workflow.models import Review
from dhr_workflow.reports import csv, data, html, pdf, xlsx
from dhr_workflow.reports.data import Cover, Request, ReviewReport

FORMATS = ("pdf", "xlsx", "html", "csv")
FAMILY_FORMATS = ("pdf", "html")
MEDIA_TYPES = {
    "pdf": "application/pdf",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "html": "text/html; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
}


class Writer(Protocol):
    needs_cover: bool

    def start(self, cover: Cover | None) -> None: ...
    def review(self, rep: ReviewReport) -> None: ...
    def finish(self) -> None: ...


@dataclass(frozen=True)
class Built:
    path: Path
    fmt: str
    reviews: int
    actions: int


class HtmlWriter:
    """HTML: the cover (for --all), then each review, streamed to the file."""

    def __init__(self, path: Path, meta: html.Meta, req: Request) -> None:
        self.meta, self.req = meta, req
        self.needs_cover = not meta.single and not req.family
        self.fh = path.open("w", encoding="utf-8")
        self.n = 0

    def start(self, cover: Cover | None) -> None:
        if not self.req.family:
            self.fh.write(html.head(self.meta))
        if cover is not None:
            self.fh.write(html.cover(self.meta, cover, self.req, []))

    def review(self, rep: ReviewReport) -> None:
        if self.req.family:
            self.fh.write(html.family(self.meta, rep, self.req))
        else:
            self.fh.write(html.review(self.meta, rep, self.n))
        self.n += 1

    def finish(self) -> None:
        if not self.req.family:
            self.fh.write(html.tail(self.meta))
        self.fh.close()


def writer_for(
    fmt: str, path: Path, meta: html.Meta, req: Request, partnership: str | None
) -> Writer:
    if fmt == "csv":
        return csv.Writer(path, partnership, req)
    if fmt == "xlsx":
        return xlsx.Writer(path, meta, req)
    if fmt == "html":
        return HtmlWriter(path, meta, req)
    if req.review is None:
        return pdf.ManyWriter(path, meta, req)
    return pdf.SingleWriter(path, meta, req)


def file_name(ref: str | None, fmt: str, day: dt.date) -> str:
    """A download's name: dhr-report-WCA-2024-07-01.pdf (all-reviews for --all)."""
    what = re.sub(r"[^A-Za-z0-9_-]+", "-", ref).strip("-") if ref else "all-reviews"
    return f"dhr-report-{what or 'review'}-{day.isoformat()}.{fmt}"


def check_format(fmt: str, req: Request) -> None:
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown format {fmt!r} (use one of {', '.join(FORMATS)})")
    if req.family and fmt not in FAMILY_FORMATS:
        raise InvalidInput(
            "a family report is a letter, not a list of actions: use --format pdf or html"
        )


def check_destination(out: Path) -> None:
    """Refuse a destination that cannot take the file, before any work."""
    if out.is_dir():
        raise InvalidInput(f"{out} is a directory: give a file name, e.g. {out / 'report'}")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise InvalidInput(f"cannot write {out}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise InvalidInput(f"cannot write {out}: permission denied")


def write(
    session: Session,
    req: Request,
    fmt: str,
    out: Path,
    *,
    partnership: str | None,
    marking: str,
    scope_words: str = "",
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> Built:
    """Write the report to ``out`` (replaced only when the new file is whole)."""
    data.check(req)
    check_format(fmt, req)
    check_destination(out)
    reviews = data.find_reviews(session, req)
    meta = html.meta_for(req, partnership, marking, scope_words)
    temp = out.with_name(f".{out.name}.part")  # replaced by the real name below
    try:
        fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
        os.close(fd)  # mkstemp made it 0600: the writers open it again by name
        temp = Path(name)
        writer = writer_for(fmt, temp, meta, req, partnership)
        actions = _run(session, req, reviews, writer, progress, on_total)
        os.chmod(temp, 0o600)
        os.replace(temp, out)
    except OSError as exc:
        raise InvalidInput(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    return Built(out, fmt, len(reviews), actions)


def record(session: Session, req: Request, fmt: str, *, now: dt.datetime, actor: str) -> None:
    """Audit a report made (``report.generate``): who, what was asked, for whom; never what it
    said."""
    subject, facts = data.audit_data(req, fmt)
    audit.record(session, now=now, actor=actor, kind="report.generate", subject=subject,
                 data=facts)  # fmt: skip


def _run(
    session: Session,
    req: Request,
    reviews: list[Review],
    writer: Writer,
    progress: Callable[[int], None] | None,
    on_total: Callable[[int], None] | None,
) -> int:
    passes = 2 if writer.needs_cover else 1
    total = data.count_actions(session, [r.id for r in reviews], req.scope)
    if on_total is not None:
        on_total(total * passes)
    advance = progress or (lambda n: None)
    chases = data.chase_index(session, req)
    cover: Cover | None = None
    if writer.needs_cover:
        cover = Cover()
        for review in reviews:
            rep, months = data.gather(session, review, req, chases)
            cover.add(rep, months)
            advance(rep.size)
    writer.start(cover)
    for review in reviews:
        rep, _ = data.gather(session, review, req, chases)
        writer.review(rep)
        advance(rep.size)
    writer.finish()
    return total
