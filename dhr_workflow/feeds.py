"""iCal deadline feeds: secret subscription URLs, one RFC 5545 calendar per token's scope.

Tokens are 192-bit random secrets shown once; only their SHA-256 is stored, looked up by that
hash and compared in constant time. A feed carries the minimum by default (review ref,
recommendation, lead agency, date) because plan text can be confidential; the body is built
only from stored values, so the same data always gives the same bytes and the same ETag.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any, Literal

from icalendar import Alarm, Calendar, Event, vDuration
from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload

from dhr_workflow import agencies, audit, reviews
from dhr_workflow.calendar import PRODID, action_uid
from dhr_workflow.errors import InvalidInput, NotFound
from dhr_workflow.models import CLOSED_STATUSES, Action, Contact, DueBasis, FeedToken

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
    return value.strip().lower()


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
        owned = select(Contact.id).where(func.lower(Contact.email) == token.scope_value)
        where.append(Action.owner_contact_id.in_(owned))
    return where


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


def fingerprint(session: Session, token: FeedToken, *, include_completed: bool, detail: str) -> str:
    """A cheap version stamp of a feed's content: one aggregate query instead of a render.
    Every change a feed shows bumps an action's updated_at (and moves its count, ids or
    sequence), so equal stamps mean equal feeds — the ETag, and the key of the render cache."""
    row = session.execute(
        select(
            func.count(Action.id),
            func.max(Action.updated_at),
            func.sum(Action.id),
            func.sum(Action.sequence),
        ).where(*_scope(session, token, include_completed))
    ).one()
    basis = f"{token.id}|{include_completed}|{detail}|{tuple(row)}"
    return '"' + hashlib.sha256(basis.encode()).hexdigest()[:32] + '"'


def render(
    session: Session,
    token: FeedToken,
    *,
    include_completed: bool = False,
    detail: Literal["minimal", "full"] = "minimal",
    name: str = "DHR actions",
) -> bytes:
    """The feed's calendar (METHOD:PUBLISH), stable for unchanged data."""
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", f"{name} ({token.label or token.scope_value or 'all'})")
    # icalendar 7.3's refresh_interval omits VALUE=DURATION, which RFC 7986 requires.
    cal.add("refresh-interval", vDuration(REFRESH), parameters={"VALUE": "DURATION"})
    cal.add("x-published-ttl", vDuration(REFRESH))
    for action in _actions(session, token, include_completed):
        cal.add_component(_event(action, detail))
    return bytes(cal.to_ical())


def _event(action: Action, detail: str) -> Event:
    rec = action.recommendation
    agency = action.lead_agency.name if action.lead_agency else None
    ref = action.ref or (rec.ref if rec else str(action.id))
    done = action.status in {s.value for s in CLOSED_STATUSES}
    event = Event()
    event.add("uid", action_uid(action.id))
    event.add("sequence", action.sequence)
    event.add("dtstamp", action.updated_at)  # stored time, not now: stable bytes and ETag
    event.add("last-modified", action.updated_at)
    event.add("dtstart", action.due_date)
    event.add("dtend", action.due_date + dt.timedelta(days=1))  # type: ignore[operator]
    prefix = "Done: " if done else ""
    event.add(
        "summary",
        f"{prefix}DHR {action.review.ref} rec. {ref}" + (f" ({agency})" if agency else ""),
    )
    description = [f"Status: {action.status}"]
    if detail == "full":
        description += [action.text or "", f"The plan says: {action.target_text or '-'}"]
    event.add("description", "\n".join(description))
    event.add("status", "CANCELLED" if action.status == "withdrawn" else "CONFIRMED")
    event.add("categories", [c for c in ("DHR", action.review.ref, agency) if c])
    event.add("transp", "TRANSPARENT")
    if action.due_basis == DueBasis.RECURRING and action.due_rule:
        event.add("rrule", {"freq": "monthly", "interval": action.due_rule.get("every_months", 6)})
    if not done:
        alarm = Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("description", "DHR action due")
        alarm.add("trigger", dt.timedelta(days=-7))
        event.add_component(alarm)
    return event


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
