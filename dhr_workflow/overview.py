"""What the web app's pages show, read from the store: counts per review, overdue actions by
agency, the needs-review queue, failed messages, a review's actions by recommendation.

Every function takes ``scope``: None for someone who reads everything, else what the reader
may see (:class:`signin.Scope`: their agencies' actions and their reviews').
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, case, func, or_, select, true
from sqlalchemy.orm import Session, joinedload

from dhr_workflow.models import (
    CLOSED_STATUSES,
    Action,
    ActionStatus,
    Agency,
    Notification,
    Recommendation,
    Review,
    ReviewStatus,
)
from dhr_workflow.signin import Scope

SOON = dt.timedelta(days=30)
_OPEN = Action.status.not_in([s.value for s in CLOSED_STATUSES])


@dataclass(frozen=True)
class ReviewCounts:
    review: Review
    overdue: int
    due_soon: int
    open: int
    completed: int
    needs_review: int


def _visible(scope: Scope | None) -> ColumnElement[bool]:
    """The actions this reader may see."""
    if scope is None:
        return true()
    return or_(
        Action.lead_agency_id.in_(list(scope.agency_ids)),
        Action.review_id.in_(list(scope.review_ids)),
    )


def review_counts(session: Session, today: dt.date, scope: Scope | None) -> list[ReviewCounts]:
    """Open reviews with their action counts (only reviews with visible actions for an
    agency reader)."""

    def count(cond: Any) -> Any:
        return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)

    stmt = (
        select(
            Review,
            count(_OPEN & (Action.due_date < today)),
            count(_OPEN & Action.due_date.between(today, today + SOON)),
            count(_OPEN),
            count(Action.status == ActionStatus.COMPLETED.value),
            count(_OPEN & Action.needs_review),
        )
        .join(Action, Action.review_id == Review.id, isouter=scope is None)
        .where(Review.status == ReviewStatus.OPEN.value)
        .group_by(Review.id)
        .order_by(Review.ref)
    )
    return [ReviewCounts(r, *map(int, rest)) for r, *rest in session.execute(
        stmt.where(_visible(scope))
    )]  # fmt: skip


def overdue_by_agency(
    session: Session, today: dt.date, scope: Scope | None
) -> list[tuple[Agency | None, int, dt.date | None]]:
    """(agency, overdue open actions, the oldest due date), most overdue first."""
    stmt = (
        select(Action.lead_agency_id, func.count(), func.min(Action.due_date))
        .where(_OPEN, Action.due_date < today)
        .group_by(Action.lead_agency_id)
        .order_by(func.count().desc())
    )
    rows = session.execute(stmt.where(_visible(scope))).all()
    names = {a.id: a for a in session.scalars(select(Agency))} if rows else {}
    return [
        (names.get(agency_id) if agency_id else None, n, oldest) for agency_id, n, oldest in rows
    ]


def needs_review(session: Session, scope: Scope | None, limit: int = 100) -> list[Action]:
    """Open actions flagged for a coordinator's check, oldest review first."""
    stmt = (
        select(Action)
        .options(joinedload(Action.review), joinedload(Action.lead_agency))
        .where(_OPEN, Action.needs_review)
        .order_by(Action.review_id, Action.id)
        .limit(limit)
    )
    return list(session.scalars(stmt.where(_visible(scope))))


def failed_messages(session: Session, limit: int = 20) -> list[Notification]:
    return list(
        session.scalars(
            select(Notification)
            .where(Notification.state.in_(["failed", "dead"]))
            .order_by(Notification.created_at.desc())
            .limit(limit)
        )
    )


@dataclass(frozen=True)
class ActionFilter:
    status: str | None = None  # an ActionStatus value, or "overdue" / "needs_review"
    agency_id: int | None = None


def review_actions(
    session: Session,
    review: Review,
    flt: ActionFilter,
    today: dt.date,
    scope: Scope | None,
) -> list[tuple[Recommendation | None, list[Action]]]:
    """A review's actions grouped under their recommendations, in plan order."""
    stmt = (
        select(Action)
        .options(
            joinedload(Action.recommendation),
            joinedload(Action.lead_agency),
            joinedload(Action.owner_contact),
        )
        .where(Action.review_id == review.id)
        .order_by(Action.recommendation_id, Action.id)
    )
    if flt.status == "overdue":
        stmt = stmt.where(_OPEN, Action.due_date < today)
    elif flt.status == "needs_review":
        stmt = stmt.where(_OPEN, Action.needs_review)
    elif flt.status:
        stmt = stmt.where(Action.status == flt.status)
    if flt.agency_id is not None:
        stmt = stmt.where(Action.lead_agency_id == flt.agency_id)
    groups: dict[int | None, tuple[Recommendation | None, list[Action]]] = {}
    for action in session.scalars(stmt.where(_visible(scope))).unique():
        rec = action.recommendation
        groups.setdefault(rec.id if rec else None, (rec, []))[1].append(action)
    return list(groups.values())


def review_agencies(session: Session, review: Review) -> list[Agency]:
    """The agencies leading actions in a review (for its agency filter)."""
    ids = select(Action.lead_agency_id).where(Action.review_id == review.id).distinct()
    return list(session.scalars(select(Agency).where(Agency.id.in_(ids)).order_by(Agency.name)))


def is_overdue(action: Action, today: dt.date) -> bool:
    return (
        action.status not in CLOSED_STATUSES
        and action.due_date is not None
        and action.due_date < today
    )
