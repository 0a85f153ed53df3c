"""The outbox records outcomes a group at a time (one transaction and one audit append per
group, not per message) and keeps its promises: every outcome audited once, a row another
sender took over left to it, and a sender killed between sending and recording repeats at most
the unrecorded group (same Message-ID), never loses a message. SQLite and PostgreSQL; a real
SMTP server and a real SIGKILL where the wire matters."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
from collections import Counter
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select, update

from dhr_workflow import audit, db, outbox
from dhr_workflow.config import Settings
from dhr_workflow.models import AuditEvent, Contact, Notification
from dhr_workflow.templates import Templates
from dhr_workflow.transports import DeliveryError, MemoryTransport, SmtpTransport
from tests.smtp_server import Handler, SmtpServer

ROOT = Path(__file__).resolve().parent.parent
AT = dt.datetime(2024, 6, 3, 9, 0, tzinfo=dt.UTC)


def enqueue(store: db.Store, n: int) -> list[int]:
    """N pending messages, each to its own address, due now."""
    with store.transaction() as s:
        s.execute(insert(Notification), [{
            "rule_id": "deadline", "template": "overdue", "to_addrs": [f"p{i}@example.org"],
            "cc_addrs": [], "subject": f"Overdue {i}", "text_body": f"Action {i} is overdue.\n",
            "html_body": f"<p>Action {i} is overdue.</p>", "message_id": f"<m{i}@dhr-workflow>",
            "state": "pending", "attempts": 0, "next_attempt_at": AT, "created_at": AT,
        } for i in range(n)])  # fmt: skip
        return list(s.scalars(select(Notification.id).order_by(Notification.id)))


def settings_for(port: int = 1, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "mail_transport": "smtp", "smtp_host": "127.0.0.1", "smtp_port": port,
        "smtp_security": "none", "smtp_timeout": 5, "mail_batch_size": 100,
        "mail_retry_seconds": 60, "mail_max_attempts": 8,
    }  # fmt: skip
    return Settings(_env_file=None, **(values | extra))  # type: ignore[call-arg]


def run(store: db.Store, transport: Any, owner: str = "me", **kw: Any) -> outbox.BatchResult:
    return asyncio.run(
        outbox.send_batch(store, transport, settings_for(), clock=lambda: AT, owner=owner, **kw)
    )


def sent_rows(store: db.Store) -> int:
    with store.reading() as s:
        return (
            s.scalar(
                select(func.count()).select_from(Notification).where(Notification.state == "sent")
            )
            or 0
        )


def outcome_events(store: db.Store) -> list[tuple[str, str]]:
    with store.reading() as s:
        rows = s.execute(
            select(AuditEvent.kind, AuditEvent.subject)
            .where(AuditEvent.kind.in_(["notification.sent", "notification.failed",
                                        "notification.pending", "notification.dead"]))
            .order_by(AuditEvent.seq)
        )  # fmt: skip
        return [(kind, subject) for kind, subject in rows]


class Watching(MemoryTransport):
    """A memory transport that calls ``before(message)`` as each message goes out."""

    def __init__(self, before: Any) -> None:
        super().__init__()
        self.before = before

    async def send(self, message: EmailMessage, recipients: list[str]) -> dict[str, str]:
        self.before(message)
        return await super().send(message, recipients)


@pytest.mark.parametrize(
    ("every", "seconds", "seen"),
    [
        (3, 3600.0, [0, 0, 0, 3, 3, 3, 6]),  # by count: a group of three at a time
        (100, 0.0, [0, 1, 2, 3, 4, 5, 6]),  # by age: the oldest is always due, so each at once
    ],
)
def test_outcomes_are_recorded_a_group_at_a_time(
    store: db.Store, monkeypatch: pytest.MonkeyPatch, every: int, seconds: float, seen: list[int]
) -> None:
    monkeypatch.setattr(outbox, "RECORD_EVERY", every)
    monkeypatch.setattr(outbox, "RECORD_SECONDS", seconds)
    ids = enqueue(store, 7)
    recorded: list[int] = []  # how many rows were already written "sent" as each one goes out
    result = run(store, Watching(lambda _: recorded.append(sent_rows(store))))
    assert recorded == seen
    assert result.sent == ids
    assert sent_rows(store) == 7  # and the last, partial group at the end


def test_each_outcome_audited_once_and_failures_told(
    store: db.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One group holding a success, a permanent failure, a temporary one and a last attempt:
    four outcome events, one notice per failure, an intact chain."""
    monkeypatch.setattr(outbox, "RECORD_EVERY", 10)
    monkeypatch.setattr(outbox, "RECORD_SECONDS", 3600.0)
    ids = enqueue(store, 4)
    with store.transaction() as s:
        s.execute(update(Notification).where(Notification.id == ids[3]).values(attempts=7))
        s.add(Contact(name="Cat", email="cat@csp.example.org", role="coordinator", created_at=AT))

    class Mixed(MemoryTransport):
        async def send(self, message: EmailMessage, recipients: list[str]) -> dict[str, str]:
            if recipients == ["p1@example.org"]:
                raise DeliveryError("SMTP 550 no such user", permanent=True)
            if recipients in (["p2@example.org"], ["p3@example.org"]):
                raise DeliveryError("SMTP 451 try later", permanent=False)
            return await super().send(message, recipients)

    templates = Templates(ROOT / "templates" / "email")
    result = run(store, Mixed(), templates=templates)
    assert (result.sent, result.failed, result.retried, result.dead) == (
        [ids[0]],
        [ids[1]],
        [ids[2]],
        [ids[3]],  # its eighth attempt: mail_max_attempts is 8
    )
    assert outcome_events(store) == [
        ("notification.sent", f"notification:{ids[0]}"),
        ("notification.failed", f"notification:{ids[1]}"),
        ("notification.pending", f"notification:{ids[2]}"),
        ("notification.dead", f"notification:{ids[3]}"),
    ]
    with store.reading() as s:
        notices = s.scalars(
            select(Notification).where(Notification.template == outbox.FAILURE_TEMPLATE)
        ).all()
        assert [n.to_addrs for n in notices] == [["cat@csp.example.org"]] * 2
        assert audit.verify(s).ok


def test_a_row_taken_over_by_another_sender_is_left_to_it(store: db.Store, db_url: str) -> None:
    """Our lease ran out while the message was on the wire and another sender re-claimed the
    row: it now owns the outcome, so this sender records nothing for it."""
    ids = enqueue(store, 3)
    other = db.Store(db_url)

    def take_over(message: EmailMessage) -> None:
        if message["Message-ID"] == "<m1@dhr-workflow>":
            with other.transaction() as s:
                s.execute(
                    update(Notification)
                    .where(Notification.id == ids[1])
                    .values(lease_owner="other", lease_until=AT + dt.timedelta(minutes=5))
                )

    try:
        result = run(store, Watching(take_over))
    finally:
        other.dispose()
    assert (result.sent, result.lost_lease) == ([ids[0], ids[2]], [ids[1]])
    with store.reading() as s:
        taken = s.get_one(Notification, ids[1])
        assert (taken.state, taken.lease_owner, taken.attempts) == ("sending", "other", 0)
    assert [subject for _, subject in outcome_events(store)] == [
        f"notification:{ids[0]}",
        f"notification:{ids[2]}",
    ]


CRASHING_SENDER = """
import asyncio, datetime as dt, sys
from dhr_workflow import db, outbox
from dhr_workflow.config import Settings
from dhr_workflow.transports import SmtpTransport

url, port, at = sys.argv[1], int(sys.argv[2]), dt.datetime.fromisoformat(sys.argv[3])
settings = Settings(_env_file=None, mail_transport="smtp", smtp_host="127.0.0.1",
                    smtp_port=port, smtp_security="none", mail_batch_size=100)
asyncio.run(outbox.send_batch(db.Store(url), SmtpTransport(settings), settings,
                              clock=lambda: at, owner="crashing"))
print("not killed")
"""


class KillAt(Handler):
    """Accepts messages; on the ``at``-th, SIGKILLs the sending process before it can read
    the reply (so that message, and any it has not yet recorded, were delivered unrecorded)."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at, self.pid = at, 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        if len(self.received) == self.at:
            os.kill(self.pid, signal.SIGKILL)
        return reply


def test_a_sender_killed_between_sending_and_recording_repeats_at_most_one_group(
    store: db.Store, db_url: str, tmp_path: Path
) -> None:
    ids = enqueue(store, 60)
    handler = KillAt(at=37)
    with SmtpServer(handler) as server:
        with (tmp_path / "child.log").open("w") as log:
            child = subprocess.Popen(
                [sys.executable, "-c", CRASHING_SENDER, db_url, str(server.port), AT.isoformat()],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            handler.pid = child.pid
            returncode = child.wait(120)
        assert returncode == -signal.SIGKILL, (tmp_path / "child.log").read_text()
        first = [m.parsed()["Message-ID"] for m in handler.received]
        assert len(first) == 37
        with store.reading() as s:
            held = s.scalar(
                select(func.count())
                .select_from(Notification)
                .where(Notification.lease_owner == "crashing")
            )
        assert 60 - 37 < held <= 60 - 37 + outbox.RECORD_EVERY  # untried + unrecorded
        # Another sender, once the dead one's lease has run out.
        later = AT + dt.timedelta(seconds=settings_for().mail_lease_seconds + 1)
        settings = settings_for(server.port)
        result = asyncio.run(
            outbox.send_batch(
                store, SmtpTransport(settings), settings, clock=lambda: later, owner="second"
            )
        )
    again = [m.parsed()["Message-ID"] for m in handler.received[37:]]
    repeated = set(first) & set(again)
    assert set(first) | set(again) == {f"<m{i}@dhr-workflow>" for i in range(60)}  # none lost
    assert 1 <= len(repeated) <= outbox.RECORD_EVERY  # the message in flight at least
    assert repeated == set(first[-len(repeated) :])  # the last ones sent, not yet recorded
    assert Counter(first + again).most_common(1)[0][1] == 2  # each repeated once at most
    assert len(result.sent) == held
    with store.reading() as s:
        assert set(s.scalars(select(Notification.state))) == {"sent"}
        assert audit.verify(s).ok
    assert sorted(subject for _, subject in outcome_events(store)) == sorted(
        f"notification:{i}" for i in ids
    )  # one outcome event per message, whichever sender recorded it
