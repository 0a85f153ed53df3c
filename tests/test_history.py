"""An action's history in sentences, from events made by the real services, on both backends."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from freezegun import freeze_time

from dhr_workflow import actions, anchors, audit, contacts, db, engine, history, outbox, reviews
from dhr_workflow.config import Settings
from dhr_workflow.models import ActionStatus
from dhr_workflow.transports import DeliveryError, MemoryTransport
from tests.conftest import ACTOR, NOW, CliFn

ROOT = Path(__file__).resolve().parent.parent
PLAN = ROOT / "tests" / "data" / "plans" / "westminster-case-a.txt"
LONDON = ZoneInfo("Europe/London")
CAT = "cat@westminster.example.org"
PEOPLE = """agency,role,name,email,review
Bi Borough VAWG Strategic Board,lead,Sam Lead,sam.lead@westminster.example.org,
Bi Borough VAWG Strategic Board,manager,Mo Manager,mo.manager@westminster.example.org,
Turning Point,lead,Tam Point,tam@turningpoint.example.org,
,coordinator,Cat Coordinator,cat@westminster.example.org,
,chair,Chris Chair,chair@westminster.example.org,
"""


def at(day: int, month: int = 2, hour: int = 10) -> dt.datetime:
    return dt.datetime(2024, month, day, hour, tzinfo=dt.UTC)


@pytest.fixture
def plan(cli: CliFn, tmp_path: Path) -> dict[str, int]:
    """Westminster's plan imported (10 Jan 2024) with its contacts; action ids by ref."""
    people = tmp_path / "people.csv"
    people.write_text(PEOPLE)
    with freeze_time("2024-01-10 09:00:00", real_asyncio=True):
        assert cli("import", str(PLAN), "--review", "WCA").exit_code == 0
        assert cli("contacts", "import", str(people)).exit_code == 0
    return {r["ref"]: r["id"] for r in json.loads(cli("actions", "list", "--json").stdout)}


def change(store: db.Store, action_id: int, when: dt.datetime, actor: str = CAT, **kw: Any) -> None:
    with store.transaction() as s:
        actions.update(
            s,
            action_id,
            actions.ActionChange(**kw),
            today=when.date(),
            now=when,
            actor=actor,
            source="web",
        )


def sentences(store: db.Store, action_id: int, **kw: Any) -> list[str]:
    with store.reading() as s:
        return [e.sentence for e in history.for_action(s, action_id, tz=LONDON, **kw)]


def entries(store: db.Store, action_id: int) -> list[history.Entry]:
    with store.reading() as s:
        return history.for_action(s, action_id, tz=LONDON)


def test_a_coordinators_changes(store: db.Store, plan: dict[str, int]) -> None:
    a = plan["2"]
    with store.reading() as s:
        line = actions.get(s, a).source_row
    assert sentences(store, a) == [f"Created from plan file westminster-case-a.txt, line {line}"]
    change(store, a, at(1), due=dt.date(2024, 3, 31), reason="extension agreed at board")
    change(store, a, at(2), status=ActionStatus.IN_PROGRESS, note="Training review started")
    change(
        store,
        a,
        at(5),
        status=ActionStatus.COMPLETED,
        completed_on=dt.date(2024, 2, 3),
        outcome="New module in place",
    )
    change(store, a, at(6), status=ActionStatus.OPEN)
    change(
        store,
        a,
        at(7),
        agency="Turning Point",
        owner="Tam Point",
        owner_email="tam@turningpoint.example.org",
    )
    change(store, a, at(8), note="Met the board; waiting for sign-off.")
    change(store, a, at(9), owner="", owner_email="")
    by = "by Cat Coordinator"
    assert sentences(store, a)[1:] == [
        f"Due date moved from 31 Dec 2023 to 31 Mar 2024 {by}: extension agreed at board",
        f"Status changed from open to in progress {by}",
        f"Progress note {by}: Training review started",
        f"Marked completed on 3 Feb 2024 {by} (was in progress)",
        f"Outcome recorded {by}: New module in place",
        f"Reopened {by} (status now open)",
        f"Lead agency changed from Bi Borough VAWG Strategic Board to Turning Point {by}",
        f"Owner set to Tam Point {by}",
        f"Owner's contact set to Tam Point (tam@turningpoint.example.org) {by}",
        f"Progress note {by}: Met the board; waiting for sign-off.",
        f"Owner removed {by} (was Tam Point)",
        f"Owner's contact removed {by} (was Tam Point (tam@turningpoint.example.org))",
    ]
    found = entries(store, a)
    assert {e.actor for e in found[1:]} == {"Cat Coordinator"}
    assert [e.kind for e in found[1:4]] == ["action.due_change", "action.status", "action.status"]
    assert found[-3].kind == "action.note"
    assert found[-1].kind == "action.assign"
    assert all(e.at.tzinfo is not None for e in found)
    assert [e.at for e in found] == sorted(e.at for e in found)


def test_settling_a_needs_review_flag(store: db.Store, plan: dict[str, int]) -> None:
    ongoing = plan["1"]  # "On-going": no date, so flagged at import
    with store.reading() as s:
        reasons = actions.get(s, ongoing).review_reasons
    assert reasons
    change(store, ongoing, at(1), settle="no deadline — ongoing work")
    assert sentences(store, ongoing)[1:] == [
        "Needs-review flag settled by Cat Coordinator: no deadline — ongoing work"
    ]
    assert entries(store, ongoing)[-1].kind == "action.settle"


def test_a_revised_plan(cli: CliFn, store: db.Store, plan: dict[str, int], tmp_path: Path) -> None:
    """A re-import names its file and what it changed; the creation then no longer knows its
    line (the row now says where the revised plan has it)."""
    a = plan["2"]
    lines = PLAN.read_text().splitlines(keepends=True)
    row = next(i for i, text in enumerate(lines) if text.startswith("2\tReview local"))
    lines[row] = lines[row].replace("December 2023", "June 2024")
    revised = tmp_path / "westminster-revised.txt"
    revised.write_text("".join(lines))
    with freeze_time("2024-02-01 09:00:00", real_asyncio=True):
        assert cli("import", str(revised), "--review", "WCA").exit_code == 0
    assert sentences(store, a) == [
        "Created from plan file westminster-case-a.txt",
        "Updated by a re-import of westminster-revised.txt: "
        "target text, due date (31 Dec 2023 → 30 Jun 2024)",
    ]
    assert entries(store, a)[1].actor == ACTOR


def test_a_due_date_that_waits_for_publication(store: db.Store) -> None:
    with store.transaction() as s:
        reviews.add(s, "R1", "One", now=NOW, actor=ACTOR)
        a = actions.create(
            s,
            "R1",
            now=NOW,
            actor=ACTOR,
            text="Brief the board",
            target_text="3 months following review publication",
            due_basis="relative",
            due_rule={"anchor": "published_on", "months": 3},
            review_reasons=["due: counts from the review's publication date, not yet set"],
        ).id
    with store.transaction() as s:
        anchors.update_review(
            s, "R1", today=NOW.date(), now=at(1), actor=CAT, published_on=dt.date(2024, 1, 31)
        )
    assert sentences(store, a) == [
        "Created by test",
        "Due date recomputed from the review's publication date: none → 30 Apr 2024",
    ]


# --- messages ---------------------------------------------------------------------------------


def test_messages_sent_failed_and_waiting(
    store: db.Store, plan: dict[str, int], tmp_path: Path
) -> None:
    """Action 2 (due 31 Dec 2023) escalates on 15 Jan to the manager, copying its lead and the
    coordinator (three messages, all delivered); on 30 Jan to the chair, whose server refuses;
    on 29 Feb the chair's next reminder waits in the outbox after a temporary failure."""
    ruleset, templates = engine.load_rules(ROOT / "rules", ROOT / "templates" / "email", LONDON)
    settings = Settings(_env_file=None, mail_from="dhr@westminster.example.org")  # type: ignore[call-arg]

    def tick(when: dt.datetime) -> None:
        ctx = engine.Context(when, LONDON, "england", templates)
        with store.transaction() as s:
            engine.commit(
                s, engine.evaluate(s, ruleset, ctx, only=["deadline"]), ctx, actor="daemon"
            )

    def send(when: dt.datetime, fail: DeliveryError | None = None) -> None:
        asyncio.run(
            outbox.send_batch(
                store,
                MemoryTransport(fail),
                settings,
                clock=lambda: when,
                owner="test",
                actor="daemon",
                templates=templates,
            )
        )

    tick(at(15, 1))
    send(at(15, 1, 11))
    tick(at(30, 1))
    send(at(30, 1, 11), DeliveryError("550 mailbox unavailable", permanent=True))
    tick(at(29, 2))
    send(at(29, 2, 11), DeliveryError("421 try again later", permanent=False))
    found = [e for e in entries(store, plan["2"]) if e.kind.startswith("message.")]
    assert [(e.at, e.actor, e.sentence, e.kind) for e in found] == [
        (
            at(15, 1, 11),
            "dhr-workflow",
            "Escalation sent to mo.manager@westminster.example.org, "
            "cat@westminster.example.org and sam.lead@westminster.example.org",
            "message.sent",
        ),
        (
            at(30, 1, 11),
            "dhr-workflow",
            "Escalation to chair@westminster.example.org and mo.manager@westminster.example.org "
            "failed: 550 mailbox unavailable",
            "message.failed",
        ),
        (
            at(29, 2),  # when it was queued; the next attempt is the outbox's business
            "dhr-workflow",
            "Escalation to chair@westminster.example.org and mo.manager@westminster.example.org "
            "not delivered yet (it will be tried again): 421 try again later",
            "message.pending",
        ),
    ]


def test_a_reminder_with_an_invitation(store: db.Store, plan: dict[str, int]) -> None:
    """The -7d step invites (action 3 is due 31 May 2024); the history says so."""
    ruleset, templates = engine.load_rules(ROOT / "rules", ROOT / "templates" / "email", LONDON)
    ctx = engine.Context(at(24, 5), LONDON, "england", templates)
    with store.transaction() as s:
        engine.commit(s, engine.evaluate(s, ruleset, ctx, only=["deadline"]), ctx, actor="daemon")
    waiting = [e.sentence for e in entries(store, plan["3"]) if e.kind.startswith("message.")]
    assert waiting == [
        "Reminder (due soon) to sam.lead@westminster.example.org is waiting to be sent"
    ]
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    asyncio.run(
        outbox.send_batch(
            store, MemoryTransport(), settings, clock=lambda: at(24, 5, 11), owner="t",
            templates=templates,
        )
    )  # fmt: skip
    sent = [e.sentence for e in entries(store, plan["3"]) if e.kind.startswith("message.")]
    assert sent == [
        "Reminder (due soon) sent to sam.lead@westminster.example.org, with a calendar invitation"
    ]


# --- who did it, and events this code does not know ------------------------------------------


def record(store: db.Store, actor: str, kind: str, data: Any, subject: str = "action:1") -> None:
    with store.transaction() as s:
        audit.record(s, now=at(1), actor=actor, kind=kind, subject=subject, data=data)


@pytest.mark.parametrize(
    ("actor", "names", "shown"),
    [
        ("daemon", None, "dhr-workflow"),
        ("cli:jo", None, "jo (command line)"),
        (CAT, None, "Cat Coordinator"),
        ("CAT@Westminster.example.org", None, "Cat Coordinator"),
        ("nobody@example.org", None, "nobody@example.org"),
        (CAT, {CAT: "Cat C. (coordinator)"}, "Cat C. (coordinator)"),
        ("daemon", {"daemon": "the scheduler"}, "the scheduler"),
        ("scheduler", None, "scheduler"),
    ],
)
def test_who_did_it(store: db.Store, tmp_path: Path, actor: str, names: Any, shown: str) -> None:
    people = tmp_path / "people.csv"
    people.write_text(PEOPLE)
    with store.transaction() as s:
        contacts.import_rows(s, contacts.read_csv(people), now=NOW, actor=ACTOR, source="p.csv")
    data = {"before": {"outcome": None}, "after": {"outcome": "Done"}}
    record(store, actor, "action.update", data)
    [entry] = entries(store, 1) if names is None else _with_names(store, 1, names)
    assert (entry.actor, entry.sentence) == (shown, f"Outcome recorded by {shown}: Done")


def _with_names(store: db.Store, action_id: int, names: dict[str, str]) -> list[history.Entry]:
    with store.reading() as s:
        return history.for_action(s, action_id, tz=LONDON, names=names)


def change_event(before: dict[str, Any], after: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"before": before, "after": after, **extra}


@pytest.mark.parametrize(
    ("kind", "data", "expected"),
    [
        (  # the agency's needs-review reason goes with the agency being set: not said twice
            "action.assign",
            change_event(
                {"lead_agency": None, "review_reasons": ["agency: none named"]},
                {"lead_agency": "Police", "review_reasons": []},
            ),
            ["Lead agency set to Police by test"],
        ),
        (
            "action.due_change",
            change_event(
                {"due_date": "2024-01-31", "review_reasons": ["due: check", "status: odd"]},
                {"due_date": None, "review_reasons": []},
                reason="ongoing",
            ),
            [
                "Due date removed by test (was 31 Jan 2024): ongoing",
                "No longer flagged for review: status: odd",
            ],
        ),
        (
            "action.import_update",
            change_event(
                {"status": "open", "completed_on": None, "review_reasons": [], "due_basis": "x"},
                {"status": "completed", "completed_on": "2023-09-27", "review_reasons": ["a"]},
                file="plan.docx",
            ),
            [
                "Updated by a re-import of plan.docx: status (open → completed), "
                "completion date (none → 27 Sep 2023), needs-review flags"
            ],
        ),
        (
            "action.update",
            change_event({"review_reasons": []}, {"review_reasons": ["status: check it"]}),
            ["Flagged for review: status: check it"],
        ),
        (
            "action.update",
            change_event(
                {"status": "completed", "completed_on": "2024-02-03"},
                {"status": "completed", "completed_on": "2024-02-01"},
            ),
            ["Completion date changed from 3 Feb 2024 to 1 Feb 2024 by test"],
        ),
        (
            "action.status",
            change_event({"status": "open"}, {"status": "withdrawn"}, note="<b>duplicate</b>"),
            [
                "Status changed from open to withdrawn by test",
                "Progress note by test: <b>duplicate</b>",
            ],
        ),
        (
            "action.settle",
            change_event({"review_reasons": ["due: none"]}, {"review_reasons": []}, settled=""),
            ["Needs-review flag settled by test"],
        ),
    ],
)
def test_sentences_from_recorded_events(
    store: db.Store, kind: str, data: Any, expected: list[str]
) -> None:
    """Shapes the services write, and the web app's: one sentence per meaningful change."""
    record(store, ACTOR, kind, data)
    assert sentences(store, 1) == expected


@pytest.mark.parametrize(
    ("kind", "data", "sentence"),
    [
        ("action.snoozed", {"until": "2024-03-01"}, "Snoozed by test"),
        ("action.update", {"before": "garbage", "after": [1, 2]}, "Update by test"),
        ("action.update", {"before": {}, "after": {"due_date": 17}}, "Due date set to 17 by test"),
        (
            "action.priority",
            {"before": {"priority": "low"}, "after": {"priority": "high"}},
            "Priority changed from low to high by test",
        ),
        (
            "action.update",
            {
                "before": {"sequence": 1, "needs_review": True},
                "after": {"sequence": 2, "needs_review": False},
            },
            "Update by test",
        ),
        ("action.import_update", {"file": None}, "Updated by a re-import of the plan"),
        ("action.due_recompute", {"anchor": 3}, "Due recompute by test"),
        ("weird", [], "Weird by test"),
        ("", {}, "Changed by test"),
    ],
)
def test_events_it_does_not_know_read_as_plain_sentences(
    store: db.Store, kind: str, data: Any, sentence: str
) -> None:
    record(store, ACTOR, kind, data)
    assert sentences(store, 1) == [sentence]
