"""The target-date grammar: a large table of what plans write and what it means."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dhr_workflow.models import DueBasis
from dhr_workflow.targets import add_months, read_outcome, read_target

D = dt.date
TODAY = D(2024, 1, 15)
NO_ANCHORS: dict[str, D | None] = {
    "plan_agreed_on": None, "report_accepted_on": None, "published_on": None, "completed_on": None,
}  # fmt: skip
ANCHORS = {
    **NO_ANCHORS,
    "plan_agreed_on": D(2023, 6, 1),
    "published_on": D(2016, 1, 31),
    "completed_on": D(2015, 11, 30),
}

FIXED, MONTH_END, SEASON = DueBasis.FIXED, DueBasis.MONTH_END, DueBasis.SEASON
RELATIVE, RECURRING = DueBasis.RELATIVE, DueBasis.RECURRING


@pytest.mark.parametrize(
    ("written", "due", "basis"),
    [
        # UK day-first numerics
        ("01.02.13", D(2013, 2, 1), FIXED),
        ("01/02/2013", D(2013, 2, 1), FIXED),
        ("31.12.2016", D(2016, 12, 31), FIXED),
        ("30.6.2016", D(2016, 6, 30), FIXED),
        ("1-4-2016", D(2016, 4, 1), FIXED),
        ("2024-03-31", D(2024, 3, 31), FIXED),
        # ordinals and day-month-year
        ("30 th November 2023", D(2023, 11, 30), FIXED),
        ("27th September 2023", D(2023, 9, 27), FIXED),
        ("31 st May 2016", D(2016, 5, 31), FIXED),
        ("31 st January 2016", D(2016, 1, 31), FIXED),
        ("28 th February 2016", D(2016, 2, 28), FIXED),
        ("1st April 2013 and ongoing", D(2013, 4, 1), FIXED),
        ("31 st May 2016 31 st May 2016", D(2016, 5, 31), FIXED),
        ("2nd of March 2024", D(2024, 3, 2), FIXED),
        # month alone: the last day of that month
        ("December 2023", D(2023, 12, 31), MONTH_END),
        ("May 2024", D(2024, 5, 31), MONTH_END),
        ("Dec-23", D(2023, 12, 31), MONTH_END),
        ("Mar-14", D(2014, 3, 31), MONTH_END),
        ("March 23", D(2023, 3, 31), MONTH_END),
        ("February 2016", D(2016, 2, 29), MONTH_END),
        ("February 2015", D(2015, 2, 28), MONTH_END),
        ("Sept 2025", D(2025, 9, 30), MONTH_END),
        ("end of June 2016", D(2016, 6, 30), MONTH_END),
        ("<p>July 2013</p>", D(2013, 7, 31), MONTH_END),
        (
            "April 2025 is the renewal date. Subject to change if wider Westminster Services are "
            "incorporated",
            D(2025, 4, 30),
            MONTH_END,
        ),
        ("Safety Net newsletter/or GP bulletin March 2016", D(2016, 3, 31), MONTH_END),
        # seasons: the end of the season
        ("Autumn 2013", D(2013, 11, 30), SEASON),
        ("Spring 2016", D(2016, 5, 31), SEASON),
        ("Summer 2016", D(2016, 8, 31), SEASON),
        ("Winter 2013", D(2014, 2, 28), SEASON),
        # relative to a review anchor date (published 2016-01-31, completed 2015-11-30)
        ("Within 3 months of the completion of the DHR", D(2016, 2, 29), RELATIVE),
        ("Within 3 month of the completion of the DHR", D(2016, 2, 29), RELATIVE),
        ("3 months following review publication", D(2016, 4, 30), RELATIVE),
        ("3 months following publication of report", D(2016, 4, 30), RELATIVE),
        ("3 months post publication of the report", D(2016, 4, 30), RELATIVE),
        ("1 month from date of report publication", D(2016, 2, 29), RELATIVE),
        ("One month from publication of domestic homicide review", D(2016, 2, 29), RELATIVE),
        ("six weeks after publication", D(2016, 3, 13), RELATIVE),
        # recurring: the next occurrence from the plan's agreement (2023-06-01), today 2024-01-15
        ("Six monthly reports", D(2024, 6, 1), RECURRING),
        ("Review every 6 months", D(2024, 6, 1), RECURRING),
        ("every six months", D(2024, 6, 1), RECURRING),
        ("Quarterly", D(2024, 3, 1), RECURRING),
        ("Annually", D(2024, 6, 1), RECURRING),
        ("6-month reviews", D(2024, 6, 1), RECURRING),
        # written the American way, Excel's day-month-year, full stops, old two-digit years
        ("March 31 2016", D(2016, 3, 31), FIXED),
        ("June 12th, 2016", D(2016, 6, 12), FIXED),
        ("15-Mar-24", D(2024, 3, 15), FIXED),
        ("December 2023.", D(2023, 12, 31), MONTH_END),
        ("Dec-23.", D(2023, 12, 31), MONTH_END),
        ("01/02/99", D(1999, 2, 1), FIXED),
        ("Ongoing - review March 2024", D(2024, 3, 31), MONTH_END),
        ("March 2024 and ongoing", D(2024, 3, 31), MONTH_END),
    ],
)
def test_dates(written: str, due: D, basis: DueBasis) -> None:
    target = read_target(written, ANCHORS, TODAY)
    assert (target.due_date, target.basis) == (due, basis)
    assert target.reasons == ()
    assert not target.completed


@pytest.mark.parametrize(
    ("written", "reason"),
    [
        ("On-going", "no deadline given ('On-going')"),
        ("Ongoing", "no deadline given"),
        ("TBC", "no deadline given"),
        ("Prior to publication", "no deadline given"),
        ("Implemented and ongoing.", "no deadline given"),
        ("", "no target date"),
        ("   ", "no target date"),
        ("1 st July and ongoing", "has no year"),
        ("By 31 March", "has no year"),
        ("following review publication", "could not read a date"),
        ("Action plan to be updated", "could not read a date"),
        ("2016", "could not read a date"),
        ("Q2 2016", "could not read a date"),
        ("31.02.2016", "could not read a date"),
        (
            "<p>March 2013</p> <p>April 2013</p> <p>December 2013</p>",
            "several dates in '<p>March 2013</p> <p>April 2013</p> <p>December 2013</p>' "
            "(2013-03-31, 2013-04-30, 2013-12-31)",
        ),
        ("3 months after the meeting", "does not say what it counts from"),
    ],
)
def test_not_understood_is_never_a_guess(written: str, reason: str) -> None:
    target = read_target(written, ANCHORS, TODAY)
    assert target.due_date is None
    assert len(target.reasons) == 1
    assert target.reasons[0].startswith("due: ")
    assert reason in target.reasons[0]


@pytest.mark.parametrize(
    ("written", "anchor", "option"),
    [
        ("3 months following review publication", "publication date", "--published"),
        ("Within 3 months of the completion of the DHR", "completion date", "--completed"),
        (
            "within 6 months of the date this report is accepted",
            "acceptance date",
            "--report-accepted",
        ),
        ("Six monthly reports", "plan's agreed date", "--plan-agreed"),
    ],
)
def test_relative_and_recurring_wait_for_their_anchor(
    written: str, anchor: str, option: str
) -> None:
    target = read_target(written, NO_ANCHORS, TODAY)
    assert target.due_date is None
    assert target.rule is not None
    assert anchor in target.reasons[0]
    assert option in target.reasons[0]


def test_recurring_from_milestones_when_target_says_ongoing() -> None:
    target = read_target("On-going", ANCHORS, TODAY, milestones="Six monthly reports")
    assert (target.basis, target.rule) == (
        RECURRING,
        {"anchor": "plan_agreed_on", "every_months": 6},
    )
    assert target.due_date == D(2024, 6, 1)


@pytest.mark.parametrize(
    ("written", "completed_on"),
    [
        ("Completed", None),
        ("Completed.", None),
        ("Complete", None),
        ("Action completed", None),
        ("Completed – 27/09/23.", D(2023, 9, 27)),
        ("Completed 29.11.15", D(2015, 11, 29)),
        ("Complete. Discussed at practice education event", None),
    ],
)
def test_completed(written: str, completed_on: D | None) -> None:
    assert read_outcome(written).completed
    assert read_outcome(written).completed_on == completed_on
    target = read_target(written, ANCHORS, TODAY)
    assert target.completed
    assert (target.due_date, target.completed_on) == (None, completed_on)


@pytest.mark.parametrize(
    "written",
    [
        "Incomplete - ongoing",
        "Ongoing",
        "Publication awaited",
        "Completed /Ongoing",
        "",
        "August 2013. All current front line staff",
        "Partially complete",
        "Complete – awaiting sign off",
        "completed in part",
        "Completed (in progress)",
    ],
)
def test_still_open(written: str) -> None:
    assert not read_outcome(written).completed


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (D(2016, 1, 31), 1, D(2016, 2, 29)),
        (D(2015, 1, 31), 1, D(2015, 2, 28)),
        (D(2023, 11, 30), 3, D(2024, 2, 29)),
        (D(2023, 6, 1), 6, D(2023, 12, 1)),
        (D(2023, 12, 15), 1, D(2024, 1, 15)),
        (D(2023, 12, 15), 13, D(2025, 1, 15)),
    ],
)
def test_add_months(start: D, months: int, expected: D) -> None:
    assert add_months(start, months) == expected


@given(st.text(max_size=200))
def test_any_text_gives_a_date_or_a_reason(text: str) -> None:
    target = read_target(text, ANCHORS, TODAY)
    assert target.completed or target.due_date is not None or target.reasons
