"""The feed render as it was before feeds wrote their events as text (commit a9d16e9): ORM
objects and icalendar's Calendar/Event/Alarm. Kept only as the reference the faster render
must match byte for byte (tests/test_feed_render.py); not used by the product."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from icalendar import Alarm, Calendar, Event, vDuration
from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from dhr_workflow import calendar
from dhr_workflow.feeds import REFRESH, _scope
from dhr_workflow.models import CLOSED_STATUSES, Action, DueBasis, FeedToken
from dhr_workflow.overview import is_overdue


def _actions(session: Session, token: FeedToken, include_completed: bool) -> list[Action]:
    query = (
        select(Action)
        .where(*_scope(session, token, include_completed))
        .options(
            joinedload(Action.review),
            joinedload(Action.recommendation),
            joinedload(Action.lead_agency),
        )
        .order_by(Action.due_date, Action.id)
    )
    return list(session.scalars(query).unique())


def render(
    session: Session,
    token: FeedToken,
    *,
    include_completed: bool = False,
    detail: Literal["minimal", "full"] = "minimal",
    today: dt.date | None = None,
    base_url: str | None = None,
    name: str = "DHR actions",
) -> bytes:
    cal = Calendar()
    cal.add("prodid", calendar.PRODID)
    cal.add("version", "2.0")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", f"{name} ({token.label or token.scope_value or 'all'})")
    cal.add("refresh-interval", vDuration(REFRESH), parameters={"VALUE": "DURATION"})
    cal.add("x-published-ttl", vDuration(REFRESH))
    for action in _actions(session, token, include_completed):
        link = f"{base_url}/actions/{action.id}" if base_url else None
        cal.add_component(_event(action, detail, link))
        if today is not None and is_overdue(action, today):
            cal.add_component(_overdue_event(action, detail, link, today))
    return bytes(cal.to_ical())


def _facts(action: Action) -> calendar.EventFacts:
    agency = action.lead_agency.name if action.lead_agency else None
    due: dt.date = action.due_date  # type: ignore[assignment]
    return calendar.EventFacts(
        action.id, action.sequence, due, action.review.ref, action.ref, agency
    )


def _event(action: Action, detail: str, link: str | None) -> Event:
    facts = _facts(action)
    done = action.status in {s.value for s in CLOSED_STATUSES}
    event = _common(action, facts, link)
    event.add("uid", calendar.action_uid(action.id))
    event.add("dtstamp", action.updated_at)
    event.add("dtstart", facts.due_date)
    event.add("dtend", facts.due_date + dt.timedelta(days=1))
    event.add("summary", ("Done: " if done else "") + facts.summary)
    event.add("description", _description(action, detail, link, []))
    event.add("status", "CANCELLED" if action.status == "withdrawn" else "CONFIRMED")
    if action.due_basis == DueBasis.RECURRING and action.due_rule:
        event.add("rrule", {"freq": "monthly", "interval": action.due_rule.get("every_months", 6)})
    if not done:
        alarm = Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("description", "DHR action due")
        alarm.add("trigger", dt.timedelta(days=-7))
        event.add_component(alarm)
    return event


def _overdue_event(action: Action, detail: str, link: str | None, today: dt.date) -> Event:
    facts = _facts(action)
    days = (today - facts.due_date).days
    event = _common(action, facts, link)
    event.add("uid", calendar.overdue_uid(action.id))
    event.add("dtstamp", max(action.updated_at, dt.datetime.combine(today, dt.time(), dt.UTC)))
    event.add("dtstart", today)
    event.add("dtend", today + dt.timedelta(days=1))
    event.add("summary", "OVERDUE: " + facts.summary)
    due = f"{facts.due_date.day} {facts.due_date:%b %Y}"
    late = f"Overdue: due {due}, {days} day{'s' if days != 1 else ''} ago"
    event.add("description", _description(action, detail, link, [late]))
    event.add("status", "CONFIRMED")
    event.add("related-to", calendar.action_uid(action.id))
    return event


def _common(action: Action, facts: calendar.EventFacts, link: str | None) -> Event:
    event = Event()
    event.add("sequence", action.sequence)
    event.add("last-modified", action.updated_at)
    event.add("categories", [c for c in ("DHR", facts.review, facts.lead_agency) if c])
    event.add("transp", "TRANSPARENT")
    if link:
        event.add("url", link)
    return event


def _description(action: Action, detail: str, link: str | None, first: list[str]) -> str:
    lines = [*first, f"Status: {action.status.replace('_', ' ')}"]
    if detail == "full":
        rec = action.recommendation
        if rec is not None:
            lines.append(f"Recommendation {rec.ref}: {rec.text or '-'}")
        lines += [f"Action: {action.text or '-'}", f"The plan says: {action.target_text or '-'}"]
    if link:
        lines.append(link)
    return "\n".join(lines)
