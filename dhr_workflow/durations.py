"""Offsets, durations and schedules as rules write them — pure functions, time passed in.

"-30d", "+10bd", "2w", "1m"    d calendar days, bd business days (weekends and UK bank
                               holidays), w weeks, m calendar months
"0 8 * * 1-5"                  cron in the partnership time zone (0 or 7 = Sunday)
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays
from apscheduler.triggers.cron import CronTrigger

from dhr_workflow.targets import add_months

_OFFSET = re.compile(r"^\s*(?P<sign>[+-]?)\s*(?P<n>\d{1,4})\s*(?P<unit>bd|d|w|m)\s*$")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")
UK_REGIONS = {"england": "ENG", "wales": "WLS", "scotland": "SCT", "northern_ireland": "NIR"}


@dataclass(frozen=True)
class Offset:
    """A signed distance from a date: ``Offset(-30, "d")``, ``Offset(10, "bd")``."""

    n: int
    unit: str

    def __str__(self) -> str:
        return f"{'+' if self.n >= 0 else '-'}{abs(self.n)}{self.unit}"

    def apply(self, day: dt.date, region: str = "england") -> dt.date:
        if self.unit == "d":
            return day + dt.timedelta(days=self.n)
        if self.unit == "w":
            return day + dt.timedelta(weeks=self.n)
        if self.unit == "m":
            return add_months(day, self.n)
        return add_business_days(day, self.n, region)

    def max_days(self) -> int:
        """An upper bound on the calendar days it spans (for SQL windows)."""
        per = {"d": 1, "w": 7, "m": 31, "bd": 2}[self.unit]
        return abs(self.n) * per + (10 if self.unit == "bd" else 0)


def parse_offset(text: object) -> Offset:
    """'-30d' → Offset(-30, 'd'); raises ValueError with a message a coordinator can act on."""
    m = _OFFSET.match(str(text))
    if not m:
        raise ValueError(f"{str(text)!r} is not a duration (use d, bd, w or m, e.g. -7d or +10bd)")
    n = int(m["n"]) * (-1 if m["sign"] == "-" else 1)
    return Offset(n, m["unit"])


@lru_cache(maxsize=64)
def _bank_holidays(region: str, year: int) -> frozenset[dt.date]:
    subdiv = UK_REGIONS[region]
    return frozenset(holidays.country_holidays("GB", subdiv=subdiv, years=year).keys())


def is_business_day(day: dt.date, region: str = "england") -> bool:
    return day.weekday() < 5 and day not in _bank_holidays(region, day.year)


def add_business_days(day: dt.date, n: int, region: str = "england") -> dt.date:
    """``n`` business days after (or before, if negative) ``day``."""
    step = 1 if n >= 0 else -1
    remaining = abs(n)
    while remaining:
        day += dt.timedelta(days=step)
        if is_business_day(day, region):
            remaining -= 1
    return day


def parse_cron(expr: str, tz: ZoneInfo) -> CronTrigger:
    """A standard five-field crontab. APScheduler 3 numbers weekdays from Monday = 0, so the
    weekday field is rewritten as day names first ("1-5" is Monday to Friday, as in cron)."""
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"{expr!r} is not a cron expression (five fields: min hour day month dow)")
    minute, hour, day, month, dow = fields
    try:
        return CronTrigger(
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=cron_weekdays(dow),
            timezone=tz,
        )
    except ValueError as exc:
        raise ValueError(f"{expr!r} is not a valid cron expression ({exc})") from None


def cron_weekdays(field: str) -> str:
    """A crontab weekday field ("1-5", "*/2", "0,6", "mon-fri") as APScheduler day names."""
    if field == "*" or re.fullmatch(r"[a-z,\-]+", field.lower()):
        return field.lower()
    days: set[int] = set()
    for item in field.split(","):
        m = re.fullmatch(r"(?:(\*)|(\d+)(?:-(\d+))?)(?:/(\d+))?", item)
        if not m:
            raise ValueError(
                f"weekday {item!r} is not supported (use 0-7, ranges, lists, steps or names)"
            )
        star, first, last, step = m.groups()
        lo, hi = (0, 6) if star else (int(first), int(last if last is not None else first))
        if not 0 <= lo <= 7 or not 0 <= hi <= 7 or lo > hi:
            raise ValueError(f"weekday range {item!r} is out of range (0-7, 0 and 7 = Sunday)")
        if step is not None and int(step) == 0:
            raise ValueError(f"weekday step in {item!r} must be at least 1")
        if step is not None and last is None and not star:
            hi = 6
        days |= {d % 7 for d in range(lo, hi + 1, int(step or 1))}
    return ",".join(_WEEKDAYS[d] for d in sorted(days))


_WINDOW = re.compile(
    r"^\s*(?P<d1>mon|tue|wed|thu|fri|sat|sun)(?:-(?P<d2>mon|tue|wed|thu|fri|sat|sun))?\s+"
    r"(?P<t1>\d{1,2}:\d{2})-(?P<t2>\d{1,2}:\d{2})\s*$",
    re.I,
)
_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Window:
    days: frozenset[int]  # Monday = 0
    start: dt.time
    end: dt.time

    def contains(self, moment: dt.datetime, tz: ZoneInfo, region: str = "england") -> bool:
        local = moment.astimezone(tz)
        day = local.date()
        return (
            local.weekday() in self.days
            and day not in _bank_holidays(region, day.year)
            and self.start <= local.time() < self.end
        )


def parse_window(text: str) -> Window:
    """ "mon-fri 08:00-18:00" -> the days and hours when mail may go out."""
    m = _WINDOW.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a send window (e.g. 'mon-fri 08:00-18:00')")
    first = _DAY_NAMES.index(m["d1"].lower())
    last = _DAY_NAMES.index((m["d2"] or m["d1"]).lower())
    days = (
        frozenset(range(first, last + 1))
        if first <= last
        else frozenset([*range(first, 7), *range(0, last + 1)])
    )
    try:
        start, end = (dt.time.fromisoformat(t.zfill(5)) for t in (m["t1"], m["t2"]))
    except ValueError:
        raise ValueError(f"{text!r} has an impossible time") from None
    if start >= end:
        raise ValueError(f"{text!r}: the window must end after it starts")
    return Window(days, start, end)


def latest_fire_time(trigger: CronTrigger, at: dt.datetime) -> dt.datetime | None:
    """The most recent time at or before ``at`` that the cron schedule fires (its slot)."""
    for window in (
        dt.timedelta(minutes=1),
        dt.timedelta(hours=1),
        dt.timedelta(days=1),
        dt.timedelta(days=8),
        dt.timedelta(days=32),
        dt.timedelta(days=367),
    ):
        t = trigger.get_next_fire_time(None, at - window)
        if t is None or t > at:
            continue
        while True:
            nxt = _after(trigger, t)
            if nxt is None or nxt > at:
                found: dt.datetime = t
                return found
            t = nxt
    return None


def _after(trigger: CronTrigger, t: dt.datetime) -> dt.datetime | None:
    """The next fire time strictly after ``t``. Around the autumn clock change APScheduler
    can hand back the same wall-clock time again (fold): probe forward until time moves."""
    probe = t + dt.timedelta(microseconds=1)
    for _ in range(120):
        nxt: dt.datetime | None = trigger.get_next_fire_time(t, probe)
        if nxt is None or nxt.astimezone(dt.UTC) > t.astimezone(dt.UTC):
            return nxt
        probe += dt.timedelta(minutes=1)
    return None


def slot_key(slot: dt.datetime, tz: ZoneInfo) -> str:
    """A cron slot as local wall-clock time: the repeated autumn hour is one slot, not two."""
    return slot.astimezone(tz).replace(tzinfo=None).isoformat(timespec="minutes")
