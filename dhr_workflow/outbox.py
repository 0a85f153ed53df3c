"""The outbox sender: claim, send, record — the one place delivery outcomes are written.

Claim, then act: a batch of due rows is claimed in one short transaction (FOR UPDATE SKIP
LOCKED on PostgreSQL; SQLite's single writer plus a lease column elsewhere), sent with no
database lock held, and each outcome recorded only if this sender still holds the lease.
Outcomes are written a small group at a time (RECORD_EVERY), each with its own audit event. A
sender that crashes after sending but before recording leaves its lease to expire: the messages
of the unrecorded group are sent again (same Message-ID) — repeated once at worst, never lost.

    pending --claim--> sending --sent--> sent
                          |--temporary failure--> pending (backoff) ... --> dead
                          '--permanent failure--> failed

Retry policy (a reminder is worth little late, and nothing if never sent): temporary failures
retry with exponential backoff from DHR_MAIL_RETRY_SECONDS, never waiting longer than
DHR_MAIL_RETRY_MAX_SECONDS (so a message goes out within that of a server's return), until the
message has been tried for DHR_MAIL_GIVE_UP_HOURS — counted from its first failure since it
was enqueued or put back with `outbox retry` (read from the audit log, which holds every try)
— then it is dead and the coordinator is told how long it was tried. DHR_MAIL_MAX_ATTEMPTS,
if set, ends it sooner.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from typing import cast as typing_cast

from sqlalchemy import Table, func, insert, or_, select, update
from sqlalchemy.orm import Session, aliased

from dhr_workflow import audit, messages
from dhr_workflow.config import Settings
from dhr_workflow.db import Store
from dhr_workflow.durations import parse_window
from dhr_workflow.errors import InvalidInput, NotFound
from dhr_workflow.messages import Attachment
from dhr_workflow.models import AuditEvent, Contact, ContactRole, Notification, NotificationState
from dhr_workflow.templates import Rendered, Templates
from dhr_workflow.transports import DeliveryError, Transport

FAILURE_TEMPLATE = "delivery_failure"  # the coordinator's notice; checked at start-up
STATES = tuple(s.value for s in NotificationState)


@dataclass
class BatchResult:
    sent: list[int] = field(default_factory=list)
    retried: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    dead: list[int] = field(default_factory=list)
    lost_lease: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # why messages were not delivered

    def extend(self, other: BatchResult) -> None:
        for name in ("sent", "retried", "failed", "dead", "lost_lease", "errors"):
            getattr(self, name).extend(getattr(other, name))

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
        (Notification.state == NotificationState.PENDING) & (Notification.next_attempt_at <= now),
        (Notification.state == NotificationState.SENDING) & (Notification.lease_until < now),
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
        .values(state=NotificationState.SENDING, lease_owner=owner, lease_until=now + lease)
        .returning(Notification.id)
    )
    return sorted(session.scalars(stmt).all())


def backoff(
    attempts: int, base: float, rng: random.Random, cap: float = float("inf")
) -> dt.timedelta:
    """Exponential with jitter (+-20%), so a recovering server is not hit by every replica
    at the same instant; never longer than ``cap`` (and spread over the 20% below it)."""
    grown = base * 2 ** min(attempts - 1, 60) * rng.uniform(0.8, 1.2)
    return dt.timedelta(seconds=min(grown, cap * rng.uniform(0.8, 1.0)))


# Outcomes are written in small groups, one transaction each: a transaction and an audit
# chain append per message cost more than the SMTP exchange itself. A crash between sending
# and recording repeats at most the unrecorded group (same Message-ID), never loses it.
RECORD_EVERY = 25  # messages
RECORD_SECONDS = 0.2  # ... or once the oldest is this old (checked as each send ends)

Outcome = tuple[str, str | None]  # ("sent" | "failed" | "retry", error or refusals)


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
    Outcomes are recorded in groups (see RECORD_EVERY) and always before returning. When
    ``stop()`` turns true, the messages not yet tried are released for the next sender."""
    window = parse_window(settings.send_window) if settings.send_window else None
    if window and not window.contains(clock(), settings.tz, settings.holidays_region):
        return BatchResult()  # quiet hours: messages wait in the outbox
    lease = dt.timedelta(seconds=settings.mail_lease_seconds)
    ids, notes = await asyncio.to_thread(
        _claim_batch, store, owner, clock(), settings.mail_batch_size, lease
    )
    recorder = _Recorder(
        store, owner, settings, clock, actor, templates,
        rng or random.Random(),  # noqa: S311 - jitter, not secrets
    )  # fmt: skip
    if not ids:
        return recorder.result
    async with transport:
        try:
            for position, note_id in enumerate(ids):
                if stop is not None and stop():
                    await recorder.flush()
                    await asyncio.to_thread(release, store, ids[position:], owner)
                    break
                recorder.add(note_id, await _attempt(transport, notes[note_id], settings, clock))
                if recorder.due():
                    await recorder.flush()
        finally:
            await recorder.flush()  # a batch cut short still records what it sent
    return recorder.result


async def _attempt(
    transport: Transport, note: Notification, settings: Settings, clock: Callable[[], dt.datetime]
) -> Outcome:
    message = messages.build(note, mail_from=settings.mail_from, now=clock())
    try:
        refused = await transport.send(message, messages.recipients(note))
    except DeliveryError as exc:
        return ("failed" if exc.permanent else "retry", str(exc))
    return ("sent", _refusals(refused))


@dataclass
class _Recorder:
    """Outcomes not yet written, and the one place that writes them (a group at a time)."""

    store: Store
    owner: str
    settings: Settings
    clock: Callable[[], dt.datetime]
    actor: str
    templates: Templates | None
    rng: random.Random
    pending: list[tuple[int, Outcome, dt.datetime]] = field(default_factory=list)
    oldest: float = 0.0  # time.monotonic() of the first pending outcome
    result: BatchResult = field(default_factory=BatchResult)

    def add(self, note_id: int, outcome: Outcome) -> None:
        if not self.pending:
            self.oldest = time.monotonic()
        self.pending.append((note_id, outcome, self.clock()))

    def due(self) -> bool:
        return len(self.pending) >= RECORD_EVERY or time.monotonic() - self.oldest >= RECORD_SECONDS

    async def flush(self) -> None:
        # Taken off the list first: a failed write is not retried by the caller's finally
        # (those messages keep their lease and are sent again when it expires).
        group, self.pending = self.pending, []
        if group:
            done = await asyncio.to_thread(self._write, group)
            self.result.extend(done)

    def _write(self, group: list[tuple[int, Outcome, dt.datetime]]) -> BatchResult:
        with self.store.transaction() as s:
            return record_outcomes(
                s, group, owner=self.owner, now=self.clock(), settings=self.settings,
                rng=self.rng, actor=self.actor, templates=self.templates,
            )  # fmt: skip


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


def release(store: Store, ids: list[int], owner: str) -> None:
    """Give claimed, untried messages back (a sender stopping): due again at once."""
    with store.transaction() as s:
        s.execute(
            update(Notification)
            .where(
                Notification.id.in_(ids),
                Notification.lease_owner == owner,
                Notification.state == NotificationState.SENDING,
            )
            .values(state=NotificationState.PENDING, lease_owner=None, lease_until=None)
        )


def _refusals(refused: dict[str, str]) -> str | None:
    if not refused:
        return None
    return "some recipients refused: " + "; ".join(f"{a}: {r}" for a, r in refused.items())


def record_outcomes(
    session: Session,
    group: list[tuple[int, Outcome, dt.datetime]],
    *,
    owner: str,
    now: dt.datetime,
    settings: Settings,
    rng: random.Random,
    actor: str,
    templates: Templates | None,
) -> BatchResult:
    """Write a group of (id, outcome, when) in the caller's transaction: one locked read of
    the rows this sender still holds, their new states, one audit event per outcome appended
    at once, then any failure notices. A row another sender took over is left to it."""
    held = _still_held(session, [note_id for note_id, _, _ in group], owner)
    since = trying_since(session, [i for i, outcome, _ in group if outcome[0] != "sent"])
    done = BatchResult()
    events: list[tuple[str, str, dict[str, Any]]] = []
    for note_id, outcome, at in group:
        note = held.get(note_id)
        if note is None:
            done.lost_lease.append(note_id)  # another sender took it over; it records
            continue
        _apply(note, outcome, at, since.setdefault(note_id, at), settings, rng, done)
        events.append(_event(note))
    session.flush()
    audit.record_many(session, now=now, actor=actor, events=events)
    if templates is not None:
        for note_id, outcome, at in group:
            note = held.get(note_id)
            if note is not None and _worth_telling(note, outcome):
                tried = tried_for(note.attempts, at - since.get(note_id, at))
                tell_coordinator(
                    session, note, templates, now=now, actor=actor, problem=outcome[1] or "",
                    partnership=settings.partnership, web=settings.public_base_url,
                    tried=tried,
                )  # fmt: skip
    return done


def trying_since(session: Session, ids: list[int]) -> dict[int, dt.datetime]:
    """When each message's current run of tries began: its first temporary failure on record
    after it was enqueued or last put back with `outbox retry` (messages with none yet are
    left out: their run begins with this attempt). One query for a group."""
    if not ids:
        return {}
    subjects = {f"notification:{i}": i for i in ids}
    retried = aliased(AuditEvent)
    last_retry = (
        select(func.max(retried.seq))
        .where(retried.subject == AuditEvent.subject, retried.kind == "notification.retry")
        .scalar_subquery()
    )
    rows = session.execute(
        select(AuditEvent.subject, func.min(AuditEvent.at))
        .where(
            AuditEvent.subject.in_(list(subjects)),
            AuditEvent.kind == "notification.pending",
            AuditEvent.seq > func.coalesce(last_retry, 0),
        )
        .group_by(AuditEvent.subject)
    )
    return {subjects[subject]: _utc(at) for subject, at in rows if at is not None}


def _utc(at: dt.datetime) -> dt.datetime:
    return at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at


def tried_for(attempts: int, spent: dt.timedelta) -> str:
    """How long a message was tried, for the coordinator: "once", "5 times over 2 hours"."""
    if attempts <= 1:
        return "once"
    minutes = int(spent.total_seconds() // 60)
    hours, minutes = divmod(minutes, 60)
    if hours >= 48:
        span = f"{hours // 24} days" + (f" {hours % 24} hours" if hours % 24 else "")
    elif hours:
        span = _plural(hours, "hour") + (f" {_plural(minutes, 'minute')}" if minutes else "")
    else:
        span = _plural(minutes, "minute") if minutes else "under a minute"
    return f"{attempts} times over {span}"


def _plural(n: int, unit: str) -> str:
    return f"{n} {unit}" if n == 1 else f"{n} {unit}s"


def _still_held(session: Session, ids: list[int], owner: str) -> dict[int, Notification]:
    # One query for the group instead of a get per row. FOR UPDATE (PostgreSQL) so a sender
    # re-claiming an expired lease cannot slip in between this read and our write; SQLite's
    # BEGIN IMMEDIATE already keeps other writers out.
    rows = session.scalars(
        select(Notification)
        .where(
            Notification.id.in_(ids),
            Notification.state == NotificationState.SENDING,
            Notification.lease_owner == owner,
        )
        .with_for_update()
    )
    return {note.id: note for note in rows}


def _apply(
    note: Notification,
    outcome: Outcome,
    at: dt.datetime,
    since: dt.datetime,
    settings: Settings,
    rng: random.Random,
    done: BatchResult,
) -> None:
    """The row's next state after one attempt ended at ``at`` (its run of tries began at
    ``since``): a temporary failure waits for the next try, never past the give-up time,
    and one at or after it is the last."""
    kind, error = outcome
    note.attempts += 1
    note.lease_owner, note.lease_until, note.last_error = None, None, error
    if error is not None and kind != "sent":
        done.errors.append(error)
    give_up = since + dt.timedelta(hours=settings.mail_give_up_hours)
    most = settings.mail_max_attempts
    if kind == "sent":
        note.state, note.sent_at = NotificationState.SENT, at
        done.sent.append(note.id)
    elif kind == "failed":
        note.state = NotificationState.FAILED
        done.failed.append(note.id)
    elif at >= give_up or (most is not None and note.attempts >= most):
        note.state = NotificationState.DEAD
        done.dead.append(note.id)
    else:
        note.state = NotificationState.PENDING
        wait = backoff(
            note.attempts, settings.mail_retry_seconds, rng, settings.mail_retry_max_seconds
        )
        note.next_attempt_at = min(at + wait, give_up)  # a last try when the time is up
        done.retried.append(note.id)


def _worth_telling(note: Notification, outcome: Outcome) -> bool:
    """Given up on, or delivered with some recipients refused: a person has to act."""
    kind, error = outcome
    given_up = (NotificationState.FAILED, NotificationState.DEAD)
    return note.state in given_up or (kind == "sent" and error is not None)


def _event(note: Notification) -> tuple[str, str, dict[str, Any]]:
    return (
        f"notification.{note.state}",
        f"notification:{note.id}",
        {
            "attempts": note.attempts,
            "error": note.last_error,
            "to": note.to_addrs,
            "message_id": note.message_id,
            "next_attempt_at": (
                note.next_attempt_at if note.state == NotificationState.PENDING else None
            ),
        },
    )


@dataclass(frozen=True)
class Outgoing:
    """A rendered message on its way into the outbox."""

    rule_id: str
    template: str
    to: list[str]
    rendered: Rendered
    cc: list[str] = field(default_factory=list)
    calendar: str | None = None
    reply_to: str | None = None
    attachment: Attachment | None = None


class Queued(NamedTuple):
    """A message put in the outbox: its row and Message-ID."""

    id: int
    message_id: str


def enqueue(session: Session, outgoing: list[Outgoing], *, now: dt.datetime) -> list[Queued]:
    """Put rendered messages in the outbox: pending, due ``now``, each with its own
    Message-ID. The one place a message enters the outbox (the engine's reminders, the
    notices below), a tick's chunk in a few multi-row INSERTs (rows, not ORM objects: a
    tick's bodies run to megabytes); the caller audits them."""
    if not outgoing:
        return []
    message_ids = [f"<{uuid.uuid4().hex}@dhr-workflow>" for _ in outgoing]
    rows = [
        {
            "rule_id": o.rule_id,
            "template": o.template,
            "to_addrs": o.to,
            "cc_addrs": o.cc,
            "subject": o.rendered.subject,
            "text_body": o.rendered.text,
            "html_body": o.rendered.html,
            "calendar": o.calendar,
            "message_id": message_id,
            "reply_to": o.reply_to,
            "attachment_name": o.attachment.filename if o.attachment else None,
            "attachment": o.attachment.content if o.attachment else None,
            "state": NotificationState.PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for o, message_id in zip(outgoing, message_ids, strict=True)
    ]
    # The table's INSERT, not the ORM's: the ORM leaves out a row's None values and starts a
    # new statement whenever they change (a calendar part or none), one every row or two. The
    # ids are matched back by Message-ID, unique and ours, so their order does not matter.
    table = typing_cast(Table, Notification.__table__)
    stmt = insert(table).returning(table.c.message_id, table.c.id)
    ids: dict[str, int] = dict(session.execute(stmt, rows).all())
    return [Queued(ids[m], m) for m in message_ids]


def render_and_enqueue(
    session: Session,
    templates: Templates,
    template: str,
    context: dict[str, Any],
    *,
    to: list[str],
    now: dt.datetime,
    actor: str,
    rule_id: str,
    reply_to: str | None = None,
    data: dict[str, Any] | None = None,
) -> Queued:
    """Render one message with the email templates and put it in the outbox, due now, with
    its own Message-ID; audited as ``notification.enqueue`` (``data`` adds what it is about)."""
    rendered = templates.render(template, context)
    (note,) = enqueue(
        session, [Outgoing(rule_id, template, to, rendered, reply_to=reply_to)], now=now
    )
    audit.record(
        session, now=now, actor=actor, kind="notification.enqueue",
        subject=f"notification:{note.id}",
        data={"template": template, "to": to, **(data or {}), "message_id": note.message_id},
    )  # fmt: skip
    return note


def tell_coordinator(
    session: Session,
    note: Notification,
    templates: Templates,
    *,
    now: dt.datetime,
    actor: str,
    problem: str,
    partnership: str | None = None,
    web: str | None = None,
    tried: str | None = None,
) -> Queued | None:
    """One delivery_failure notice to the partnership's coordinators (never about a notice);
    ``tried`` says how long it was tried ("24 times over 6 hours"; default from attempts)."""
    if note.template == FAILURE_TEMPLATE:
        return None
    names = {
        c.email: c.name
        for c in session.scalars(
            select(Contact).where(
                Contact.role == ContactRole.COORDINATOR.value,
                Contact.agency_id.is_(None),
                Contact.active,
            )
        )
    }
    to = sorted(names)
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
    context = {
        "failed": {
            "id": note.id,
            "subject": note.subject,
            "to": note.to_addrs,
            "cc": note.cc_addrs,
            "state": note.state,
            "attempts": note.attempts,
            "error": problem,
            "created_at": note.created_at,
            "tried_for": tried or tried_for(note.attempts, dt.timedelta(0)),
        },
        "today": now.date(),
        "partnership": partnership,
        "coordinator": None,
        # one coordinator: greeted by name; several share one message
        "recipient": {"name": names[to[0]], "email": to[0]} if len(to) == 1 else None,
        "web": web,
        "more": 0,
    }
    return render_and_enqueue(
        session, templates, FAILURE_TEMPLATE, context, to=to, now=now, actor=actor,
        rule_id="delivery", data={"about": note.id},
    )  # fmt: skip


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
    if note.state not in (NotificationState.FAILED, NotificationState.DEAD):
        raise InvalidInput(
            f"message {note_id} is {note.state}; only failed or dead messages can be retried"
        )
    before = note.state
    note.state, note.attempts, note.next_attempt_at = NotificationState.PENDING, 0, now
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
