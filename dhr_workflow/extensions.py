"""Extension requests: more time asked for an action, and the coordinator's decision.

Someone a deadline message went to asks through its "ask for more time" link; the review's
coordinator is emailed and decides on the action's page; the person who asked is emailed the
decision. Approving moves the due date through :func:`actions.update`, so the reminder ladder
starts again (its period key is the due date) and the action's calendar sequence goes up (the
calendar follow-up sends an updated invitation). One request per action waits at a time.

    pending --approve--> approved
            '--decline--> declined
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select, true
from sqlalchemy.orm import Session, joinedload

from dhr_workflow import actions, audit, outbox
from dhr_workflow.errors import InvalidInput, NotFound
from dhr_workflow.models import CLOSED_STATUSES, Action, ExtensionRequest
from dhr_workflow.recipients import Directory, Subject
from dhr_workflow.signin import Scope
from dhr_workflow.templates import Templates, longdate

PENDING, APPROVED, DECLINED = "pending", "approved", "declined"
REQUEST_TEMPLATE, DECISION_TEMPLATE = "extension_request", "extension_decision"
TEMPLATES = frozenset({REQUEST_TEMPLATE, DECISION_TEMPLATE})
RULE = "extension"  # the rule_id of its messages and gaps
TEXT_LIMIT = actions.NOTE_LIMIT


class Refused(InvalidInput):
    """A request or decision refused; ``field`` names what it is about ("proposed_due",
    "reason", "note"), so a form can show the message on that field."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Mail:
    """What telling people needs: the email templates, the web app's address (for the link to
    the action's page) and the partnership's name."""

    templates: Templates
    base_url: str
    partnership: str | None = None


@dataclass(frozen=True)
class Person:
    name: str
    email: str


def coordinators(session: Session, review_id: int) -> list[Person]:
    """The review's coordinators, else the partnership's, as reminders resolve `coordinator`
    (active contacts only)."""
    directory = Directory(session)
    emails = directory.resolve("coordinator", Subject(review_id))
    return [Person(directory.name(e) or e, e) for e in emails]


def request(
    session: Session,
    *,
    action_id: int,
    requested_by: str,
    proposed_due: dt.date,
    reason: str,
    link_id: int | None,
    today: dt.date,
    now: dt.datetime,
    mail: Mail | None = None,
) -> ExtensionRequest:
    """Ask for more time, audited (``extension.request``, the requester as actor); with
    ``mail``, the review's coordinators are emailed (nobody to email is an audited gap)."""
    action = _locked_action(session, action_id)
    reason = reason.strip()
    _check_request(session, action, proposed_due, reason, today)
    req = ExtensionRequest(
        action_id=action.id, requested_by=requested_by, link_id=link_id,
        current_due=action.due_date, proposed_due=proposed_due, reason=reason, state=PENDING,
        created_at=now,
    )  # fmt: skip
    session.add(req)
    session.flush()
    audit.record(
        session, now=now, actor=requested_by, kind="extension.request",
        subject=f"action:{action.id}",
        data={"request": req.id, "link": link_id, "current_due": action.due_date,
              "proposed_due": proposed_due, "reason": reason},
    )  # fmt: skip
    if mail is not None:
        _tell_coordinators(session, req, mail, today=today, now=now)
    return req


def _locked_action(session: Session, action_id: int) -> Action:
    # Locked (PostgreSQL) so two requests at once cannot both find none pending.
    found = session.scalar(
        select(Action).where(Action.id == actions.get(session, action_id).id).with_for_update()
    )
    assert found is not None
    return found


def _check_request(
    session: Session, action: Action, proposed: dt.date, reason: str, today: dt.date
) -> None:
    if action.status in CLOSED_STATUSES:
        raise Refused(
            f"this action is already {action.status}: there is nothing to extend", "proposed_due"
        )
    waiting = pending_for(session, action.id)
    if waiting is not None:
        raise Refused(
            f"more time was already asked for on {longdate(waiting.created_at.date())}, until "
            f"{longdate(waiting.proposed_due)}; the coordinator has not decided yet",
            "proposed_due",
        )
    if proposed <= today:
        raise Refused(f"the new date must be after today, {longdate(today)}", "proposed_due")
    if action.due_date is not None and proposed <= action.due_date:
        raise Refused(
            f"the new date must be after the current due date, {longdate(action.due_date)}",
            "proposed_due",
        )
    if not reason:
        raise Refused("say why more time is needed", "reason")
    if len(reason) > TEXT_LIMIT:
        raise Refused(f"the reason must be {TEXT_LIMIT} characters or fewer", "reason")


def decide(
    session: Session,
    request_id: int,
    *,
    approve: bool,
    note: str | None,
    decided_by: str,
    today: dt.date,
    now: dt.datetime,
    mail: Mail | None = None,
    source: str = "web",
) -> ExtensionRequest:
    """Approve (the due date moves to the date asked for, with the reason) or decline (it
    stays); audited as ``extension.approve`` / ``extension.decline``. With ``mail``, the
    person who asked is emailed the decision."""
    req = get(session, request_id)
    if req.state != PENDING:
        raise Refused(
            f"this request was already {req.state} by {req.decided_by} on "
            f"{longdate(req.decided_at.date() if req.decided_at else None)}",
            "note",
        )
    note = (note or "").strip() or None
    if note is not None and len(note) > TEXT_LIMIT:
        raise Refused(f"the note must be {TEXT_LIMIT} characters or fewer", "note")
    action = req.action
    if approve:
        if action.status in CLOSED_STATUSES:
            raise Refused(
                f"this action is {action.status}: reopen it before moving its due date", "note"
            )
        actions.update(
            session, action.id,
            actions.ActionChange(due=req.proposed_due, reason=f"extension agreed: {req.reason}"),
            today=today, now=now, actor=decided_by, source=source,
        )  # fmt: skip
    req.state = APPROVED if approve else DECLINED
    req.decided_by, req.decided_at, req.decision_note = decided_by, now, note
    session.flush()
    audit.record(
        session, now=now, actor=decided_by,
        kind="extension.approve" if approve else "extension.decline",
        subject=f"action:{action.id}",
        data={"request": req.id, "requested_by": req.requested_by,
              "proposed_due": req.proposed_due, "note": note},
    )  # fmt: skip
    if mail is not None:
        _tell_requester(session, req, mail, today=today, now=now)
    return req


def get(session: Session, request_id: int) -> ExtensionRequest:
    found = (
        session.scalar(
            select(ExtensionRequest).where(ExtensionRequest.id == request_id).with_for_update()
        )
        if 0 < request_id <= actions.ID_LIMIT
        else None
    )
    if found is None:
        raise NotFound(f"no extension request with id {request_id}")
    return found


def pending_for(session: Session, action_id: int) -> ExtensionRequest | None:
    return session.scalars(
        select(ExtensionRequest)
        .where(ExtensionRequest.action_id == action_id, ExtensionRequest.state == PENDING)
        .order_by(ExtensionRequest.id)
    ).first()


def for_action(session: Session, action_id: int) -> list[ExtensionRequest]:
    """An action's requests, newest first."""
    return list(
        session.scalars(
            select(ExtensionRequest)
            .where(ExtensionRequest.action_id == action_id)
            .order_by(ExtensionRequest.created_at.desc(), ExtensionRequest.id.desc())
        )
    )


def pending(session: Session, scope: Scope | None) -> list[ExtensionRequest]:
    """Requests waiting for a decision, oldest first, on the actions in ``scope`` (None: all);
    their actions, reviews and lead agencies loaded."""
    visible = (
        true()
        if scope is None
        else or_(
            Action.lead_agency_id.in_(list(scope.agency_ids)),
            Action.review_id.in_(list(scope.review_ids)),
        )
    )
    return list(
        session.scalars(
            select(ExtensionRequest)
            .join(Action, Action.id == ExtensionRequest.action_id)
            .options(
                joinedload(ExtensionRequest.action).joinedload(Action.review),
                joinedload(ExtensionRequest.action).joinedload(Action.lead_agency),
            )
            .where(ExtensionRequest.state == PENDING, visible)
            .order_by(ExtensionRequest.created_at, ExtensionRequest.id)
        ).unique()
    )


# --- messages --------------------------------------------------------------------------------


def _tell_coordinators(
    session: Session, req: ExtensionRequest, mail: Mail, *, today: dt.date, now: dt.datetime
) -> None:
    action = req.action
    found = coordinators(session, action.review_id)
    if not found:
        audit.record(
            session, now=now, actor=req.requested_by, kind="rule.gap", subject=f"rule:{RULE}",
            data={"role": "coordinator", "review": action.review.ref, "request": req.id},
        )  # fmt: skip
        return
    # Replies go to the person asking: a coordinator's question reaches them.
    context = _context(session, req, mail, today=today)
    context["recipient"] = _person(found[0]) if len(found) == 1 else None
    # They are the coordinator: the footer says so rather than sending them to themselves.
    context["coordinator"] = context["recipient"]
    outbox.render_and_enqueue(
        session, mail.templates, REQUEST_TEMPLATE, context, to=[p.email for p in found],
        now=now, actor=req.requested_by, rule_id=RULE, reply_to=req.requested_by,
        data={"request": req.id, "action": action.id},
    )  # fmt: skip


def _tell_requester(
    session: Session, req: ExtensionRequest, mail: Mail, *, today: dt.date, now: dt.datetime
) -> None:
    directory = Directory(session)
    found = directory.coordinator(req.action.review_id)  # the Reply-To of its reminders
    coordinator = Person(*found) if found else None
    context = _context(session, req, mail, today=today)
    context["recipient"] = {"name": directory.name(req.requested_by), "email": req.requested_by}
    context["coordinator"] = _person(coordinator) if coordinator else None
    outbox.render_and_enqueue(
        session, mail.templates, DECISION_TEMPLATE, context, to=[req.requested_by], now=now,
        actor=req.decided_by or "", rule_id=RULE,
        reply_to=coordinator.email if coordinator else None,
        data={"request": req.id, "action": req.action_id},
    )  # fmt: skip


def _person(person: Person) -> dict[str, str]:
    return {"name": person.name, "email": person.email}


def _context(
    session: Session, req: ExtensionRequest, mail: Mail, *, today: dt.date
) -> dict[str, Any]:
    """What the two templates get (templates.sample_context("extension") is its sample);
    ``recipient`` and ``coordinator`` ({name, email} or None) are the caller's to set."""
    action, rec = req.action, req.action.recommendation
    directory = Directory(session)
    return {
        "rule": RULE, "step": "", "today": today, "partnership": mail.partnership,
        "recipient": None, "coordinator": None, "more": 0,
        "action": {
            "id": action.id, "review": action.review.ref,
            "recommendation": rec.ref if rec else None,
            "ref": action.ref or (rec.ref if rec else "") or str(action.id),
            "text": " ".join((action.text or (rec.text if rec else "")).split()),
            "lead_agency": action.lead_agency.name if action.lead_agency else None,
            "due_date": action.due_date, "status": action.status,
        },
        "extension": {
            "id": req.id, "requested_by": req.requested_by,
            "requested_by_name": directory.name(req.requested_by),
            "requested_on": req.created_at.date(), "current_due": req.current_due,
            "proposed_due": req.proposed_due, "reason": req.reason, "state": req.state,
            "approved": req.state == APPROVED, "note": req.decision_note,
            "decided_by": req.decided_by,
            "decided_by_name": directory.name(req.decided_by or ""),
        },
        "url": f"{mail.base_url}/actions/{action.id}",
    }  # fmt: skip
