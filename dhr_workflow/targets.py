"""Target dates as plans write them, turned into a due date: a pure function, no clock.

``read_target("30 th November 2023", ...)`` → due 2023-11-30, basis ``fixed``. UK day-first.
The words are never lost (the caller keeps them in ``target_text``), and anything this grammar
does not understand comes back with no date and a reason, never a guess.

    written                                   due                         basis
    31.12.2016, 01/02/13, 30 th November 2023 that day                    fixed
    December 2023, Dec-23, March 23           last day of the month       month_end
    Autumn 2013                               last day of the season      season
    3 months following review publication     anchor + 3 months           relative
    Six monthly reports, every 6 months       next occurrence from anchor recurring
    On-going, TBC, Prior to publication       none                        none
    Completed – 27/09/23.                     none; completed 2023-09-27  none
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dhr_workflow.models import DueBasis

MONTHS = {
    name: i
    for i in range(1, 13)
    for name in (calendar.month_name[i].lower(), calendar.month_abbr[i].lower())
}
MONTHS["sept"] = 9
# The last month of each season, as UK partnerships use them.
SEASON_END = {"spring": 5, "summer": 8, "autumn": 11, "fall": 11, "winter": 2}
NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "a": 1,
}  # fmt: skip
# Which review anchor date a relative deadline counts from, by the words that name it.
ANCHOR_WORDS = (
    ("completed_on", re.compile(r"\bcomplet", re.I)),
    ("published_on", re.compile(r"\bpubli", re.I)),
    ("report_accepted_on", re.compile(r"\baccept", re.I)),
    ("plan_agreed_on", re.compile(r"\bagree", re.I)),
)
ANCHOR_LABEL = {
    "completed_on": "the review's completion date",
    "published_on": "the report's publication date",
    "report_accepted_on": "the report's acceptance date",
    "plan_agreed_on": "the plan's agreed date",
}
ANCHOR_OPTION = {
    "completed_on": "--completed",
    "published_on": "--published",
    "report_accepted_on": "--report-accepted",
    "plan_agreed_on": "--plan-agreed",
}
# Recurring obligations are counted from the plan's agreement unless the words say otherwise.
RECURRING_ANCHOR = "plan_agreed_on"

_MONTH = r"(?P<month>jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sept?(?:ember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"  # noqa: E501
_ISO = re.compile(r"(?<!\d)(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})(?!\d)")
_NUMERIC = re.compile(r"(?<![\d.])(?P<d>\d{1,2})[./-](?P<m>\d{1,2})[./-](?P<y>\d{4}|\d{2})(?![\d])")
_DAY_MONTH = re.compile(
    rf"(?<!\d)(?P<day>\d{{1,2}})\s*(?:st|nd|rd|th)?[\s-]+(?:of\s+)?{_MONTH}\b\.?"
    rf"(?:[\s,-]+(?P<year>\d{{4}}|\d{{2}})(?!\d))?",
    re.I,
)
# "March 31 2016", "June 12th, 2016": American order, written out, so unambiguous.
_MONTH_DAY_YEAR = re.compile(
    rf"\b{_MONTH}\b\.?\s+(?P<day>\d{{1,2}})\s*(?:st|nd|rd|th)?,?\s+(?P<year>\d{{4}})(?!\d)",
    re.I,
)
# A two-digit "year" followed by an ordinal or a four-digit year is a day ("March 31 2016").
_MONTH_YEAR = re.compile(
    rf"\b{_MONTH}\b\.?[\s,/-]*(?P<year>\d{{4}}|\d{{2}})(?![\d/]|\.\d)"
    rf"(?!\s*(?:st|nd|rd|th)\b)(?!,?\s+\d{{4}})",
    re.I,
)
_SEASON = re.compile(r"\b(?P<season>spring|summer|autumn|fall|winter)\s+(?P<year>\d{4})\b", re.I)
_RELATIVE = re.compile(
    r"(?P<n>\d+|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|a)\s*"
    r"(?P<unit>months?|weeks?)\s+(?P<rest>(?:of|following|from|post|after)\b.*)",
    re.I,
)
_RECURRING = re.compile(
    r"\b(?:(?P<word>six|three|twelve|6|3|12)[\s-]*monthly|every\s+(?P<every>\d+|six|three|twelve)"
    r"\s+months?|(?P<q>quarterly)|(?P<a>annual(?:ly)?|yearly)|(?P<n>\d+)-month\s+reviews?)\b",
    re.I,
)
_NO_DEADLINE = re.compile(
    r"^\s*(?:on[\s-]?going|ongoing|tbc|tba|to be confirmed|n/?a|prior to publication|"
    r"implemented and on[\s-]?going|in place)\b",
    re.I,
)
_COMPLETED = re.compile(r"^\s*(?:action\s+)?complete(?:d)?\b", re.I)
_STILL_OPEN = re.compile(
    r"\b(?:in)?complete\s*-\s*ongoing|on[\s-]?going|awaited|awaiting|partial|in part\b|"
    r"in progress|pending|not yet|outstanding",
    re.I,
)


@dataclass(frozen=True)
class Target:
    """What a target's words mean."""

    due_date: dt.date | None = None
    basis: DueBasis = DueBasis.NONE
    # For relative and recurring targets: {"anchor": "published_on", "months": 3} or
    # {"anchor": "plan_agreed_on", "every_months": 6}; lets dates follow when anchors change.
    rule: dict[str, Any] | None = None
    reasons: tuple[str, ...] = ()
    completed: bool = False
    completed_on: dt.date | None = None


@dataclass(frozen=True)
class _Found:
    date: dt.date
    basis: DueBasis
    start: int
    end: int = field(compare=False)


def read_target(
    text: str | None,
    anchors: Mapping[str, dt.date | None],
    today: dt.date,
    milestones: str | None = None,
) -> Target:
    """The due date that ``text`` states, given the review's anchor dates and today's date."""
    words = " ".join((text or "").split())
    if not words:
        return _recurring(milestones, anchors, today) or Target(reasons=("due: no target date",))
    outcome = read_outcome(words)
    if outcome.completed:
        return Target(completed=True, completed_on=outcome.completed_on)
    relative = _RELATIVE.search(words)
    if relative:
        return _relative(words, relative, anchors)
    recurring = _recurring(words, anchors, today)
    if recurring:
        return recurring
    if _NO_DEADLINE.match(words) and not _dates(words):  # "Ongoing - review March 2024" has one
        return _recurring(milestones, anchors, today) or Target(
            reasons=(f"due: no deadline given ({_quote(words)})",)
        )
    return _fixed(words)


def _fixed(words: str) -> Target:
    found = _dates(words)
    distinct = {f.date for f in found}
    if len(distinct) == 1:
        return Target(due_date=found[0].date, basis=found[0].basis)
    if len(distinct) > 1:
        listed = ", ".join(d.isoformat() for d in sorted(distinct))
        return Target(reasons=(f"due: several dates in {_quote(words)} ({listed}); set one",))
    no_year = _DAY_MONTH.search(words)
    if no_year and not no_year.group("year"):
        return Target(reasons=(f"due: {_quote(words)} has no year; set the date",))
    return Target(reasons=(f"due: could not read a date from {_quote(words)}",))


def _dates(words: str) -> list[_Found]:
    """Every date the words state, left to right; later patterns skip text already used."""
    found: list[_Found] = []
    taken: list[tuple[int, int]] = []

    def free(m: re.Match[str]) -> bool:
        return all(m.end() <= a or m.start() >= b for a, b in taken)

    for pattern, build in (
        (_ISO, _numeric),
        (_NUMERIC, _numeric),
        (_MONTH_DAY_YEAR, _day_month),
        (_DAY_MONTH, _day_month),
        (_MONTH_YEAR, _month_year),
        (_SEASON, _season),
    ):
        for m in pattern.finditer(words):
            if not free(m):
                continue
            result = build(m)
            if result is not None:
                found.append(_Found(result[0], result[1], m.start(), m.end()))
                taken.append((m.start(), m.end()))
    return sorted(found, key=lambda f: f.start)


def _year(text: str) -> int:
    year = int(text)
    if year >= 100:
        return year
    return year + (2000 if year < 70 else 1900)  # "99" is 1999, not 2099


def _safe_date(year: int, month: int, day: int) -> dt.date | None:
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


def _numeric(m: re.Match[str]) -> tuple[dt.date, DueBasis] | None:
    day = _safe_date(_year(m["y"]), int(m["m"]), int(m["d"]))
    return (day, DueBasis.FIXED) if day else None


def _day_month(m: re.Match[str]) -> tuple[dt.date, DueBasis] | None:
    if not m["year"]:
        return None
    day = _safe_date(_year(m["year"]), MONTHS[m["month"].lower()[:3]], int(m["day"]))
    return (day, DueBasis.FIXED) if day else None


def _month_year(m: re.Match[str]) -> tuple[dt.date, DueBasis] | None:
    return month_end(_year(m["year"]), MONTHS[m["month"].lower()[:3]]), DueBasis.MONTH_END


def _season(m: re.Match[str]) -> tuple[dt.date, DueBasis] | None:
    month = SEASON_END[m["season"].lower()]
    year = int(m["year"]) + (1 if month == 2 else 0)  # winter 2013 ends in February 2014
    return month_end(year, month), DueBasis.SEASON


def month_end(year: int, month: int) -> dt.date:
    return dt.date(year, month, calendar.monthrange(year, month)[1])


def add_months(day: dt.date, months: int) -> dt.date:
    """Calendar months later, clamped to the month's end (31 Jan + 1 month = 28/29 Feb)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    return dt.date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def _count(word: str) -> int:
    return int(word) if word.isdigit() else NUMBER_WORDS[word.lower()]


def _relative(words: str, m: re.Match[str], anchors: Mapping[str, dt.date | None]) -> Target:
    anchor = next((name for name, pat in ANCHOR_WORDS if pat.search(m["rest"])), None)
    if anchor is None:
        return Target(reasons=(f"due: {_quote(words)} does not say what it counts from",))
    n = _count(m["n"])
    rule = (
        {"anchor": anchor, "months": n}
        if m["unit"].lower().startswith("month")
        else {"anchor": anchor, "weeks": n}
    )
    return resolve_relative(rule, anchors)


def _waiting(rule: Mapping[str, Any], basis: DueBasis, how: str) -> Target:
    """A relative or recurring target whose review anchor date is not set yet."""
    anchor = rule["anchor"]
    return Target(
        basis=basis,
        rule=dict(rule),
        reasons=(
            f"due: {how} {ANCHOR_LABEL[anchor]}, which is not set yet "
            f"(reviews set REF {ANCHOR_OPTION[anchor]} DATE)",
        ),
    )


def resolve_relative(rule: Mapping[str, Any], anchors: Mapping[str, dt.date | None]) -> Target:
    """A relative target's date from the anchors now known (used again when anchors change)."""
    anchor = anchors.get(rule["anchor"])
    if anchor is None:
        return _waiting(rule, DueBasis.RELATIVE, "counts from")
    due = (
        add_months(anchor, rule["months"])
        if "months" in rule
        else anchor + dt.timedelta(weeks=rule["weeks"])
    )
    return Target(due_date=due, basis=DueBasis.RELATIVE, rule=dict(rule))


def _recurring(
    words: str | None, anchors: Mapping[str, dt.date | None], today: dt.date
) -> Target | None:
    m = _RECURRING.search(words or "")
    if not m:
        return None
    if m["q"]:
        every = 3
    elif m["a"]:
        every = 12
    else:
        every = _count(m["word"] or m["every"] or m["n"])
    return resolve_recurring({"anchor": RECURRING_ANCHOR, "every_months": every}, anchors, today)


def resolve_recurring(
    rule: Mapping[str, Any], anchors: Mapping[str, dt.date | None], today: dt.date
) -> Target:
    """The next occurrence on or after ``today`` of a recurring obligation."""
    anchor = anchors.get(rule["anchor"])
    if anchor is None:
        return _waiting(
            rule, DueBasis.RECURRING, f"recurs every {rule['every_months']} months from"
        )
    k = 1
    while add_months(anchor, k * rule["every_months"]) < today:
        k += 1
    return Target(
        due_date=add_months(anchor, k * rule["every_months"]),
        basis=DueBasis.RECURRING,
        rule=dict(rule),
    )


def resolve(
    basis: str,
    rule: Mapping[str, Any] | None,
    anchors: Mapping[str, dt.date | None],
    today: dt.date,
) -> Target | None:
    """Re-resolve a stored relative or recurring target; None for other bases."""
    if rule is None:
        return None
    if basis == DueBasis.RELATIVE:
        return resolve_relative(rule, anchors)
    if basis == DueBasis.RECURRING:
        return resolve_recurring(rule, anchors, today)
    return None


@dataclass(frozen=True)
class Outcome:
    completed: bool
    completed_on: dt.date | None = None


def read_outcome(text: str | None) -> Outcome:
    """Whether an outcome/status cell says the action is done, and when."""
    words = " ".join((text or "").split())
    if not _COMPLETED.match(words) or _STILL_OPEN.search(words):
        return Outcome(False)
    dates = _dates(words)
    return Outcome(True, dates[0].date if dates else None)


def _quote(words: str, limit: int = 60) -> str:
    short = words if len(words) <= limit else words[: limit - 1] + "…"
    return repr(short)
