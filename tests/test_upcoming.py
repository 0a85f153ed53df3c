""" "What will be sent": the forecast against what real ticks then send, on both backends."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from dhr_workflow import actions, contacts, db, engine, reviews, upcoming
from dhr_workflow.engine import digests
from dhr_workflow.errors import InvalidInput
from dhr_workflow.models import Action, Base, Contact
from dhr_workflow.ruleset import RuleSet
from tests.conftest import ACTOR, NOW

LONDON = ZoneInfo("Europe/London")
D = dt.date
START = dt.datetime(2024, 1, 15, 9, 30, tzinfo=LONDON)  # a Monday, after the 08:00 and 09:00 runs

CONTACTS = """agency,role,name,email,review
Police,lead,Lee Lead,lead@police.example.org,
Police,manager,Max Manager,manager@police.example.org,
Health,lead,Hal Lead,lead@health.example.org,
,coordinator,Cat Coordinator,coordinator@csp.example.org,
,chair,Chris Chair,chair@csp.example.org,
,family_liaison,Fay Liaison,fay@advocacy.example.org,R1
Probation,lead,Jo Owner,jo@probation.example.org,
"""


def local(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), LONDON)


@pytest.fixture
def ladder(rules: tuple[Any, Any]) -> tuple[Any, Any]:
    """The default deadline ladder alone."""
    ruleset, templates = rules
    return RuleSet(ruleset.ladders, (), ruleset.sources), templates


def context(rules: tuple[Any, Any]) -> engine.Context:
    return engine.Context(START, LONDON, "england", rules[1], "Safer Partnership")


Spec = tuple[str | None, dt.date | None, str]


@pytest.fixture
def world(store: db.Store, tmp_path: Path) -> Callable[..., dict[str, int]]:
    """Review R1 (plan agreed 20 July 2023) with contacts; ``make(key=(agency, due, status))``
    adds actions, ``owner=`` makes Jo their owner, ``updated=`` backdates them."""
    with store.transaction() as s:
        reviews.add(s, "R1", "Review one", now=NOW, actor=ACTOR, plan_agreed_on=D(2023, 7, 20))
    path = tmp_path / "contacts.csv"
    path.write_text(CONTACTS)
    with store.transaction() as s:
        contacts.import_rows(s, contacts.read_csv(path), now=NOW, actor=ACTOR, source="c.csv")

    def make(*, owner: bool = False, updated: dt.datetime = NOW, **spec: Spec) -> dict[str, int]:
        ids = {}
        with store.transaction() as s:
            jo = s.scalar(select(Contact.id).where(Contact.email == "jo@probation.example.org"))
            first = (s.scalar(select(func.count()).select_from(Action)) or 0) + 1
            for n, (key, (agency, due, status)) in enumerate(spec.items(), start=first):
                a = actions.create(
                    s,
                    "R1",
                    now=updated,
                    actor=ACTOR,
                    recommendation=str(n),
                    lead_agency=agency,
                    text=f"Action {key}",
                    due_date=due,
                    due_basis="fixed" if due else "none",
                    status=status,
                    review_reasons=[] if due else ["due: no target date"],
                    owner_contact_id=jo if owner else None,
                )
                ids[key] = a.id
        return ids

    return make


def tick(
    store: db.Store, rules: tuple[Any, Any], when: dt.datetime, rule: str
) -> engine.TickResult:
    """One real scheduled run of one rule, committed, as the daemon's job does it."""
    ruleset, templates = rules
    ctx = engine.Context(when, LONDON, "england", templates, "Safer Partnership")
    with store.transaction() as s:
        result = engine.evaluate(s, ruleset, ctx, only=[rule])
        return engine.commit(s, result, ctx, actor="daemon")


def forecast(
    store: db.Store, rules: tuple[Any, Any], start: dt.datetime = START, days: int = 14
) -> upcoming.Forecast:
    with store.reading() as s:
        return upcoming.forecast(s, rules[0], context(rules), start=start, days=days)


def brief(planned: list[upcoming.Planned]) -> list[tuple[dt.datetime, str, str, list[int]]]:
    return [(p.at, p.template, ",".join(p.to), p.action_ids) for p in planned]


# --- the forecast is what the daemon then does --------------------------------------------------


def test_forecast_matches_the_real_runs_day_by_day(store: db.Store, rules: Any, world: Any) -> None:
    """A fortnight forecast, then a fortnight of real ticks: the same messages, recipients,
    subjects and actions at the same times. The real side does not reuse the forecast's run
    times: it ticks each cron rule every hour (the engine works out the slot itself) and the
    review rule daily at 07:00, the daemon's documented schedule."""
    ids = world(
        a=("Police", D(2024, 1, 20), "open"),  # -7d on the 15th; +1d on Sunday: Monday
        b=("Police", D(2024, 2, 14), "open"),  # -30d on the 15th: one digest with a
        c=("Health", D(2024, 2, 4), "in_progress"),  # -7d on Sunday 28th: Monday 29th
        d=("Health", D(2023, 12, 29), "open"),  # +10bd on the 15th, +30d on the 28th
        e=(None, D(2024, 1, 24), "open"),  # nobody to tell: gaps, never a message
        f=("Police", D(2024, 1, 31), "completed"),
        k=("Police", D(2024, 1, 25), "blocked"),
        g=("Police", None, "open"),  # undated: the coordinator, on Mondays
        h=("Police", D(2024, 1, 17), "open"),  # -7d sent by the real run of the 10th
    )
    ids |= world(owner=True, j=("Police", D(2024, 1, 26), "open"))  # Jo's, copying the lead
    ids |= world(
        updated=dt.datetime(2023, 9, 1, tzinfo=dt.UTC), s=("Health", D(2024, 6, 1), "open")
    )
    with store.transaction() as s:
        reviews.add(s, "R2", "Review two", now=NOW, actor=ACTOR)  # no plan date: a gap
    start = local(D(2024, 1, 15), 7, 30)
    # The daemon has been running: last Monday's weekly runs, the ladder on the 10th, this
    # morning's review check.
    tick(store, rules, local(D(2024, 1, 8), 9), "undated-actions")
    tick(store, rules, local(D(2024, 1, 8), 9), "stale-actions")
    tick(store, rules, local(D(2024, 1, 10), 8), "deadline")
    tick(store, rules, local(D(2024, 1, 15), 7), "six-monthly-report")

    predicted = forecast(store, rules, start=start, days=15)

    real: list[upcoming.Planned] = []
    gaps: dict[tuple[str, str], set[int]] = {}
    for day in range(15):
        # Every hour from 06:00 to 10:00: the default rules run between 07:00 and 09:00, and a
        # tick at any other hour finds nothing new (it evaluates as of the latest slot).
        for hour in (local(D(2024, 1, 15) + dt.timedelta(days=day), h) for h in range(6, 11)):
            due = ["deadline", "undated-actions", "stale-actions"]
            if hour.hour == 7:
                due.append("six-monthly-report")
            for rule in due if start <= hour < predicted.end else []:
                result = tick(store, rules, hour, rule)
                real += [upcoming._planned(m, hour) for m in result.messages]
                for g in result.gaps:
                    gaps.setdefault((g.rule, g.role), set()).update(h.subject_id for h in g.hits)
    # Everything a Planned holds: time, rule, template, to, cc, subject, actions, review, step
    # and calendar invitation.
    assert predicted.messages == sorted(real, key=lambda p: (p.at, p.to, p.template, p.rule))
    assert {(g.rule, g.role): set(g.action_ids + g.review_ids) for g in predicted.gaps} == gaps

    # And what that was, as a coordinator would check it:
    i = ids
    mondays = [
        ("needs_review", "coordinator@csp.example.org", [i["g"]]),
        ("update_request", "coordinator@csp.example.org", [i["s"]]),
        ("update_request", "lead@health.example.org", [i["s"]]),
    ]
    assert brief(predicted.messages) == [
        (local(D(2024, 1, 15), 8), "escalation", "coordinator@csp.example.org", [i["d"]]),
        (local(D(2024, 1, 15), 8), "escalation", "lead@health.example.org", [i["d"]]),
        (local(D(2024, 1, 15), 8), "due_soon", "lead@police.example.org", [i["a"], i["b"]]),
        *[(local(D(2024, 1, 15), 9), *m) for m in mondays],
        (local(D(2024, 1, 18), 8), "overdue", "lead@police.example.org", [i["h"]]),
        (local(D(2024, 1, 19), 8), "due_soon", "jo@probation.example.org", [i["j"]]),
        (local(D(2024, 1, 20), 7), "partnership_report", "chair@csp.example.org", []),
        (local(D(2024, 1, 20), 7), "partnership_report", "coordinator@csp.example.org", []),
        (local(D(2024, 1, 20), 7), "family_update", "fay@advocacy.example.org", []),
        (local(D(2024, 1, 22), 8), "overdue", "lead@police.example.org", [i["a"]]),
        *[(local(D(2024, 1, 22), 9), *m) for m in mondays],
        (local(D(2024, 1, 29), 8), "escalation", "chair@csp.example.org", [i["d"]]),
        (local(D(2024, 1, 29), 8), "overdue", "jo@probation.example.org", [i["j"]]),
        (local(D(2024, 1, 29), 8), "due_soon", "lead@health.example.org", [i["c"]]),
        (local(D(2024, 1, 29), 8), "overdue", "lead@police.example.org", [i["j"]]),
        *[(local(D(2024, 1, 29), 9), *m) for m in mondays],
    ]
    assert {(g.rule, g.role): g.action_ids + g.review_ids for g in predicted.gaps} == {
        ("deadline", "owner"): [i["e"]],
        ("deadline", "agency.lead"): [i["e"]],
        ("deadline", "agency.manager"): [i["d"]],
        ("six-monthly-report", "review.plan_agreed_on"): [2],
    }


def test_a_step_is_sent_once_and_a_higher_step_later(
    store: db.Store, ladder: Any, world: Any
) -> None:
    """-7d, reached on the first run, is not sent again by the nine runs after it; +1d, reached
    on a Sunday, is Monday's, once."""
    ids = world(a=("Police", D(2024, 1, 20), "open"))
    planned = forecast(store, ladder).messages
    assert [(p.at, p.step, p.template, p.action_ids) for p in planned] == [
        (local(D(2024, 1, 16), 8), "-7d", "due_soon", [ids["a"]]),
        (local(D(2024, 1, 22), 8), "+1d", "overdue", [ids["a"]]),
    ]
    assert planned[0].calendar  # the -7d step invites
    assert planned[0].subject == f"Due in 4 days: DHR R1 action {ids['a']}"
    assert planned[1].subject == f"Overdue: DHR R1 action {ids['a']}"
    assert planned[0].review == "R1"


@pytest.mark.parametrize(
    ("start", "minus_thirty", "minus_seven"),
    [
        # 20 days out: -30d is already reached (the first weekday run), -7d on the 13th day,
        # or the Monday after it when that is a weekend.
        (local(D(2024, 1, 15), 9, 30), local(D(2024, 1, 16), 8), local(D(2024, 1, 29), 8)),
        (local(D(2024, 1, 17), 10), local(D(2024, 1, 18), 8), local(D(2024, 1, 30), 8)),
        (local(D(2024, 1, 19), 6), local(D(2024, 1, 19), 8), local(D(2024, 2, 1), 8)),
        (local(D(2024, 1, 20), 12), local(D(2024, 1, 22), 8), local(D(2024, 2, 2), 8)),
    ],
)
def test_twenty_days_out_shows_minus_seven_on_the_right_weekday(
    store: db.Store,
    ladder: Any,
    world: Any,
    start: dt.datetime,
    minus_thirty: dt.datetime,
    minus_seven: dt.datetime,
) -> None:
    ids = world(a=("Police", start.date() + dt.timedelta(days=20), "open"))
    planned = forecast(store, ladder, start=start).messages
    assert [(p.at, p.step, p.to) for p in planned] == [
        (minus_thirty, "-30d", ["lead@police.example.org"]),
        (minus_seven, "-7d", ["lead@police.example.org"]),
    ]
    assert minus_seven.weekday() < 5
    assert all(p.action_ids == [ids["a"]] for p in planned)


def test_digests_group_per_recipient_and_template_per_run(
    store: db.Store, ladder: Any, world: Any
) -> None:
    """Two Police actions reach a step on the same run: one digest to their lead. The chair's
    escalation lists both agencies' actions, the Police manager's copy only Police's, and each
    lead (never told before) hears of their own agency's escalated action."""
    ids = world(
        p=("Police", D(2023, 12, 15), "open"),  # +30d reached: the chair, copying the manager
        r=("Health", D(2023, 12, 15), "open"),  # the same, and Health has no manager
        q=("Police", D(2024, 1, 19), "open"),  # -7d
        t=("Police", D(2024, 2, 14), "open"),  # -30d
    )
    result = forecast(store, ladder, days=1)
    assert [(p.at, p.template, p.to, p.cc, p.action_ids) for p in result.messages] == [
        (
            local(D(2024, 1, 16), 8),
            "escalation",
            ["chair@csp.example.org"],
            [],
            [ids["p"], ids["r"]],
        ),
        (local(D(2024, 1, 16), 8), "escalation", ["lead@health.example.org"], [], [ids["r"]]),
        (
            local(D(2024, 1, 16), 8),
            "due_soon",
            ["lead@police.example.org"],
            [],
            [ids["q"], ids["t"]],
        ),
        (local(D(2024, 1, 16), 8), "escalation", ["lead@police.example.org"], [], [ids["p"]]),
        (local(D(2024, 1, 16), 8), "escalation", ["manager@police.example.org"], [], [ids["p"]]),
    ]
    assert result.messages[2].subject == "2 DHR actions due soon"
    assert result.messages[2].step == "-7d,-30d"
    assert [(g.role, g.action_ids) for g in result.gaps] == [("agency.manager", [ids["r"]])]


def test_gaps_are_listed_once(store: db.Store, ladder: Any, world: Any) -> None:
    ids = world(x=(None, D(2024, 1, 20), "open"))  # nobody: every run finds the same gap
    result = forecast(store, ladder)
    assert result.messages == []
    assert [(g.rule, g.role, g.action_ids, g.first_at) for g in result.gaps] == [
        ("deadline", "owner", [ids["x"]], local(D(2024, 1, 16), 8)),
        ("deadline", "agency.lead", [ids["x"]], local(D(2024, 1, 22), 8)),
    ]


# --- reading only -------------------------------------------------------------------------------


def counts(store: db.Store) -> dict[str, int]:
    with store.reading() as s:
        return {
            t.name: s.scalar(select(func.count()).select_from(t)) or 0
            for t in Base.metadata.sorted_tables
        }


def test_forecast_writes_nothing_and_holds_no_lock(store: db.Store, rules: Any, world: Any) -> None:
    """Row counts (the audit log's too) are unchanged; a daemon can commit a tick while the
    forecast's session is still open, and the forecast then leaves out what it sent."""
    world(a=("Police", D(2024, 1, 20), "open"), g=("Police", None, "open"))
    before = counts(store)
    with store.reading() as s:
        first = upcoming.plan(s, rules[0], context(rules), start=START, days=14)
        assert first
        assert counts(store) == before
        tick(store, rules, local(D(2024, 1, 16), 8), "deadline")  # the daemon, meanwhile
    assert counts(store) != before
    after = [p.template for p in forecast(store, rules).messages if p.rule != "six-monthly-report"]
    assert after == ["overdue", "needs_review", "needs_review"]


def test_only_what_is_kept_is_rendered(
    store: db.Store, ladder: Any, world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    world(a=("Police", D(2024, 1, 20), "open"), b=("Health", D(2024, 1, 24), "open"))
    rendered: list[engine.Message] = []
    real = digests.render

    def counting(session: Any, messages: list[engine.Message], ctx: engine.Context) -> None:
        rendered.extend(messages)
        real(session, messages, ctx)

    monkeypatch.setattr(digests, "render", counting)
    planned = forecast(store, ladder).messages
    # a: -7d, +1d; b: -30d, -7d, +1d. Not once per run that found the same step again.
    assert len(rendered) == len(planned) == 5


def test_mistakes(store: db.Store, rules: Any) -> None:
    with store.reading() as s, pytest.raises(InvalidInput, match="days must be between 1 and"):
        upcoming.plan(s, rules[0], context(rules), start=START, days=0)
    with store.reading() as s, pytest.raises(ValueError, match="aware"):
        upcoming.plan(s, rules[0], context(rules), start=dt.datetime(2024, 1, 15), days=1)


# --- run times (pure) ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "days", "expected"),
    [
        (  # a weekend: only the daily review check
            local(D(2024, 1, 20), 0),
            2,
            [
                (local(D(2024, 1, 20), 7), "six-monthly-report"),
                (local(D(2024, 1, 21), 7), "six-monthly-report"),
            ],
        ),
        (  # Monday: review check, ladder, then the two weekly rules at 09:00 in file order
            local(D(2024, 1, 22), 6, 59),
            1,
            [
                (local(D(2024, 1, 22), 7), "six-monthly-report"),
                (local(D(2024, 1, 22), 8), "deadline"),
                (local(D(2024, 1, 22), 9), "undated-actions"),
                (local(D(2024, 1, 22), 9), "stale-actions"),
            ],
        ),
        (  # a run at exactly the start is in, one at exactly the end is out
            local(D(2024, 1, 23), 8),
            1,
            [
                (local(D(2024, 1, 23), 8), "deadline"),
                (local(D(2024, 1, 24), 7), "six-monthly-report"),
            ],
        ),
        (  # the clocks go forward on Sunday 31 March: 07:00 is still 07:00 in London
            local(D(2024, 3, 30), 12),
            2,
            [
                (local(D(2024, 3, 31), 7), "six-monthly-report"),
                (local(D(2024, 4, 1), 7), "six-monthly-report"),
                (local(D(2024, 4, 1), 8), "deadline"),
                (local(D(2024, 4, 1), 9), "undated-actions"),
                (local(D(2024, 4, 1), 9), "stale-actions"),
            ],
        ),
    ],
)
def test_run_times(
    rules: Any, start: dt.datetime, days: int, expected: list[tuple[dt.datetime, str]]
) -> None:
    end = start + dt.timedelta(days=days)
    got = upcoming.run_times(rules[0], LONDON, start, end)
    assert got == expected
    assert [t.utcoffset() for t, _ in got] == [t.utcoffset() for t, _ in expected]
