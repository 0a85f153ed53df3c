"""Calendar invitations that follow an action: the calendar parts of a message that invites
people to its due date, the record of who was invited to what, and the built-in rule that
sends a CANCEL or an updated REQUEST when the action later moves on."""

from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import select
from sqlalchemy.orm import Session

from dhr_workflow import calendar

# The engine imports this module and this module the engine's selection: a module import,
# not names from it, so whichever is imported first finds the other when the functions run.
from dhr_workflow.engine import selection
from dhr_workflow.engine.model import CALENDAR_RULE as CALENDAR_RULE
from dhr_workflow.engine.model import CALENDAR_TEMPLATE as CALENDAR_TEMPLATE
from dhr_workflow.engine.model import Context, Hit, Message
from dhr_workflow.models import CLOSED_STATUSES, Action, Agency, Invitation, Review


def invitation_updates(session: Session) -> list[Message]:
    """A CANCEL or an updated REQUEST for every invitation whose action has moved on since
    (completed, withdrawn, re-dated: each bumps the action's sequence), one message per address."""
    rows = session.execute(
        select(
            Invitation.address, Action.id, Action.sequence, Action.review_id, Action.lead_agency_id
        )
        .join(Action, Action.id == Invitation.action_id)
        .where(Invitation.state == "active", Action.sequence > Invitation.sequence)
        .order_by(Invitation.address, Action.id)
    ).all()
    fired = selection.fired_keys(session, CALENDAR_RULE, "action")
    by_address: dict[str, Message] = {}
    for r in rows:
        period = f"seq{r.sequence}|{r.address}"
        if (r.id, period) in fired:
            continue
        msg = by_address.setdefault(
            r.address, Message(CALENDAR_RULE, [], CALENDAR_TEMPLATE, [r.address], [], True, [])
        )
        msg.hits.append(
            Hit(
                CALENDAR_RULE,
                "action",
                r.id,
                period,
                None,
                (),
                r.review_id,
                r.lead_agency_id,
            )
        )
    return list(by_address.values())


def invitations(session: Session, msg: Message, ctx: Context) -> str | None:
    """The calendar parts of a message, one per dated action, and the record of who was
    invited to what (so later changes can follow)."""
    if not msg.calendar:
        return None
    parts = []
    for fact, cancel in _event_facts(session, msg.action_ids):
        if cancel and msg.template != CALENDAR_TEMPLATE:
            continue  # never invite anyone to a finished or undated action
        parts.append(
            calendar.invitation(
                fact,
                method="CANCEL" if cancel else "REQUEST",
                organizer=ctx.mail_from,
                attendees=msg.to,
                stamp=ctx.at,
            )
        )
        for address in msg.to:
            _remember(session, fact, address, "cancelled" if cancel else "active", ctx.at)
    return json.dumps(parts) if parts else None


def _event_facts(session: Session, ids: list[int]) -> list[tuple[calendar.EventFacts, bool]]:
    """Each action's calendar facts, and whether its entry must now be cancelled (finished,
    or no longer dated: then it is cancelled at the date people last saw)."""
    rows = session.execute(
        select(
            Action.id,
            Action.sequence,
            Action.due_date,
            Action.status,
            Review.ref,
            Action.ref.label("action_ref"),
            Agency.name,
        )
        .join(Review, Review.id == Action.review_id)
        .outerjoin(Agency, Agency.id == Action.lead_agency_id)
        .where(Action.id.in_(ids))
        .order_by(Action.id)
    ).all()
    seen = dict(
        session.execute(
            select(Invitation.action_id, Invitation.due_date).where(Invitation.action_id.in_(ids))
        ).all()
    )
    closed = {s.value for s in CLOSED_STATUSES}
    facts = []
    for r in rows:
        day = r.due_date or seen.get(r.id)
        if day is None:
            continue
        fact = calendar.EventFacts(r.id, r.sequence, day, r.ref, r.action_ref or str(r.id), r.name)
        facts.append((fact, r.status in closed or r.due_date is None))
    return facts


def _remember(
    session: Session, fact: calendar.EventFacts, address: str, state: str, now: dt.datetime
) -> None:
    found = session.scalar(
        select(Invitation).where(
            Invitation.action_id == fact.action_id, Invitation.address == address
        )
    )
    if found is None:
        session.add(
            Invitation(
                action_id=fact.action_id,
                address=address,
                sequence=fact.sequence,
                due_date=fact.due_date,
                state=state,
                updated_at=now,
            )
        )
    else:
        found.sequence, found.due_date, found.state, found.updated_at = (
            fact.sequence,
            fact.due_date,
            state,
            now,
        )
