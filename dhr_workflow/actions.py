"""Actions: listing, creating and the audited changes a coordinator makes."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, joinedload

from dhr_workflow import agencies, audit, reviews
from dhr_workflow.errors import InvalidInput, NotFound
from dhr_workflow.importer.text import strip_controls
from dhr_workflow.models import (
    CLOSED_STATUSES,
    Action,
    ActionStatus,
    ActionUpdate,
    Contact,
    DueBasis,
    Recommendation,
)
from dhr_workflow.overview import is_overdue

# The keys of `actions list --json`, in order: a contract with scripts that read it (new keys
# go at the end). The last three depend on the day and the notes: see to_dict.
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
    "recommendation_text",
    "progress",
    "overdue",
)
# Reasons about the target date start with this, so a coordinator's new date can clear them.
DUE_REASON_PREFIX = "due:"
AGENCY_PREFIX = "agency:"
AGENCY_REASON = (
    f"{AGENCY_PREFIX} the plan names no lead agency for this action; choose one on the "
    "action's page or with `actions update ID --agency`"
)


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


def to_dict(
    action: Action, *, today: dt.date | None = None, progress: ActionUpdate | None = None
) -> dict[str, Any]:
    """An action as `actions list --json` prints it (JSON_KEYS, in order), given ``today``
    (the partnership's date, for ``overdue``) and its latest progress note, if any. Without
    ``today``, only the action's own fields (JSON_KEYS up to review_reasons): what the audit
    log records of a new action."""
    rec = action.recommendation
    owner = action.owner_text or (action.owner_contact.name if action.owner_contact else None)
    fields = {
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
    if today is None:
        return fields
    return fields | {
        "recommendation_text": rec.text if rec else None,
        "progress": (
            {"at": progress.at.isoformat(), "note": progress.note, "author": progress.author}
            if progress
            else None
        ),
        "overdue": is_overdue(action, today),
    }


def latest_notes(session: Session, selected: Select[Action]) -> dict[int, ActionUpdate]:
    """The latest progress note of each action a query selects, by action id: one query for
    any number of actions."""
    ids = selected.with_only_columns(Action.id).order_by(None)
    ranked = (
        select(
            ActionUpdate.id,
            func.row_number()
            .over(
                partition_by=ActionUpdate.action_id,
                order_by=(ActionUpdate.at.desc(), ActionUpdate.id.desc()),
            )
            .label("n"),
        )
        .where(ActionUpdate.action_id.in_(ids))
        .subquery()
    )
    latest = (
        select(ActionUpdate).join(ranked, ranked.c.id == ActionUpdate.id).where(ranked.c.n == 1)
    )
    return {note.action_id: note for note in session.scalars(latest)}


ID_LIMIT = 2**31 - 1  # the id column's range: a larger number is no action, not a DB error


def get(session: Session, action_id: int) -> Action:
    action = session.get(Action, action_id) if 0 < action_id <= ID_LIMIT else None
    if action is None:
        raise NotFound(f"no action with id {action_id} (see `dhr-workflow actions list`)")
    return action


@dataclass(frozen=True)
class ActionChange:
    """A person's change to one action; None leaves a field as it is."""

    status: ActionStatus | None = None
    due: dt.date | None = None
    reason: str | None = None
    outcome: str | None = None
    completed_on: dt.date | None = None
    agency: str | None = None  # an existing agency, by any of its spellings
    owner: str | None = None  # the owner as written; "" clears it
    owner_email: str | None = None  # the owner's contact (who `owner` reminders go to); "" clears
    note: str | None = None  # a progress note, kept as a dated update
    settle: str | None = None  # settles the needs-review flags, with this explanation


NOTE_LIMIT = 5000
# Plan-owned fields a person may correct; a correction is remembered in action.overrides.
OVERRIDABLE = ("status", "completed_on", "outcome", "lead_agency", "owner_text")


def update(
    session: Session,
    action_id: int,
    change: ActionChange,
    *,
    today: dt.date,
    now: dt.datetime,
    actor: str,
    source: str = "cli",
    via: int | None = None,
) -> Action:
    """Apply a person's change; every field changed is audited with before and after.
    ``source`` says where it came from (cli, web, link); ``via`` names the message link used."""
    _validate(change, today)
    action = get(session, action_id)
    before = snapshot(action)
    _apply(session, action, change, today)
    after = snapshot(action)
    changed = {k: after[k] for k in after if after[k] != before[k]}
    note = (change.note or "").strip()
    if not changed and not note:
        return action
    _remember_overrides(action, before, changed)
    action.updated_at = now
    if note:
        session.add(
            ActionUpdate(
                action_id=action.id, at=now, author=actor, note=note, source=source,
                status=after["status"] if "status" in changed else None,
            )
        )  # fmt: skip
    session.flush()
    data: dict[str, Any] = {"before": {k: before[k] for k in changed}, "after": changed}
    if "due_date" in changed:
        data["reason"] = change.reason
    if note:
        data["note"] = note
    if change.settle is not None:
        data["settled"] = change.settle.strip()
    if via is not None:
        data["link"] = via
    audit.record(
        session, now=now, actor=actor, kind=_kind(changed, data), subject=f"action:{action.id}",
        data=data,
    )  # fmt: skip
    return action


def _apply(session: Session, action: Action, change: ActionChange, today: dt.date) -> None:
    if change.due is not None and change.due != action.due_date:
        _set_due(action, change.due)
    if change.status is not None and change.status != action.status:
        _set_status(action, change.status, change.completed_on or today)
    elif change.completed_on is not None:
        if action.status != ActionStatus.COMPLETED:
            raise InvalidInput(
                "--completed-on needs the action to be completed (add --status completed)"
            )
        action.completed_on = change.completed_on
    if change.outcome is not None and _plain(change.outcome) != _plain(action.outcome):
        action.outcome = change.outcome.strip() or None
    if change.agency is not None:
        _set_agency(session, action, change.agency)
    if change.owner is not None and _folded(change.owner) != _folded(action.owner_text):
        action.owner_text = _folded(change.owner) or None
    current = action.owner_contact.email.lower() if action.owner_contact else ""
    if change.owner_email is not None and change.owner_email.strip().lower() != current:
        action.owner_contact = _owner_contact(session, change.owner_email)
    if change.settle is not None:
        if not action.review_reasons:
            raise InvalidInput("this action has nothing that needs review")
        action.review_reasons = []
        action.needs_review = False


def _plain(text: str | None) -> str:
    """Text as compared for a change: a form sends back CRLF and trailing spaces."""
    return (text or "").replace("\r\n", "\n").strip()


def _folded(text: str | None) -> str:
    """An owner as one line (plan cells wrap it)."""
    return " ".join(strip_controls(text or "").split())


def _validate(change: ActionChange, today: dt.date) -> None:
    if change.due is not None and not (change.reason or "").strip():
        raise InvalidInput("a due-date change needs --reason (it is kept in the audit log)")
    if change.reason is not None and change.due is None:
        raise InvalidInput("--reason explains a due-date change; give --due as well")
    if change.completed_on is not None and change.status not in (None, ActionStatus.COMPLETED):
        raise InvalidInput("--completed-on only goes with --status completed")
    if change.completed_on is not None and change.completed_on > today:
        raise InvalidInput(f"the completion date {change.completed_on} is in the future")
    if change.settle is not None and not change.settle.strip():
        raise InvalidInput("settling a needs-review flag needs a note saying why")
    for name, text in (("note", change.note), ("settle", change.settle)):
        if text is not None and len(text) > NOTE_LIMIT:
            raise InvalidInput(f"--{name} is longer than {NOTE_LIMIT} characters")


def _set_agency(session: Session, action: Action, name: str) -> None:
    agency = agencies.find(session, name)
    if agency is None:
        raise InvalidInput(
            f"no agency called {name!r} (see `dhr-workflow agencies list`; "
            "a new agency comes in with a plan or a contacts file)"
        )
    action.lead_agency = agency
    action.review_reasons = [r for r in action.review_reasons if not r.startswith(AGENCY_PREFIX)]
    action.needs_review = bool(action.review_reasons)


def _owner_contact(session: Session, email: str) -> Contact | None:
    if not email.strip():
        return None
    found = session.scalars(
        select(Contact)
        .where(func.lower(Contact.email) == email.strip().lower(), Contact.active)
        .order_by(Contact.id)
    ).first()
    if found is None:
        raise InvalidInput(
            f"no active contact with address {email.strip()!r} (add them as a contact first)"
        )
    return found


def _remember_overrides(action: Action, before: dict[str, Any], changed: dict[str, Any]) -> None:
    """Remember the plan's value of each plan-owned field a person changed, once: a re-import
    of the same plan keeps the correction, a revised plan that says something new wins."""
    overrides = dict(action.overrides or {})
    for key in OVERRIDABLE:
        if key in changed and key not in overrides:
            overrides[key] = audit.to_jsonable(before[key])
    if "review_reasons" in changed and not changed["review_reasons"]:
        settled = set(overrides.get("review_reasons", [])) | set(before["review_reasons"])
        overrides["review_reasons"] = sorted(settled)
    if overrides != action.overrides:
        action.overrides = overrides


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


def _kind(changed: dict[str, Any], data: dict[str, Any]) -> str:
    if "due_date" in changed:
        return "action.due_change"
    if "status" in changed:
        return "action.status"
    if "settled" in data:
        return "action.settle"
    if {"lead_agency", "owner_text", "owner_contact"} & set(changed):
        return "action.assign"
    if not changed:
        return "action.note"
    return "action.update"


def snapshot(action: Action) -> dict[str, Any]:
    return {
        "status": action.status,
        "due_date": action.due_date,
        "due_basis": action.due_basis,
        "completed_on": action.completed_on,
        "outcome": action.outcome,
        "lead_agency": action.lead_agency.name if action.lead_agency else None,
        "owner_text": action.owner_text,
        "owner_contact": action.owner_contact.email if action.owner_contact else None,
        "needs_review": action.needs_review,
        "review_reasons": list(action.review_reasons),
        "sequence": action.sequence,
    }


def progress_notes(session: Session, action_id: int) -> list[ActionUpdate]:
    """An action's progress notes, newest first."""
    return list(
        session.scalars(
            select(ActionUpdate)
            .where(ActionUpdate.action_id == action_id)
            .order_by(ActionUpdate.at.desc(), ActionUpdate.id.desc())
        )
    )


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
