"""The retry policy of a reminder service: a capped backoff (a message goes out within
DHR_MAIL_RETRY_MAX_SECONDS of the server's return, however long it was away), giving up by
age (DHR_MAIL_GIVE_UP_HOURS of trying) rather than by a count of attempts, and a failure
notice that says how long it tried. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import random
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from dhr_workflow import db, outbox
from dhr_workflow.config import Settings
from dhr_workflow.models import Contact, Notification
from dhr_workflow.templates import Templates
from dhr_workflow.transports import DeliveryError, MemoryTransport
from tests.test_delivery import Clock

ROOT = Path(__file__).resolve().parent.parent
AT = dt.datetime(2024, 6, 3, 9, 0, tzinfo=dt.UTC)
DOWN = DeliveryError("cannot connect to 127.0.0.1:25: Connection refused", permanent=False)


@pytest.mark.parametrize(
    ("attempts", "base", "cap", "low", "high"),
    [
        (1, 60, 900, 48, 72),  # the first retry: base, +-20%
        (2, 60, 900, 96, 144),
        (4, 60, 900, 384, 576),
        (5, 60, 900, 720, 900),  # 960 s would be over the cap: at most the cap, 20% spread
        (12, 60, 900, 720, 900),  # the old doubling would wait 34 hours here
        (200, 60, 900, 720, 900),  # no overflow however many attempts
        (3, 60, 30, 24, 30),  # a cap below the base wins too
        (1, 600, float("inf"), 480, 720),  # no cap: the plain doubling
    ],
)
def test_backoff_is_capped(attempts: int, base: float, cap: float, low: float, high: float) -> None:
    rng = random.Random(attempts)
    for _ in range(200):
        wait = outbox.backoff(attempts, base, rng, cap).total_seconds()
        assert low <= wait <= high


@pytest.mark.parametrize(
    ("attempts", "spent", "said"),
    [
        (1, dt.timedelta(0), "once"),
        (1, dt.timedelta(hours=3), "once"),
        (2, dt.timedelta(seconds=50), "2 times over under a minute"),
        (3, dt.timedelta(minutes=1, seconds=10), "3 times over 1 minute"),
        (6, dt.timedelta(minutes=59), "6 times over 59 minutes"),
        (7, dt.timedelta(hours=1, minutes=5), "7 times over 1 hour 5 minutes"),
        (101, dt.timedelta(hours=24), "101 times over 24 hours"),
        (300, dt.timedelta(hours=75), "300 times over 3 days 3 hours"),
    ],
)
def test_tried_for(attempts: int, spent: dt.timedelta, said: str) -> None:
    assert outbox.tried_for(attempts, spent) == said


def _settings(**extra: Any) -> Settings:
    values: dict[str, Any] = {"mail_retry_seconds": 60, "mail_batch_size": 100} | extra
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def _enqueue(store: db.Store, when: dt.datetime) -> int:
    with store.transaction() as s:
        s.add(Contact(name="Cat", email="cat@csp.example.org", role="coordinator", created_at=AT))
        s.execute(insert(Notification), [{
            "rule_id": "deadline", "template": "overdue", "to_addrs": ["lead@police.example.org"],
            "cc_addrs": [], "subject": "Overdue: DHR R1 action 1", "text_body": "Overdue.\n",
            "html_body": "<p>Overdue.</p>", "message_id": "<r1@dhr-workflow>",
            "state": "pending", "attempts": 0, "next_attempt_at": when, "created_at": when,
        }])  # fmt: skip
        return int(s.scalars(select(Notification.id)).one())


def _row(store: db.Store, note_id: int) -> Notification:
    with store.reading() as s:
        return s.get_one(Notification, note_id)


TEMPLATES = Templates(ROOT / "templates" / "email")


def _send(store: db.Store, transport: Any, settings: Settings, clock: Clock) -> None:
    batch = outbox.send_batch(
        store, transport, settings, clock=clock, owner="t", templates=TEMPLATES,
        rng=random.Random(7),
    )  # fmt: skip
    asyncio.run(batch)


def _fail_until_dead(
    store: db.Store, note_id: int, settings: Settings, clock: Clock
) -> list[dt.datetime]:
    """The server stays down: the sender runs whenever the message is due (30 s late);
    returns when each try happened."""
    tries = []
    while (row := _row(store, note_id)).state == "pending":
        clock.now = max(clock.now, row.next_attempt_at + dt.timedelta(seconds=30))
        tries.append(clock.now)
        _send(store, MemoryTransport(fail=DOWN), settings, clock)
        assert len(tries) < 500, "never given up"
    return tries


def test_gives_up_after_a_day_of_tries_never_waiting_over_the_cap(store: db.Store) -> None:
    note_id = _enqueue(store, AT)
    clock = Clock(AT)
    tries = _fail_until_dead(store, note_id, _settings(), clock)
    row = _row(store, note_id)
    assert row.state == "dead"
    gaps = [b - a for a, b in itertools.pairwise(tries)]
    # Never more than the 15-minute cap (+ the sender's 30 s lateness) between tries...
    assert max(gaps) <= dt.timedelta(minutes=15, seconds=30), max(gaps)
    # ... and given up a day after the first failure, not after eight tries (about two hours)
    # and not after the cap stretched to a day.
    spent = tries[-1] - tries[0]
    assert dt.timedelta(hours=24) <= spent <= dt.timedelta(hours=24, minutes=1), spent
    assert row.attempts == len(tries)
    assert 90 <= row.attempts <= 130, row.attempts
    with store.reading() as s:
        [notice] = s.scalars(
            select(Notification).where(Notification.template == outbox.FAILURE_TEMPLATE)
        ).all()
    said = f"{row.attempts} times over 24 hours"
    assert f"Tried: {said}" in notice.text_body
    assert f"<td>{said}</td>" in (notice.html_body or "")


def test_an_hour_long_outage_costs_at_most_the_cap(store: db.Store) -> None:
    """Before the cap, doubling from a minute held a message about another hour after an
    hour-long outage; now it goes within 15 minutes of the server's return."""
    note_id = _enqueue(store, AT)
    clock = Clock(AT)
    settings = _settings()
    while clock.now < AT + dt.timedelta(hours=1):
        _send(store, MemoryTransport(fail=DOWN), settings, clock)
        clock.advance(minutes=1)
    back = clock.now
    up = MemoryTransport()
    while _row(store, note_id).state != "sent":
        _send(store, up, settings, clock)
        clock.advance(minutes=1)
        assert clock.now - back <= dt.timedelta(minutes=16), "held past the cap"
    assert len(up.sent) == 1


def test_max_attempts_still_ends_it_sooner(store: db.Store) -> None:
    note_id = _enqueue(store, AT)
    tries = _fail_until_dead(store, note_id, _settings(mail_max_attempts=5), Clock(AT))
    assert len(tries) == 5
    assert _row(store, note_id).state == "dead"


def test_a_message_put_back_gets_a_new_day(store: db.Store) -> None:
    """`outbox retry` starts a new run of tries: a message given up on days ago is not dead
    again at its first failure."""
    note_id = _enqueue(store, AT)
    clock = Clock(AT)
    settings = _settings(mail_give_up_hours=2)
    first = _fail_until_dead(store, note_id, settings, clock)
    assert first[-1] - first[0] >= dt.timedelta(hours=2)
    clock.advance(days=3)
    with store.transaction() as s:
        outbox.retry(s, note_id, now=clock.now, actor="test")
    second = _fail_until_dead(store, note_id, settings, clock)
    assert dt.timedelta(hours=2) <= second[-1] - second[0] <= dt.timedelta(hours=2, minutes=1)
    assert len(second) > 3


def test_the_give_up_time_counts_from_the_first_failure_not_the_enqueue(
    store: db.Store,
) -> None:
    """A message that waited (quiet hours, a backlog) before its first try still gets its
    full day of tries."""
    note_id = _enqueue(store, AT)
    clock = Clock(AT + dt.timedelta(hours=30))
    tries = _fail_until_dead(store, note_id, _settings(mail_give_up_hours=2), clock)
    assert tries[-1] - tries[0] >= dt.timedelta(hours=2)
