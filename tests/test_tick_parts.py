"""A tick committed in parts (issue #16): the catch-up after downtime commits as it goes.

The first part holds every action message, later parts the review reports a few reviews at a
time. Committed in parts, a tick sends exactly what one transaction would have; a crash between
parts keeps what was committed, and the next tick sends the rest — none lost, none twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from dhr_workflow import db, engine, reviews
from dhr_workflow.models import Firing, Notification

LONDON = ZoneInfo("Europe/London")
D = dt.date
AT = dt.datetime(2024, 2, 5, 10, tzinfo=LONDON)  # R1's plan agreed 2023-06-01: report due


def _reviews(store: db.Store, count: int) -> None:
    now = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    with store.transaction() as s:
        for i in range(2, count + 2):
            reviews.add(s, f"R{i}", f"Review {i}", now=now, actor="t", plan_agreed_on=D(2023, 7, i))


def _sent(store: db.Store) -> list[tuple[str, str, str]]:
    with store.reading() as s:
        notes = s.scalars(select(Notification)).all()
        return sorted((n.template, n.to_addrs[0], n.subject) for n in notes)


def _ledger(store: db.Store) -> list[tuple[str, str, int, str, str]]:
    with store.reading() as s:
        rows = s.execute(
            select(Firing.rule_id, Firing.subject_type, Firing.subject_id, Firing.period_key,
                   Firing.outcome)
        ).all()  # fmt: skip
    return sorted(tuple(r) for r in rows)


def _tick_in_parts(store: db.Store, rules: Any, lines: list[str]) -> int:
    ruleset, templates = rules
    ctx = engine.Context(AT, LONDON, "england", templates)
    with store.transaction() as s:
        first, *rest = engine.parts(engine.evaluate(s, ruleset, ctx, render=False), size=2)
        enqueued = len(engine.commit(s, first, ctx, actor="t").messages)
    return enqueued + engine.commit_rest(store, rest, ctx, actor="t", progress=lines.append)


def _tick_whole(store: db.Store, rules: Any) -> int:
    ruleset, templates = rules
    ctx = engine.Context(AT, LONDON, "england", templates)
    with store.transaction() as s:
        return len(engine.commit(s, engine.evaluate(s, ruleset, ctx), ctx, actor="t").messages)


def _world(store: db.Store, world: Callable[..., dict[str, int]]) -> None:
    world(
        a=("Police", D(2023, 11, 1), "open"),
        b=("Health", D(2024, 1, 20), "open"),
        c=("Police", D(2024, 2, 10), "in_progress"),
        d=("Police", None, "open"),
    )
    _reviews(store, 6)  # R2..R7: seven reviews with a report due, in four parts of two


def test_parts_send_what_one_transaction_sends(
    store: db.Store, rules: Any, world: Callable[..., dict[str, int]]
) -> None:
    _world(store, world)
    ruleset, templates = rules
    with store.reading() as s:  # what one transaction would send and record
        planned = engine.evaluate(s, ruleset, engine.Context(AT, LONDON, "england", templates))
    fired = {engine.model.key(h) for m in planned.messages for h in m.hits}
    skipped = {
        (h.rule, h.subject_type, h.subject_id, k) for h in planned.hits for k in h.superseded
    }
    assert skipped, "the world must have skipped steps to record"

    lines: list[str] = []
    enqueued = _tick_in_parts(store, rules, lines)
    assert len(lines) == 4 and lines[-1].startswith("part 5 of 5 committed")
    assert _sent(store) == sorted((m.template, m.to[0], m.subject) for m in planned.messages)
    assert enqueued == len(planned.messages)
    ledger = [r for r in _ledger(store) if r[4] != "gap"]
    assert sorted(r[:4] for r in ledger if r[4] == "fired") == sorted(fired)
    assert sorted(r[:4] for r in ledger if r[4] == "superseded") == sorted(skipped)
    with store.reading() as s:  # every firing points at a message that lists its subject
        linked = s.execute(
            select(Firing.subject_type, Firing.subject_id, Notification.id, Notification.rule_id)
            .outerjoin(Notification, Notification.id == Firing.notification_id)
            .where(Firing.outcome == "fired")
        ).all()
    assert linked and all(note_id is not None for _, _, note_id, _ in linked)
    # Seven reviews' reports, to the chair and (a copy is its own message) the coordinator.
    assert len([n for n in _sent(store) if n[0] == "partnership_report"]) == 14
    assert _tick_whole(store, rules) == 0  # nothing left over


def test_a_crash_between_parts_loses_nothing_and_repeats_nothing(
    store: db.Store,
    rules: Any,
    world: Callable[..., dict[str, int]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _world(store, world)
    real = engine.ledger.commit
    calls = {"n": 0}

    def dies_on_the_third(*args: Any, **kwargs: Any) -> engine.TickResult:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(engine.ledger, "commit", dies_on_the_third)
    monkeypatch.setattr(engine, "commit", dies_on_the_third)
    with pytest.raises(OSError, match="killed"):
        _tick_in_parts(store, rules, [])
    committed = _sent(store)
    reports = [n for n in committed if n[0] == "partnership_report"]
    assert len(reports) == 4  # parts 1 and 2 committed (R1 and R2's reports), part 3 not
    monkeypatch.undo()

    assert _tick_whole(store, rules) > 0  # the next tick: what part 3 onwards held
    after = _sent(store)
    assert len(after) == len(set(after))  # nobody told twice
    assert len([n for n in after if n[0] == "partnership_report"]) == 14
    assert set(committed) <= set(after)


def test_a_few_reviews_reports_go_with_the_first_part(
    store: db.Store, rules: Any, world: Callable[..., dict[str, int]]
) -> None:
    _world(store, world)
    ruleset, templates = rules
    ctx = engine.Context(AT, LONDON, "england", templates)
    with store.reading() as s:
        result = engine.evaluate(s, ruleset, ctx, render=False)
    reviews = {h.subject_id for h in result.hits if h.subject_type == "review"}
    assert len(reviews) == 7
    assert engine.parts(result, size=7) == [result]  # one transaction, as before parts
    assert len(engine.parts(result, size=6)) == 3  # the actions; R1-R6; R7
