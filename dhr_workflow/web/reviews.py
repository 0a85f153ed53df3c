"""A review: its recommendations and actions, anchor dates, and its calendar feed."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dhr_workflow import anchors, feeds, overview, reviews
from dhr_workflow.errors import NotFound, UserError
from dhr_workflow.models import ActionStatus, FeedToken, Review
from dhr_workflow.signin import Principal
from dhr_workflow.web.app import Hidden, Web, redirect
from dhr_workflow.web.filters import review_url
from dhr_workflow.web.forms import Errors, Reader, date_fields, number

ANCHOR_LABELS = {
    "plan_agreed_on": "the date the action plan was agreed",
    "report_accepted_on": "the date the Home Office accepted the report",
    "published_on": "the date the report was published",
    "completed_on": "the date the review was completed",
}
STATUS_FILTERS = {
    "": "All actions",
    "overdue": "Overdue",
    "needs_review": "Needs review",
    **{s.value: s.value.replace("_", " ").capitalize() for s in ActionStatus},
}


def routes(web: Web) -> list[Route]:
    async def review_page(request: Request) -> Response:
        person = await web.require(request)
        ref = request.path_params["ref"]
        if request.method == "POST":
            form = await web.form(request)
            return await _post(web, request, person, ref, form)
        flt = _filter(request)
        data = await web.run(_view, web, person, ref, flt)
        banner = request.session.pop("banner", None)
        return web.page(request, "review.html", banner=banner, **data)

    async def reviews_index(request: Request) -> Response:
        await web.require(request)
        return redirect("/")

    return [
        Route("/reviews", reviews_index),
        Route("/reviews/{ref:path}", review_page, methods=["GET", "POST"]),
    ]


def _filter(request: Request) -> overview.ActionFilter:
    status = request.query_params.get("status", "")
    agency = request.query_params.get("agency", "")
    return overview.ActionFilter(
        status=status if status in STATUS_FILTERS and status else None,
        agency_id=number(agency),
    )


def _review(session: Any, ref: str, person: Principal, *, edit: bool = False) -> Review:
    try:
        review = reviews.get(session, ref)
    except NotFound:
        raise Hidden from None
    if edit and not person.edits(review.id):
        raise Hidden
    return review


def _view(
    web: Web,
    person: Principal,
    ref: str,
    flt: overview.ActionFilter,
    errors: Errors | None = None,
    values: dict[str, Any] | None = None,
) -> dict[str, Any]:
    scope, today = person.scope, web.today()
    with web.store.reading() as s:
        review = _review(s, ref, person)
        groups = overview.review_actions(s, review, flt, today, scope)
        # An agency reader sees a review only through their actions (any, not only the
        # filtered ones: a filter that matches nothing is not a 404).
        outside = scope is not None and review.id not in scope.review_ids
        everything = overview.ActionFilter()
        if outside and not (groups or overview.review_actions(s, review, everything, today, scope)):
            raise Hidden
        return {
            "title": review.title,
            "review": review,
            "groups": groups,
            "flt": flt,
            "status_filters": STATUS_FILTERS,
            "agencies": overview.review_agencies(s, review) if scope is None else [],
            "can_edit": person.edits(review.id),
            "feeds": _feeds(s, review) if person.edits(review.id) else [],
            "anchors": ANCHOR_LABELS,
            "dates": values or {k: date_fields(getattr(review, k)) for k in ANCHOR_LABELS},
            "errors": errors,
        }


def _feeds(session: Any, review: Review) -> list[FeedToken]:
    return [
        t
        for t in feeds.list_all(session)
        if t.scope_kind == "review" and t.scope_value == review.ref and t.revoked_at is None
    ]


async def _post(
    web: Web, request: Request, person: Principal, ref: str, form: FormData
) -> Response:
    which = form.get("form")
    if which == "anchors":
        reader = Reader(form)
        dates = {k: reader.date(k, label) for k, label in ANCHOR_LABELS.items()}
        if not reader.errors:
            try:
                moved = await web.run(_save_anchors, web, person, ref, dates)
            except UserError as exc:
                reader.errors.add("plan_agreed_on-day", str(exc))
            else:
                followed = f" {moved} due date(s) followed the new dates." if moved else ""
                request.session["banner"] = {"success": True, "text": f"Dates saved.{followed}"}
                return redirect(review_url(ref))
        values = {k: {p: reader.raw(f"{k}-{p}") for p in ("day", "month", "year")} for k in dates}
        data = await web.run(
            _view, web, person, ref, overview.ActionFilter(), reader.errors, values
        )
        return web.page(request, "review.html", 400, **data)
    if which == "feed":
        # Shown on this response only (not through the session cookie): the link is a secret.
        secret = await web.run(_new_feed, web, person, ref)
        data = await web.run(_view, web, person, ref, overview.ActionFilter())
        feed_url = f"{web.settings.public_base_url}/feeds/{secret}.ics"
        return web.page(request, "review.html", new_feed_url=feed_url, **data)
    raise Hidden


def _may_edit(web: Web, person: Principal, ref: str) -> None:
    with web.store.reading() as s:
        _review(s, ref, person, edit=True)


def _save_anchors(web: Web, person: Principal, ref: str, dates: dict[str, Any]) -> int:
    with web.store.transaction() as s:
        review = reviews.get(s, ref)
        # The form shows every date: an emptied field leaves the date as it was (anchors are
        # never unset once a review has them), a changed one moves it.
        changed = {k: v for k, v in dates.items() if v is not None and v != getattr(review, k)}
        if not changed:
            return 0
        _, moved = anchors.update_review(
            s, ref, today=web.today(), now=web.now(), actor=person.email, **changed
        )
        return moved


def _new_feed(web: Web, person: Principal, ref: str) -> str:
    with web.store.transaction() as s:
        created = feeds.create(
            s, "review", ref, f"web: {person.email}", now=web.now(), actor=person.email
        )
        return created.secret
