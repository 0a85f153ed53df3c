"""The ladder arithmetic as tables (pure: no store, ``today`` passed in).

Every expected value is worked out by hand from the rule definitions, the calendar and the
UK bank holidays (England 2023-25: 25/26 Dec, 1 Jan, Good Friday 29 Mar 2024, Easter Monday
1 Apr 2024; Scotland also 2 Jan and no Easter Monday), never by calling the code under test.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from dhr_workflow.engine.ladder import latest_occurrence, previous_occurrence, top_step
from dhr_workflow.ruleset import Every, Ladder, load_dir

ROOT = Path(__file__).resolve().parent.parent
LONDON = ZoneInfo("Europe/London")
D = dt.date

# rules/default.yaml's ladder: -30d, -7d, +1d, +10bd, +30d (repeat 30d).
DEFAULT = next(x for x in load_dir(ROOT / "rules", tz=LONDON).ladders if x.id == "deadline")

# A small ladder whose units can reorder its steps (+9bd after +12d across Easter, on the
# same day for a Saturday due date), with a weekly repeat on its last step.
SMALL = Ladder.model_validate(
    {
        "id": "chase",
        "schedule": "0 8 * * 1-5",
        "steps": [
            {"at": "-3d", "notify": {"to": ["owner"], "template": "due_soon"}},
            {"at": "+9bd", "notify": {"to": ["owner"], "template": "overdue"}},
            {"at": "+12d", "notify": {"to": ["owner"], "template": "overdue"}, "repeat": "1w"},
        ],
    }
)


def keys(due: str, *labels: str) -> tuple[str, ...]:
    return tuple(f"{due}|{label}" for label in labels)


def top(due: str, label: str, index: int, *lower: str) -> tuple[str, int, tuple[str, ...]]:
    """An expected top step: its period key, its index and the keys it supersedes."""
    return f"{due}|{label}", index, keys(due, *lower)


# (due, today, region) -> (period key, step index, superseded keys) or None
# Due Fri 15 Mar 2024: -30d 14 Feb, -7d 8 Mar, +1d 16 Mar, +10bd 2 Apr (Mon 18 .. Thu 28 are
# 1-9, Good Friday and Easter Monday skipped; in Scotland Easter Monday counts: 1 Apr),
# +30d 14 Apr, repeats 14 May, 13 Jun, 13 Jul.
M15 = "2024-03-15"
J8D, J7D, X24, X23, OLD = "2024-06-08", "2024-06-07", "2024-12-20", "2023-12-22", "2020-01-01"
BEFORE_30 = keys(M15, "-30d")
BEFORE_7 = keys(M15, "-30d", "-7d")
BEFORE_1 = keys(M15, "-30d", "-7d", "+1d")
BEFORE_10BD = keys(M15, "-30d", "-7d", "+1d", "+10bd")
BEFORE_REPEAT = keys(M15, "-30d", "-7d", "+1d", "+10bd", "+30d")

DEFAULT_TABLE = [
    # before the first step
    (M15, D(2024, 2, 13), "england", None),
    (M15, D(2023, 12, 1), "england", None),
    # exactly on a step's day, and the day before the next
    (M15, D(2024, 2, 14), "england", (f"{M15}|-30d", 0, ())),
    (M15, D(2024, 3, 7), "england", (f"{M15}|-30d", 0, ())),
    (M15, D(2024, 3, 8), "england", (f"{M15}|-7d", 1, BEFORE_30)),
    (M15, D(2024, 3, 15), "england", (f"{M15}|-7d", 1, BEFORE_30)),  # the due date itself
    (M15, D(2024, 3, 16), "england", (f"{M15}|+1d", 2, BEFORE_7)),
    # business days across Easter 2024
    (M15, D(2024, 3, 28), "england", (f"{M15}|+1d", 2, BEFORE_7)),
    (M15, D(2024, 3, 29), "england", (f"{M15}|+1d", 2, BEFORE_7)),  # Good Friday
    (M15, D(2024, 4, 1), "england", (f"{M15}|+1d", 2, BEFORE_7)),  # Easter Monday
    (M15, D(2024, 4, 2), "england", (f"{M15}|+10bd", 3, BEFORE_1)),
    (M15, D(2024, 3, 31), "scotland", (f"{M15}|+1d", 2, BEFORE_7)),
    (M15, D(2024, 4, 1), "scotland", (f"{M15}|+10bd", 3, BEFORE_1)),  # a working day there
    (M15, D(2024, 4, 13), "england", (f"{M15}|+10bd", 3, BEFORE_1)),
    # the repeating top step: skipped repeats are not superseded, the step itself is
    (M15, D(2024, 4, 14), "england", (f"{M15}|+30d", 4, BEFORE_10BD)),
    (M15, D(2024, 5, 13), "england", (f"{M15}|+30d", 4, BEFORE_10BD)),
    (M15, D(2024, 5, 14), "england", (f"{M15}|+30d|r1", 4, BEFORE_REPEAT)),
    (M15, D(2024, 6, 12), "england", (f"{M15}|+30d|r1", 4, BEFORE_REPEAT)),
    (M15, D(2024, 6, 13), "england", (f"{M15}|+30d|r2", 4, BEFORE_REPEAT)),
    (M15, D(2024, 7, 12), "england", (f"{M15}|+30d|r2", 4, BEFORE_REPEAT)),
    (M15, D(2024, 7, 13), "england", (f"{M15}|+30d|r3", 4, BEFORE_REPEAT)),
    # Due Sat 8 Jun 2024: +1d Sun 9 Jun; +10bd counts from Mon 10 (1) to Fri 21 (10).
    (J8D, D(2024, 6, 20), "england", top(J8D, "+1d", 2, "-30d", "-7d")),
    (J8D, D(2024, 6, 21), "england", top(J8D, "+10bd", 3, "-30d", "-7d", "+1d")),
    # Due Fri 7 Jun 2024: the same +10bd day as the Saturday after it.
    (J7D, D(2024, 6, 20), "england", top(J7D, "+1d", 2, "-30d", "-7d")),
    (J7D, D(2024, 6, 21), "england", top(J7D, "+10bd", 3, "-30d", "-7d", "+1d")),
    # Due Fri 20 Dec 2024: Mon 23 (1), Tue 24 (2), Fri 27 (3), Mon 30 (4), Tue 31 (5), Thu 2 Jan
    # (6) .. Wed 8 Jan (10): Christmas, Boxing Day and New Year's Day skipped.
    (X24, D(2024, 12, 21), "england", top(X24, "+1d", 2, "-30d", "-7d")),
    (X24, D(2025, 1, 7), "england", top(X24, "+1d", 2, "-30d", "-7d")),
    (X24, D(2025, 1, 8), "england", top(X24, "+10bd", 3, "-30d", "-7d", "+1d")),
    # Due Fri 22 Dec 2023: Wed 27 (1) .. Wed 10 Jan (10); in Scotland, where 2 Jan is a
    # holiday too, Thu 11 Jan.
    (X23, D(2024, 1, 10), "england", top(X23, "+10bd", 3, "-30d", "-7d", "+1d")),
    (X23, D(2024, 1, 10), "scotland", top(X23, "+1d", 2, "-30d", "-7d")),
    (X23, D(2024, 1, 11), "scotland", top(X23, "+10bd", 3, "-30d", "-7d", "+1d")),
    # Due Wed 1 Jan 2020, four years overdue: +30d on 31 Jan 2020, 1,505 days before 15 Mar
    # 2024, so 50 repeats of 30 days (the 50th on 10 Mar 2024), and one record of each step.
    (
        OLD,
        D(2024, 3, 15),
        "england",
        top(OLD, "+30d|r50", 4, "-30d", "-7d", "+1d", "+10bd", "+30d"),
    ),
    (OLD, D(2024, 3, 9), "england", top(OLD, "+30d|r49", 4, "-30d", "-7d", "+1d", "+10bd", "+30d")),
]


@pytest.mark.parametrize(("due", "today", "region", "expected"), DEFAULT_TABLE)
def test_top_step_of_the_default_ladder(
    due: str, today: dt.date, region: str, expected: tuple[str, int, tuple[str, ...]] | None
) -> None:
    assert top_step(DEFAULT, D.fromisoformat(due), today, region) == expected


# Due Fri 22 Mar 2024: -3d 19 Mar; +12d 3 Apr, repeats 10, 17, 24 Apr; +9bd Mon 25 (1) .. Thu
# 28 (4), Good Friday and Easter Monday skipped, Tue 2 Apr (5) .. Mon 8 Apr (9): after +12d.
# Due Mon 3 Jun 2024: -3d 31 May, +9bd Fri 14 Jun, +12d 15 Jun, repeat 22 Jun.
# Due Sat 8 Jun 2024: -3d 5 Jun, +9bd Mon 10 (1) .. Thu 20 (9), +12d also 20 Jun.
M22, J3, J8 = "2024-03-22", "2024-06-03", "2024-06-08"
SMALL_TABLE = [
    (M22, D(2024, 3, 18), None),
    (M22, D(2024, 3, 19), (f"{M22}|-3d", 0, ())),
    (M22, D(2024, 4, 2), (f"{M22}|-3d", 0, ())),
    (M22, D(2024, 4, 3), (f"{M22}|+12d", 2, keys(M22, "-3d"))),
    (M22, D(2024, 4, 7), (f"{M22}|+12d", 2, keys(M22, "-3d"))),
    (M22, D(2024, 4, 8), (f"{M22}|+9bd", 1, keys(M22, "-3d", "+12d"))),  # reached last
    (M22, D(2024, 4, 9), (f"{M22}|+9bd", 1, keys(M22, "-3d", "+12d"))),
    (M22, D(2024, 4, 10), (f"{M22}|+12d|r1", 2, keys(M22, "-3d", "+12d", "+9bd"))),
    (M22, D(2024, 4, 17), (f"{M22}|+12d|r2", 2, keys(M22, "-3d", "+12d", "+9bd"))),
    (M22, D(2024, 4, 24), (f"{M22}|+12d|r3", 2, keys(M22, "-3d", "+12d", "+9bd"))),
    (J3, D(2024, 5, 30), None),
    (J3, D(2024, 5, 31), (f"{J3}|-3d", 0, ())),
    (J3, D(2024, 6, 14), (f"{J3}|+9bd", 1, keys(J3, "-3d"))),
    (J3, D(2024, 6, 15), (f"{J3}|+12d", 2, keys(J3, "-3d", "+9bd"))),
    (J3, D(2024, 6, 21), (f"{J3}|+12d", 2, keys(J3, "-3d", "+9bd"))),
    (J3, D(2024, 6, 22), (f"{J3}|+12d|r1", 2, keys(J3, "-3d", "+9bd", "+12d"))),
    (J8, D(2024, 6, 19), (f"{J8}|-3d", 0, ())),
    # two steps on one day: the later step in the ladder is the higher
    (J8, D(2024, 6, 20), (f"{J8}|+12d", 2, keys(J8, "-3d", "+9bd"))),
]


@pytest.mark.parametrize(("due", "today", "expected"), SMALL_TABLE)
def test_top_step_of_a_ladder_with_a_repeat(
    due: str, today: dt.date, expected: tuple[str, int, tuple[str, ...]] | None
) -> None:
    assert top_step(SMALL, D.fromisoformat(due), today, "england") == expected


def every(interval: str) -> Every:
    return Every.model_validate({"every": interval, "from": "review.plan_agreed_on"})


# (interval, anchor, today) -> the latest anchor + k * interval (k >= 1) on or before today
LATEST_TABLE = [
    # six months from 31 Aug: the end of February (leap and not), then 31 Aug again
    ("6 months", D(2023, 8, 31), D(2024, 2, 28), None),
    ("6 months", D(2023, 8, 31), D(2024, 2, 29), D(2024, 2, 29)),
    ("6 months", D(2023, 8, 31), D(2024, 8, 30), D(2024, 2, 29)),
    ("6 months", D(2023, 8, 31), D(2024, 8, 31), D(2024, 8, 31)),
    ("6 months", D(2022, 8, 31), D(2023, 2, 27), None),
    ("6 months", D(2022, 8, 31), D(2023, 3, 1), D(2023, 2, 28)),
    ("6 months", D(2022, 8, 31), D(2024, 3, 1), D(2024, 2, 29)),  # counted from the anchor
    ("1 month", D(2024, 1, 31), D(2024, 3, 30), D(2024, 2, 29)),
    ("1 month", D(2024, 1, 31), D(2024, 3, 31), D(2024, 3, 31)),
    # weeks and days
    ("2 weeks", D(2024, 1, 1), D(2024, 1, 14), None),
    ("2 weeks", D(2024, 1, 1), D(2024, 1, 15), D(2024, 1, 15)),
    ("2 weeks", D(2024, 1, 1), D(2024, 1, 28), D(2024, 1, 15)),
    ("2 weeks", D(2024, 1, 1), D(2024, 3, 1), D(2024, 2, 26)),
    ("30 days", D(2024, 1, 31), D(2024, 2, 29), None),
    ("30 days", D(2024, 1, 31), D(2024, 3, 1), D(2024, 3, 1)),
    ("1 day", D(2024, 1, 1), D(2024, 1, 10), D(2024, 1, 10)),
    # no anchor, today the anchor, today before it
    ("6 months", None, D(2024, 3, 1), None),
    ("6 months", D(2024, 3, 1), D(2024, 3, 1), None),
    ("2 weeks", D(2024, 3, 1), D(2024, 1, 1), None),
]


@pytest.mark.parametrize(("interval", "anchor", "today", "expected"), LATEST_TABLE)
def test_latest_occurrence(
    interval: str, anchor: dt.date | None, today: dt.date, expected: dt.date | None
) -> None:
    assert latest_occurrence(every(interval), anchor, today) == expected


# (interval, occurrence) -> the one before it (the start of the period a report covers)
PREVIOUS_TABLE = [
    ("6 months", D(2024, 8, 31), D(2024, 2, 29)),
    ("6 months", D(2024, 2, 29), D(2023, 8, 29)),  # not the 31st: months count from the date
    ("6 months", D(2023, 2, 28), D(2022, 8, 28)),
    ("12 months", D(2024, 2, 29), D(2023, 2, 28)),
    ("1 month", D(2024, 3, 31), D(2024, 2, 29)),
    ("2 weeks", D(2024, 1, 15), D(2024, 1, 1)),
    ("30 days", D(2024, 3, 1), D(2024, 1, 31)),
    ("1 day", D(2024, 3, 1), D(2024, 2, 29)),
]


@pytest.mark.parametrize(("interval", "occurrence", "expected"), PREVIOUS_TABLE)
def test_previous_occurrence(interval: str, occurrence: dt.date, expected: dt.date) -> None:
    assert previous_occurrence(every(interval), occurrence) == expected
