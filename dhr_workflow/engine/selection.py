"""What fires at a moment: each rule's hits (subjects and periods not yet in the ledger),
grouped into messages. Reads only; :func:`dhr_workflow.engine.ledger.commit` writes."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any, TypeVarTuple

from sqlalchemy import Row, Select, String, cast, select
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


CHUNK = 5000  # actions selected (with their ledger keys) per query
_Ts = TypeVarTuple("_Ts")


def by_id(session: Session, stmt: Select[*_Ts]) -> Iterator[Sequence[Row[*_Ts]]]:
    """The rows of ``stmt`` (which selects Action.id) CHUNK at a time in id order, so a rule
    over a large store never holds every candidate row, or every ledger key, at once."""
    last: int | None = None
    while True:
        page = stmt if last is None else stmt.where(Action.id > last)
        rows = session.execute(page.order_by(Action.id).limit(CHUNK)).all()
        if not rows:
            return
        yield rows
        last = rows[-1].id


def ladder_hits(session: Session, ladder: Ladder, ctx: Context) -> list[Hit]:
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
    stmt = select(
        Action.id, Action.due_date, Action.review_id, Action.lead_agency_id, Action.owner_contact_id
    ).where(*clauses, Action.due_date.is_not(None), Action.due_date <= horizon)
    steps = [(str(step.at), tuple(step.notify)) for step in ladder.steps]  # shared by hits
    first = first_notices(ladder)
    order = {label: i for i, (label, _) in enumerate(steps)}  # to list sent steps in turn
    with_first: list[tuple[Notify, ...]] = [
        notify if notice is None else (*notify, notice)
        for (_, notify), notice in zip(steps, first, strict=True)
    ]
    reached: dict[dt.date, tuple[str, int, tuple[str, ...]] | None] = {}
    hits = []
    for rows in by_id(session, stmt):
        fired = _ladder_fired(session, ladder.id, rows[0].id, rows[-1].id)
        for row in rows:
            if row.due_date not in reached:  # many actions share a due date
                reached[row.due_date] = top_step(ladder, row.due_date, today, ctx.region)
            top = reached[row.due_date]
            done = fired.get(row.id, {})
            if top is None or top[0] in done:
                continue
            period, index, lower = top
            if done:
                lower = tuple(k for k in lower if k not in done)
            # Any step sent for this due date told the owner and agency lead, itself or with
            # the first notice that went with it.
            sent = tuple(
                sorted(
                    {label(k) for k, outcome in done.items() if outcome == FiringOutcome.FIRED},
                    key=lambda label: order.get(label, len(order)),
                )
            )
            step, notify = steps[index]
            if not sent:
                notify = with_first[index]
            facts = (row.review_id, row.lead_agency_id, row.owner_contact_id)
            hits.append(
                Hit(
                    ladder.id,
                    "action",
                    row.id,
                    period,
                    step,
                    notify,
                    *facts,
                    lower,
                    sent=sent,
                    first=not sent,
                )
            )
    return hits


def _ladder_fired(
    session: Session, ladder_id: str, first: int, last: int
) -> dict[int, dict[str, str]]:
    """The ledger keys (and outcome: fired or superseded) of actions ``first``..``last`` for
    their current due dates (keys start with the due date; older ones belong to a date that
    has since changed)."""
    current = Firing.period_key.like(cast(Action.due_date, String) + "|%")
    fired: dict[int, dict[str, str]] = defaultdict(dict)
    for i, k, outcome in session.execute(
        select(Firing.subject_id, Firing.period_key, Firing.outcome)
        .join(Action, Action.id == Firing.subject_id)
        .where(
            Firing.rule_id == ladder_id,
            Firing.subject_type == "action",
            Firing.subject_id.between(first, last),
            current,
            Firing.outcome.in_([FiringOutcome.FIRED, FiringOutcome.SUPERSEDED]),
        )
    ):
        fired[i][k] = outcome
    return fired


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
    ).where(*clauses)
    notify = tuple(rule.notify)  # shared by every hit
    hits = []
    for rows in by_id(session, stmt):
        fired = fired_keys(
            session,
            rule.id,
            "action",
            Firing.period_key == period,
            Firing.subject_id.between(rows[0].id, rows[-1].id),
        )
        hits += [
            Hit(
                rule.id,
                "action",
                r.id,
                period,
                None,
                notify,
                r.review_id,
                r.lead_agency_id,
                r.owner_contact_id,
            )
            for r in rows
            if (r.id, period) not in fired
        ]
    return hits


def review_hits(session: Session, rule: Rule, ctx: Context) -> list[Hit]:
    reviews = session.scalars(select(Review).where(*review_clauses(rule.applies_to))).all()
    fired = fired_keys(session, rule.id, "review")
    hits = []
    for review in reviews:
        period, since = _review_period(rule, review, ctx)
        if period is not None and (review.id, period) not in fired:
            hits.append(
                Hit(
                    rule.id,
                    "review",
                    review.id,
                    period,
                    None,
                    tuple(rule.notify),
                    review.id,
                    since=since,
                )
            )
    return hits


def _review_period(rule: Rule, review: Review, ctx: Context) -> tuple[str | None, dt.date | None]:
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
