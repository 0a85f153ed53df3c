"""``applies_to`` compiled to SQL: whitelisted fields only, never eval, never string SQL."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, false, func, or_, select
from sqlalchemy.orm import Session

from dhr_workflow import agencies
from dhr_workflow.durations import Offset
from dhr_workflow.models import CLOSED_STATUSES, Action, Recommendation, Review
from dhr_workflow.ruleset import Selection


def review_clauses(sel: Selection) -> list[ColumnElement[bool]]:
    clauses: list[ColumnElement[bool]] = []
    if sel.review_status is not None:
        clauses.append(Review.status.in_(sel.review_status))
    if sel.review_ref is not None:
        clauses.append(Review.ref.in_(sel.review_ref))
    if sel.review_kind is not None:
        clauses.append(Review.kind.in_(sel.review_kind))
    return clauses


def action_clauses(
    session: Session, sel: Selection, *, today: dt.date, now: dt.datetime, tz: ZoneInfo, region: str
) -> list[ColumnElement[bool]]:
    """The WHERE clauses for one rule's actions. Finished actions never match."""
    clauses: list[ColumnElement[bool]] = [Action.status.not_in([s.value for s in CLOSED_STATUSES])]
    if sel.status is not None:
        clauses.append(Action.status.in_(sel.status))
    reviews = review_clauses(sel)
    if reviews:
        clauses.append(Action.review_id.in_(select(Review.id).where(*reviews)))
    if sel.agency is not None:
        ids = [a.id for a in (agencies.find(session, name) for name in sel.agency) if a]
        clauses.append(Action.lead_agency_id.in_(ids) if ids else false())
    if sel.scope is not None:
        scope = func.lower(Recommendation.scope)
        matches = or_(*(scope.like(f"{s.lower()}%") for s in sel.scope))
        clauses.append(Action.recommendation_id.in_(select(Recommendation.id).where(matches)))
    if sel.needs_review is not None:
        clauses.append(Action.needs_review.is_(sel.needs_review))
    if sel.has_due_date is not None:
        due = Action.due_date
        clauses.append(due.is_not(None) if sel.has_due_date else due.is_(None))
    clauses += _due_clauses(sel, today, region)
    if sel.not_updated_for is not None:
        since = _when(sel.not_updated_for, today, region, back=True)
        clauses.append(Action.updated_at < dt.datetime.combine(since, dt.time(), tz))
    return clauses


def _due_clauses(sel: Selection, today: dt.date, region: str) -> list[ColumnElement[bool]]:
    clauses: list[ColumnElement[bool]] = []
    if sel.due_before is not None:
        clauses.append(Action.due_date < _when(sel.due_before, today, region))
    if sel.due_after is not None:
        clauses.append(Action.due_date > _when(sel.due_after, today, region))
    if sel.due_within is not None:
        clauses.append(Action.due_date.between(today, _when(sel.due_within, today, region)))
    return clauses


def _when(value: Offset | dt.date, today: dt.date, region: str, *, back: bool = False) -> dt.date:
    if isinstance(value, dt.date):
        return value
    offset = Offset(-abs(value.n), value.unit) if back else value
    return offset.apply(today, region)
