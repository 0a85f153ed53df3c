"""Jinja filters for pages: dates as people write them, status as GOV.UK tags."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote

from jinja2 import Environment

from dhr_workflow.models import CLOSED_STATUSES, Action, ActionStatus

# Status words and tag colours (GOV.UK Frontend tag modifiers).
STATUS_TAGS = {
    ActionStatus.OPEN.value: ("Open", "govuk-tag--blue"),
    ActionStatus.IN_PROGRESS.value: ("In progress", "govuk-tag--light-blue"),
    ActionStatus.BLOCKED.value: ("Blocked", "govuk-tag--orange"),
    ActionStatus.COMPLETED.value: ("Completed", "govuk-tag--green"),
    ActionStatus.WITHDRAWN.value: ("Withdrawn", "govuk-tag--grey"),
}
ROLE_NAMES = {
    "coordinator": "DHR coordinator",
    "chair": "Partnership chair",
    "lead": "Agency lead",
    "manager": "Agency manager",
    "family_liaison": "Family liaison",
}


def day(value: dt.date | dt.datetime | None, empty: str = "") -> str:
    """31 Dec 2023."""
    if value is None:
        return empty
    return f"{value.day} {value:%b %Y}"


def long_day(value: dt.date | None, empty: str = "") -> str:
    """31 December 2023."""
    return f"{value.day} {value:%B %Y}" if value else empty


def moment(value: dt.datetime | None, tz: Any) -> str:
    """31 Dec 2023, 9:05am in the partnership's time zone."""
    if value is None:
        return ""
    local = value.astimezone(tz)
    hour = local.hour % 12 or 12
    return f"{day(local)}, {hour}:{local:%M}{'am' if local.hour < 12 else 'pm'}"


def status_tag(action: Action, today: dt.date) -> dict[str, str]:
    """The params of a govukTag for an action: overdue wins over its stored status."""
    if (
        action.status not in CLOSED_STATUSES
        and action.due_date is not None
        and action.due_date < today
    ):
        return {"text": "Overdue", "classes": "govuk-tag--red"}
    text, classes = STATUS_TAGS.get(action.status, (action.status, "govuk-tag--grey"))
    return {"text": text, "classes": classes}


def status_name(value: str) -> str:
    return STATUS_TAGS.get(value, (value, ""))[0]


def role_name(value: str) -> str:
    return ROLE_NAMES.get(value, value)


def sentence(value: str) -> str:
    """First letter up, the rest as written (Jinja's capitalize lowers "Home Office")."""
    return value[:1].upper() + value[1:]


def plural(count: int, word: str, many: str | None = None) -> str:
    return f"{count} {word if count == 1 else (many or word + 's')}"


def review_url(ref: str) -> str:
    return "/reviews/" + quote(ref, safe="/")


def status_items(options: list[list[str]], selected: str) -> list[dict[str, Any]]:
    """(value, text) pairs as govukSelect items, one selected."""
    return [{"value": v, "text": t, "selected": v == selected} for v, t in options]


def install(env: Environment) -> None:
    env.filters.update(
        day=day,
        long_day=long_day,
        moment=moment,
        status_name=status_name,
        role_name=role_name,
        review_url=review_url,
        statusitems=status_items,
        sentence=sentence,
    )
    env.globals.update(status_tag=status_tag, plural=plural)
