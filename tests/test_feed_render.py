"""The feed render against the icalendar render it replaced (tests/feed_reference.py): the
same bytes for a varied feed on both backends, and a calendar icalendar parses back."""

from __future__ import annotations

import datetime as dt
from typing import Any

import icalendar
import pytest
from sqlalchemy import update

from dhr_workflow import actions, db, feeds, reviews
from dhr_workflow.models import Action, FeedToken
from tests import feed_reference
from tests.conftest import ACTOR, NOW

TODAY = dt.date(2024, 5, 15)
LONG = "Ünïcödé agency with a very long name; commas, semicolons and a back\\slash " * 2
REVIEWS = [("R1", "Review one"), ("Ré;2,b", "Review two")]
# (review, ref, agency, due, status, basis, rule, recommendation text, action text)
ACTIONS: list[tuple[Any, ...]] = [
    ("R1", "1", "Police", dt.date(2024, 3, 31), "open", "fixed", None, "Short", "Do it"),
    ("R1", "", "Health, Trust; North", dt.date(2024, 5, 14), "in_progress", "fixed", None,
     "Line one\r\nline two\nthree\\four", "A\\N b"),
    ("R1", "2.1", None, dt.date(2024, 5, 15), "blocked", "fixed", None, "", ""),
    ("R1", "3", LONG, dt.date(2024, 2, 29), "completed", "month_end", None, "é" * 90, "x" * 200),
    ("R1", "4", "Police", dt.date(2024, 1, 10), "withdrawn", "fixed", None, "w", "w"),
    ("Ré;2,b", "5", "Café ^ Council", dt.date(2024, 6, 1), "open", "recurring",
     {"anchor": "plan_agreed_on", "every_months": 6}, "€" * 40 + "\\" * 30, "^" * 80),
    ("Ré;2,b", "6", "Police", dt.date(2023, 12, 31), "open", "recurring",
     {"anchor": "plan_agreed_on"}, "r", "r"),
    ("Ré;2,b", "7", "Police", None, "open", "none", None, "undated", "undated"),
]  # fmt: skip


def _store(store: db.Store) -> dict[str, str]:
    """A varied plan and a token per scope; returns the secrets by scope."""
    with store.transaction() as s:
        for ref, title in REVIEWS:
            reviews.add(s, ref, title, now=NOW, actor=ACTOR)
        for i, (review, ref, agency, due, status, basis, rule, rec, text) in enumerate(ACTIONS):
            a = actions.create(
                s, review, now=NOW, actor=ACTOR, recommendation=f"Rec {i}",
                recommendation_text=rec, lead_agency=agency, ref=ref, text=text,
                target_text=text[::-1] or None, due_date=due, due_basis=basis, due_rule=rule,
                status=status,
            )  # fmt: skip
            # Stored times with microseconds, some later than the start of TODAY.
            later = dt.datetime(2024, 5, 15, 10, 30, 5, 999_999, dt.UTC) if i % 2 else None
            s.execute(
                update(Action)
                .where(Action.id == a.id)
                .values(sequence=i, updated_at=later or NOW + dt.timedelta(microseconds=i))
            )
        scopes: list[tuple[Any, str | None, str | None]] = [
            ("all", None, None),
            ("review", "Ré;2,b", 'Team, "one"; ünï\\'),
            ("agency", "Police", None),
        ]
        return {
            kind: feeds.create(s, kind, value, label, now=NOW, actor=ACTOR).secret
            for kind, value, label in scopes
        }


CASES = [
    {},
    {"today": TODAY},
    {"today": TODAY, "include_completed": True, "base_url": "https://dhr.example.org"},
    {"today": TODAY, "detail": "full", "include_completed": True},
    {"today": dt.date(2025, 1, 1), "detail": "full", "base_url": "https://x.example/a;b,c"},
    {"detail": "full", "base_url": "https://dhr.example.org", "name": "Feed; with, name"},
]


@pytest.mark.parametrize("case", CASES)
def test_the_render_is_byte_for_byte_the_icalendar_render(
    store: db.Store, case: dict[str, Any]
) -> None:
    secrets = _store(store)
    for scope, secret in secrets.items():
        with store.reading() as s:
            token = feeds.lookup(s, secret)
            assert token is not None
            new = feeds.render(s, token, **case)
            old = feed_reference.render(s, token, **case)
        assert new == old, f"scope {scope}, {case}"
        assert new.count(b"BEGIN:VEVENT") > 0


def test_the_render_parses_back_with_every_entry(store: db.Store) -> None:
    secret = _store(store)["all"]
    with store.reading() as s:
        token = feeds.lookup(s, secret)
        assert isinstance(token, FeedToken)
        body = feeds.render(
            s, token, today=TODAY, include_completed=True, detail="full", base_url="https://h"
        )
    cal = icalendar.Calendar.from_ical(body)
    events = list(cal.walk("VEVENT"))
    dated = [a for a in ACTIONS if a[3] is not None]
    overdue = [a for a in dated if a[3] < TODAY and a[4] not in ("completed", "withdrawn")]
    assert len(events) == len(dated) + len(overdue)
    long_one = next(e for e in events if LONG.rstrip() in str(e["SUMMARY"]))
    assert str(long_one["SUMMARY"]) == f"Done: DHR R1 action 3: {LONG.rstrip()}"
    assert "é" * 90 in str(long_one["DESCRIPTION"])
    tricky = next(e for e in events if str(e["UID"]) == "dhr-action-2@dhr-workflow")
    assert str(tricky["DESCRIPTION"]).startswith(
        "Status: in progress\nRecommendation Rec 1: Line one\nline two\nthree\\four\n"
    )
    assert [str(c) for c in tricky["CATEGORIES"].cats] == ["DHR", "R1", "Health, Trust; North"]
    assert str(cal["X-WR-CALNAME"]) == "DHR actions (all)"
    assert not cal.errors and not any(e.errors for e in events)
