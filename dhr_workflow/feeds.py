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
from typing import Any, Literal, NamedTuple

from icalendar import Calendar, vDuration, vRecur
from sqlalchemy import Select, and_, case, func, null, or_, select
from sqlalchemy.orm import Session, aliased

from dhr_workflow import agencies, audit, calendar, reviews
from dhr_workflow import contentlines as ics
from dhr_workflow.errors import InvalidInput, NotFound
from dhr_workflow.models import (
    CLOSED_STATUSES,
    Action,
    Agency,
    Contact,
    ContactRole,
    DueBasis,
    FeedToken,
    Recommendation,
    Review,
)
from dhr_workflow.text import one_line

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
    label = one_line(label) or None
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
    head = _head(token, name)
    rows = session.execute(rows_query(session, token, include_completed, detail))
    lines: list[str] = []
    for row in rows:
        entry = _Entry(*row)
        link = f"{base_url}/actions/{entry.id}" if base_url else None
        _event(lines, entry, detail, link)
        if today is not None and entry.status not in CLOSED and entry.due_date < today:
            _overdue_event(lines, entry, detail, link, today)
    lines.append(_END)
    return head + "\r\n".join(lines).encode()


_END = "END:VCALENDAR\r\n"
CLOSED = frozenset(s.value for s in CLOSED_STATUSES)
_ALARM = (
    "BEGIN:VALARM\r\nACTION:DISPLAY\r\nDESCRIPTION:DHR action due\r\nTRIGGER:-P7D\r\nEND:VALARM"
)


def _head(token: FeedToken, name: str) -> bytes:
    """The calendar's own properties, through icalendar (once per render, not per event),
    without its closing line: the events go before it."""
    cal = Calendar()
    cal.add("prodid", calendar.PRODID)
    cal.add("version", "2.0")
    cal.add("method", "PUBLISH")
    # One line: icalendar refuses a raw line break in a property it does not know, and older
    # versions stored labels as typed.
    title = f"{name} ({token.label or token.scope_value or 'all'})"
    cal.add("x-wr-calname", one_line(title))
    # icalendar 7.3's refresh_interval omits VALUE=DURATION, which RFC 7986 requires.
    cal.add("refresh-interval", vDuration(REFRESH), parameters={"VALUE": "DURATION"})
    cal.add("x-published-ttl", vDuration(REFRESH))
    whole = bytes(cal.to_ical())
    return whole.removesuffix(_END.encode())


def rows_query(
    session: Session, token: FeedToken, include_completed: bool, detail: str
) -> Select[Any]:
    """A feed's actions as plain rows (the columns of :class:`_Entry`, in its order): loading
    ORM objects with their review, agency and recommendation cost several times the query."""
    review, agency, rec = aliased(Review), aliased(Agency), aliased(Recommendation)
    plan: tuple[Any, ...] = (null(), null(), null(), null())  # what "minimal" leaves out
    if detail == "full":
        plan = (Action.text, Action.target_text, rec.ref, rec.text)
    columns = (
        Action.id, Action.sequence, Action.due_date, Action.status, Action.updated_at,
        Action.due_basis, Action.due_rule, Action.ref, review.ref, agency.name, *plan,
    )  # fmt: skip
    query = (
        select(*columns)
        .join(review, Action.review_id == review.id)
        .outerjoin(agency, Action.lead_agency_id == agency.id)
    )
    if detail == "full":
        query = query.outerjoin(rec, Action.recommendation_id == rec.id)
    return query.where(*_scope(session, token, include_completed)).order_by(
        Action.due_date, Action.id
    )


class _Entry(NamedTuple):
    """One row of :func:`rows_query`: what a feed says about an action."""

    id: int
    sequence: int
    due_date: dt.date
    status: str
    updated_at: dt.datetime
    due_basis: str
    due_rule: dict[str, Any] | None
    ref: str
    review: str
    agency: str | None
    text: str | None  # the plan's words, for detail "full" only
    target_text: str | None
    rec_ref: str | None
    rec_text: str | None


def _summary(entry: _Entry) -> str:
    """The same title as the action's email invitation."""
    facts = calendar.EventFacts(
        entry.id, entry.sequence, entry.due_date, entry.review, entry.ref, entry.agency
    )
    return facts.summary


def _event(lines: list[str], entry: _Entry, detail: str, link: str | None) -> None:
    """The action on its due date; properties in icalendar's order (canonical, then A-Z)."""
    done = entry.status in CLOSED
    stamp = ics.utc(entry.updated_at)  # stored time, not now: stable bytes and ETag
    lines += [
        "BEGIN:VEVENT",
        ics.fold("SUMMARY:" + ics.text(("Done: " if done else "") + _summary(entry))),
        "DTSTART;VALUE=DATE:" + ics.date(entry.due_date),
        "DTEND;VALUE=DATE:" + ics.date(entry.due_date + _DAY),  # exclusive
        "DTSTAMP:" + stamp,
        ics.fold("UID:" + ics.text(calendar.action_uid(entry.id))),
        f"SEQUENCE:{entry.sequence}",
    ]
    if entry.due_basis == DueBasis.RECURRING and entry.due_rule:
        every = entry.due_rule.get("every_months", 6)
        # Rare, so through icalendar's own RECUR writer: whatever the rule holds, its bytes.
        rule: bytes = vRecur({"freq": "monthly", "interval": every}).to_ical()  # type: ignore[no-untyped-call]
        lines.append(ics.fold("RRULE:" + rule.decode()))
    _common(lines, entry, stamp, _description(entry, detail, link, []))
    lines.append("STATUS:" + ("CANCELLED" if entry.status == "withdrawn" else "CONFIRMED"))
    _tail(lines, link)
    if not done:
        lines.append(_ALARM)
    lines.append("END:VEVENT")


def _overdue_event(
    lines: list[str], entry: _Entry, detail: str, link: str | None, today: dt.date
) -> None:
    """The overdue action again, on today's date: moves with the day, never alarms."""
    days = (today - entry.due_date).days
    # The day's start, not now: the same bytes all day (and the stored time if later).
    stamp = max(entry.updated_at, dt.datetime.combine(today, dt.time(), dt.UTC))
    due = f"{entry.due_date.day} {entry.due_date:%b %Y}"
    late = f"Overdue: due {due}, {days} day{'s' if days != 1 else ''} ago"
    lines += [
        "BEGIN:VEVENT",
        ics.fold("SUMMARY:" + ics.text("OVERDUE: " + _summary(entry))),
        "DTSTART;VALUE=DATE:" + ics.date(today),
        "DTEND;VALUE=DATE:" + ics.date(today + _DAY),
        "DTSTAMP:" + ics.utc(stamp),
        ics.fold("UID:" + ics.text(calendar.overdue_uid(entry.id))),
        f"SEQUENCE:{entry.sequence}",
    ]
    _common(lines, entry, ics.utc(entry.updated_at), _description(entry, detail, link, [late]))
    lines.append(ics.fold("RELATED-TO:" + ics.text(calendar.action_uid(entry.id))))
    lines.append("STATUS:CONFIRMED")
    _tail(lines, link)
    lines.append("END:VEVENT")


_DAY = dt.timedelta(days=1)


def _common(lines: list[str], entry: _Entry, modified: str, description: str) -> None:
    categories = (c for c in ("DHR", entry.review, entry.agency) if c)
    lines += [
        ics.fold("CATEGORIES:" + ",".join(ics.text(c) for c in categories)),
        ics.fold("DESCRIPTION:" + ics.text(description)),
        "LAST-MODIFIED:" + modified,
    ]


def _tail(lines: list[str], link: str | None) -> None:
    lines.append("TRANSP:TRANSPARENT")
    if link:
        lines.append(ics.fold("URL:" + link))


def _description(entry: _Entry, detail: str, link: str | None, first: list[str]) -> str:
    lines = [*first, f"Status: {entry.status.replace('_', ' ')}"]
    if detail == "full":
        if entry.rec_ref is not None:
            lines.append(f"Recommendation {entry.rec_ref}: {entry.rec_text or '-'}")
        lines += [f"Action: {entry.text or '-'}", f"The plan says: {entry.target_text or '-'}"]
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
