"""Ladder arithmetic: which steps a due date has reached by a day, and when a recurring
review rule last came round. Pure functions of their arguments (``today`` is passed in), so
they are tested with tables rather than a store."""

from __future__ import annotations

import datetime as dt

from dhr_workflow.engine.model import FirstNotice
from dhr_workflow.ruleset import Every, Ladder
from dhr_workflow.targets import add_months

OWN_ROLES = ("owner", "agency.lead")


def first_notices(ladder: Ladder) -> list[FirstNotice | None]:
    """Per step: the notice its owner and agency lead get if it is the first they hear of an
    action, or None when the step addresses them itself."""
    notices: list[FirstNotice | None] = []
    for step in ladder.steps:
        roles = {r for n in step.notify for r in (*n.to, *n.cc)}
        tells = bool(roles & set(OWN_ROLES))
        notices.append(
            None
            if tells
            else FirstNotice(to=["owner"], cc=["agency.lead"], template=step.notify[0].template)
        )
    return notices


def label(period_key: str) -> str:
    """The step a ladder period key belongs to: "2024-01-31|+1d|r2" -> "+1d"."""
    return period_key.split("|")[1]


def top_step(
    ladder: Ladder, due: dt.date, today: dt.date, region: str
) -> tuple[str, int, tuple[str, ...]] | None:
    """The highest step reached for ``due`` (period key, step index) and the lower keys it
    supersedes. Skipped steps are recorded; skipped repeats of the top step need no record
    (the latest repeat is what counts, and a long-overdue action would otherwise add one row
    per missed interval)."""
    keys = reached(ladder, due, today, region)
    if not keys:
        return None
    period, index = keys[-1]
    return period, index, tuple(k for k, _ in keys[:-1] if "|r" not in k)


def reached(ladder: Ladder, due: dt.date, today: dt.date, region: str) -> list[tuple[str, int]]:
    """(period key, step index) of every step and repeat reached by ``today``, by date: the
    last is the highest. Mixed units ("+9bd", "+12d") can reorder steps on some dates, so
    every step's date is worked out rather than stopping at the first unreached one."""
    reached: list[tuple[dt.date, int, str]] = []
    for index, step in enumerate(ladder.steps):
        when = step.at.apply(due, region)
        if when > today:
            continue
        reached.append((when, index, f"{due.isoformat()}|{step.at}"))
        if step.repeat is not None:
            k, again = 1, step.repeat.apply(when, region)
            while again <= today:
                reached.append((again, index, f"{due.isoformat()}|{step.at}|r{k}"))
                k, again = k + 1, step.repeat.apply(again, region)
    return [(key, index) for _, index, key in sorted(reached)]


def latest_occurrence(every: Every, anchor: dt.date | None, today: dt.date) -> dt.date | None:
    """The latest ``anchor + k * interval`` (k >= 1) on or before ``today``."""
    if anchor is None:
        return None
    n, unit = every.step()
    latest, k = None, 1
    while True:
        when = (
            add_months(anchor, n * k)
            if unit == "month"
            else anchor + dt.timedelta(days=n * k * (7 if unit == "week" else 1))
        )
        if when > today:
            return latest
        latest, k = when, k + 1


def previous_occurrence(every: Every, occurrence: dt.date) -> dt.date:
    n, unit = every.step()
    if unit == "month":
        return add_months(occurrence, -n)
    return occurrence - dt.timedelta(days=n * (7 if unit == "week" else 1))
