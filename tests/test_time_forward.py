"""Time only moves forward: a tick earlier than one already committed sends nothing and says
why; a dry run may still look at any time. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import func, select

from dhr_workflow import db
from dhr_workflow.models import AuditEvent, Firing, Notification, TickMark
from tests.conftest import CliFn

PLANS = Path(__file__).parent / "data" / "plans"
PEOPLE = """agency,role,name,email,review
,coordinator,Cat Coordinator,cat@csp.example.org,
,chair,Chris Chair,chris@csp.example.org,
Bi Borough VAWG Strategic Board,lead,Vic Lead,vic@vawg.example.org,
Bi Borough VAWG Strategic Board,manager,Val Manager,val@vawg.example.org,
"""


def _counts(store: db.Store) -> tuple[int, int, int]:
    with store.reading() as s:
        return tuple(  # type: ignore[return-value]
            s.scalar(select(func.count()).select_from(t)) or 0
            for t in (Notification, Firing, AuditEvent)
        )


def _setup(cli: CliFn, tmp_path: Path) -> None:
    assert cli("import", str(PLANS / "westminster-case-a.txt"), "--review", "WCA").exit_code == 0
    assert cli("reviews", "set", "WCA", "--plan-agreed", "2023-06-01").exit_code == 0
    people = tmp_path / "people.csv"
    people.write_text(PEOPLE)
    assert cli("contacts", "import", str(people)).exit_code == 0


def test_a_tick_earlier_than_the_last_sends_nothing_and_says_why(
    cli: CliFn, tmp_path: Path, store: db.Store
) -> None:
    _setup(cli, tmp_path)
    june = cli("tick", "--at", "2024-06-03T08:00")
    assert june.exit_code == 0, june.stderr
    before = _counts(store)
    march = cli("tick", "--at", "2024-03-04T08:00")
    assert march.exit_code == 2
    assert march.stderr.startswith("error: tick at 2024-03-04T08:00:00")
    assert "earlier than the last committed tick" in march.stderr
    assert "use --dry-run" in march.stderr
    assert len(march.stderr.strip().splitlines()) == 1
    assert _counts(store) == before  # no message, no ledger row, no audit event
    dry = cli("tick", "--dry-run", "--json", "--at", "2024-03-04T08:00")
    assert dry.exit_code == 0
    assert json.loads(dry.stdout)["messages"]  # what it would have sent, for a look
    assert _counts(store) == before
    again = cli("tick", "--at", "2024-06-03T08:00")  # the same moment again: nothing new
    assert again.exit_code == 0
    assert "enqueued 0 message(s)" in again.stdout


def test_marks_are_per_rule(cli: CliFn, tmp_path: Path, store: db.Store) -> None:
    _setup(cli, tmp_path)
    assert cli("tick", "--rule", "deadline", "--at", "2024-06-03T08:00").exit_code == 0
    other = cli("tick", "--rule", "undated-actions", "--at", "2024-03-04T09:00")
    assert other.exit_code == 0, other.stderr
    with store.reading() as s:
        marks = dict(s.execute(select(TickMark.rule_id, TickMark.at)).all())
    assert sorted(marks) == ["deadline", "undated-actions"]
    assert cli("tick", "--rule", "deadline", "--at", "2024-03-04T08:00").exit_code == 2
