"""Rule evaluation semantics on SQLite and PostgreSQL, with ``at`` passed in."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from freezegun import freeze_time
from sqlalchemy import func, select

from dhr_workflow import actions, db, engine
from dhr_workflow.models import AuditEvent, Firing, Notification
from tests.conftest import ACTOR, NOW, CliFn

ROOT = Path(__file__).resolve().parent.parent
LONDON = ZoneInfo("Europe/London")
D = dt.date


def at(day: dt.date, hour: int = 10) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), LONDON)


def tick(
    store: db.Store,
    rules: tuple[Any, Any],
    when: dt.datetime,
    *,
    dry_run: bool = False,
    only: list[str] | None = None,
) -> engine.TickResult:
    ruleset, templates = rules
    ctx = engine.Context(when, LONDON, "england", templates)
    with store.reading() if dry_run else store.transaction() as s:
        result = engine.evaluate(s, ruleset, ctx, only=only)
        if not dry_run:
            engine.commit(s, result, ctx, actor="scheduler")
    return result


def sent(result: engine.TickResult) -> list[tuple[str, str, tuple[str, ...], list[int]]]:
    return sorted((m.rule, m.template, tuple(m.to), m.action_ids) for m in result.messages)


DUE = D(2024, 1, 31)


def test_idempotent_tick(store: db.Store, rules: Any, world: Any) -> None:
    world(a=("Police", DUE, "open"))
    first = tick(store, rules, at(D(2024, 1, 24)), only=["deadline"])
    assert sent(first) == [("deadline", "due_soon", ("lead@police.example.org",), [1])]
    again = tick(store, rules, at(D(2024, 1, 24), 15), only=["deadline"])
    assert again.messages == []
    with store.reading() as s:
        assert s.scalar(select(func.count()).select_from(Notification)) == 1


def test_ladder_steps_in_turn(store: db.Store, rules: Any, world: Any) -> None:
    world(a=("Police", DUE, "open"))
    steps = {}
    for day in (D(2024, 1, 1), D(2024, 1, 24), D(2024, 2, 1), D(2024, 2, 14), D(2024, 3, 1)):
        steps[day] = sent(tick(store, rules, at(day), only=["deadline"]))
    assert steps[D(2024, 1, 1)] == [("deadline", "due_soon", ("lead@police.example.org",), [1])]
    assert steps[D(2024, 1, 24)] == [("deadline", "due_soon", ("lead@police.example.org",), [1])]
    assert steps[D(2024, 2, 1)] == [("deadline", "overdue", ("lead@police.example.org",), [1])]
    # +10 business days after 31 Jan is 14 Feb: the manager, copying owner and coordinator;
    # each gets their own message.
    assert steps[D(2024, 2, 14)] == [
        ("deadline", "escalation", ("coordinator@csp.example.org",), [1]),
        ("deadline", "escalation", ("lead@police.example.org",), [1]),
        ("deadline", "escalation", ("manager@police.example.org",), [1]),
    ]
    assert steps[D(2024, 3, 1)] == [
        ("deadline", "escalation", ("chair@csp.example.org",), [1]),
        ("deadline", "escalation", ("manager@police.example.org",), [1]),
    ]


def test_catch_up_sends_only_the_highest_step(store: db.Store, rules: Any, world: Any) -> None:
    world(a=("Police", DUE, "open"))
    result = tick(store, rules, at(D(2024, 3, 1)), only=["deadline"])
    assert sent(result) == [
        ("deadline", "escalation", ("chair@csp.example.org",), [1]),
        # nobody told the owner (here the agency lead) before: they hear it now too
        ("deadline", "escalation", ("lead@police.example.org",), [1]),
        ("deadline", "escalation", ("manager@police.example.org",), [1]),
    ]
    assert result.superseded == 4
    with store.reading() as s:
        outcomes = dict(s.execute(select(Firing.step, Firing.outcome)).all())
    assert outcomes == {
        "-30d": "superseded",
        "-7d": "superseded",
        "+1d": "superseded",
        "+10bd": "superseded",
        "+30d": "fired",
    }


def test_daemon_down_for_forty_days(store: db.Store, rules: Any, world: Any) -> None:
    """One escalation per overdue action on return; no backlog of daily reminders."""
    ids = world(
        a=("Police", D(2024, 1, 10), "open"),
        b=("Police", D(2024, 1, 12), "open"),
        c=("Health", D(2024, 2, 20), "open"),
    )
    tick(store, rules, at(D(2024, 1, 5)), only=["deadline"])
    back = tick(store, rules, at(D(2024, 2, 14)), only=["deadline"])
    assert sent(back) == [
        ("deadline", "due_soon", ("lead@health.example.org",), [ids["c"]]),
        ("deadline", "escalation", ("chair@csp.example.org",), [ids["a"], ids["b"]]),
        ("deadline", "escalation", ("manager@police.example.org",), [ids["a"], ids["b"]]),
    ]


def test_repeat_refires_every_interval(store: db.Store, rules: Any, world: Any) -> None:
    world(a=("Police", DUE, "open"))
    fired = {}
    # Weekdays only: the ladder runs at 08:00 Monday to Friday.
    for day in (D(2024, 3, 1), D(2024, 3, 20), D(2024, 4, 1), D(2024, 4, 15), D(2024, 4, 30)):
        result = tick(store, rules, at(day), only=["deadline"])
        fired[day] = len({h.period_key for m in result.messages for h in m.hits})
    assert fired == {
        D(2024, 3, 1): 1,
        D(2024, 3, 20): 0,
        D(2024, 4, 1): 1,
        D(2024, 4, 15): 0,
        D(2024, 4, 30): 1,
    }
    with store.reading() as s:
        keys = sorted(s.scalars(select(Firing.period_key).where(Firing.outcome == "fired")))
    assert keys == ["2024-01-31|+30d", "2024-01-31|+30d|r1", "2024-01-31|+30d|r2"]


def test_changed_due_date_restarts_the_ladder(store: db.Store, rules: Any, world: Any) -> None:
    ids = world(a=("Police", DUE, "open"))
    assert len(tick(store, rules, at(D(2024, 2, 2)), only=["deadline"]).messages) == 1
    with store.transaction() as s:
        actions.update(
            s,
            ids["a"],
            actions.ActionChange(due=D(2024, 4, 30), reason="agreed"),
            today=D(2024, 2, 2),
            now=NOW,
            actor=ACTOR,
        )
    assert tick(store, rules, at(D(2024, 2, 3)), only=["deadline"]).messages == []
    again = tick(store, rules, at(D(2024, 4, 25)), only=["deadline"])
    assert sent(again) == [("deadline", "due_soon", ("lead@police.example.org",), [ids["a"]])]
    assert again.messages[0].hits[0].period_key == "2024-04-30|-7d"


@pytest.mark.parametrize("status", ["completed", "withdrawn"])
def test_finished_actions_never_fire(store: db.Store, rules: Any, world: Any, status: str) -> None:
    world(a=("Police", DUE, status), b=("Police", None, status))
    action_rules = ["deadline", "undated-actions", "stale-actions"]
    assert tick(store, rules, at(D(2024, 3, 1)), only=action_rules).messages == []


def test_digest_one_message_per_recipient(store: db.Store, rules: Any, world: Any) -> None:
    world(a=("Police", DUE, "open"), b=("Police", DUE, "open"), c=("Health", DUE, "open"))
    result = tick(store, rules, at(D(2024, 1, 25)), only=["deadline"])
    assert sent(result) == [
        ("deadline", "due_soon", ("lead@health.example.org",), [3]),
        ("deadline", "due_soon", ("lead@police.example.org",), [1, 2]),
    ]
    police = next(m for m in result.messages if m.to == ["lead@police.example.org"])
    assert police.rendered is not None
    assert police.rendered.subject == "2 DHR actions due soon"
    assert "Action a" in police.rendered.text
    assert "Action b" in police.rendered.text


def test_gaps_are_reported_and_audited_once(store: db.Store, rules: Any, world: Any) -> None:
    ids = world(h=("Health", DUE, "open"), x=(None, DUE, "open"))
    first = tick(store, rules, at(D(2024, 2, 15)), only=["deadline"])
    gaps = {(g.rule, g.role): g.to_json()["actions"] for g in first.gaps}
    assert gaps == {
        ("deadline", "agency.manager"): [ids["h"], ids["x"]],
        ("deadline", "owner"): [ids["x"]],
    }
    # Health has no manager: its escalation still reaches the copies (owner, coordinator);
    # the action with no agency reaches the coordinator alone.
    assert sent(first) == [
        ("deadline", "escalation", ("coordinator@csp.example.org",), [ids["h"], ids["x"]]),
        ("deadline", "escalation", ("lead@health.example.org",), [ids["h"]]),
    ]
    second = tick(store, rules, at(D(2024, 2, 16)), only=["deadline"])
    assert {(g.rule, g.role) for g in second.gaps} == set()  # all fired or still unsent
    with store.reading() as s:
        kinds = list(s.scalars(select(AuditEvent.kind).where(AuditEvent.kind == "rule.gap")))
    assert len(kinds) == 2


def test_recurring_review_rule_fires_latest_occurrence(
    store: db.Store, rules: Any, world: Any
) -> None:
    world(a=("Police", DUE, "open"), done=("Police", D(2023, 10, 1), "completed"))
    first = tick(store, rules, at(D(2024, 1, 15)), only=["six-monthly-report"])
    assert sorted((m.template, tuple(m.to)) for m in first.messages) == [
        ("family_update", ("fay@advocacy.example.org",)),
        ("partnership_report", ("chair@csp.example.org",)),
        ("partnership_report", ("coordinator@csp.example.org",)),
    ]
    assert {m.hits[0].period_key for m in first.messages} == {"2023-12-01"}
    report = next(m for m in first.messages if m.to == ["chair@csp.example.org"])
    assert report.review == "R1"
    assert report.rendered is not None
    assert "Actions: 2 in all" in report.rendered.text
    family = next(m for m in first.messages if m.template == "family_update")
    assert family.rendered is not None
    assert "Police" not in family.rendered.text  # no internal names in the family update
    assert "Action a" not in family.rendered.text
    assert tick(store, rules, at(D(2024, 5, 30)), only=["six-monthly-report"]).messages == []
    later = tick(store, rules, at(D(2025, 1, 10)), only=["six-monthly-report"])
    assert {m.hits[0].period_key for m in later.messages} == {"2024-12-01"}  # not June too


def test_weekly_needs_review_rule(store: db.Store, rules: Any, world: Any) -> None:
    ids = world(a=("Police", None, "open"), b=("Police", DUE, "open"))
    result = tick(store, rules, at(D(2024, 1, 17)), only=["undated-actions"])
    assert sent(result) == [
        ("undated-actions", "needs_review", ("coordinator@csp.example.org",), [ids["a"]])
    ]
    assert result.messages[0].hits[0].period_key == "2024-01-15T09:00"  # local wall clock
    assert tick(store, rules, at(D(2024, 1, 21)), only=["undated-actions"]).messages == []
    assert len(tick(store, rules, at(D(2024, 1, 22)), only=["undated-actions"]).messages) == 1


def test_dry_run_writes_nothing(store: db.Store, rules: Any, world: Any) -> None:
    world(a=("Police", DUE, "open"))
    with store.reading() as s:
        events = s.scalar(select(func.count()).select_from(AuditEvent))
    result = tick(store, rules, at(D(2024, 3, 1)), dry_run=True)
    assert result.messages
    with store.reading() as s:
        assert s.scalar(select(func.count()).select_from(Firing)) == 0
        assert s.scalar(select(func.count()).select_from(Notification)) == 0
        assert s.scalar(select(func.count()).select_from(AuditEvent)) == events


def test_concurrent_ticks_enqueue_once(store: db.Store, rules: Any, world: Any) -> None:
    """Two replicas evaluate the same state; the ledger lets only one enqueue each reminder."""
    world(a=("Police", DUE, "open"), b=("Health", DUE, "open"))
    ruleset, templates = rules
    ctx = engine.Context(at(D(2024, 1, 25)), LONDON, "england", templates)
    with store.reading() as s:
        replica_one = engine.evaluate(s, ruleset, ctx, only=["deadline"])
    with store.reading() as s:
        replica_two = engine.evaluate(s, ruleset, ctx, only=["deadline"])
    with store.transaction() as s:
        assert len(engine.commit(s, replica_one, ctx, actor="one").messages) == 2
    with store.transaction() as s:
        assert engine.commit(s, replica_two, ctx, actor="two").messages == []
    with store.reading() as s:
        assert s.scalar(select(func.count()).select_from(Notification)) == 2


def test_outbox_holds_the_finished_message(store: db.Store, rules: Any, world: Any) -> None:
    world(a=("Police", DUE, "open"))
    tick(store, rules, at(D(2024, 2, 1)), only=["deadline"])
    with store.reading() as s:
        note = s.scalars(select(Notification)).one()
        firing = s.scalars(select(Firing).where(Firing.outcome == "fired")).one()
    assert (note.state, note.template, note.to_addrs) == (
        "pending",
        "overdue",
        ["lead@police.example.org"],
    )
    assert note.cc_addrs == []  # the owner is the agency lead here: not copied to themselves
    assert note.subject == "Overdue: DHR R1 action 1"
    assert "1 day overdue" in note.text_body
    assert note.html_body is not None
    assert "<table" in note.html_body
    assert firing.notification_id == note.id


def test_html_escapes_plan_text(store: db.Store, rules: Any, world: Any) -> None:
    ids = world(a=("Police", DUE, "open"))
    with store.transaction() as s:
        action = actions.get(s, ids["a"])
        action.text = "<script>alert('x')</script> & more"
        action.ref = "1\r\nBcc: victim@example.org"
    result = tick(store, rules, at(D(2024, 2, 1)), only=["deadline"])
    rendered = result.messages[0].rendered
    assert rendered is not None
    assert "<script>" not in rendered.html
    assert "&lt;script&gt;" in rendered.html
    assert "\n" not in rendered.subject
    assert "\r" not in rendered.subject


# --- the CLI on the real Westminster plan ------------------------------------------------------

WESTMINSTER_CONTACTS = """agency,role,name,email,review
Bi Borough VAWG Strategic Board,lead,Sam Lead,sam.lead@westminster.example.org,
Bi Borough VAWG Strategic Board,manager,Mo Manager,mo.manager@westminster.example.org,
Adult Social Care Westminster City Council,lead,Ada Lead,ada@westminster.example.org,
"Principal Social Worker, Bi- Borough Adult Social Care",lead,Pat Worker,pat@rbkc.example.org,
HM Prison & Probation,lead,Hana Lead,hana@probation.example.org,
,coordinator,Cat Coordinator,cat@westminster.example.org,
,chair,Chris Chair,chair@westminster.example.org,
"""


def test_westminster_tick_dry_run(cli: CliFn, tmp_path: Path) -> None:
    plan = ROOT / "tests" / "data" / "plans" / "westminster-case-a.txt"
    assert cli("import", str(plan), "--review", "WCA").exit_code == 0
    people = tmp_path / "people.csv"
    people.write_text(WESTMINSTER_CONTACTS)
    assert cli("contacts", "import", str(people)).exit_code == 0
    rows = {r["ref"]: r for r in json.loads(cli("actions", "list", "--json").stdout)}
    completed = {r["id"] for r in rows.values() if r["status"] == "completed"}

    november = json.loads(cli("tick", "--at", "2023-11-01", "--dry-run", "--json").stdout)
    due_soon = [m for m in november["messages"] if m["template"] == "due_soon"]
    covered = sorted(i for m in due_soon for i in m["actions"])
    assert covered == sorted(rows[r]["id"] for r in ("24", "25", "26", "27"))
    recipients = [tuple(m["to"]) for m in due_soon]
    assert len(recipients) == len(set(recipients)) == 2  # one digest per recipient
    assert all(m["subject"] for m in november["messages"])

    january = json.loads(cli("tick", "--at", "2024-01-20", "--dry-run", "--json").stdout)
    to_manager = [
        m for m in january["messages"] if m["to"] == ["mo.manager@westminster.example.org"]
    ]
    assert len(to_manager) == 1
    assert to_manager[0]["template"] == "escalation"
    assert sorted(to_manager[0]["actions"]) == sorted(rows[r]["id"] for r in ("2", "4", "5", "6"))
    for report in (november, january):
        assert not completed & {i for m in report["messages"] for i in m["actions"]}
    assert json.loads(cli("audit", "list", "--json").stdout)[-1]["kind"] == "contacts.import"


def test_tick_without_at_reads_the_clock(cli: CliFn) -> None:
    with freeze_time("2024-01-20 08:00:00", real_asyncio=True):
        result = cli("tick", "--dry-run", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["at"] == "2024-01-20T08:00:00+00:00"


def test_tick_mistakes(cli: CliFn) -> None:
    bad = cli("tick", "--at", "next tuesday")
    assert bad.exit_code == 2
    assert "'next tuesday' is not a date or time" in bad.stderr
    unknown = cli("tick", "--rule", "nope")
    assert unknown.exit_code == 2
    assert "no rule with id nope" in unknown.stderr


def test_ladder_runs_on_its_schedule(store: db.Store, rules: Any, world: Any) -> None:
    """A tick on Saturday evaluates the ladder as of Friday's 08:00 run; one on Monday before
    08:00 as of Friday too."""
    world(a=("Police", D(2024, 1, 27), "open"))  # due Saturday: -7d reached on Saturday 20th
    assert len(tick(store, rules, at(D(2024, 1, 19), 9), only=["deadline"]).messages) == 1
    assert tick(store, rules, at(D(2024, 1, 20), 12), only=["deadline"]).messages == []
    assert tick(store, rules, at(D(2024, 1, 22), 7), only=["deadline"]).messages == []
    monday = tick(store, rules, at(D(2024, 1, 22), 9), only=["deadline"])
    assert [h.period_key for m in monday.messages for h in m.hits] == ["2024-01-27|-7d"]


def test_steps_in_date_order_whatever_their_units(
    store: db.Store, world: Any, tmp_path: Path
) -> None:
    """ "+9bd" and "+12d" swap order for some due dates: the latest date reached wins."""
    directory = tmp_path / "rules"
    directory.mkdir()
    (directory / "r.yaml").write_text(
        "ladders:\n  - id: mixed\n    schedule: '0 8 * * *'\n    steps:\n"
        "      - {at: +9bd, notify: {to: agency.manager, template: escalation}}\n"
        "      - {at: +12d, notify: {to: partnership.chair, template: escalation}}\n"
    )
    mixed = engine.load_rules(directory, ROOT / "templates" / "email", LONDON)
    world(a=("Police", D(2024, 1, 17), "open"))  # +12d = 29 Jan, +9bd = 30 Jan
    first = tick(store, mixed, at(D(2024, 1, 29)))
    assert sorted(m.to[0] for m in first.messages) == [
        "chair@csp.example.org",
        "lead@police.example.org",  # the first the owner hears of it
    ]
    second = tick(store, mixed, at(D(2024, 1, 30)))
    assert [m.to for m in second.messages] == [["manager@police.example.org"]]


def test_one_message_per_recipient_and_only_their_actions(
    store: db.Store, rules: Any, world: Any
) -> None:
    """The chair hears about both agencies; Police's manager, copied, only about Police; each
    agency's lead (never told before) only about their own."""
    ids = world(p=("Police", D(2024, 1, 1), "open"), h=("Health", D(2024, 1, 1), "open"))
    result = tick(store, rules, at(D(2024, 2, 5)), only=["deadline"])
    assert sent(result) == [
        ("deadline", "escalation", ("chair@csp.example.org",), [ids["p"], ids["h"]]),
        ("deadline", "escalation", ("lead@health.example.org",), [ids["h"]]),
        ("deadline", "escalation", ("lead@police.example.org",), [ids["p"]]),
        ("deadline", "escalation", ("manager@police.example.org",), [ids["p"]]),
    ]


# --- large ticks: chunked selection, rendering and writing ---------------------------------------


def test_chunked_lazy_tick_sends_what_a_whole_tick_sends(
    store: db.Store, rules: Any, world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon's way (select WINDOW due dates at a time, render and write RENDER_CHUNK
    messages at a time, let go of the bodies) with chunks of two and one: the same digests,
    each action in its recipient's digest once, bodies in the outbox, subjects kept."""
    monkeypatch.setattr(engine.selection, "WINDOW", 3)
    monkeypatch.setattr(engine.digests, "RENDER_CHUNK", 1)
    ids = world(
        a=("Police", D(2024, 1, 1), "open"),
        b=("Health", D(2024, 1, 1), "open"),
        c=("Police", D(2024, 1, 1), "open"),
        d=("Police", DUE, "open"),
        e=("Health", DUE, "completed"),
    )
    ruleset, templates = rules
    ctx = engine.Context(at(D(2024, 2, 5)), LONDON, "england", templates)
    with store.transaction() as s:
        lazy = engine.evaluate(s, ruleset, ctx, only=["deadline"], render=False)
        assert all(m.rendered is None for m in lazy.messages)
        engine.commit(s, lazy, ctx, actor="daemon")
    assert sent(lazy) == [
        ("deadline", "escalation", ("chair@csp.example.org",), [ids["a"], ids["b"], ids["c"]]),
        ("deadline", "escalation", ("lead@health.example.org",), [ids["b"]]),
        ("deadline", "escalation", ("lead@police.example.org",), [ids["a"], ids["c"]]),
        ("deadline", "escalation", ("manager@police.example.org",), [ids["a"], ids["c"]]),
        ("deadline", "overdue", ("lead@police.example.org",), [ids["d"]]),
    ]
    assert all(m.rendered is None and m.subject for m in lazy.messages)
    with store.reading() as s:
        notes = {(n.template, n.to_addrs[0]): n for n in s.scalars(select(Notification))}
        ledger = s.scalar(select(func.count()).select_from(Firing).where(Firing.outcome == "fired"))
    assert {(m.template, m.to[0]): m.subject for m in lazy.messages} == {
        k: n.subject for k, n in notes.items()
    }
    manager = notes[("escalation", "manager@police.example.org")].text_body
    assert "Action a" in manager and "Action c" in manager and "Action b" not in manager
    assert ledger == 4  # a, b, c, d: one firing each, however many digests list them
    assert tick(store, rules, at(D(2024, 2, 5), 15), only=["deadline"]).messages == []


@pytest.mark.parametrize("render", [True, False])
def test_a_replica_that_won_only_some_firings_sends_only_those(
    store: db.Store, rules: Any, world: Any, render: bool
) -> None:
    """Replica one evaluated before action c existed and committed first; replica two's digest
    to the same person shrinks to c alone and is rendered again to say so."""
    world(a=("Police", DUE, "open"), b=("Police", DUE, "open"))
    ruleset, templates = rules
    ctx = engine.Context(at(D(2024, 1, 25)), LONDON, "england", templates)
    with store.reading() as s:
        one = engine.evaluate(s, ruleset, ctx, only=["deadline"], render=render)
    with store.transaction() as s:
        c = actions.create(
            s, "R1", now=NOW, actor=ACTOR, recommendation="9", lead_agency="Police",
            text="Action c", due_date=DUE, due_basis="fixed",
        ).id  # fmt: skip
    with store.reading() as s:
        two = engine.evaluate(s, ruleset, ctx, only=["deadline"], render=render)
    with store.transaction() as s:
        engine.commit(s, one, ctx, actor="one")
    with store.transaction() as s:
        engine.commit(s, two, ctx, actor="two")
    assert [m.action_ids for m in two.messages] == [[c]]
    assert two.messages[0].subject == "Due in 6 days: DHR R1 action 9"  # one action now
    with store.reading() as s:
        latest = s.scalars(select(Notification).order_by(Notification.id.desc())).first()
    assert latest is not None
    assert "Action c" in latest.text_body
    assert "Action a" not in latest.text_body
