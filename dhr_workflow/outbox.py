"""The outbox sender: claim, send, record — the one place delivery outcomes are written.

Claim, then act: a batch of due rows is claimed in one short transaction (FOR UPDATE SKIP
LOCKED on PostgreSQL; SQLite's single writer plus a lease column elsewhere), sent with no
database lock held, and each outcome recorded only if this sender still holds the lease. A
sender that crashes after sending but before recording leaves its lease to expire: the message
is sent again (same Message-ID) — repeated once at worst, never lost.

    pending --claim--> sending --sent--> sent
                          |--temporary failure--> pending (backoff) ... --> dead
                          '--permanent failure--> failed
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from dhr_workflow import audit, messages
from dhr_workflow.config import Settings
from dhr_workflow.db import Store
from dhr_workflow.durations import parse_window
from dhr_workflow.errors import InvalidInput, NotFound
from dhr_workflow.models import Contact, ContactRole, Notification
from dhr_workflow.templates import Templates
from dhr_workflow.transports import DeliveryError, Transport

FAILURE_TEMPLATE = "delivery_failure"
STATES = ("pending", "sending", "sent", "failed", "dead")


@dataclass
class BatchResult:
    sent: list[int] = field(default_factory=list)
    retried: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    dead: list[int] = field(default_factory=list)
    lost_lease: list[int] = field(default_factory=list)

    @property
    def claimed(self) -> int:
        return sum(
            len(x) for x in (self.sent, self.retried, self.failed, self.dead, self.lost_lease)
        )


def worker_id() -> str:
    return f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}"


def claim(
    session: Session, *, owner: str, now: dt.datetime, limit: int, lease: dt.timedelta
) -> list[int]:
    """Take up to ``limit`` due rows (pending and due, or sending with an expired lease)."""
    due = or_(
        (Notification.state == "pending") & (Notification.next_attempt_at <= now),
        (Notification.state == "sending") & (Notification.lease_until < now),
    )
    # Two statements in one transaction, not UPDATE ... WHERE id IN (SELECT ... SKIP LOCKED):
    # PostgreSQL may re-run such a subquery per row and, skipping the rows it has just locked,
    # claim more than the limit.
    ids = list(
        session.scalars(
            select(Notification.id)
            .where(due)
            .order_by(Notification.next_attempt_at, Notification.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    if not ids:
        return []
    stmt = (
        update(Notification)
        .where(Notification.id.in_(ids), due)
        .values(state="sending", lease_owner=owner, lease_until=now + lease)
        .returning(Notification.id)
    )
    return sorted(session.scalars(stmt).all())


def backoff(attempts: int, base: float, rng: random.Random) -> dt.timedelta:
    """Exponential with jitter (+-20%), so a recovering server is not hit by every replica
    at the same instant."""
    return dt.timedelta(seconds=base * (2 ** (attempts - 1)) * rng.uniform(0.8, 1.2))


async def send_batch(
    store: Store,
    transport: Transport,
    settings: Settings,
    *,
    clock: Callable[[], dt.datetime],
    owner: str,
    actor: str = "sender",
    templates: Templates | None = None,
    rng: random.Random | None = None,
    stop: Callable[[], bool] | None = None,
) -> BatchResult:
    """Claim one batch and try each message once. Time comes from ``clock``. Database work
    runs in a thread so the event loop (HTTP, the scheduler, signals) never waits on a lock.
    When ``stop()`` turns true, the messages not yet tried are released for the next sender."""
    rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
    window = parse_window(settings.send_window) if settings.send_window else None
    if window and not window.contains(clock(), settings.tz, settings.holidays_region):
        return BatchResult()  # quiet hours: messages wait in the outbox
    lease = dt.timedelta(seconds=settings.mail_lease_seconds)
    ids, notes = await asyncio.to_thread(
        _claim_batch, store, owner, clock(), settings.mail_batch_size, lease
    )
    result = BatchResult()
    if not ids:
        return result
    async with transport:
        for position, note_id in enumerate(ids):
            if stop is not None and stop():
                await asyncio.to_thread(release, store, ids[position:], owner)
                break
            note = notes[note_id]
            message = messages.build(note, mail_from=settings.mail_from, now=clock())
            try:
                refused = await transport.send(message, messages.recipients(note))
                outcome: tuple[str, str | None] = ("sent", _refusals(refused))
            except DeliveryError as exc:
                outcome = ("failed" if exc.permanent else "retry", str(exc))
            await asyncio.to_thread(
                _record_in,
                store,
                note_id,
                outcome,
                owner,
                clock(),
                settings,
                rng,
                result,
                actor,
                templates,
            )
    return result


def _claim_batch(
    store: Store, owner: str, now: dt.datetime, limit: int, lease: dt.timedelta
) -> tuple[list[int], dict[int, Notification]]:
    with store.transaction() as s:
        ids = claim(s, owner=owner, now=now, limit=limit, lease=lease)
    if not ids:
        return [], {}
    with store.reading() as s:
        return ids, {
            n.id: n for n in s.scalars(select(Notification).where(Notification.id.in_(ids)))
        }


def _record_in(
    store: Store,
    note_id: int,
    outcome: tuple[str, str | None],
    owner: str,
    now: dt.datetime,
    settings: Settings,
    rng: random.Random,
    result: BatchResult,
    actor: str,
    templates: Templates | None,
) -> None:
    with store.transaction() as s:
        _record(
            s,
            note_id,
            outcome,
            owner=owner,
            now=now,
            settings=settings,
            rng=rng,
            result=result,
            actor=actor,
            templates=templates,
        )


def release(store: Store, ids: list[int], owner: str) -> None:
    """Give claimed, untried messages back (a sender stopping): due again at once."""
    with store.transaction() as s:
        s.execute(
            update(Notification)
            .where(
                Notification.id.in_(ids),
                Notification.lease_owner == owner,
                Notification.state == "sending",
            )
            .values(state="pending", lease_owner=None, lease_until=None)
        )


def _refusals(refused: dict[str, str]) -> str | None:
    if not refused:
        return None
    return "some recipients refused: " + "; ".join(f"{a}: {r}" for a, r in refused.items())


def _record(
    session: Session,
    note_id: int,
    outcome: tuple[str, str | None],
    *,
    owner: str,
    now: dt.datetime,
    settings: Settings,
    rng: random.Random,
    result: BatchResult,
    actor: str,
    templates: Templates | None,
) -> None:
    note = session.get_one(Notification, note_id)
    if note.state != "sending" or note.lease_owner != owner:
        result.lost_lease.append(note_id)  # another sender took it over; it records
        return
    kind, error = outcome
    note.attempts += 1
    note.lease_owner, note.lease_until, note.last_error = None, None, error
    if kind == "sent":
        note.state, note.sent_at = "sent", now
        result.sent.append(note_id)
    elif kind == "failed":
        note.state = "failed"
        result.failed.append(note_id)
    elif note.attempts >= settings.mail_max_attempts:
        note.state = "dead"
        result.dead.append(note_id)
    else:
        note.state = "pending"
        note.next_attempt_at = now + backoff(note.attempts, settings.mail_retry_seconds, rng)
        result.retried.append(note_id)
    session.flush()
    audit.record(
        session,
        now=now,
        actor=actor,
        kind=f"notification.{note.state}",
        subject=f"notification:{note.id}",
        data={
            "attempts": note.attempts,
            "error": error,
            "to": note.to_addrs,
            "message_id": note.message_id,
            "next_attempt_at": note.next_attempt_at if note.state == "pending" else None,
        },
    )
    if (note.state in ("failed", "dead") or (kind == "sent" and error)) and templates:
        tell_coordinator(session, note, templates, now=now, actor=actor, problem=error or "")


def tell_coordinator(
    session: Session,
    note: Notification,
    templates: Templates,
    *,
    now: dt.datetime,
    actor: str,
    problem: str,
) -> Notification | None:
    """One delivery_failure notice to the partnership's coordinators (never about a notice)."""
    if note.template == FAILURE_TEMPLATE:
        return None
    to = sorted(
        {
            c.email
            for c in session.scalars(
                select(Contact).where(
                    Contact.role == ContactRole.COORDINATOR.value, Contact.agency_id.is_(None)
                )
            )
        }
    )
    if not to:
        audit.record(
            session,
            now=now,
            actor=actor,
            kind="rule.gap",
            subject="rule:delivery",
            data={"role": "coordinator", "notification": note.id},
        )
        return None
    rendered = templates.render(
        FAILURE_TEMPLATE,
        {
            "failed": {
                "id": note.id,
                "subject": note.subject,
                "to": note.to_addrs,
                "cc": note.cc_addrs,
                "state": note.state,
                "attempts": note.attempts,
                "error": problem,
                "created_at": note.created_at,
            },
            "today": now.date(),
            "partnership": None,
            "coordinator": None,
            "more": 0,
        },
    )
    notice = Notification(
        rule_id="delivery",
        template=FAILURE_TEMPLATE,
        to_addrs=to,
        cc_addrs=[],
        subject=rendered.subject,
        text_body=rendered.text,
        html_body=rendered.html,
        message_id=f"<{uuid.uuid4().hex}@dhr-workflow>",
        state="pending",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(notice)
    session.flush()
    audit.record(
        session,
        now=now,
        actor=actor,
        kind="notification.enqueue",
        subject=f"notification:{notice.id}",
        data={"template": FAILURE_TEMPLATE, "to": to, "about": note.id},
    )
    return notice


# --- the outbox commands -----------------------------------------------------------------------


def list_rows(session: Session, state: str | None = None, limit: int = 200) -> list[Notification]:
    query = select(Notification).order_by(Notification.id.desc()).limit(limit)
    if state is not None:
        query = query.where(Notification.state == state)
    return list(session.scalars(query))


def get(session: Session, note_id: int) -> Notification:
    note = session.get(Notification, note_id)
    if note is None:
        raise NotFound(f"no message with id {note_id} in the outbox (see `outbox list`)")
    return note


def retry(session: Session, note_id: int, *, now: dt.datetime, actor: str) -> Notification:
    """Put a failed or dead message back in the queue, due now, with its attempts reset."""
    note = get(session, note_id)
    if note.state not in ("failed", "dead"):
        raise InvalidInput(
            f"message {note_id} is {note.state}; only failed or dead messages can be retried"
        )
    before = note.state
    note.state, note.attempts, note.next_attempt_at = "pending", 0, now
    session.flush()
    audit.record(
        session,
        now=now,
        actor=actor,
        kind="notification.retry",
        subject=f"notification:{note.id}",
        data={"before": before},
    )
    return note


def describe(note: Notification) -> dict[str, Any]:
    return {
        "id": note.id,
        "state": note.state,
        "template": note.template,
        "rule": note.rule_id,
        "to": note.to_addrs,
        "cc": note.cc_addrs,
        "subject": note.subject,
        "attempts": note.attempts,
        "next_attempt_at": note.next_attempt_at,
        "last_error": note.last_error,
        "sent_at": note.sent_at,
        "created_at": note.created_at,
        "message_id": note.message_id,
        "calendar_parts": len(messages.calendar_parts(note)),
    }
