"""Property test: random plans and random sequences of ticks, date changes and completions.

Whatever happens, (1) no (rule, action, period) is ever enqueued twice, (2) after every tick
each open dated action has fired its highest reached step, and (3) finished actions stay quiet.
The oracle below computes reached steps on its own, from the default ladder's offsets.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from dhr_workflow import actions, contacts, db, engine, reviews
from dhr_workflow.durations import add_business_days
from dhr_workflow.models import Firing

ROOT = Path(__file__).resolve().parent.parent
LONDON = ZoneInfo("Europe/London")
BASE = dt.date(2024, 1, 1)
NOW = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
CONTACTS = """agency,role,name,email
Police,lead,Lee,lead@police.example.org
Police,manager,Max,manager@police.example.org
,coordinator,Cat,coordinator@csp.example.org
,chair,Chris,chair@csp.example.org
"""


def oracle_highest(due: dt.date, today: dt.date) -> str | None:
    """The default ladder: -30d, -7d, +1d, +10bd, +30d repeating every 30 days."""
    steps = [
        ("-30d", due - dt.timedelta(30)),
        ("-7d", due - dt.timedelta(7)),
        ("+1d", due + dt.timedelta(1)),
        ("+10bd", add_business_days(due, 10)),
        ("+30d", due + dt.timedelta(30)),
    ]
    reached = [(label, day) for label, day in steps if day <= today]
    if not reached:
        return None
    label, day = reached[-1]
    if label != "+30d":
        return f"{due}|{label}"
    k = (today - day).days // 30
    return f"{due}|+30d" + (f"|r{k}" if k else "")


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    url = f"sqlite:///{path}"
    db.migrate(url)
    store = db.Store(url)
    csv_path = path.parent / "contacts.csv"
    csv_path.write_text(CONTACTS)
    with store.transaction() as s:
        reviews.add(s, "R1", "Review", now=NOW, actor="t")
        contacts.import_rows(s, contacts.read_csv(csv_path), now=NOW, actor="t", source="c")
    store.dispose()
    return path


@pytest.fixture(scope="module")
def rules() -> tuple[Any, Any]:
    return engine.load_rules(ROOT / "rules", ROOT / "templates" / "email", LONDON)


operation = st.one_of(
    st.tuples(st.just("tick"), st.integers(0, 25)),
    st.tuples(st.just("move"), st.integers(0, 5), st.integers(-40, 80)),
    st.tuples(st.just("complete"), st.integers(0, 5)),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    dues=st.lists(st.integers(-60, 90), min_size=1, max_size=6),
    ops=st.lists(operation, min_size=1, max_size=12),
)
def test_ladder_never_repeats_and_never_misses(
    template_db: Path, rules: Any, tmp_path: Path, dues: list[int], ops: list[Any]
) -> None:
    copy = tmp_path / f"run-{abs(hash((tuple(dues), tuple(ops))))}.db"
    shutil.copy(template_db, copy)
    store = db.Store(f"sqlite:///{copy}")
    ruleset, templates = rules
    try:
        ids = []
        with store.transaction() as s:
            for n, offset in enumerate(dues):
                a = actions.create(
                    s,
                    "R1",
                    now=NOW,
                    actor="t",
                    recommendation=str(n + 1),
                    lead_agency="Police",
                    text=f"A{n}",
                    due_date=BASE + dt.timedelta(offset),
                    due_basis="fixed",
                )
                ids.append(a.id)
        today, enqueued, finished = BASE, [], set()
        for op in ops:
            if op[0] == "move" and ids[op[1] % len(ids)] not in finished:
                with store.transaction() as s:
                    actions.update(
                        s,
                        ids[op[1] % len(ids)],
                        actions.ActionChange(due=today + dt.timedelta(op[2]), reason="moved"),
                        today=today,
                        now=NOW,
                        actor="t",
                    )
                continue
            if op[0] == "complete":
                aid = ids[op[1] % len(ids)]
                with store.transaction() as s:
                    actions.update(
                        s,
                        aid,
                        actions.ActionChange(status=actions.ActionStatus.COMPLETED),
                        today=today,
                        now=NOW,
                        actor="t",
                    )
                finished.add(aid)
                continue
            if op[0] != "tick":
                continue
            today += dt.timedelta(op[1])
            ctx = engine.Context(
                dt.datetime.combine(today, dt.time(9), LONDON), LONDON, "england", templates
            )
            with store.transaction() as s:
                result = engine.commit(
                    s, engine.evaluate(s, ruleset, ctx, only=["deadline"]), ctx, actor="t"
                )
            sent_now = [
                (h.rule, h.subject_id, h.period_key, m.to[0])
                for m in result.messages
                for h in m.hits
            ]
            assert not finished & {aid for _, aid, _, _ in sent_now}
            enqueued += sent_now
            assert len(enqueued) == len(set(enqueued)), "a reminder was enqueued twice"
            _check_highest_fired(store, today, finished)
    finally:
        store.dispose()


def _check_highest_fired(store: db.Store, today: dt.date, finished: set[int]) -> None:
    with store.reading() as s:
        fired = set(
            s.execute(
                select(Firing.subject_id, Firing.period_key).where(Firing.outcome == "fired")
            ).all()
        )
        for action in s.scalars(select(actions.Action)):
            if action.id in finished or action.due_date is None:
                continue
            # The default ladder runs at 08:00 Monday to Friday: a weekend tick sees Friday.
            run_day = today - dt.timedelta(days=max(0, today.weekday() - 4))
            expected = oracle_highest(action.due_date, run_day)
            if expected is not None:
                assert (action.id, expected) in fired, (action.id, expected, today)
