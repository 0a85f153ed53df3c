"""The pages a message's links open: report progress, mark as done, ask for more time.

No sign-in: the link's token is the authority, for its one action and its one purpose (see
links.py). Nothing in a page or its form names the action, so there is nothing to change to
reach another. A GET only shows (mail scanners follow links); a change is a POST carrying the
page's CSRF token, made in one transaction that finds the link again, and a form with any
problem writes nothing. A used "done" link shows what it recorded; a revoked or expired link
says whom to ask instead; an unknown token gets the same 404 whatever it is, and a client
with too many of those is refused for a while (someone guessing).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dhr_workflow import actions, extensions, links
from dhr_workflow.models import CLOSED_STATUSES, Action, ActionLink, ActionStatus
from dhr_workflow.web.app import Web
from dhr_workflow.web.forms import Errors, Reader, date_fields
from dhr_workflow.web.limits import MissLimiter

# Unknown tokens per client: a mistyped link or two, never enough to guess one.
MISS_LIMIT, MISS_WINDOW = 20, 900.0
TITLES = {"progress": "Report progress", "done": "Mark as done", "extend": "Ask for more time"}
PROGRESS_STATUSES = {ActionStatus.IN_PROGRESS.value, ActionStatus.BLOCKED.value}
BLOCKER_LIMIT = 1000


@dataclass
class Shown:
    template: str
    context: dict[str, Any] = field(default_factory=dict)
    status: int = 200


class _Invalid(Exception):
    """A form with problems, raised inside the transaction so that nothing is written."""

    def __init__(self, errors: Errors) -> None:
        super().__init__()
        self.errors = errors


def routes(web: Web) -> list[Route]:
    misses = MissLimiter(limit=MISS_LIMIT, window=MISS_WINDOW)

    async def act(request: Request) -> Response:
        # A valid link is always served: everyone behind one council NAT shares an address,
        # and one person's mistyped links must not lock the others out. Only misses count.
        client = request.client.host if request.client else "?"
        form = await web.form(request) if request.method == "POST" else None
        shown = await web.run(_show, web, request.path_params["token"], form)
        if shown is None:
            now = web.now().timestamp()
            misses.record(client, now)
            if misses.blocked(client, now):
                page = web.page(request, "act/too_many.html", 429, title="Too many attempts")
                page.headers["Retry-After"] = str(int(MISS_WINDOW))
                return page
            return web.page(request, "act/unknown.html", 404, title="Page not found")
        return web.page(request, shown.template, shown.status, **shown.context)

    return [Route("/act/{token}", act, methods=["GET", "POST"])]


def mail(web: Web) -> extensions.Mail:
    """What the extension services need to email people, from the web app's settings."""
    _, templates = web.rules()
    return extensions.Mail(templates, web.settings.public_base_url, web.settings.partnership)


def _show(web: Web, secret: str, form: FormData | None) -> Shown | None:
    with web.store.reading() as s:
        link = links.find(s, secret)
        shown = _get(s, web, link) if link is not None else None
    if link is None or shown is None or form is None or shown.status != 200:
        return shown
    tell = mail(web) if link.purpose == "extend" else None  # read before the transaction
    try:
        with web.store.transaction() as s:
            return _post(s, web, secret, Reader(form), tell)
    except _Invalid as refused:
        with web.store.reading() as s:
            again = _get(s, web, links.find(s, secret))
        assert again is not None
        again.context.update(errors=refused.errors, form=form)
        again.status = 400
        return again


def _get(s: Session, web: Web, link: ActionLink | None) -> Shown | None:
    """What the link shows now; changes nothing."""
    if link is None:
        return None
    state = links.state(link, web.today())
    if state != "live":
        return _gone(s, link, state)
    action = _loaded(link.action)
    closed = action.status in CLOSED_STATUSES
    if link.purpose == "done":
        if link.used_at is not None:
            return _recorded(s, link, again=True)
        if closed:
            return _closed(s, link)
        return Shown("act/done.html", _base(link) | {"completed": date_fields(web.today())})
    if link.purpose == "extend":
        if closed:
            return _closed(s, link)
        waiting = extensions.pending_for(s, action.id)
        if waiting is not None:
            return _sent(s, link, waiting, already=True)
        return Shown("act/extend.html", _base(link) | {"proposed": date_fields(None)})
    return Shown("act/progress.html", _base(link) | {"closed": closed})


def _post(
    s: Session, web: Web, secret: str, reader: Reader, tell: extensions.Mail | None
) -> Shown | None:
    link = links.find(s, secret)
    if link is None:
        return None
    state = links.state(link, web.today())
    if state != "live":
        return _gone(s, link, state)
    if link.purpose == "done":
        return _complete(s, web, link, reader)
    if link.purpose == "extend":
        return _ask(s, web, link, reader, tell)
    return _report(s, web, link, reader)


# --- the three purposes ----------------------------------------------------------------------


def _report(s: Session, web: Web, link: ActionLink, reader: Reader) -> Shown:
    action = link.action
    note = reader.text("note", "what has been done", required=True)
    status = reader.choice("status", "a status", PROGRESS_STATUSES, required=False)
    blocked = status == ActionStatus.BLOCKED
    blocker = reader.text("blocker", "what is blocking it", required=blocked, limit=BLOCKER_LIMIT)
    if blocker and not blocked:
        reader.errors.add("blocker", "Select Blocked as the status, or leave this empty")
    if status and action.status in CLOSED_STATUSES:
        reader.errors.add("status", "This action is closed: leave the status as it is")
    text = f"{note}\n\nBlocked: {blocker}" if blocker else note
    if len(text) > actions.NOTE_LIMIT:
        reader.errors.add("note", f"The note must be {actions.NOTE_LIMIT} characters or fewer")
    if reader.errors:
        raise _Invalid(reader.errors)
    before = action.status
    change = actions.ActionChange(note=text, status=ActionStatus(status) if status else None)
    actions.update(
        s, action.id, change, today=web.today(), now=web.now(), actor=link.recipient,
        source="link", via=link.id,
    )  # fmt: skip
    return Shown(
        "act/thanks.html",
        _base(link)
        | {"note": text, "before": before, "at": web.now(), "who": _coordinators(s, link)},
    )


def _complete(s: Session, web: Web, link: ActionLink, reader: Reader) -> Shown:
    if link.used_at is not None:
        return _recorded(s, link, again=True)
    if link.action.status in CLOSED_STATUSES:
        return _closed(s, link)
    completed_on = reader.date("completed_on", "the date it was completed", required=True)
    outcome = reader.text("outcome", "what the action achieved", required=True)
    if completed_on is not None and completed_on > web.today():
        reader.errors.add("completed_on-day", "The date it was completed must be today or earlier")
    if reader.errors:
        raise _Invalid(reader.errors)
    if not links.claim(s, link.id, now=web.now()):
        s.refresh(link)
        return _recorded(s, link, again=True)  # another click got there first
    change = actions.ActionChange(
        status=ActionStatus.COMPLETED, completed_on=completed_on, outcome=outcome, note=outcome
    )
    actions.update(
        s, link.action_id, change, today=web.today(), now=web.now(), actor=link.recipient,
        source="link", via=link.id,
    )  # fmt: skip
    return _recorded(s, link, again=False)


def _ask(
    s: Session, web: Web, link: ActionLink, reader: Reader, tell: extensions.Mail | None
) -> Shown:
    action = link.action
    if action.status in CLOSED_STATUSES:
        return _closed(s, link)
    waiting = extensions.pending_for(s, action.id)
    if waiting is not None:
        return _sent(s, link, waiting, already=True)
    proposed = reader.date("proposed_due", "the date you propose", required=True)
    reason = reader.text("reason", "why more time is needed", required=True)
    if reader.errors or proposed is None:
        raise _Invalid(reader.errors)
    try:
        asked = extensions.request(
            s, action_id=action.id, requested_by=link.recipient, proposed_due=proposed,
            reason=reason, link_id=link.id, today=web.today(), now=web.now(), mail=tell,
        )  # fmt: skip
    except extensions.Refused as refused:
        where = "proposed_due-day" if refused.field == "proposed_due" else "reason"
        reader.errors.add(where, _sentence(str(refused)))
        raise _Invalid(reader.errors) from None
    return _sent(s, link, asked, already=False)


# --- what the pages show -----------------------------------------------------------------------


def _loaded(action: Action) -> Action:
    """The action with what its summary shows loaded (pages render after the session)."""
    _ = (action.review, action.recommendation, action.lead_agency)
    return action


def _base(link: ActionLink) -> dict[str, Any]:
    return {
        "title": TITLES[link.purpose],
        "purpose": link.purpose,
        "action": _loaded(link.action),
        "recipient": link.recipient,
    }


def _coordinators(s: Session, link: ActionLink) -> list[extensions.Person]:
    return extensions.coordinators(s, link.action.review_id)


def _recorded(s: Session, link: ActionLink, *, again: bool) -> Shown:
    title = "This action has already been marked as done" if again else "Action marked as done"
    return Shown(
        "act/recorded.html",
        _base(link)
        | {"title": title, "again": again, "recorded": links.completion(s, link),
           "who": _coordinators(s, link)},
    )  # fmt: skip


def _closed(s: Session, link: ActionLink) -> Shown:
    word = "completed" if link.action.status == ActionStatus.COMPLETED else "withdrawn"
    return Shown(
        "act/closed.html",
        _base(link) | {"title": f"This action is already {word}", "who": _coordinators(s, link)},
    )


def _sent(s: Session, link: ActionLink, asked: Any, *, already: bool) -> Shown:
    title = "More time has already been asked for" if already else "Request sent"
    return Shown(
        "act/sent.html",
        _base(link)
        | {"title": title, "already": already, "asked": asked, "who": _coordinators(s, link)},
    )


def _gone(s: Session, link: ActionLink, state: str) -> Shown:
    action = link.action
    closed_on: dt.date | None = None
    if state == "expired":
        closed_on = action.completed_on or action.updated_at.date()
    return Shown(
        "act/gone.html",
        {"title": "This link no longer works", "state": state, "closed_on": closed_on,
         "status": action.status, "after": links.AFTER_CLOSING.days,
         "who": _coordinators(s, link)},
        status=410,
    )  # fmt: skip


def _sentence(message: str) -> str:
    return message[:1].upper() + message[1:]
