"""iCalendar for actions: invitations by email (iMIP, RFC 6047), and what feeds share with them.

Each action has one UID for life, shared by email invitations and feeds, and a SEQUENCE that
the store bumps whenever its date or status changes, so calendars replace rather than
duplicate an event. Invitations and feeds give an action the same title (:func:`summary`), so
an entry reads the same whichever way it reached a calendar. Everything is built from values
passed in (no clock, no random UIDs): the same inputs always give the same bytes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from dhr_workflow import contentlines as ics

PRODID = "-//dhr-workflow//Domestic Homicide Review actions//EN"


def action_uid(action_id: int) -> str:
    return f"dhr-action-{action_id}@dhr-workflow"


def overdue_uid(action_id: int) -> str:
    """The feed's second entry for an overdue action, on today's date: a UID of its own, so
    it never replaces the entry on the due date."""
    return f"dhr-action-{action_id}-overdue@dhr-workflow"


@dataclass(frozen=True)
class EventFacts:
    """What a calendar entry says about an action: minimal by default (plan text can be
    confidential), so the summary names the review, the action and the lead agency only."""

    action_id: int
    sequence: int
    due_date: dt.date
    review: str  # the review's ref
    ref: str  # the action's ref; when the plan gave none, its id stands in
    lead_agency: str | None

    @property
    def summary(self) -> str:
        return summary(self)


def summary(facts: EventFacts) -> str:
    """An action's calendar title, the same in invitations and feeds:
    ``DHR WCA action 5: Bi Borough VAWG Strategic Board`` (no plan text)."""
    agency = f": {facts.lead_agency}" if facts.lead_agency else ""
    return f"DHR {facts.review} action {facts.ref or facts.action_id}{agency}"


def invitation(
    facts: EventFacts,
    *,
    method: Literal["REQUEST", "CANCEL"],
    organizer: str,
    attendees: list[str],
    stamp: dt.datetime,
) -> str:
    """One VCALENDAR with one all-day VEVENT, as iMIP REQUEST or CANCEL.

    Written as content lines (:mod:`dhr_workflow.contentlines`), the bytes icalendar wrote
    for the same values — a tick can invite to thousands of actions, and icalendar's objects
    cost a millisecond each (tests/test_invitation_lines.py compares the two)."""
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{PRODID}",
        f"METHOD:{method}",
        "BEGIN:VEVENT",
        f"SUMMARY:{ics.text(facts.summary)}",
        f"DTSTART;VALUE=DATE:{ics.date(facts.due_date)}",  # all day
        f"DTEND;VALUE=DATE:{ics.date(facts.due_date + dt.timedelta(days=1))}",  # exclusive
        f"DTSTAMP:{ics.utc(stamp)}",
        f"UID:{action_uid(facts.action_id)}",
        f"SEQUENCE:{facts.sequence}",
        *(f"ATTENDEE;ROLE=REQ-PARTICIPANT;RSVP=FALSE:mailto:{a}" for a in attendees),
        f"ORGANIZER;CN=dhr-workflow:mailto:{organizer}",
        f"STATUS:{'CANCELLED' if method == 'CANCEL' else 'CONFIRMED'}",
        "TRANSP:TRANSPARENT",
        "END:VEVENT",
        "END:VCALENDAR",
    ]
    return "".join(f"{ics.fold(line)}\r\n" for line in lines)
