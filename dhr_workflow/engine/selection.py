"""What fires at a moment: each rule's hits (subjects and periods not yet in the ledger),
grouped into messages. Reads only; :func:`dhr_workflow.engine.ledger.commit` writes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Date,
    Row,
    String,
    column,
    exists,
    func,
    select,
    text,
    values,
)
from sqlalchemy.orm import Session

# invitations imports this module too: both import the other as a module, not names from
# it, so whichever is imported first finds the other when the functions run.
from dhr_workflow import invitations
from dhr_workflow.durations import latest_fire_time, parse_cron, slot_key
from dhr_workflow.engine import digests
from dhr_workflow.engine.ladder import (
    first_notices,
    label,
    latest_occurrence,
    previous_occurrence,
    top_step,
)
from dhr_workflow.engine.model import CALENDAR_RULE, Context, Gap, Hit, TickResult
from dhr_workflow.models import Action, Firing, FiringOutcome, Review
from dhr_workflow.recipients import Directory
from dhr_workflow.ruleset import Every, Ladder, Notify, Rule, RuleSet
from dhr_workflow.selection import action_clauses, review_clauses


def evaluate(
    session: Session,
    ruleset: RuleSet,
    ctx: Context,
    only: Sequence[str] | None = None,
    *,
    render: bool = True,
) -> TickResult:
    """Everything that should fire at ``ctx.at``, grouped and rendered. Writes nothing.

    ``render=False`` leaves rendering to :func:`commit`, which renders, writes and lets go of
    the messages a chunk at a time: a catch-up tick can hold thousands of long digests."""
    hits: list[Hit] = []
    for ladder in ruleset.ladders:
        if only is None or ladder.id in only:
            hits += ladder_hits(session, ladder, ctx)
    for rule in ruleset.rules:
        if only is None or rule.id in only:
            hits += rule_hits(session, rule, ctx)
    directory = Directory(session)
    messages, gaps, unsent = digests.group(hits, directory)
    gaps += unanchored(session, ruleset, only)
    if only is None or CALENDAR_RULE in only:
        messages += invitations.invitation_updates(session)
    if render:
        digests.render(session, messages, ctx, directory)
    evaluated = [i for i in ruleset.ids if only is None or i in only]
    return TickResult(ctx.at, messages, gaps, hits, unsent, evaluated)


def fired_keys(
    session: Session, rule_id: str, subject_type: str, *where: Any
) -> set[tuple[int, str]]:
    """The ledger keys already recorded for a rule, narrowed by ``where`` so a tick reads the
    periods that matter now, not the rule's whole history."""
    rows = session.execute(
        select(Firing.subject_id, Firing.period_key).where(
            Firing.rule_id == rule_id, Firing.subject_type == subject_type, *where
        )
    )
    return {(r.subject_id, r.period_key) for r in rows}


def unfired(rule_id: str, period: ColumnElement[str] | str) -> ColumnElement[bool]:
    """No ledger row yet for (rule, this action, ``period``): an anti-join that the ledger's
    unique index answers, so the database returns only the actions owed a message."""
    return ~exists().where(
        Firing.rule_id == rule_id,
        Firing.subject_type == "action",
        Firing.subject_id == Action.id,
        Firing.period_key == period,
    )


# Due dates per ladder query: each carries its reached step's period key as two bound values,
# well inside both databases' bind-parameter limits; a store's open actions rarely span more.
WINDOW = 1000


def ladder_hits(session: Session, ladder: Ladder, ctx: Context) -> list[Hit]:
    """The actions owed a message by ``ladder`` this morning, each at its highest reached step.

    Python works out the step each due date has reached (business days and bank holidays are
    not SQL's to know: :mod:`.ladder`); the database joins those to the actions and anti-joins
    the ledger on its unique key, so a steady morning reads the few hundred actions owed a
    message, not every open action and its ledger history."""
    # A ladder runs on its schedule: a tick between slots evaluates as of the latest slot.
    assert isinstance(ladder.schedule, str)
    slot = latest_fire_time(parse_cron(ladder.schedule, ctx.tz), ctx.at)
    if slot is None:
        return []
    today = slot.astimezone(ctx.tz).date()
    earliest = min((s.at for s in ladder.steps), key=lambda o: o.apply(dt.date(2024, 1, 15)))
    # Nothing is reached before the first step: bound the due dates in SQL.
    horizon = today + dt.timedelta(days=earliest.max_days() if earliest.n < 0 else 0)
    clauses = action_clauses(
        session, ladder.applies_to, today=today, now=ctx.at, tz=ctx.tz, region=ctx.region
    )
    make = _HitMaker(ladder)
    hits = []
    for tops in _reached_by_due_date(session, ladder, today, horizon, ctx.region):
        for row in _owed(session, ladder.id, clauses, tops):
            hits.append(make(row, tops[row.due_date], _done(row.done)))
    hits.sort(key=lambda h: h.subject_id)
    return hits


Top = tuple[str, int, tuple[str, ...]]  # period key, step index, lower keys it supersedes


class _HitMaker:
    """A ladder's hit for one owed action; the step and notify values are shared by all."""

    def __init__(self, ladder: Ladder) -> None:
        self.ladder_id = ladder.id
        self.steps = [(str(step.at), tuple(step.notify)) for step in ladder.steps]
        self.order = {label: i for i, (label, _) in enumerate(self.steps)}  # sent, in turn
        self.with_first: list[tuple[Notify, ...]] = [
            notify if notice is None else (*notify, notice)
            for (_, notify), notice in zip(self.steps, first_notices(ladder), strict=True)
        ]

    def __call__(self, row: Row[*tuple[Any, ...]], top: Top, done: dict[str, str]) -> Hit:
        period, index, lower = top
        if done:  # lower steps already in the ledger are not recorded again
            lower = tuple(k for k in lower if k not in done)
        # Any step sent for this due date told the owner and agency lead, itself or with the
        # first notice that went with it.
        sent = tuple(
            sorted(
                {label(k) for k, outcome in done.items() if outcome == FiringOutcome.FIRED},
                key=lambda step: self.order.get(step, len(self.order)),
            )
        )
        step, notify = self.steps[index]
        if not sent:
            notify = self.with_first[index]
        return Hit(
            self.ladder_id, "action", row.id, period, step, notify, *_facts(row),
            lower, sent=sent, first=not sent,
        )  # fmt: skip


def _reached_by_due_date(
    session: Session, ladder: Ladder, today: dt.date, horizon: dt.date, region: str
) -> Iterator[dict[dt.date, Top]]:
    """The step reached by every due date from the store's earliest up to ``horizon``, WINDOW
    days at a time, skipping gaps between dates (one indexed MIN each)."""
    after: dt.date | None = None
    while True:
        stmt = select(func.min(Action.due_date)).where(Action.due_date <= horizon)
        start = session.scalar(stmt if after is None else stmt.where(Action.due_date > after))
        if start is None:
            return
        window = [start + dt.timedelta(days=i) for i in range(WINDOW)]
        window = [day for day in window if day <= horizon]
        tops = {day: top_step(ladder, day, today, region) for day in window}
        reached = {day: top for day, top in tops.items() if top is not None}
        if reached:
            yield reached
        after = window[-1]


def _owed(
    session: Session, ladder_id: str, clauses: list[ColumnElement[bool]], tops: dict[dt.date, Top]
) -> Sequence[Row[*tuple[Any, ...]]]:
    """The actions due on the dates of ``tops`` whose reached step is not in the ledger, each
    with the ledger keys of its current due date (``done``: see :func:`_done`).

    Joined on the due date alone: a range on it as well leads SQLite to scan the range once
    per date (3.2 s against 0.24 s at 100,000 actions). The keys come in the same statement,
    one string per action through the ledger's unique index, only for the actions owed: read
    as rows of their own they cost more than the selection (28,860 rows, 230 ms against
    160 ms for 6,080 actions at 100,000 on PostgreSQL)."""
    reached = (
        values(column("due", Date), column("period", String), name="reached")
        .data([(day, top[0]) for day, top in tops.items()])
        .cte("reached")
    )
    # A ladder's keys start with the due date they were reached for: "2024-01-31|+1d|r2".
    prefix = len("2024-01-31|")
    done = (
        select(func.aggregate_strings(Firing.outcome + _OUTCOME + Firing.period_key, _KEYS))
        .where(
            Firing.rule_id == ladder_id,
            Firing.subject_type == "action",
            Firing.subject_id == Action.id,
            Firing.outcome.in_([FiringOutcome.FIRED, FiringOutcome.SUPERSEDED]),
            func.substr(Firing.period_key, 1, prefix) == func.substr(reached.c.period, 1, prefix),
        )
        .scalar_subquery()
    )
    if session.get_bind().dialect.name == "postgresql":
        # The subquery's estimate (a probe per candidate) passes jit_above_cost, and LLVM
        # then takes 45-60 ms of a 170 ms statement for nothing. For this transaction only:
        # a connection option would override the deployer's own, and poolers refuse it.
        session.execute(text("SET LOCAL jit = off"))
    return session.execute(
        select(
            Action.id, Action.due_date, Action.review_id, Action.lead_agency_id,
            Action.owner_contact_id, done.label("done"),
        )
        .join(reached, reached.c.due == Action.due_date)
        .where(*clauses, unfired(ladder_id, reached.c.period))
    ).all()  # fmt: skip


# How _owed joins an action's ledger keys into one string: "fired:2024-01-31|-7d,superseded:
# 2024-01-31|-30d". Neither separator is in an outcome, and a ladder's keys hold no comma.
_OUTCOME, _KEYS = ":", ","


def _done(joined: str | None) -> dict[str, str]:
    """An owed action's ledger keys for its current due date, with their outcome."""
    if not joined:
        return {}
    return {k: outcome for outcome, _, k in (e.partition(_OUTCOME) for e in joined.split(_KEYS))}


def rule_hits(session: Session, rule: Rule, ctx: Context) -> list[Hit]:
    if rule.scope == "review":
        return review_hits(session, rule, ctx)
    assert isinstance(rule.schedule, str)
    slot = latest_fire_time(parse_cron(rule.schedule, ctx.tz), ctx.at)
    if slot is None:
        return []
    period = slot_key(slot, ctx.tz)
    clauses = action_clauses(
        session, rule.applies_to, today=ctx.today, now=ctx.at, tz=ctx.tz, region=ctx.region
    )
    stmt = select(
        Action.id, Action.review_id, Action.lead_agency_id, Action.owner_contact_id
    ).where(*clauses, unfired(rule.id, period))
    notify = tuple(rule.notify)  # shared by every hit
    # One query, not pages in id order: only actions owed a message come back, and sorting
    # them here is cheaper than the database sorting every page.
    rows = session.execute(stmt).all()
    hits = [Hit(rule.id, "action", r.id, period, None, notify, *_facts(r)) for r in rows]
    hits.sort(key=lambda h: h.subject_id)
    return hits


def _facts(row: Row[*tuple[Any, ...]]) -> tuple[int, int | None, int | None]:
    """What an action hit's recipients depend on: its review, agency and owner."""
    return row.review_id, row.lead_agency_id, row.owner_contact_id


def review_hits(session: Session, rule: Rule, ctx: Context) -> list[Hit]:
    """The reviews a review rule reports on now: read as plain rows (the id, and the date a
    recurring rule counts from), the ledger only for the periods due now, not its history."""
    columns = [Review.id]
    if isinstance(rule.schedule, Every):
        columns.append(getattr(Review, rule.schedule.anchor))
    reviews = session.execute(select(*columns).where(*review_clauses(rule.applies_to))).all()
    due = [(r.id, *_review_period(rule, r, ctx)) for r in reviews]
    periods = sorted({period for _, period, _ in due if period is not None})
    fired = fired_keys(session, rule.id, "review", Firing.period_key.in_(periods))
    notify = tuple(rule.notify)  # shared by every hit
    return [
        Hit(rule.id, "review", review_id, period, None, notify, review_id, since=since)
        for review_id, period, since in due
        if period is not None and (review_id, period) not in fired
    ]


def _review_period(
    rule: Rule, review: Row[*tuple[Any, ...]], ctx: Context
) -> tuple[str | None, dt.date | None]:
    """The period a review rule fires for now, and the start of the period it reports on."""
    if isinstance(rule.schedule, str):
        slot = latest_fire_time(parse_cron(rule.schedule, ctx.tz), ctx.at)
        return (slot_key(slot, ctx.tz), None) if slot else (None, None)
    anchor = getattr(review, rule.schedule.anchor)
    occurrence = latest_occurrence(rule.schedule, anchor, ctx.today)
    if occurrence is None:
        return None, None
    return occurrence.isoformat(), max(anchor, previous_occurrence(rule.schedule, occurrence))


def unanchored(session: Session, ruleset: RuleSet, only: Sequence[str] | None) -> list[Gap]:
    """Recurring review rules that cannot run because a review lacks the date they count
    from: listed like gaps, so a report that never starts is not a silent skip."""
    gaps = []
    for rule in ruleset.rules:
        if not isinstance(rule.schedule, Every) or (only is not None and rule.id not in only):
            continue
        anchor = getattr(Review, rule.schedule.anchor)
        ids = list(
            session.scalars(
                select(Review.id).where(*review_clauses(rule.applies_to), anchor.is_(None))
            )
        )
        if ids:
            gap = Gap(rule.id, rule.schedule.from_)
            gap.hits = [Hit(rule.id, "review", i, "unanchored", None, (), i) for i in ids]
            gaps.append(gap)
    return gaps
