"""A person's changes to an action: lead agency, owner, progress notes, settling a flag — and
a re-import of the same plan keeping those corrections while a revised plan's word wins."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from dhr_workflow import actions, db
from dhr_workflow.errors import InvalidInput
from dhr_workflow.models import ActionStatus, ActionUpdate, AuditEvent
from tests.conftest import ACTOR, NOW, CliFn

TODAY = NOW.date()
PLAN = (
    "Recommendation,Action,Lead Agency,Target date,Status\n"
    "1,Train staff,,May 2024,\n"
    "2,Brief the board,Police,Ongoing,\n"
    "3,Audit files,Police,March 2023,Completed\n"
)


def _import(cli: CliFn, path: Path, review: str = "R1") -> dict[str, Any]:
    result = cli("import", str(path), "--review", review, "--json")
    assert result.exit_code == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def _by_ref(cli: CliFn, review: str = "R1") -> dict[str, dict[str, Any]]:
    rows = json.loads(cli("actions", "list", "--review", review, "--json").stdout)
    return {r["ref"]: r for r in rows}


def _events(store: db.Store) -> int:
    with store.reading() as s:
        return s.scalar(select(func.count()).select_from(AuditEvent)) or 0


@pytest.fixture
def plan(cli: CliFn, tmp_path: Path) -> Path:
    path = tmp_path / "plan.csv"
    path.write_text(PLAN)
    _import(cli, path)
    return path


def _update(store: db.Store, action_id: int, **change: Any) -> None:
    with store.transaction() as s:
        actions.update(
            s, action_id, actions.ActionChange(**change), today=TODAY, now=NOW, actor=ACTOR
        )


def test_choosing_an_agency_clears_its_flag(cli: CliFn, plan: Path, store: db.Store) -> None:
    first = _by_ref(cli)["1"]
    assert first["lead_agency"] is None
    assert any(r.startswith("agency:") for r in first["review_reasons"])
    result = cli("actions", "update", str(first["id"]), "--agency", "POLICE")
    assert result.exit_code == 0, result.stderr
    first = _by_ref(cli)["1"]
    assert first["lead_agency"] == "Police"
    assert not first["needs_review"]


def test_an_unknown_agency_or_owner_is_refused_and_nothing_changes(
    cli: CliFn, plan: Path, store: db.Store
) -> None:
    first = _by_ref(cli)["1"]
    before = _events(store)
    result = cli("actions", "update", str(first["id"]), "--agency", "Polise Service")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: no agency called 'Polise Service'")
    assert len(result.stderr.strip().splitlines()) == 1
    result = cli("actions", "update", str(first["id"]), "--owner-email", "nobody@example.org")
    assert result.exit_code == 2
    assert "no active contact with address 'nobody@example.org'" in result.stderr
    assert _events(store) == before
    assert _by_ref(cli)["1"] == first


def test_a_progress_note_is_kept_dated_and_audited(cli: CliFn, plan: Path, store: db.Store) -> None:
    action_id = _by_ref(cli)["2"]["id"]
    _update(store, action_id, note="  Board briefed on 10 Jan; minutes to follow  ")
    _update(store, action_id, note="Minutes circulated", status=ActionStatus.IN_PROGRESS)
    with store.reading() as s:
        notes = actions.progress_notes(s, action_id)
        kinds = list(
            s.scalars(
                select(AuditEvent.kind)
                .where(AuditEvent.subject == f"action:{action_id}")
                .order_by(AuditEvent.seq)
            )
        )
    assert [n.note for n in notes] == [
        "Minutes circulated",
        "Board briefed on 10 Jan; minutes to follow",
    ]
    assert [n.status for n in notes] == ["in_progress", None]
    assert all(n.author == ACTOR and n.source == "cli" for n in notes)
    assert kinds[-2:] == ["action.note", "action.status"]


def test_settling_a_flag_needs_a_reason_and_stops_the_nag(
    cli: CliFn, plan: Path, store: db.Store
) -> None:
    ongoing = _by_ref(cli)["2"]
    assert ongoing["needs_review"]
    contacts = plan.parent / "contacts.csv"
    contacts.write_text("agency,role,name,email\n,coordinator,Cat Coordinator,cat@csp.example\n")
    assert cli("contacts", "import", str(contacts)).exit_code == 0
    assert ongoing["id"] in _nagged(cli)
    assert cli("actions", "update", str(ongoing["id"]), "--settle", "  ").exit_code == 2
    result = cli("actions", "update", str(ongoing["id"]), "--settle", "no deadline: ongoing work")
    assert result.exit_code == 0, result.stderr
    assert not _by_ref(cli)["2"]["needs_review"]
    again = cli("actions", "update", str(ongoing["id"]), "--settle", "again")
    assert again.exit_code == 2
    assert "nothing that needs review" in again.stderr
    assert ongoing["id"] not in _nagged(cli)  # the weekly needs-review rule lets it be


def _nagged(cli: CliFn) -> set[int]:
    """The actions the coordinator's weekly needs-review email would list next Monday."""
    tick = json.loads(cli("tick", "--dry-run", "--json", "--at", "2024-01-22T09:00").stdout)
    return {a for m in tick["messages"] if m["template"] == "needs_review" for a in m["actions"]}


def test_reimporting_the_same_plan_keeps_every_correction(
    cli: CliFn, plan: Path, store: db.Store
) -> None:
    refs = _by_ref(cli)
    _update(store, refs["1"]["id"], agency="Police", owner="DI Jones")
    _update(store, refs["2"]["id"], settle="no deadline: ongoing work")
    _update(store, refs["3"]["id"], status=ActionStatus.OPEN, outcome="Reopened: audit incomplete")
    corrected = _by_ref(cli)
    report = _import(cli, plan)
    assert (report["created"], report["updated"]) == (0, 0)
    assert _by_ref(cli) == corrected


def test_a_revised_plan_that_says_something_new_wins(
    cli: CliFn, plan: Path, store: db.Store
) -> None:
    refs = _by_ref(cli)
    _update(store, refs["1"]["id"], agency="Police")
    _update(store, refs["3"]["id"], status=ActionStatus.OPEN)
    plan.write_text(
        "Recommendation,Action,Lead Agency,Target date,Status\n"
        "1,Train staff,Health,May 2024,\n"
        "2,Brief the board,Police,Ongoing,\n"
        "3,Audit files,Police,March 2023,Completed\n"
    )
    report = _import(cli, plan)
    assert report["updated"] == 1
    after = _by_ref(cli)
    assert after["1"]["lead_agency"] == "Health"  # the plan's new word
    assert after["3"]["status"] == "open"  # the plan still says completed: the reopening stands
    # and the overridden agency is forgotten: the next correction is remembered afresh
    with store.reading() as s:
        assert "lead_agency" not in actions.get(s, after["1"]["id"]).overrides


def test_no_change_writes_nothing(cli: CliFn, plan: Path, store: db.Store) -> None:
    first = _by_ref(cli)["1"]
    before = _events(store)
    _update(store, first["id"], owner="")
    _update(store, first["id"], outcome="")
    assert _events(store) == before
    with store.reading() as s:
        assert s.scalar(select(func.count()).select_from(ActionUpdate)) == 0
    with pytest.raises(InvalidInput, match="needs a note"), store.transaction() as s:
        actions.update(
            s, first["id"], actions.ActionChange(settle=""), today=TODAY, now=NOW, actor=ACTOR
        )


def test_a_correction_made_after_the_plan_caught_up_is_kept(
    cli: CliFn, tmp_path: Path, store: db.Store
) -> None:
    path = tmp_path / "owners.csv"
    header = "Recommendation,Action,Lead Agency,Owner,Target date,Status\n"
    path.write_text(header + "1,Train staff,Police,Alice,May 2024,\n")
    _import(cli, path, "O1")
    action_id = _by_ref(cli, "O1")["1"]["id"]
    _update(store, action_id, owner="Bob", status=ActionStatus.COMPLETED)
    # The revised plan agrees with both corrections, which are then forgotten.
    path.write_text(header + "1,Train staff,Police,Bob,May 2024,Completed\n")
    _import(cli, path, "O1")
    assert (_by_ref(cli, "O1")["1"]["owner"], _by_ref(cli, "O1")["1"]["status"]) == (
        "Bob",
        "completed",
    )
    with store.reading() as s:
        assert not {"owner_text", "status"} & set(actions.get(s, action_id).overrides)
    # New corrections are remembered against what the plan says now, and survive it.
    _update(store, action_id, owner="Carol", status=ActionStatus.OPEN)
    assert _import(cli, path, "O1")["updated"] == 0
    after = _by_ref(cli, "O1")["1"]
    assert (after["owner"], after["status"]) == ("Carol", "open")
