"""Import a plan: upload, a dry-run preview with every flag and every new agency name, the
review's title and dates, then confirm. The same reader, parser and apply as `dhr-workflow
import`; the upload waits in the store between preview and confirmation."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dhr_workflow import anchors, reviews
from dhr_workflow.errors import UserError
from dhr_workflow.importer import read_plan
from dhr_workflow.importer.apply import ImportReport, apply_plan, understood
from dhr_workflow.importer.parse import ParsedPlan
from dhr_workflow.importer.readers import Source
from dhr_workflow.models import PlanUpload, Review
from dhr_workflow.signin import Principal
from dhr_workflow.web.app import Hidden, Web, redirect
from dhr_workflow.web.filters import review_url
from dhr_workflow.web.forms import Errors, Reader, date_fields, too_large, upload
from dhr_workflow.web.reviews import ANCHOR_LABELS

Parsed = tuple[str, Source, ParsedPlan]  # the file's clean name, its lines, its rows
KEEP_UPLOADS = dt.timedelta(days=1)  # an unconfirmed upload is forgotten after this
_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")


def routes(web: Web) -> list[Route]:
    limit = int(web.settings.upload_limit_mb * 1024 * 1024)

    async def start(request: Request) -> Response:
        person = await web.require(request, edit=True)
        refs = await web.run(_refs, web)
        if request.method == "GET":
            return web.page(request, "imports/upload.html", title="Import a plan", refs=refs)
        errors = Errors()
        if int(request.headers.get("content-length") or 0) > limit + 65536:
            errors.add("plan", too_large(limit))
            return web.page(
                request, "imports/upload.html", 413, title="Import a plan", errors=errors,
                refs=refs,
            )  # fmt: skip
        form = await web.form(request, max_files=1, max_fields=10)
        try:
            reader = Reader(form, errors)
            ref = reader.text("review", "the review's reference", required=True, limit=100)
            file = upload(form, "plan", errors, limit)
        finally:
            await form.close()  # the upload's spooled temporary file
        if file is not None and not errors:
            try:
                upload_id = await web.run(_store, web, person, ref, *file)
            except UserError as exc:
                errors.add("plan", str(exc))
            else:
                return redirect(f"/import/{upload_id}")
        return web.page(
            request, "imports/upload.html", 400, title="Import a plan", errors=errors,
            refs=refs, review=ref,
        )  # fmt: skip

    async def preview(request: Request) -> Response:
        person = await web.require(request, edit=True)
        upload_id = request.path_params["upload_id"]
        if request.method == "GET":
            data = await web.run(_preview, web, upload_id)
            return web.page(request, "imports/preview.html", **data)
        form = await web.form(request)
        if form.get("form") == "discard":
            await web.run(_discard, web, upload_id)
            return redirect("/import")
        reader = Reader(form)
        title = reader.text("title", "a title for the review", required=True, limit=500)
        dates = {k: reader.date(k, label) for k, label in ANCHOR_LABELS.items()}
        if not reader.errors:
            try:
                ref, report = await web.run(_confirm, web, person, upload_id, title, dates)
            except AlreadyImported:
                return web.page(request, "imports/done.html", title="Plan already imported")
            except UserError as exc:
                reader.errors.add("title", str(exc))
            else:
                request.session["banner"] = {"success": True, "text": _summary(report)}
                return redirect(review_url(ref))
        data = await web.run(_preview, web, upload_id)
        return web.page(
            request, "imports/preview.html", 400, errors=reader.errors, form=form, **data
        )

    return [
        Route("/import", start, methods=["GET", "POST"]),
        Route("/import/{upload_id}", preview, methods=["GET", "POST"]),
    ]


def _refs(web: Web) -> list[str]:
    with web.store.reading() as s:
        return list(s.scalars(select(Review.ref).order_by(Review.ref)))


def _disk_name(filename: str) -> str:
    """A safe file name keeping the extension (the format is told partly by it)."""
    base = Path(filename.replace("\\", "/")).name
    stem = _UNSAFE.sub("_", Path(base).stem).strip(". ")[:80] or "plan"
    suffix = _UNSAFE.sub("", Path(base).suffix)[:10]
    return stem + suffix


def _parse(filename: str, content: bytes) -> Parsed:
    """Read an upload as the CLI reads a file, outside any transaction (a large plan takes a
    while, and a writer's lock would stop the daemon meanwhile). Messages name the file the
    person chose, never our temporary copy."""
    name = _disk_name(filename)
    with tempfile.TemporaryDirectory(prefix="dhr-upload-") as tmp:
        path = Path(tmp) / name
        path.write_bytes(content)
        try:
            source, plan = read_plan(path)
        except UserError as exc:
            raise type(exc)(str(exc).replace(f"{tmp}/", "")) from None
    return name, source, plan


def _dry_run(
    session: Session, web: Web, ref: str, parsed: tuple[str, Source, ParsedPlan]
) -> ImportReport:
    name, source, plan = parsed
    return apply_plan(
        session, ref, plan, title=None, source=name, digest=source.sha256, today=web.today(),
        now=web.now(), actor="web", dry_run=True,
    )  # fmt: skip


def _store(web: Web, person: Principal, ref: str, filename: str, content: bytes) -> str:
    """Check the file reads as a plan, then keep it for the preview; returns its id."""
    parsed = _parse(filename, content)  # an unreadable file is refused now, not at confirmation
    with web.store.reading() as s:
        _dry_run(s, web, ref, parsed)
    now = web.now()
    with web.store.transaction() as s:
        s.execute(delete(PlanUpload).where(PlanUpload.created_at < now - KEEP_UPLOADS))
        row = PlanUpload(
            id=secrets.token_urlsafe(24), filename=filename[:300], review_ref=ref,
            content=content, sha256=hashlib.sha256(content).hexdigest(),
            uploaded_by=person.email, created_at=now,
        )  # fmt: skip
        s.add(row)
        return row.id


def _upload(session: Session, upload_id: str) -> PlanUpload:
    row = session.get(PlanUpload, upload_id) if len(upload_id) <= 64 else None
    if row is None:
        raise Hidden
    return row


def _preview(web: Web, upload_id: str) -> dict[str, Any]:
    with web.store.reading() as s:
        row = _upload(s, upload_id)
        parsed = _parse(row.filename, row.content)
        review = s.scalar(select(Review).where(Review.ref == row.review_ref))
        report = _dry_run(s, web, row.review_ref, parsed)
        seen = understood(report)
        plan_title = parsed[2].title
        return {
            "title": "Check the import",
            "upload": row,
            "report": report,
            "format": parsed[1].format,
            "warnings": parsed[1].warnings,
            "review": review,
            "plan_title": (review.title if review else None) or plan_title or row.review_ref,
            "understood": seen,
            "agency_counts": seen.agency_counts(),
            "new_agencies": sorted({m.written for m in seen.agencies["new"]}),
            "anchors": ANCHOR_LABELS,
            "dates": {
                k: date_fields(getattr(review, k) if review else None) for k in ANCHOR_LABELS
            },
        }


class AlreadyImported(Exception):
    """The upload was confirmed already (a second click, another browser) or discarded."""


def _confirm(
    web: Web, person: Principal, upload_id: str, title: str, dates: dict[str, dt.date | None]
) -> tuple[str, ImportReport]:
    """The import itself, in one transaction with the review's title and dates. The upload is
    claimed first (deleted, returning it): a second confirmation finds nothing to import."""
    with web.store.reading() as s:
        row = s.get(PlanUpload, upload_id) if len(upload_id) <= 64 else None
        if row is None:
            raise AlreadyImported
        ref, parsed = row.review_ref, _parse(row.filename, row.content)
    name, source, plan = parsed
    now, actor = web.now(), person.email
    with web.store.transaction() as s:
        claimed = s.execute(
            delete(PlanUpload).where(PlanUpload.id == upload_id).returning(PlanUpload.id)
        ).first()
        if claimed is None:
            raise AlreadyImported
        exists = s.scalar(select(Review.id).where(Review.ref == ref)) is not None
        report = apply_plan(
            s, ref, plan, title=title, source=name, digest=source.sha256, today=web.today(),
            now=now, actor=actor, dry_run=False,
        )  # fmt: skip
        changes: dict[str, Any] = {k: v for k, v in dates.items() if v is not None}
        if exists and title != reviews.get(s, ref).title:
            changes["title"] = title
        if changes:
            anchors.update_review(s, ref, today=web.today(), now=now, actor=actor, **changes)
    return ref, report


def _discard(web: Web, upload_id: str) -> None:
    with web.store.transaction() as s:
        s.delete(_upload(s, upload_id))


def _summary(report: ImportReport) -> str:
    flagged = len(report.needs_review())
    return (
        f"Plan imported: {report.count('create')} actions created, {report.count('update')} "
        f"updated, {report.count('unchanged')} unchanged"
        + (f"; {flagged} need review." if flagged else ".")
    )
