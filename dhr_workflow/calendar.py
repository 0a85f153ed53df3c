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

from icalendar import Calendar, Event, vCalAddress, vText

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
    """One VCALENDAR with one all-day VEVENT, as iMIP REQUEST or CANCEL."""
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("method", method)
    event = Event()
    event.add("uid", action_uid(facts.action_id))
    event.add("sequence", facts.sequence)
    event.add("dtstamp", stamp.astimezone(dt.UTC))
    event.add("dtstart", facts.due_date)  # a date: DTSTART;VALUE=DATE
    event.add("dtend", facts.due_date + dt.timedelta(days=1))  # exclusive
    event.add("summary", facts.summary)
    event.add("transp", "TRANSPARENT")
    event.add("status", "CANCELLED" if method == "CANCEL" else "CONFIRMED")
    organizer_addr = vCalAddress(f"mailto:{organizer}")
    organizer_addr.params["cn"] = vText("dhr-workflow")
    event.add("organizer", organizer_addr)
    for address in attendees:
        attendee = vCalAddress(f"mailto:{address}")
        attendee.params["role"] = vText("REQ-PARTICIPANT")
        attendee.params["rsvp"] = vText("FALSE")
        event.add("attendee", attendee, encode=False)
    cal.add_component(event)
    text: str = cal.to_ical().decode()
    return text
