"""Offsets, business days and cron slots: pure functions with time passed in."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from dhr_workflow.durations import (
    Offset,
    add_business_days,
    latest_fire_time,
    parse_cron,
    parse_offset,
)

D = dt.date
LONDON = ZoneInfo("Europe/London")


@pytest.mark.parametrize(
    ("text", "offset"),
    [
        ("-30d", Offset(-30, "d")),
        ("+10bd", Offset(10, "bd")),
        ("2w", Offset(2, "w")),
        ("+1m", Offset(1, "m")),
        (" -7d ", Offset(-7, "d")),
        ("0d", Offset(0, "d")),
    ],
)
def test_parse_offset(text: str, offset: Offset) -> None:
    assert parse_offset(text) == offset


@pytest.mark.parametrize("text", ["+10x", "ten days", "", "-d", "10", "1.5d", "+99999d"])
def test_bad_offsets(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_offset(text)


@pytest.mark.parametrize(
    ("start", "n", "region", "expected"),
    [
        (D(2023, 12, 31), 10, "england", D(2024, 1, 15)),  # 1 Jan is a bank holiday
        (D(2023, 12, 31), 1, "england", D(2024, 1, 2)),
        (D(2023, 12, 31), 1, "scotland", D(2024, 1, 3)),  # 2 Jan is a holiday there too
        (D(2024, 3, 28), 1, "england", D(2024, 4, 2)),  # Good Friday, Easter Monday
        (D(2024, 3, 28), 1, "scotland", D(2024, 4, 1)),  # no Easter Monday in Scotland
        (D(2024, 1, 19), 1, "england", D(2024, 1, 22)),  # Friday to Monday
        (D(2024, 1, 22), -1, "england", D(2024, 1, 19)),
        (D(2024, 12, 24), 1, "england", D(2024, 12, 27)),  # Christmas, Boxing Day
        (D(2024, 1, 15), 0, "england", D(2024, 1, 15)),
    ],
)
def test_business_days(start: D, n: int, region: str, expected: D) -> None:
    assert add_business_days(start, n, region) == expected


@pytest.mark.parametrize(
    ("offset", "start", "expected"),
    [
        (Offset(-30, "d"), D(2023, 11, 30), D(2023, 10, 31)),
        (Offset(1, "m"), D(2024, 1, 31), D(2024, 2, 29)),
        (Offset(2, "w"), D(2024, 1, 1), D(2024, 1, 15)),
    ],
)
def test_apply(offset: Offset, start: D, expected: D) -> None:
    assert offset.apply(start) == expected


def test_cron_weekdays_are_cron_weekdays() -> None:
    """APScheduler 3 numbers Monday 0; a crontab's 1-5 must still mean Monday to Friday."""
    trigger = parse_cron("0 8 * * 1-5", LONDON)
    saturday = dt.datetime(2024, 1, 20, 12, 0, tzinfo=LONDON)
    nxt = trigger.get_next_fire_time(None, saturday)
    assert nxt == dt.datetime(2024, 1, 22, 8, 0, tzinfo=LONDON)
    sunday = parse_cron("0 9 * * 0", LONDON).get_next_fire_time(None, saturday)
    assert sunday.weekday() == 6
    assert parse_cron("0 9 * * 7", LONDON).get_next_fire_time(None, saturday) == sunday


@pytest.mark.parametrize("expr", ["* * * *", "61 * * * *", "0 8 * * 9", "0 25 * * *", "bad"])
def test_bad_cron(expr: str) -> None:
    with pytest.raises(ValueError, match=r"cron|weekday"):
        parse_cron(expr, LONDON)


@pytest.mark.parametrize(
    ("expr", "at", "slot"),
    [
        ("0 9 * * 1", dt.datetime(2024, 1, 20, 12, 0), dt.datetime(2024, 1, 15, 9, 0)),
        ("0 9 * * 1", dt.datetime(2024, 1, 15, 9, 0), dt.datetime(2024, 1, 15, 9, 0)),
        ("0 9 * * 1", dt.datetime(2024, 1, 15, 8, 59), dt.datetime(2024, 1, 8, 9, 0)),
        ("* * * * *", dt.datetime(2024, 1, 15, 8, 59, 30), dt.datetime(2024, 1, 15, 8, 59)),
        ("0 8 1 * *", dt.datetime(2024, 3, 15), dt.datetime(2024, 3, 1, 8, 0)),
        ("0 8 29 2 *", dt.datetime(2025, 3, 5), None),  # last 29 Feb over a year back
        # DST: 8 a.m. local on both sides of the change (GMT in March, BST after)
        ("0 8 * * *", dt.datetime(2024, 3, 31, 12, 0), dt.datetime(2024, 3, 31, 8, 0)),
        ("0 8 * * *", dt.datetime(2024, 10, 27, 12, 0), dt.datetime(2024, 10, 27, 8, 0)),
    ],
)
def test_latest_fire_time(expr: str, at: dt.datetime, slot: dt.datetime | None) -> None:
    found = latest_fire_time(parse_cron(expr, LONDON), at.replace(tzinfo=LONDON))
    assert found == (slot.replace(tzinfo=LONDON) if slot else None)
    if found is not None:
        assert found.astimezone(LONDON).hour == (slot.hour if slot else 0)


def test_autumn_clock_change_neither_hangs_nor_doubles() -> None:
    """01:30 happens twice on 27 October 2024 in London: one slot, found without looping."""
    import signal

    from dhr_workflow.durations import slot_key

    def too_slow(*_: object) -> None:
        raise TimeoutError("latest_fire_time looped")

    previous = signal.signal(signal.SIGALRM, too_slow)
    signal.alarm(5)
    try:
        hourly = parse_cron("30 * * * *", LONDON)
        first = latest_fire_time(hourly, dt.datetime(2024, 10, 27, 0, 45, tzinfo=dt.UTC))
        second = latest_fire_time(hourly, dt.datetime(2024, 10, 27, 1, 45, tzinfo=dt.UTC))
        daily = parse_cron("30 1 * * *", LONDON)
        late = latest_fire_time(daily, dt.datetime(2024, 10, 27, 1, 45, tzinfo=dt.UTC))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert first is not None
    assert second is not None
    assert late is not None
    assert slot_key(first, LONDON) == slot_key(second, LONDON) == "2024-10-27T01:30"
    assert slot_key(late, LONDON) == "2024-10-27T01:30"


@pytest.mark.parametrize(
    ("field", "names"),
    [
        ("1-5", "mon,tue,wed,thu,fri"),
        ("*/2", "sun,tue,thu,sat"),
        ("1-5/2", "mon,wed,fri"),
        ("0,6", "sun,sat"),
        ("0-6", "sun,mon,tue,wed,thu,fri,sat"),
        ("7", "sun"),
        ("mon-fri", "mon-fri"),
    ],
)
def test_crontab_weekdays(field: str, names: str) -> None:
    from dhr_workflow.durations import cron_weekdays

    assert cron_weekdays(field) == names
