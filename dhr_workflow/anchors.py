"""Review anchor dates and the due dates that count from them.

When a coordinator sets a review's publication (or completion, acceptance, agreement) date,
every relative or recurring target that counts from it gets its date — or a new one — at once,
with the calendar sequence bumped and each change audited.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dhr_workflow import audit, reviews
from dhr_workflow.actions import DUE_REASON_PREFIX
from dhr_workflow.models import CLOSED_STATUSES, Action, DueBasis, Review
from dhr_workflow.targets import resolve


def update_review(
    session: Session, ref: str, *, today: dt.date, now: dt.datetime, actor: str, **fields: Any
) -> tuple[Review, int]:
    """Change a review; returns it and how many actions' due dates followed its anchors."""
    before = {k: getattr(reviews.get(session, ref), k) for k in reviews.ANCHORS}
    review = reviews.update(session, ref, now=now, actor=actor, **fields)
    moved = {k for k in reviews.ANCHORS if getattr(review, k) != before[k]}
    return review, follow_anchors(session, review, moved, today=today, now=now, actor=actor)


def follow_anchors(
    session: Session,
    review: Review,
    changed: set[str],
    *,
    today: dt.date,
    now: dt.datetime,
    actor: str,
) -> int:
    if not changed:
        return 0
    anchors = {k: getattr(review, k) for k in reviews.ANCHORS}
    moved = 0
    for action in session.scalars(
        select(Action).where(
            Action.review_id == review.id,
            Action.due_basis.in_([DueBasis.RELATIVE.value, DueBasis.RECURRING.value]),
        )
    ):
        rule = action.due_rule or {}
        target = resolve(action.due_basis, rule, anchors, today)
        if target is None or rule.get("anchor") not in changed:
            continue
        before = {"due_date": action.due_date, "review_reasons": list(action.review_reasons)}
        others = [r for r in action.review_reasons if not r.startswith(DUE_REASON_PREFIX)]
        due_reasons = [] if action.status in CLOSED_STATUSES else list(target.reasons)
        action.review_reasons = [*due_reasons, *others]
        action.needs_review = bool(action.review_reasons)
        if target.due_date != action.due_date:
            action.due_date = target.due_date
            action.sequence += 1
            moved += 1
        after = {"due_date": action.due_date, "review_reasons": action.review_reasons}
        if after != before:
            action.updated_at = now
            audit.record(
                session,
                now=now,
                actor=actor,
                kind="action.due_recompute",
                subject=f"action:{action.id}",
                data={"before": before, "after": after, "anchor": rule.get("anchor")},
            )
    session.flush()
    return moved
