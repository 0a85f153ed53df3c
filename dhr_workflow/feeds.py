"""iCal deadline feeds: secret subscription URLs, one RFC 5545 calendar per token's scope.

Tokens are 192-bit random secrets shown once; only their SHA-256 is stored, looked up by that
hash and compared in constant time. A feed carries the minimum by default (the same title as
the action's email invitation, its status and a link to its page) because plan text can be
confidential. An open action past its date appears twice: on its due date, and again on
today's date ("OVERDUE: "), so overdue work is not left behind in the past. The body is built
only from stored values and the day passed in, so the same data on the same day always gives
the same bytes and the same ETag.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any, Literal

from icalendar import Alarm, Calendar, Event, vDuration
from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session, joinedload

from dhr_workflow import agencies, audit, calendar, reviews
from dhr_workflow.errors import InvalidInput, NotFound
from dhr_workflow.models import (
    CLOSED_STATUSES,
    Action,
    Contact,
    ContactRole,
    DueBasis,
    FeedToken,
)
from dhr_workflow.overview import is_overdue

Scope = Literal["all", "review", "agency", "owner"]
REFRESH = dt.timedelta(hours=3)  # Outlook polls about every 3 hours; Google every 8-24


@dataclass(frozen=True)
class Created:
    token: FeedToken
    secret: str


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create(
    session: Session,
    kind: Scope,
    value: str | None,
    label: str | None,
    *,
    now: dt.datetime,
    actor: str,
) -> Created:
    """A new token for a scope; the secret is returned once and never stored."""
    scope_value = _checked_scope(session, kind, value)
    secret = secrets.token_urlsafe(24)  # 192 bits
    token = FeedToken(
        token_hash=_digest(secret),
        scope_kind=kind,
        scope_value=scope_value,
        label=label,
        created_at=now,
    )
    session.add(token)
    session.flush()
    audit.record(
        session,
        now=now,
        actor=actor,
        kind="feed.create",
        subject=f"feed:{token.id}",
        data={"scope": kind, "value": scope_value, "label": label},
    )
    return Created(token, secret)


def _checked_scope(session: Session, kind: Scope, value: str | None) -> str | None:
    if kind == "all":
        return None
    if not value:
        raise InvalidInput(f"a {kind} feed needs a value")
    if kind == "review":
        return reviews.get(session, value).ref
    if kind == "agency":
        agency = agencies.find(session, value)
        if agency is None:
            raise NotFound(f"no agency called {value!r} (see `dhr-workflow agencies list`)")
        return agency.name
    address = value.strip().lower()
    if session.scalar(select(Contact.id).where(_person(address)).limit(1)) is None:
        raise NotFound(
            f"no active contact with address {value.strip()!r} (see `dhr-workflow contacts list`)"
        )
    return address


def revoke(session: Session, token_id: int, *, now: dt.datetime, actor: str) -> FeedToken:
    token = session.get(FeedToken, token_id)
    if token is None:
        raise NotFound(f"no feed with id {token_id} (see `dhr-workflow feeds list`)")
    if token.revoked_at is None:
        token.revoked_at = now
        audit.record(
            session, now=now, actor=actor, kind="feed.revoke", subject=f"feed:{token.id}", data={}
        )
    return token


def list_all(session: Session) -> list[FeedToken]:
    return list(session.scalars(select(FeedToken).order_by(FeedToken.id)))


def lookup(session: Session, secret: str) -> FeedToken | None:
    """The live token for a secret, or None (unknown and revoked look the same)."""
    digest = _digest(secret)
    # Revoked tokens are filtered in SQL, not after loading: a revoked token then costs what
    # any wrong guess costs (no timing hint that it was once valid).
    token = session.scalar(
        select(FeedToken).where(FeedToken.token_hash == digest, FeedToken.revoked_at.is_(None))
    )
    if token is None or not hmac.compare_digest(token.token_hash, digest):
        return None
    return token


def _scope(session: Session, token: FeedToken, include_completed: bool) -> list[Any]:
    """The WHERE clauses selecting a feed's actions."""
    where: list[Any] = [Action.due_date.is_not(None)]
    if not include_completed:
        where.append(Action.status.not_in([s.value for s in CLOSED_STATUSES]))
    if token.scope_kind == "review":
        where.append(Action.review.has(ref=token.scope_value))
    elif token.scope_kind == "agency":
        agency = agencies.find(session, token.scope_value or "")
        where.append(Action.lead_agency_id == (agency.id if agency else -1))
    elif token.scope_kind == "owner":
        where.append(_told(token.scope_value or ""))
    return where


def _person(address: str) -> Any:
    return and_(func.lower(Contact.email) == address, Contact.active)


def _told(address: str) -> Any:
    """The actions a person is told about: those they own, and every action of an agency they
    lead or manage (the `owner` role falls back to the agency's lead when an action has no
    active owner contact; `agency.lead` and `agency.manager` escalations reach them too)."""
    owned = select(Contact.id).where(_person(address))
    led = select(Contact.agency_id).where(
        _person(address),
        Contact.agency_id.is_not(None),
        Contact.role.in_([ContactRole.LEAD.value, ContactRole.MANAGER.value]),
    )
    return or_(Action.owner_contact_id.in_(owned), Action.lead_agency_id.in_(led))


def _overdue(today: dt.date) -> Any:
    """SQL for :func:`dhr_workflow.overview.is_overdue`."""
    return and_(Action.status.not_in([s.value for s in CLOSED_STATUSES]), Action.due_date < today)


def _actions(session: Session, token: FeedToken, include_completed: bool) -> list[Action]:
    query = (
        select(Action)
        .where(*_scope(session, token, include_completed))
        .options(
            joinedload(Action.review),
            joinedload(Action.recommendation),
            joinedload(Action.lead_agency),
        )
        .order_by(Action.due_date, Action.id)
    )
    return list(session.scalars(query).unique())


def fingerprint(
    session: Session,
    token: FeedToken,
    *,
    include_completed: bool,
    detail: str,
    today: dt.date | None = None,
    base_url: str | None = None,
) -> str:
    """A cheap version stamp of a feed's content: one aggregate query instead of a render.
    Every change a feed shows bumps an action's updated_at (and moves its count, ids or
    sequence), so equal stamps mean equal feeds — the ETag, and the key of the render cache.
    A feed holding an overdue action changes every day (its second entry is on today's
    date), so then the day is part of the stamp; otherwise it is not, and the stamp lasts."""
    overdue = func.count(case((_overdue(today), 1))) if today else func.count(None)
    row = session.execute(
        select(
            func.count(Action.id),
            func.max(Action.updated_at),
            func.sum(Action.id),
            func.sum(Action.sequence),
            overdue,
        ).where(*_scope(session, token, include_completed))
    ).one()
    day = today.isoformat() if today and row[-1] else ""
    basis = f"{token.id}|{include_completed}|{detail}|{base_url}|{day}|{tuple(row)}"
    return '"' + hashlib.sha256(basis.encode()).hexdigest()[:32] + '"'


def render(
    session: Session,
    token: FeedToken,
    *,
    include_completed: bool = False,
    detail: Literal["minimal", "full"] = "minimal",
    today: dt.date | None = None,
    base_url: str | None = None,
    name: str = "DHR actions",
) -> bytes:
    """The feed's calendar (METHOD:PUBLISH), stable for unchanged data on one day.

    ``today`` is the partnership's local date: each open action due before it appears again
    on it (without a day, no such second entries). ``base_url`` is the web app's address:
    each entry then links to the action's page (URL and the description's last line)."""
    cal = Calendar()
    cal.add("prodid", calendar.PRODID)
    cal.add("version", "2.0")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", f"{name} ({token.label or token.scope_value or 'all'})")
    # icalendar 7.3's refresh_interval omits VALUE=DURATION, which RFC 7986 requires.
    cal.add("refresh-interval", vDuration(REFRESH), parameters={"VALUE": "DURATION"})
    cal.add("x-published-ttl", vDuration(REFRESH))
    for action in _actions(session, token, include_completed):
        link = f"{base_url}/actions/{action.id}" if base_url else None
        cal.add_component(_event(action, detail, link))
        if today is not None and is_overdue(action, today):
            cal.add_component(_overdue_event(action, detail, link, today))
    return bytes(cal.to_ical())


def _facts(action: Action) -> calendar.EventFacts:
    """What the email invitation for this action is built from: one title for both."""
    agency = action.lead_agency.name if action.lead_agency else None
    due: dt.date = action.due_date  # type: ignore[assignment]  # feeds hold dated actions
    return calendar.EventFacts(
        action.id, action.sequence, due, action.review.ref, action.ref, agency
    )


def _event(action: Action, detail: str, link: str | None) -> Event:
    facts = _facts(action)
    done = action.status in {s.value for s in CLOSED_STATUSES}
    event = _common(action, facts, link)
    event.add("uid", calendar.action_uid(action.id))
    event.add("dtstamp", action.updated_at)  # stored time, not now: stable bytes and ETag
    event.add("dtstart", facts.due_date)
    event.add("dtend", facts.due_date + dt.timedelta(days=1))  # exclusive
    event.add("summary", ("Done: " if done else "") + facts.summary)
    event.add("description", _description(action, detail, link, []))
    event.add("status", "CANCELLED" if action.status == "withdrawn" else "CONFIRMED")
    if action.due_basis == DueBasis.RECURRING and action.due_rule:
        event.add("rrule", {"freq": "monthly", "interval": action.due_rule.get("every_months", 6)})
    if not done:
        alarm = Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("description", "DHR action due")
        alarm.add("trigger", dt.timedelta(days=-7))
        event.add_component(alarm)
    return event


def _overdue_event(action: Action, detail: str, link: str | None, today: dt.date) -> Event:
    """The overdue action again, on today's date: moves with the day, never alarms."""
    facts = _facts(action)
    days = (today - facts.due_date).days
    event = _common(action, facts, link)
    event.add("uid", calendar.overdue_uid(action.id))
    # The day's start, not now: the same bytes all day (and the stored time if later).
    event.add("dtstamp", max(action.updated_at, dt.datetime.combine(today, dt.time(), dt.UTC)))
    event.add("dtstart", today)
    event.add("dtend", today + dt.timedelta(days=1))
    event.add("summary", "OVERDUE: " + facts.summary)
    due = f"{facts.due_date.day} {facts.due_date:%b %Y}"
    late = f"Overdue: due {due}, {days} day{'s' if days != 1 else ''} ago"
    event.add("description", _description(action, detail, link, [late]))
    event.add("status", "CONFIRMED")
    event.add("related-to", calendar.action_uid(action.id))
    return event


def _common(action: Action, facts: calendar.EventFacts, link: str | None) -> Event:
    event = Event()
    event.add("sequence", action.sequence)
    event.add("last-modified", action.updated_at)
    event.add("categories", [c for c in ("DHR", facts.review, facts.lead_agency) if c])
    event.add("transp", "TRANSPARENT")
    if link:
        event.add("url", link)
    return event


def _description(action: Action, detail: str, link: str | None, first: list[str]) -> str:
    lines = [*first, f"Status: {action.status.replace('_', ' ')}"]
    if detail == "full":
        rec = action.recommendation
        if rec is not None:
            lines.append(f"Recommendation {rec.ref}: {rec.text or '-'}")
        lines += [f"Action: {action.text or '-'}", f"The plan says: {action.target_text or '-'}"]
    if link:
        lines.append(link)
    return "\n".join(lines)


def describe(token: FeedToken) -> dict[str, Any]:
    return {
        "id": token.id,
        "scope": token.scope_kind,
        "value": token.scope_value,
        "label": token.label,
        "created_at": token.created_at,
        "revoked_at": token.revoked_at,
        "last_used_at": token.last_used_at,
    }
