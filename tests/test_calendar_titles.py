"""One title for an action in every calendar: the pure parts, as a table."""

from __future__ import annotations

import datetime as dt

import icalendar
import pytest

from dhr_workflow import calendar

DUE = dt.date(2024, 3, 31)
STAMP = dt.datetime(2024, 1, 15, 9, 30, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("review", "ref", "agency", "expected"),
    [
        ("WCA", "5", "Bi Borough VAWG Strategic Board",
         "DHR WCA action 5: Bi Borough VAWG Strategic Board"),
        ("WCA", "5b", "Police", "DHR WCA action 5b: Police"),
        ("BDHR2012/13-04", "1.1", "Police", "DHR BDHR2012/13-04 action 1.1: Police"),
        ("WCA", "5", None, "DHR WCA action 5"),
        ("WCA", "", "Police", "DHR WCA action 17: Police"),  # no ref: the id stands in
        ("WCA", "17", "Police", "DHR WCA action 17: Police"),  # as the engine passes it
    ],
)  # fmt: skip
def test_summary(review: str, ref: str, agency: str | None, expected: str) -> None:
    facts = calendar.EventFacts(17, 0, DUE, review, ref, agency)
    assert calendar.summary(facts) == facts.summary == expected


@pytest.mark.parametrize("method", ["REQUEST", "CANCEL"])
def test_invitation_carries_the_summary(method: str) -> None:
    facts = calendar.EventFacts(17, 2, DUE, "WCA", "5", "Police")
    text = calendar.invitation(
        facts,
        method=method,  # type: ignore[arg-type]
        organizer="dhr@example.org",
        attendees=["lead@police.example.org"],
        stamp=STAMP,
    )
    [event] = icalendar.Calendar.from_ical(text).walk("VEVENT")
    assert str(event["SUMMARY"]) == "DHR WCA action 5: Police"
    assert str(event["UID"]) == calendar.action_uid(17)


def test_uids_are_stable_and_distinct() -> None:
    assert calendar.action_uid(17) == "dhr-action-17@dhr-workflow"
    assert calendar.overdue_uid(17) == "dhr-action-17-overdue@dhr-workflow"
