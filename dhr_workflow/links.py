"""Links in messages that let a recipient act on one action without signing in.

Every deadline message carries, per action it lists, three links for its recipient: report
progress, mark as done, ask for more time. A link's token is a random secret (only its SHA-256
is stored) bound to one recipient, one action and one purpose: it is the authority for that
alone. It works while the action is open and for 60 days after it closes, until the
coordinator revokes it. The token never appears in logs or the audit log (events name the
link by its id).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session, joinedload

from dhr_workflow import audit
from dhr_workflow.models import CLOSED_STATUSES, ActionLink, AuditEvent

PURPOSES = ("progress", "done", "extend")
AFTER_CLOSING = dt.timedelta(days=60)
TOKEN_LIMIT = 100  # longer is no token of ours: refused before hashing


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class NewLink:
    """A link made for a message: the secret goes into the message, the row into the store."""

    action_id: int
    recipient: str
    purpose: str
    secret: str


def make(action_id: int, recipient: str, purpose: str) -> NewLink:
    """A new link (not yet stored: a dry run renders messages it never sends)."""
    assert purpose in PURPOSES
    return NewLink(action_id, recipient, purpose, secrets.token_urlsafe(24))


def store(session: Session, links: Iterable[NewLink], *, now: dt.datetime) -> None:
    """Keep the links of a message being enqueued (hashes only)."""
    rows = [
        {
            "token_hash": digest(link.secret),
            "action_id": link.action_id,
            "recipient": link.recipient,
            "purpose": link.purpose,
            "created_at": now,
        }
        for link in links
    ]
    if rows:
        session.execute(insert(ActionLink), rows)


def path(link: NewLink) -> str:
    return f"/act/{link.secret}"


def find(session: Session, secret: str) -> ActionLink | None:
    """The link a secret belongs to, whether or not it still works (see :func:`state`)."""
    if not secret or len(secret) > TOKEN_LIMIT:
        return None
    return session.scalar(
        select(ActionLink)
        .options(joinedload(ActionLink.action))
        .where(ActionLink.token_hash == digest(secret))
    )


def state(link: ActionLink, today: dt.date) -> str:
    """ "live", "revoked" or "expired" (60 days after its action closed)."""
    if link.revoked_at is not None:
        return "revoked"
    action = link.action
    if action.status in CLOSED_STATUSES:
        closed = action.completed_on or action.updated_at.date()
        if today > closed + AFTER_CLOSING:
            return "expired"
    return "live"


def revoke(
    session: Session, action_id: int, *, now: dt.datetime, actor: str, recipient: str | None = None
) -> int:
    """Revoke an action's links (one recipient's, or everyone's); returns how many."""
    where = [ActionLink.action_id == action_id, ActionLink.revoked_at.is_(None)]
    if recipient is not None:
        where.append(ActionLink.recipient == recipient)
    ids = list(session.scalars(select(ActionLink.id).where(*where)))
    if ids:
        session.execute(update(ActionLink).where(ActionLink.id.in_(ids)).values(revoked_at=now))
        audit.record(
            session, now=now, actor=actor, kind="links.revoke", subject=f"action:{action_id}",
            data={"links": ids, "recipient": recipient},
        )  # fmt: skip
    return len(ids)


def live_for(session: Session, action_id: int) -> list[ActionLink]:
    return list(
        session.scalars(
            select(ActionLink)
            .where(ActionLink.action_id == action_id, ActionLink.revoked_at.is_(None))
            .order_by(ActionLink.recipient, ActionLink.purpose)
        )
    )


def sent_for(session: Session, action_id: int) -> list[ActionLink]:
    """Every link made for an action, revoked or not, newest first (the action's page)."""
    return list(
        session.scalars(
            select(ActionLink)
            .where(ActionLink.action_id == action_id)
            .order_by(ActionLink.created_at.desc(), ActionLink.recipient, ActionLink.id)
        )
    )


def claim(session: Session, link_id: int, *, now: dt.datetime) -> bool:
    """Mark a single-use ("done") link used; False if it already was. A conditional UPDATE:
    of two clicks at the same moment, only one goes on to change the action."""
    won = session.execute(
        update(ActionLink)
        .where(ActionLink.id == link_id, ActionLink.used_at.is_(None))
        .values(used_at=now)
        .returning(ActionLink.id)
    ).first()
    return won is not None


@dataclass(frozen=True)
class Completion:
    """What a "done" link recorded: when, by whom, the completion date and the outcome."""

    at: dt.datetime
    by: str
    completed_on: dt.date | None
    outcome: str


def completion(session: Session, link: ActionLink) -> Completion | None:
    """What this link recorded when it was used, from the audit log (the action may have been
    reopened or corrected since)."""
    events = session.scalars(
        select(AuditEvent)
        .where(AuditEvent.subject == f"action:{link.action_id}", AuditEvent.kind == "action.status")
        .order_by(AuditEvent.seq.desc())
    )
    for event in events:
        data = json.loads(event.data)
        if data.get("link") == link.id:
            day = data.get("after", {}).get("completed_on")
            return Completion(
                at=event.at, by=event.actor, outcome=str(data.get("note") or ""),
                completed_on=dt.date.fromisoformat(day) if day else None,
            )  # fmt: skip
    return None
