"""Reviews: one DHR each, with the anchor dates that relative deadlines count from."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from dhr_workflow import audit
from dhr_workflow.errors import InvalidInput, NotFound
from dhr_workflow.models import CLOSED_STATUSES, Action, Review, ReviewStatus

ANCHORS = ("plan_agreed_on", "report_accepted_on", "published_on", "completed_on")
REF_LIMIT, PARTNERSHIP_LIMIT = 100, 200  # the columns' widths
EDITABLE = ("title", "partnership", "status", *ANCHORS)


def get(session: Session, ref: str) -> Review:
    review = session.scalar(select(Review).where(Review.ref == ref))
    if review is None:
        raise NotFound(f"no review with ref {ref!r} (see `dhr-workflow reviews list`)")
    return review


def add(
    session: Session, ref: str, title: str, *, now: dt.datetime, actor: str, **fields: Any
) -> Review:
    ref = ref.strip()
    if not ref:
        raise InvalidInput("a review needs a non-empty ref")
    if len(ref) > REF_LIMIT:
        raise InvalidInput(f"a review ref is at most {REF_LIMIT} characters")
    _check_ref(ref)
    if not title.strip():
        raise InvalidInput("a review needs a non-empty --title")
    if session.scalar(select(Review.id).where(Review.ref == ref)) is not None:
        raise InvalidInput(
            f"a review with ref {ref!r} already exists (use `reviews set` to change it)"
        )
    values = _checked(fields)
    review = Review(
        ref=ref,
        title=title.strip(),
        status=ReviewStatus.OPEN,
        created_at=now,
        updated_at=now,
        **values,
    )
    session.add(review)
    session.flush()
    audit.record(
        session,
        now=now,
        actor=actor,
        kind="review.create",
        subject=f"review:{ref}",
        data={"after": snapshot(review)},
    )
    return review


_REF_FORBIDDEN = set("?#%\\")


def _check_ref(ref: str) -> None:
    """A ref is part of the review's web address (/reviews/BDHR2012/13-04): it may hold "/",
    but nothing a browser would read as another address."""
    bad = sorted({c for c in ref if c in _REF_FORBIDDEN or not c.isprintable()})
    if bad or any(part in (".", "..", "") for part in ref.split("/")):
        shown = ", ".join(repr(c) for c in bad) or "an empty, '.' or '..' part between slashes"
        raise InvalidInput(
            f"a review ref cannot contain {shown} (letters, digits, spaces, - _ . / are fine)"
        )


def update(session: Session, ref: str, *, now: dt.datetime, actor: str, **fields: Any) -> Review:
    """Change the given fields (None means "leave as is"); audited with before and after."""
    review = get(session, ref)
    changes = {k: v for k, v in _checked(fields).items() if getattr(review, k) != v}
    if not changes:
        return review
    before = {k: getattr(review, k) for k in changes}
    for key, value in changes.items():
        setattr(review, key, value)
    review.updated_at = now
    session.flush()
    audit.record(
        session,
        now=now,
        actor=actor,
        kind="review.update",
        subject=f"review:{ref}",
        data={"before": before, "after": changes},
    )
    return review


def _checked(fields: dict[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - set(EDITABLE)
    if unknown:
        raise InvalidInput(f"unknown review field(s): {', '.join(sorted(unknown))}")
    values = {k: v for k, v in fields.items() if v is not None}
    if "title" in values:
        values["title"] = values["title"].strip()
        if not values["title"]:
            raise InvalidInput("a review's --title cannot be empty")
    if len(values.get("partnership") or "") > PARTNERSHIP_LIMIT:
        raise InvalidInput(f"--partnership is at most {PARTNERSHIP_LIMIT} characters")
    if "status" in values and values["status"] not in set(ReviewStatus):
        raise InvalidInput(f"review status must be one of: {', '.join(ReviewStatus)}")
    return values


def snapshot(review: Review) -> dict[str, Any]:
    return {"ref": review.ref, **{k: getattr(review, k) for k in EDITABLE}}


def list_with_counts(session: Session) -> list[tuple[Review, int, int]]:
    """Each review with its number of actions and of open (not completed/withdrawn) actions."""
    open_case = func.sum(case((Action.status.not_in(CLOSED_STATUSES), 1), else_=0))
    rows = session.execute(
        select(Review, func.count(Action.id), func.coalesce(open_case, 0))
        .outerjoin(Action, Action.review_id == Review.id)
        .group_by(Review.id)
        .order_by(Review.ref)
    ).all()
    return [(r, int(n), int(o)) for r, n, o in rows]
