"""An action: every field, the plan's own words, its history, and the coordinator's forms
(status and progress, due date, lead agency and owner, settling a needs-review flag, deciding
an extension request, revoking the links sent about it)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import joinedload
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dhr_workflow import actions, agencies, extensions, history, links
from dhr_workflow.errors import NotFound, UserError
from dhr_workflow.models import Action, ActionStatus, Contact
from dhr_workflow.signin import Principal
from dhr_workflow.web import act
from dhr_workflow.web.app import Hidden, Web, redirect
from dhr_workflow.web.filters import STATUS_TAGS, long_day
from dhr_workflow.web.forms import STATUSES, Reader, date_fields, number

FORMS = ("progress", "due", "assign", "settle")
DECISIONS = {"approve", "decline"}


def routes(web: Web) -> list[Route]:
    async def action_page(request: Request) -> Response:
        person = await web.require(request)
        action_id = request.path_params["action_id"]
        if request.method == "GET":
            data = await web.run(_view, web, person, action_id)
            banner = request.session.pop("banner", None)
            return web.page(request, "action.html", banner=banner, **data)
        form = await web.form(request)
        await web.run(_view, web, person, action_id, edit=True)  # 404 unless theirs to change
        which = form.get("form")
        reader = Reader(form)
        if which == "extension":
            return await decide(request, person, action_id, reader)
        if which == "revoke_links":
            count = await web.run(_revoke, web, person, action_id)
            request.session["banner"] = {"success": True, "text": _revoked(count)}
            return redirect(f"/actions/{action_id}#links")
        if which not in FORMS:
            raise Hidden
        change = _change(str(which), reader)
        if not reader.errors:
            try:
                await web.run(_save, web, person, action_id, change)
            except UserError as exc:
                reader.errors.add(_field_for(str(which), str(exc)), _sentence(str(exc)))
            else:
                request.session["banner"] = {"success": True, "text": _saved(str(which))}
                return redirect(f"/actions/{action_id}")
        data = await web.run(_view, web, person, action_id)
        return web.page(
            request, "action.html", 400, errors=reader.errors, posted=which, form=form, **data
        )

    async def decide(
        request: Request, person: Principal, action_id: int, reader: Reader
    ) -> Response:
        request_id = number(reader.raw("request"))
        if request_id is None:
            raise Hidden
        decision = reader.choice("decision", "approve or decline", DECISIONS)
        note = reader.text("decision_note", "the note")
        if not reader.errors:
            try:
                done = await web.run(
                    _decide, web, person, action_id, request_id, decision == "approve", note
                )
            except UserError as exc:
                reader.errors.add("decision_note", _sentence(str(exc)))
            else:
                request.session["banner"] = {"success": True, "text": done}
                return redirect(f"/actions/{action_id}")
        data = await web.run(_view, web, person, action_id)
        return web.page(
            request, "action.html", 400, errors=reader.errors, posted="extension",
            form=reader.form, **data,
        )  # fmt: skip

    return [Route("/actions/{action_id:int}", action_page, methods=["GET", "POST"])]


def _decide(
    web: Web, person: Principal, action_id: int, request_id: int, approve: bool, note: str
) -> str:
    """Decide a request of this action (another action's is not there: 404); the banner."""
    tell = act.mail(web)
    with web.store.transaction() as s:
        try:
            found = extensions.get(s, request_id)
        except NotFound:
            raise Hidden from None
        if found.action_id != action_id:
            raise Hidden
        req = extensions.decide(
            s, request_id, approve=approve, note=note, decided_by=person.email,
            today=web.today(), now=web.now(), mail=tell,
        )  # fmt: skip
        due, who = long_day(req.action.due_date, "no due date"), req.requested_by
    verdict = "approved: the action is now" if approve else "declined: the action is still"
    return f"Extension {verdict} due on {due}. {who} is told by email."


def _revoke(web: Web, person: Principal, action_id: int) -> int:
    with web.store.transaction() as s:
        return links.revoke(s, action_id, now=web.now(), actor=person.email)


def _revoked(count: int) -> str:
    if not count:
        return "There were no working links to revoke."
    return (
        f"{count} link{'s' if count != 1 else ''} revoked: "
        "they now open a page that says to contact the DHR coordinator."
    )


def _change(which: str, reader: Reader) -> actions.ActionChange:
    """The service change a form asks for; problems with the fields go into reader.errors."""
    if which == "progress":
        status = reader.choice("status", "a status", STATUSES)
        completed_on = reader.date("completed_on", "the completion date")
        return actions.ActionChange(
            status=ActionStatus(status) if status else None,
            note=reader.text("note", "a progress note") or None,
            outcome=reader.text("outcome", "the outcome"),
            completed_on=completed_on if status == ActionStatus.COMPLETED else None,
        )
    if which == "due":
        due = reader.date("due", "the new due date", required=True)
        reason = reader.text("reason", "why the date is changing", required=True, limit=1000)
        return actions.ActionChange(due=due, reason=reason)
    if which == "assign":
        return actions.ActionChange(
            agency=reader.raw("agency") or None,
            owner=reader.text("owner", "the owner", limit=300),
            owner_email=reader.raw("owner_email"),
        )
    return actions.ActionChange(
        settle=reader.text("settle", "why no date or agency is needed", required=True)
    )


def _field_for(which: str, message: str) -> str:
    """The field a service's refusal is about, for the error summary's link."""
    if which == "assign":
        return "owner_email" if "contact" in message else "agency"
    if which == "progress":
        return "completed_on-day" if "completion date" in message else "status"
    return {"due": "due-day", "settle": "settle"}[which]


def _sentence(message: str) -> str:
    return message[:1].upper() + message[1:]


def _saved(which: str) -> str:
    return {
        "progress": "Progress saved.",
        "due": "Due date changed. Reminders start again from the new date and calendars are "
        "updated.",
        "assign": "Lead agency and owner saved.",
        "settle": "Flag settled: this action no longer appears in the needs-review email.",
    }[which]


def _save(web: Web, person: Principal, action_id: int, change: actions.ActionChange) -> None:
    with web.store.transaction() as s:
        actions.update(
            s, action_id, change, today=web.today(), now=web.now(), actor=person.email,
            source="web",
        )  # fmt: skip


def _view(web: Web, person: Principal, action_id: int, *, edit: bool = False) -> dict[str, Any]:
    with web.store.reading() as s:
        try:
            action = actions.get(s, action_id)
        except NotFound:
            raise Hidden from None
        if not person.sees(action.review_id, action.lead_agency_id):
            raise Hidden
        if edit and not person.edits(action.review_id):
            raise Hidden
        # The page is rendered after the session closes: load what it shows now.
        _ = (action.review, action.recommendation, action.lead_agency, action.owner_contact)
        view: dict[str, Any] = {
            "title": f"{action.review.ref} rec. {action.ref or action.id}",
            "action": action,
            "rec": action.recommendation,
            "notes": actions.progress_notes(s, action.id),
            "history": history.for_action(s, action.id, tz=web.settings.tz),
            "statuses": {k: v[0] for k, v in STATUS_TAGS.items()},
            "due_fields": date_fields(None),
            "completed_fields": date_fields(action.completed_on),
        }
        view["can_edit"] = person.edits(action.review_id)
        view["extensions"] = extensions.for_action(s, action.id)
        if view["can_edit"]:
            view["links"] = [
                (link, links.state(link, web.today())) for link in links.sent_for(s, action.id)
            ]
            view["agency_options"] = [(a.name, a.name) for a in agencies.list_all(s)]
            view["people_options"] = [
                (c.email, f"{c.name} ({c.email})" + (f", {c.agency.name}" if c.agency else ""))
                for c in _people(s, action)
            ]
        return view


def _people(session: Any, action: Action) -> list[Contact]:
    """Who may own an action: active contacts, the lead agency's own first."""
    rows = session.scalars(
        select(Contact)
        .options(joinedload(Contact.agency))
        .where(Contact.active)
        .order_by(Contact.name, Contact.email)
    )
    seen: dict[str, Contact] = {}
    if action.owner_contact is not None:  # even if deactivated: saving keeps it
        seen[action.owner_contact.email] = action.owner_contact
    for c in sorted(rows, key=lambda c: c.agency_id != action.lead_agency_id):
        seen.setdefault(c.email, c)
    return list(seen.values())
