"""Audit completeness: a whole plan lifecycle through the CLI — import, reminders, a refused
delivery, escalation, completion, a revised plan — and then the audit log must account for
every change and every message, `audit verify` must pass, and an altered row must be caught."""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from dhr_workflow import audit, db
from dhr_workflow.models import Action, AuditEvent, Contact, Firing, Notification, Review
from tests.conftest import CliFn
from tests.smtp_server import Handler, SmtpServer

CONTACTS = """agency,role,name,email
Police,lead,Lee Lead,lead@police.example.org
Police,manager,Max Manager,manager@police.example.org
Health,lead,Hal Lead,lead@health.example.org
Probation,lead,Pat Lead,lead@probation.example.org
,coordinator,Cat Coordinator,coordinator@csp.example.org
,chair,Chris Chair,chair@csp.example.org
"""
PLAN = """Recommendation,Action,Lead Agency,Target date
1,Brief all response officers,Police,29/02/2024
2,Audit health records,Health,15/03/2024
3,Agree a protocol,Probation,TBC
"""
REVISED = """Recommendation,Action,Lead Agency,Target date
1,Brief all response officers,Police,29/02/2024
2,Audit health records,Health,April 2024
3,Agree a protocol,Probation,31/05/2024
4,Publish the protocol,Probation,June 2024
"""
# Fields an action's audit events carry in 'after', and how the row spells them.
REPLAYED = ("status", "due_date", "completed_on", "text", "target_text")


def _ok(result: Any) -> Any:
    assert result.exit_code == 0, result.output
    return result


def _sent(result: Any) -> None:
    """`send` exits 1 when a message failed for good (here: the refused Health address)."""
    assert result.exit_code in (0, 1), result.output
    assert result.stdout.startswith("sent "), result.output


def _lifecycle(cli: CliFn, tmp_path: Path, smtp_port: int) -> None:
    smtp = {
        "DHR_MAIL_TRANSPORT": "smtp",
        "DHR_SMTP_HOST": "127.0.0.1",
        "DHR_SMTP_PORT": str(smtp_port),
        "DHR_SMTP_SECURITY": "none",
        "DHR_MAIL_FROM": "dhr@csp.example.org",
    }
    (tmp_path / "contacts.csv").write_text(CONTACTS)
    (tmp_path / "plan.csv").write_text(PLAN)
    _ok(cli("contacts", "import", "contacts.csv"))
    _ok(cli("import", "plan.csv", "--review", "R1", "--title", "Review one"))
    _ok(cli("tick", "--at", "2024-02-22T08:00"))  # due soon (with an invitation), undated
    _sent(cli("send", env=smtp))  # Health's address is refused: failed, coordinator told
    _ok(cli("tick", "--at", "2024-03-18T08:00"))  # escalation for 1, -7d for 2
    _sent(cli("send", env=smtp))
    [first] = json.loads(_ok(cli("actions", "list", "--review", "R1", "--json")).stdout)[:1]
    _ok(cli("actions", "update", str(first["id"]), "--status", "completed",
            "--completed-on", "2024-03-19"))  # fmt: skip
    _ok(cli("tick", "--at", "2024-03-20T08:00"))  # the invitation for 1 is cancelled
    _sent(cli("send", env=smtp))
    (tmp_path / "plan.csv").write_text(REVISED)
    _ok(cli("import", "plan.csv", "--review", "R1"))  # 2 moves, 3 gets a date, 4 is new
    _ok(cli("tick", "--at", "2024-03-21T08:00"))  # the invitation for 2 follows its date
    _sent(cli("send", env=smtp))


def _events(store: db.Store) -> dict[str, list[dict[str, Any]]]:
    by_subject: dict[str, list[dict[str, Any]]] = defaultdict(list)
    with store.reading() as s:
        for ev in audit.events(s):
            by_subject[ev.subject].append(audit.event_dict(ev))
    return by_subject


def test_every_change_and_every_message_is_audited(
    cli: CliFn, store: db.Store, tmp_path: Path
) -> None:
    handler = Handler(refuse={"lead@health.example.org": "550 5.1.1 no such user"})
    with SmtpServer(handler) as server:
        _lifecycle(cli, tmp_path, server.port)
    verified = _ok(cli("audit", "verify"))
    assert verified.stdout.startswith("audit log intact: ")
    events = _events(store)
    with store.reading() as s:
        notes = list(s.scalars(select(Notification)))
        acts = list(s.scalars(select(Action)))
        people = list(s.scalars(select(Contact)))
        review = s.scalars(select(Review)).one()
        fired = list(s.scalars(select(Firing).where(Firing.outcome == "fired")))

    # The lifecycle did what it says (so the checks below are about real events).
    by_template: dict[str, list[str]] = defaultdict(list)
    for n in notes:
        by_template[n.template].append(n.state)
    assert {"due_soon", "needs_review", "escalation", "delivery_failure", "calendar_update"} <= set(
        by_template
    )
    assert "failed" in by_template["due_soon"]
    assert len(acts) == 4
    assert len(handler.received) >= 8

    # Every message: enqueued on record, and its delivery outcome on record.
    for n in notes:
        kinds = [e["kind"] for e in events[f"notification:{n.id}"]]
        assert kinds[0] == "notification.enqueue", (n.id, kinds)
        assert kinds[-1] == f"notification.{n.state}", (n.id, n.template, kinds)
        enqueued = events[f"notification:{n.id}"][0]["data"]
        assert enqueued["message_id"] == n.message_id
    # Every firing of a rule points at an audited message.
    assert fired
    assert all(f.notification_id is not None for f in fired)

    # Every action: created on record, and replaying its events gives the row as it is now.
    for a in acts:
        history = events[f"action:{a.id}"]
        assert history[0]["kind"] == "action.create"
        state: dict[str, Any] = {}
        for e in history:
            state.update(e["data"].get("after", {}))
        row = {
            "status": a.status,
            "due_date": a.due_date.isoformat() if a.due_date else None,
            "completed_on": a.completed_on.isoformat() if a.completed_on else None,
            "text": a.text,
            "target_text": a.target_text,
        }
        assert {k: state.get(k) for k in REPLAYED} == row, (a.ref, history)
    kinds_of = {a.ref: [e["kind"] for e in events[f"action:{a.id}"]] for a in acts}
    assert "action.status" in kinds_of["1"]
    assert "action.import_update" in kinds_of["2"]
    assert "action.import_update" in kinds_of["3"]

    # Every contact and the review itself.
    assert all(events[f"contact:{c.id}"] for c in people)
    assert events[f"review:{review.ref}"][0]["kind"] == "review.create"


def test_an_altered_row_is_caught_at_that_row(
    cli: CliFn, unguarded: db.Store, tmp_path: Path
) -> None:
    handler = Handler(refuse={"lead@health.example.org": "550 5.1.1 no such user"})
    with SmtpServer(handler) as server:
        _lifecycle(cli, tmp_path, server.port)
    _ok(cli("audit", "verify"))
    with unguarded.reading() as s:
        failed = s.scalars(
            select(AuditEvent).where(AuditEvent.kind == "notification.failed").limit(1)
        ).one()
        total = len(audit.events(s))
    # Someone hides that a reminder never reached the Health lead.
    with unguarded.transaction() as s:
        s.execute(
            text("UPDATE audit_event SET kind = 'notification.sent' WHERE seq = :seq"),
            {"seq": failed.seq},
        )
    result = cli("audit", "verify")
    assert result.exit_code == 1
    assert f"event #{failed.seq}" in result.stderr
    assert f"{failed.seq - 1} events verified before it" in result.stderr
    assert failed.seq < total  # a row in the middle of the log, not the last one
    assert "Traceback" not in result.output


@pytest.fixture(autouse=True)
def _no_real_clock_surprises() -> None:
    """The lifecycle ticks at fixed 2024 times; sending uses the real clock, which is later,
    so every enqueued message is due. Guard the assumption."""
    assert dt.date.today() > dt.date(2024, 3, 21)
