"""The feed's content-line writer against icalendar's own escaping and folding: the same
text for a table of edge cases and for any string hypothesis finds."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st
from icalendar import vDDDTypes
from icalendar.parser.string import _escape_char, _foldline

from dhr_workflow import contentlines as ics

EDGES = [
    "",
    "x" * 73,
    "x" * 74,
    "x" * 75,
    "x" * 148,
    "x" * 149,
    "x" * 73 + "\\" + "y" * 10,  # a backslash where the line would break: carried over
    "x" * 73 + "^" + "y" * 10,
    "\\" * 200,
    "^" * 200,
    "é" * 80,  # two octets each: a break never splits a character
    "x" + "€" * 30,
    "x" * 72 + "€" + "y" * 5,
    "a;b,c\\d\r\ne\nf\rg\\Nh",
]


@pytest.mark.parametrize("line", EDGES)
def test_fold_as_icalendar_folds(line: str) -> None:
    escaped = "DESCRIPTION:" + _escape_char(line)
    assert ics.fold(escaped) == _foldline(escaped)
    assert ics.fold(line.replace("\n", "").replace("\r", "")) == _foldline(
        line.replace("\n", "").replace("\r", "")
    )


@pytest.mark.parametrize("value", EDGES)
def test_text_escapes_as_icalendar_escapes(value: str) -> None:
    assert ics.text(value) == _escape_char(value)


@given(st.text(st.characters(codec="utf-8"), max_size=400))
def test_any_text_line_as_icalendar_writes_it(value: str) -> None:
    line = "SUMMARY:" + _escape_char(value)
    assert ics.text(value) == _escape_char(value)
    assert ics.fold(line) == _foldline(line)


@given(st.text(st.sampled_from("ab\\^é€;,"), max_size=300))
def test_breaks_near_escapes_as_icalendar(value: str) -> None:
    line = "X:" + value
    assert ics.fold(line) == _foldline(line)


@pytest.mark.parametrize(
    "moment",
    [
        dt.datetime(2024, 5, 15, 10, 30, 5, 999_999, dt.UTC),
        dt.datetime(999, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        dt.datetime(2024, 12, 31, 23, 59, 59, tzinfo=dt.UTC),
    ],
)
def test_times_and_dates_as_icalendar_writes_them(moment: dt.datetime) -> None:
    assert ics.utc(moment).encode() == vDDDTypes(moment).to_ical()
    assert ics.date(moment.date()).encode() == vDDDTypes(moment.date()).to_ical()
