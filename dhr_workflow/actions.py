"""Actions: listing, creating and the audited changes a coordinator makes."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, joinedload

from dhr_workflow import agencies, audit, reviews
from dhr_workflow.errors import InvalidInput, NotFound
from dhr_workflow.models import (
    CLOSED_STATUSES,
    Action,
    ActionStatus,
    DueBasis,
    Recommendation,
)

# The keys of `actions list --json`, in order: a contract with scripts that read it.
JSON_KEYS = (
    "id",
    "review",
    "recommendation",
    "ref",
    "text",
    "lead_agency",
    "owner",
    "scope",
    "target_text",
    "due_date",
    "due_basis",
    "status",
    "completed_on",
    "outcome",
    "needs_review",
    "review_reasons",
)
# Reasons about the target date start with this, so a coordinator's new date can clear them.
DUE_REASON_PREFIX = "due:"


@dataclass(frozen=True)
class ActionFilter:
    review: str | None = None
    status: ActionStatus | None = None
    agency: str | None = None
    due_before: dt.date | None = None


def query(session: Session, flt: ActionFilter) -> Select[Action]:
    stmt = select(Action).options(
        joinedload(Action.review),
        joinedload(Action.recommendation),
        joinedload(Action.lead_agency),
        joinedload(Action.owner_contact),
    )
    if flt.review is not None:
        stmt = stmt.where(Action.review_id == reviews.get(session, flt.review).id)
    if flt.status is not None:
        stmt = stmt.where(Action.status == flt.status.value)
    if flt.agency is not None:
        agency = agencies.find(session, flt.agency)
        if agency is None:
            raise NotFound(f"no agency called {flt.agency!r} (see `dhr-workflow agencies list`)")
        stmt = stmt.where(Action.lead_agency_id == agency.id)
    if flt.due_before is not None:
        stmt = stmt.where(Action.due_date < flt.due_before)
    return stmt.order_by(Action.review_id, Action.id)


def list_actions(session: Session, flt: ActionFilter) -> list[Action]:
    return list(session.scalars(query(session, flt)).unique())


def to_dict(action: Action) -> dict[str, Any]:
    rec = action.recommendation
    owner = action.owner_text or (action.owner_contact.name if action.owner_contact else None)
    return {
        "id": action.id,
        "review": action.review.ref,
        "recommendation": rec.ref if rec else None,
        "ref": action.ref,
        "text": action.text,
        "lead_agency": action.lead_agency.name if action.lead_agency else None,
        "owner": owner,
        "scope": rec.scope if rec else None,
        "target_text": action.target_text,
        "due_date": action.due_date.isoformat() if action.due_date else None,
        "due_basis": action.due_basis,
        "status": action.status,
        "completed_on": action.completed_on.isoformat() if action.completed_on else None,
        "outcome": action.outcome,
        "needs_review": action.needs_review,
        "review_reasons": list(action.review_reasons),
    }


def get(session: Session, action_id: int) -> Action:
    action = session.get(Action, action_id)
    if action is None:
        raise NotFound(f"no action with id {action_id} (see `dhr-workflow actions list`)")
    return action


@dataclass(frozen=True)
class ActionChange:
    status: ActionStatus | None = None
    due: dt.date | None = None
    reason: str | None = None
    outcome: str | None = None
    completed_on: dt.date | None = None


def update(
    session: Session,
    action_id: int,
    change: ActionChange,
    *,
    today: dt.date,
    now: dt.datetime,
    actor: str,
) -> Action:
    """Apply a coordinator's change; every field changed is audited with before and after."""
    _validate(change)
    action = get(session, action_id)
    before = snapshot(action)
    if change.due is not None and change.due != action.due_date:
        _set_due(action, change.due)
    if change.completed_on is not None and change.completed_on > today:
        raise InvalidInput(f"--completed-on {change.completed_on} is in the future")
    if change.status is not None and change.status != action.status:
        _set_status(action, change.status, change.completed_on or today)
    elif change.completed_on is not None:
        if action.status != ActionStatus.COMPLETED:
            raise InvalidInput(
                "--completed-on needs the action to be completed (add --status completed)"
            )
        action.completed_on = change.completed_on
    if change.outcome is not None:
        action.outcome = change.outcome
    after = snapshot(action)
    changed = {k: after[k] for k in after if after[k] != before[k]}
    if not changed:
        return action
    action.updated_at = now
    session.flush()
    data: dict[str, Any] = {"before": {k: before[k] for k in changed}, "after": changed}
    if "due_date" in changed:
        data["reason"] = change.reason
    audit.record(
        session, now=now, actor=actor, kind=_kind(changed), subject=f"action:{action.id}", data=data
    )
    return action


def _validate(change: ActionChange) -> None:
    if change.due is not None and not (change.reason or "").strip():
        raise InvalidInput("a due-date change needs --reason (it is kept in the audit log)")
    if change.reason is not None and change.due is None:
        raise InvalidInput("--reason explains a due-date change; give --due as well")
    if change.completed_on is not None and change.status not in (None, ActionStatus.COMPLETED):
        raise InvalidInput("--completed-on only goes with --status completed")


def _set_due(action: Action, due: dt.date) -> None:
    action.due_date = due
    action.due_basis = DueBasis.FIXED
    action.due_rule = None
    action.review_reasons = [
        r for r in action.review_reasons if not r.startswith(DUE_REASON_PREFIX)
    ]
    action.needs_review = bool(action.review_reasons)
    action.sequence += 1  # calendars must see the move


def _set_status(action: Action, status: ActionStatus, completed_on: dt.date) -> None:
    if status == ActionStatus.COMPLETED:
        action.completed_on = completed_on
    elif action.status == ActionStatus.COMPLETED:
        action.completed_on = None  # reopened
    if status in CLOSED_STATUSES or action.status in CLOSED_STATUSES:
        action.sequence += 1  # the calendar entry is cancelled or comes back
    action.status = status


def _kind(changed: dict[str, Any]) -> str:
    if "due_date" in changed:
        return "action.due_change"
    if "status" in changed:
        return "action.status"
    return "action.update"


def snapshot(action: Action) -> dict[str, Any]:
    return {
        "status": action.status,
        "due_date": action.due_date,
        "due_basis": action.due_basis,
        "completed_on": action.completed_on,
        "outcome": action.outcome,
        "needs_review": action.needs_review,
        "review_reasons": list(action.review_reasons),
        "sequence": action.sequence,
    }


def find_or_create_recommendation(
    session: Session,
    review_id: int,
    ref: str,
    *,
    section: str,
    text: str,
    scope: str | None,
    now: dt.datetime,
    actor: str,
) -> Recommendation:
    rec = session.scalar(
        select(Recommendation).where(
            Recommendation.review_id == review_id,
            Recommendation.section == section,
            Recommendation.ref == ref,
        )
    )
    if rec is None:
        rec = Recommendation(
            review_id=review_id, ref=ref, section=section, text=text, scope=scope, created_at=now
        )
        session.add(rec)
        session.flush()
        audit.record(
            session,
            now=now,
            actor=actor,
            kind="recommendation.create",
            subject=f"recommendation:{rec.id}",
            data={
                "review_id": review_id,
                "section": section,
                "ref": ref,
                "text": text,
                "scope": scope,
            },
        )
    return rec


def create(
    session: Session,
    review_ref: str,
    *,
    now: dt.datetime,
    actor: str,
    recommendation: str | None = None,
    section: str = "overview",
    recommendation_text: str = "",
    scope: str | None = None,
    lead_agency: str | None = None,
    **fields: Any,
) -> Action:
    """Create one action (the importer's building block), audited."""
    review = reviews.get(session, review_ref)
    rec = (
        find_or_create_recommendation(
            session,
            review.id,
            recommendation,
            section=section,
            text=recommendation_text,
            scope=scope,
            now=now,
            actor=actor,
        )
        if recommendation is not None
        else None
    )
    agency = (
        agencies.find_or_create(session, lead_agency, now=now, actor=actor) if lead_agency else None
    )
    values = {
        "status": ActionStatus.OPEN.value,
        "due_basis": DueBasis.NONE.value,
        "review_reasons": [],
        "sequence": 0,
        **fields,
    }
    values["needs_review"] = bool(values["review_reasons"])
    action = Action(
        review=review,
        recommendation=rec,
        lead_agency=agency,
        created_at=now,
        updated_at=now,
        **values,
    )
    session.add(action)
    session.flush()
    audit.record(
        session,
        now=now,
        actor=actor,
        kind="action.create",
        subject=f"action:{action.id}",
        data={"review": review.ref, "after": to_dict(action)},
    )
    return action
