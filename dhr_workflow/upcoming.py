"""What will be sent in the next days, if nothing in the store changes ("what will be sent").

:func:`forecast` replays the daemon's schedule from ``start``: at every run time of every rule
it asks the engine what that run would send (the same :func:`engine.evaluate` a dry run uses),
drops what an earlier simulated run already sent (by then the real ledger would hold it), and
renders only what is left. The simulated runs keep their ledger in memory and nothing is
written, so it works in a read-only session, takes no locks and can run beside a daemon that
is ticking.

Run times are the daemon's: each rule's cron in the partnership time zone; recurring review
rules (``every ... from``) daily at 07:00. The 15-minute calendar follow-up is left out: it only
sends updates after someone changes an action, and the forecast assumes nobody does. Nor does
it see the outbox: retries and quiet hours move when a message leaves, not what is sent.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy.orm import Session

from dhr_workflow import engine
from dhr_workflow.durations import _after
from dhr_workflow.engine import digests
from dhr_workflow.engine.model import key
from dhr_workflow.errors import InvalidInput
from dhr_workflow.recipients import Directory
from dhr_workflow.ruleset import RuleSet, trigger

MAX_DAYS = 366  # a year of runs is a few thousand evaluations: enough for any page


@dataclass(frozen=True)
class Planned:
    """One message a run would send: when, by which rule, to whom, about what."""

    at: dt.datetime  # the scheduled run that would enqueue it
    rule: str
    template: str
    to: list[str]
    cc: list[str]
    subject: str
    action_ids: list[int]
    review: str | None  # the review's ref when the message is about one review
    step: str | None = None  # a ladder's step(s), e.g. "-7d"
    calendar: bool = False  # carries a calendar invitation


@dataclass(frozen=True)
class PlannedGap:
    """A role that would resolve to nobody (no contact), first seen at ``first_at``."""

    rule: str
    role: str
    action_ids: list[int]
    review_ids: list[int]
    first_at: dt.datetime


@dataclass(frozen=True)
class Forecast:
    start: dt.datetime
    end: dt.datetime
    messages: list[Planned]
    gaps: list[PlannedGap]
    runs: int  # scheduled runs simulated


def plan(
    session: Session,
    ruleset: RuleSet,
    context: engine.Context,
    *,
    start: dt.datetime,
    days: int = 14,
) -> list[Planned]:
    """The messages the daemon would send from ``start`` for ``days`` days (see
    :func:`forecast`), sorted by time, then recipient."""
    return forecast(session, ruleset, context, start=start, days=days).messages


def forecast(
    session: Session,
    ruleset: RuleSet,
    context: engine.Context,
    *,
    start: dt.datetime,
    days: int = 14,
) -> Forecast:
    """Simulate the daemon's scheduled runs in ``[start, start + days)``, reading only.

    ``context`` gives the zone, calendar region, templates and partnership; its ``at`` is
    replaced by each run's time. ``session`` should be a read-only one (``store.reading()``).
    """
    if start.tzinfo is None:
        raise ValueError("start must be an aware datetime")
    if not 1 <= days <= MAX_DAYS:
        raise InvalidInput(f"days must be between 1 and {MAX_DAYS}, not {days}")
    begin = start.astimezone(context.tz)
    end = begin + dt.timedelta(days=days)  # wall-clock days in the partnership's zone
    sim = _Simulation(session, ruleset, context)
    runs = run_times(ruleset, context.tz, begin, end)
    for at, rule_id in runs:
        sim.run(at, rule_id)
    sim.unanchored(runs)
    messages = sorted(sim.messages, key=lambda p: (p.at, p.to, p.template, p.rule, p.cc))
    gaps = sorted(sim.gaps.values(), key=lambda g: (g.first_at, g.rule, g.role))
    return Forecast(begin, end, messages, [g.freeze() for g in gaps], len(runs))


# --- run times -------------------------------------------------------------------------------


def run_times(
    ruleset: RuleSet, tz: ZoneInfo, start: dt.datetime, end: dt.datetime
) -> list[tuple[dt.datetime, str]]:
    """Every (time, rule id) the daemon would run in ``[start, end)``, in time order (rules
    due at the same moment in rule-file order: each is a tick of its own)."""
    order = {rule_id: n for n, rule_id in enumerate(ruleset.ids)}
    runs = [
        (at, item.id)
        for item in ruleset.entries()
        for at in _fire_times(trigger(item, tz), start, end)
    ]
    return sorted(runs, key=lambda r: (r[0], order[r[1]]))


def _fire_times(cron: CronTrigger, start: dt.datetime, end: dt.datetime) -> Iterator[dt.datetime]:
    at: dt.datetime | None = cron.get_next_fire_time(None, start)
    while at is not None and at < end:
        yield at
        at = _after(cron, at)  # steps over the repeated autumn hour as the engine does


# --- the simulation --------------------------------------------------------------------------


@dataclass
class _GapSeen:
    rule: str
    role: str
    first_at: dt.datetime
    actions: set[int] = field(default_factory=set)
    reviews: set[int] = field(default_factory=set)

    def add(self, hits: list[engine.Hit]) -> None:
        for h in hits:
            (self.actions if h.subject_type == "action" else self.reviews).add(h.subject_id)

    def freeze(self) -> PlannedGap:
        return PlannedGap(
            self.rule, self.role, sorted(self.actions), sorted(self.reviews), self.first_at
        )


class _Simulation:
    """The daemon's runs against a ledger kept in memory on top of the real one."""

    def __init__(self, session: Session, ruleset: RuleSet, context: engine.Context) -> None:
        self.session, self.ruleset, self.context = session, ruleset, context
        # Contacts do not change in a forecast: resolve roles against one directory.
        self.directory = Directory(session)
        self.fired: set[engine.Key] = set()  # what the simulated runs have sent
        self.messages: list[Planned] = []
        self.gaps: dict[tuple[str, str], _GapSeen] = {}

    def run(self, at: dt.datetime, rule_id: str) -> None:
        """One scheduled tick of one rule, as the daemon runs it (``only=[rule]``)."""
        ctx = replace(self.context, at=at)
        result = engine.evaluate(self.session, self.ruleset, ctx, only=[rule_id], render=False)
        # The engine skips what the real ledger holds; skip what earlier simulated runs sent
        # too. A ladder's hit is its highest step reached, so a step already sent drops out
        # and a higher step reached later is a new key that does not.
        fresh = [h for h in result.hits if key(h) not in self.fired]
        messages, gaps, _ = digests.group(fresh, self.directory)
        digests.render(self.session, messages, ctx)  # only what is kept is rendered
        for msg in messages:
            self.messages.append(_planned(msg, at))
            for hit in msg.hits:  # what commit would write as fired, and as superseded
                self.fired.add(key(hit))
                self.fired.update(
                    (hit.rule, hit.subject_type, hit.subject_id, k) for k in hit.superseded
                )
        for gap in gaps:
            self._gap(gap.rule, gap.role, at).add(gap.hits)

    def unanchored(self, runs: list[tuple[dt.datetime, str]]) -> None:
        """Recurring review rules that cannot start (a review lacks their date), reported
        from each such rule's first run in the window."""
        first: dict[str, dt.datetime] = {}
        for at, rule_id in runs:
            first.setdefault(rule_id, at)
        for gap in engine.unanchored(self.session, self.ruleset, list(first)):
            self._gap(gap.rule, gap.role, first[gap.rule]).add(gap.hits)

    def _gap(self, rule: str, role: str, at: dt.datetime) -> _GapSeen:
        return self.gaps.setdefault((rule, role), _GapSeen(rule, role, at))


def _planned(msg: engine.Message, at: dt.datetime) -> Planned:
    return Planned(
        at=at,
        rule=msg.rule,
        template=msg.template,
        to=list(msg.to),
        cc=list(msg.cc),
        subject=msg.subject or "",
        action_ids=msg.action_ids,
        review=msg.review,
        step=",".join(s for s in msg.steps if s) or None,
        calendar=msg.calendar,
    )
