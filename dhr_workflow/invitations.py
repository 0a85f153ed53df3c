"""Calendar invitations that follow an action: the calendar parts of a message that invites
people to its due date, the record of who was invited to what, and the built-in rule that
sends a CANCEL or an updated REQUEST when the action later moves on."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import String, cast, literal, select
from sqlalchemy.orm import Session

from dhr_workflow import calendar, db
from dhr_workflow.batching import chunked

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
    # The period key "seq3|lee@police.example.org", made by the database for the anti-join
    # and read back for the hit, so it is written in one place.
    period = (literal("seq") + cast(Action.sequence, String) + "|" + Invitation.address).label(
        "period"
    )
    rows = session.execute(
        select(Invitation.address, Action.id, period, Action.review_id, Action.lead_agency_id)
        .join(Action, Action.id == Invitation.action_id)
        .where(Invitation.state == "active", Action.sequence > Invitation.sequence)
        .where(selection.unfired(CALENDAR_RULE, period))
        .order_by(Invitation.address, Action.id)
    ).all()
    by_address: dict[str, Message] = {}
    for r in rows:
        msg = by_address.setdefault(
            r.address, Message(CALENDAR_RULE, [], CALENDAR_TEMPLATE, [r.address], [], True, [])
        )
        msg.hits.append(
            Hit(
                CALENDAR_RULE, "action", r.id, r.period, None, (),
                r.review_id, r.lead_agency_id,
            )
        )  # fmt: skip
    return list(by_address.values())


class Invitations:
    """The calendar parts of a chunk of messages, and the record of who was invited to what
    (so later changes can follow): the actions' facts read once for the chunk, and the
    record written as one upsert."""

    def __init__(self, session: Session, messages: list[Message], ctx: Context) -> None:
        ids = sorted({i for m in messages if m.calendar for i in m.action_ids})
        self.session, self.ctx = session, ctx
        self.facts = {f.action_id: (f, cancel) for f, cancel in _event_facts(session, ids)}
        self.invited: dict[tuple[int, str], dict[str, Any]] = {}

    def parts(self, msg: Message) -> str | None:
        """The message's calendar parts (JSON), one per dated action; None without any."""
        if not msg.calendar:
            return None
        parts = []
        for action_id in msg.action_ids:
            if action_id not in self.facts:
                continue  # undated, and never on anyone's calendar
            fact, cancel = self.facts[action_id]
            if cancel and msg.template != CALENDAR_TEMPLATE:
                continue  # never invite anyone to a finished or undated action
            parts.append(
                calendar.invitation(
                    fact, method="CANCEL" if cancel else "REQUEST", organizer=self.ctx.mail_from,
                    attendees=msg.to, stamp=self.ctx.at,
                )
            )  # fmt: skip
            for address in msg.to:
                self.invited[(action_id, address)] = {
                    "action_id": action_id, "address": address, "sequence": fact.sequence,
                    "due_date": fact.due_date, "state": "cancelled" if cancel else "active",
                    "updated_at": self.ctx.at,
                }  # fmt: skip
        return json.dumps(parts) if parts else None

    def remember(self) -> None:
        """Write who was invited to what, BATCH rows a statement (insert or update)."""
        stmt = db.insert(self.session, Invitation)
        stmt = stmt.on_conflict_do_update(
            index_elements=["action_id", "address"],
            set_={c: stmt.excluded[c] for c in ("sequence", "due_date", "state", "updated_at")},
        )
        for batch in chunked(self.invited.values()):
            self.session.execute(stmt, batch)
        self.invited = {}


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
