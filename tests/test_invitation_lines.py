"""Invitations written as content lines (issue #16) give the bytes icalendar wrote.

The icalendar build they replaced is kept below as the reference; hypothesis varies the
summary's text (escapes, non-ASCII at fold points), the addresses, the dates and the stamp.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from hypothesis import given, settings
from hypothesis import strategies as st
from icalendar import Calendar, Event, vCalAddress, vText

from dhr_workflow import calendar
from dhr_workflow.calendar import PRODID, EventFacts, action_uid


def reference(
    facts: EventFacts,
    *,
    method: Literal["REQUEST", "CANCEL"],
    organizer: str,
    attendees: list[str],
    stamp: dt.datetime,
) -> str:
    """calendar.invitation as it was, on icalendar's objects."""
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("method", method)
    event = Event()
    event.add("uid", action_uid(facts.action_id))
    event.add("sequence", facts.sequence)
    event.add("dtstamp", stamp.astimezone(dt.UTC))
    event.add("dtstart", facts.due_date)
    event.add("dtend", facts.due_date + dt.timedelta(days=1))
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


ADDRESS = st.from_regex(r"[a-z][a-z0-9.+_-]{0,40}@[a-z0-9-]{1,30}\.example\.org", fullmatch=True)
WORDS = st.text(alphabet=st.sampled_from("abc XYZ ,;:\\\"'\n\té–’ü😀"), min_size=0, max_size=120)


@settings(max_examples=300, deadline=None)
@given(
    review=WORDS.filter(bool),
    ref=WORDS,
    agency=st.none() | WORDS,
    action_id=st.integers(1, 10**9),
    sequence=st.integers(0, 500),
    due=st.dates(dt.date(2000, 1, 1), dt.date(2099, 12, 30)),
    method=st.sampled_from(["REQUEST", "CANCEL"]),
    organizer=ADDRESS,
    attendees=st.lists(ADDRESS, min_size=1, max_size=4),
    stamp=st.datetimes(dt.datetime(2000, 1, 1), dt.datetime(2099, 1, 1), timezones=st.just(dt.UTC)),
)
def test_the_same_bytes_as_icalendar(
    review: str, ref: str, agency: str | None, action_id: int, sequence: int, due: dt.date,
    method: Literal["REQUEST", "CANCEL"], organizer: str, attendees: list[str],
    stamp: dt.datetime,
) -> None:  # fmt: skip
    facts = EventFacts(action_id, sequence, due, review, ref, agency)
    given_ = {"method": method, "organizer": organizer, "attendees": attendees, "stamp": stamp}
    written = calendar.invitation(facts, **given_)  # type: ignore[arg-type]
    assert written == reference(facts, **given_)  # type: ignore[arg-type]
    parsed = Calendar.from_ical(written)
    event = parsed.walk("VEVENT")[0]
    assert str(event["SUMMARY"]) == facts.summary
    assert event["DTSTART"].dt == due
