"""The CLI against a real store on both backends: happy paths and every user mistake."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine.default import DefaultDialect

from dhr_workflow import db
from dhr_workflow.models import AuditEvent, Contact
from tests.conftest import NOW, CliFn


def _error_line(result: Any) -> str:
    """A user mistake: exit 2, and stderr is exactly one line starting "error: "."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


# --- reviews ---------------------------------------------------------------------------------


def test_reviews_add_list_set(cli: CliFn) -> None:
    r = cli(
        "reviews",
        "add",
        "BDHR2012/13-04",
        "--title",
        "Case A",
        "--partnership",
        "Safer Westminster Partnership",
        "--plan-agreed",
        "2023-06-01",
    )
    assert r.exit_code == 0, r.stderr
    assert cli("reviews", "set", "BDHR2012/13-04", "--published", "05/01/2024").exit_code == 0
    [review] = json.loads(cli("reviews", "list", "--json").stdout)
    assert review == {
        "ref": "BDHR2012/13-04",
        "title": "Case A",
        "partnership": "Safer Westminster Partnership",
        "status": "open",
        "plan_agreed_on": "2023-06-01",
        "report_accepted_on": None,
        "published_on": "2024-01-05",
        "completed_on": None,
        "actions": 0,
        "open_actions": 0,
    }
    table = cli("reviews", "list").stdout
    assert "BDHR2012/13-04" in table and "2024-01-05" in table


def test_reviews_list_counts_open_actions(cli: CliFn, sample_review: Callable[..., Any]) -> None:
    sample_review("WCA")
    [review] = json.loads(cli("reviews", "list", "--json").stdout)
    assert (review["actions"], review["open_actions"]) == (3, 2)


def test_setting_an_unchanged_value_writes_no_audit(cli: CliFn, store: db.Store) -> None:
    cli("reviews", "add", "R1", "--title", "One", "--published", "2024-01-05")
    assert cli("reviews", "set", "R1", "--published", "2024-01-05").exit_code == 0
    with store.transaction() as s:
        assert s.scalar(select(func.count()).select_from(AuditEvent)) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["reviews", "set", "NOPE", "--published", "2024-01-01"], "no review with ref 'NOPE'"),
        (
            ["reviews", "add", "R1", "--title", "x", "--published", "2024-13-01"],
            "'2024-13-01' is not a date",
        ),
        (
            ["reviews", "add", "R1", "--title", "x", "--published", "31/02/2024"],
            "'31/02/2024' is not a date",
        ),
        (["reviews", "add", "R1"], "Missing option '--title'"),
        (["reviews", "add", "R1", "--title", "  "], "non-empty --title"),
        (["reviews", "set", "R1"], "nothing to change"),
        (["reviews", "set", "R1", "--status", "archived"], "'archived' is not one of"),
    ],
)
def test_review_mistakes(cli: CliFn, args: list[str], message: str) -> None:
    assert message in _error_line(cli(*args))


def test_duplicate_review_is_refused(cli: CliFn) -> None:
    cli("reviews", "add", "R1", "--title", "One")
    assert "already exists" in _error_line(cli("reviews", "add", "R1", "--title", "Again"))


# --- contacts --------------------------------------------------------------------------------

GOOD_CSV = """agency,role,name,email,review
Bi Borough VAWG Strategic Board,lead,Sam Lead,sam.lead@westminster.gov.uk,
Bi-Borough VAWG Strategic Board,manager,Mo Manager,mo@westminster.gov.uk,
,coordinator,Cat Coordinator,cat@westminster.gov.uk,
,chair,Chris Chair,chair@westminster.gov.uk,
,family_liaison,Fay Liaison,fay@advocacy.org.uk,WCA
"""


def _write(tmp_path: Path, text: str, name: str = "contacts.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_contacts_import_and_list(cli: CliFn, tmp_path: Path) -> None:
    cli("reviews", "add", "WCA", "--title", "Case A")
    result = cli("contacts", "import", str(_write(tmp_path, GOOD_CSV)))
    assert result.exit_code == 0, result.stderr
    assert "5 contact(s) added, 0 renamed, 0 already present" in result.stdout
    rows = json.loads(cli("contacts", "list", "--json").stdout)
    assert len(rows) == 5
    by_role = {r["role"]: r for r in rows}
    # Two spellings of the board are one agency.
    assert by_role["lead"]["agency"] == by_role["manager"]["agency"]
    assert by_role["family_liaison"]["review"] == "WCA"
    assert by_role["chair"]["agency"] is None
    agencies = cli("agencies", "list").stdout
    assert agencies.count("VAWG Strategic Board") == 1


def test_contacts_reimport_is_idempotent(cli: CliFn, tmp_path: Path, store: db.Store) -> None:
    cli("reviews", "add", "WCA", "--title", "Case A")
    path = _write(tmp_path, GOOD_CSV)
    cli("contacts", "import", str(path))
    again = cli("contacts", "import", str(path))
    assert "0 contact(s) added, 0 renamed, 5 already present" in again.stdout
    with store.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Contact)) == 5


def test_contacts_csv_with_excel_bom(cli: CliFn, tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(("\ufeff" + "Agency,Role,Name,Email\nPolice,lead,A B,ab@police.uk\n").encode())
    assert cli("contacts", "import", str(path)).exit_code == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("agency,role,name\nPolice,lead,A,\n", "missing column(s) email"),
        (
            "agency,role,name,email\nPolice,lead,A,a@police.uk\nPolice,lead,B,not-an-email\n",
            "contacts.csv:3: email: 'not-an-email' is not valid",
        ),
        (
            "agency,role,name,email\nPolice,boss,A,a@police.uk\n",
            "contacts.csv:2: role: 'boss' is not one of lead, manager",
        ),
        (
            "agency,role,name,email\n,lead,A,a@police.uk\n",
            "contacts.csv:2: agency: a lead contact needs an agency",
        ),
        ("agency,role,name,email\nPolice,lead,,a@police.uk\n", "contacts.csv:2: name: empty"),
        (
            "agency,role,name,email,review\n,family_liaison,A,a@police.uk,NOPE\n",
            "contacts.csv:2: review: no review with ref 'NOPE'",
        ),
        ("agency,role,name,email\n", "no contacts found"),
        ("", "missing column(s) agency, role, name, email"),
        (
            "agency,role,name,email,review\n,family_liaison,A,a@x.org.uk,\n",
            "contacts.csv:2: review: a family_liaison contact needs the review's ref",
        ),
        (
            "agency,role,name,email\nPolice,chair,A,a@x.org.uk\n",
            "contacts.csv:2: agency: a chair is not an agency's contact",
        ),
        (
            "agency,role,name,email,review\nPolice,lead,A,a@x.org.uk,WCA\n",
            "contacts.csv:2: review: a lead contact belongs to an agency",
        ),
        (
            "agency,role,name,email\nPolice,lead," + "N" * 201 + ",a@x.org.uk\n",
            "contacts.csv:2: name: longer than 200 characters",
        ),
        (
            'agency,role,name,email\n"Police\n\nHQ",lead,A,a@x.org.uk\n\n\nPolice,boss,B,b@x.org.uk\n',
            "contacts.csv:7: role: 'boss'",
        ),
        (
            "agency,role,name,email\n---,lead,A,a@x.org.uk\n",
            "agency name '---' has no letters or digits",
        ),
    ],
)
def test_bad_contacts_csv_writes_nothing(
    cli: CliFn, tmp_path: Path, store: db.Store, text: str, message: str
) -> None:
    line = _error_line(cli("contacts", "import", str(_write(tmp_path, text))))
    assert message in line
    with store.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Contact)) == 0
        assert s.scalar(select(func.count()).select_from(AuditEvent)) == 0


def test_bad_row_after_good_rows_writes_nothing(
    cli: CliFn, tmp_path: Path, store: db.Store
) -> None:
    cli("reviews", "add", "WCA", "--title", "Case A")
    text = GOOD_CSV + "Police,lead,Bad Row,bad@@police.uk,\n"
    line = _error_line(cli("contacts", "import", str(_write(tmp_path, text))))
    assert "contacts.csv:7: email" in line and "nothing from this file was imported" in line
    with store.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Contact)) == 0


def test_binary_and_missing_contacts_files(cli: CliFn, tmp_path: Path) -> None:
    binary = tmp_path / "photo.csv"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    assert "a binary file, not a CSV" in _error_line(cli("contacts", "import", str(binary)))
    latin = tmp_path / "latin.csv"
    latin.write_bytes("agency,role,name,email\nPolice,lead,Zoë,z@police.uk\n".encode("latin-1"))
    assert "not a UTF-8 text CSV file" in _error_line(cli("contacts", "import", str(latin)))
    missing = _error_line(cli("contacts", "import", str(tmp_path / "nope.csv")))
    assert "nope.csv: cannot read file" in missing


# --- actions ---------------------------------------------------------------------------------

JSON_KEYS = [
    "id",
    "review",
    "recommendation",
    "ref",
    "text",
    "lead_agency",
    "owner",
    "scope",
    "target_text",
    "due_date",
    "due_basis",
    "status",
    "completed_on",
    "outcome",
    "needs_review",
    "review_reasons",
    "recommendation_text",
    "progress",
    "overdue",
]


def test_actions_list_json_has_exactly_the_documented_keys(
    cli: CliFn, sample_review: Callable[..., Any]
) -> None:
    ids = sample_review("WCA")
    rows = json.loads(cli("actions", "list", "--json").stdout)
    assert [list(r) for r in rows] == [JSON_KEYS] * 3
    first = next(r for r in rows if r["id"] == ids["training"])
    assert first == {
        "id": ids["training"],
        "review": "WCA",
        "recommendation": "1",
        "ref": "",
        "text": "Action training",
        "lead_agency": "Bi Borough VAWG Strategic Board",
        "owner": "Jo Bloggs",
        "scope": "Local",
        "target_text": "December 2023",
        "due_date": "2023-12-31",
        "due_basis": "month_end",
        "status": "open",
        "completed_on": None,
        "outcome": None,
        "needs_review": False,
        "review_reasons": [],
        "recommendation_text": "Review training",
        "progress": None,
        "overdue": True,  # open, and due on 31 December 2023
    }


def test_actions_list_filters(cli: CliFn, sample_review: Callable[..., Any]) -> None:
    ids = sample_review("WCA")
    sample_review("OTHER")

    def listed(*args: str) -> set[int]:
        result = cli("actions", "list", "--json", *args)
        assert result.exit_code == 0, result.stderr
        return {r["id"] for r in json.loads(result.stdout) if r["review"] == "WCA"}

    assert listed("--review", "WCA") == set(ids.values())
    assert listed("--status", "completed") == {ids["probation"]}
    assert listed("--due-before", "2024-01-01") == {ids["training"]}
    # Any spelling of the agency finds it.
    assert listed("--agency", "bi-borough vawg strategic board") == {ids["training"], ids["dip"]}
    all_reviews = json.loads(cli("actions", "list", "--json", "--status", "open").stdout)
    assert {r["review"] for r in all_reviews} == {"WCA", "OTHER"}
    assert "Action training" in cli("actions", "list").stdout


def _listed(cli: CliFn) -> dict[int, dict[str, Any]]:
    result = cli("actions", "list", "--json")
    assert result.exit_code == 0, result.stderr
    return {r["id"]: r for r in json.loads(result.stdout)}


def test_actions_list_marks_overdue_actions(cli: CliFn, sample_review: Callable[..., Any]) -> None:
    """Overdue: not closed and due before today (the tests' data is in the past)."""
    ids = sample_review("WCA")
    later = ["--due", "2999-12-31", "--reason", "moved"]
    assert cli("actions", "update", str(ids["dip"]), *later).exit_code == 0
    rows = _listed(cli)
    assert {k: rows[ids[k]]["overdue"] for k in ids} == {
        "training": True, "dip": False, "probation": False,
    }  # fmt: skip
    blocked = cli("actions", "update", str(ids["training"]), "--status", "blocked")
    assert blocked.exit_code == 0 and _listed(cli)[ids["training"]]["overdue"]
    lines = {line.split()[1]: line for line in cli("actions", "list").stdout.splitlines()[3:-1]}
    assert "blocked, overdue" in lines[str(ids["training"])]  # plain text when piped
    assert "overdue" not in lines[str(ids["dip"])]
    assert "\x1b[" not in cli("actions", "list").stdout
    done = cli("actions", "update", str(ids["training"]), "--status", "completed")
    assert done.exit_code == 0 and not _listed(cli)[ids["training"]]["overdue"]


def test_actions_list_shows_the_latest_progress_note(
    cli: CliFn, sample_review: Callable[..., Any]
) -> None:
    ids = sample_review("WCA")
    for aid, note in [("training", "Draft ready"), ("dip", "Sampling began"),
                      ("training", "Board agreed [v2]")]:  # fmt: skip
        assert cli("actions", "update", str(ids[aid]), "--note", note).exit_code == 0
    rows = _listed(cli)
    latest = rows[ids["training"]]["progress"]
    assert (latest["note"], latest["author"]) == ("Board agreed [v2]", "test")
    assert dt.datetime.fromisoformat(latest["at"]).tzinfo is not None
    assert rows[ids["dip"]]["progress"]["note"] == "Sampling began"
    assert rows[ids["probation"]]["progress"] is None
    assert "Board agreed" not in cli("actions", "list").stdout  # the table keeps to the action


def test_actions_list_queries_do_not_grow_with_actions(
    cli: CliFn, sample_review: Callable[..., Any], store: db.Store
) -> None:
    """Two queries for the list and its notes, however many actions (not one per action)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from dhr_workflow import actions

    def statements() -> int:
        seen: list[str] = []

        def count(*args: Any) -> None:
            seen.append(args[2])

        event.listen(Engine, "before_cursor_execute", count)
        try:
            assert cli("actions", "list", "--json").exit_code == 0
        finally:
            event.remove(Engine, "before_cursor_execute", count)
        return len(seen)

    sample_review("WCA")
    few = statements()
    with store.transaction() as s:
        for n in range(40):
            a = actions.create(
                s, "WCA", now=NOW, actor="test", recommendation=f"x{n}", text="x",
                lead_agency=f"Agency {n}",
            )  # fmt: skip
            actions.update(
                s, a.id, actions.ActionChange(note=f"note {n}"), today=NOW.date(), now=NOW,
                actor="test",
            )  # fmt: skip
    assert statements() == few
    assert len(_listed(cli)) == 43


def test_actions_show(cli: CliFn, sample_review: Callable[..., Any], tmp_path: Path) -> None:
    ids = sample_review("WCA")
    aid = str(ids["training"])
    assert cli("contacts", "import", str(_write(tmp_path, GOOD_CSV))).exit_code == 0
    assert (
        cli("actions", "update", aid, "--owner-email", "sam.lead@westminster.gov.uk").exit_code == 0
    )
    assert cli("actions", "update", aid, "--note", "Draft\nready").exit_code == 0
    assert cli("actions", "update", aid, "--note", "Board agreed").exit_code == 0
    shown = json.loads(cli("actions", "show", aid, "--json").stdout)
    assert list(shown) == [
        *JSON_KEYS, "owner_contact", "milestones", "sequence", "source_file", "source_line",
        "progress_notes", "history",
    ]  # fmt: skip
    listed = _listed(cli)[int(aid)]
    assert {k: shown[k] for k in JSON_KEYS} == listed
    assert shown["owner_contact"] == {
        "id": 1, "name": "Sam Lead", "email": "sam.lead@westminster.gov.uk", "active": True,
    }  # fmt: skip
    assert (shown["sequence"], shown["milestones"], shown["source_line"]) == (0, None, None)
    assert [n["note"] for n in shown["progress_notes"]] == ["Board agreed", "Draft\nready"]
    assert shown["progress"]["note"] == "Board agreed"
    assert [h["kind"] for h in shown["history"]] == [
        "action.create", "action.assign", "action.note", "action.note",
    ]  # fmt: skip
    assert all(h["actor"] and h["sentence"] and h["at"] for h in shown["history"])
    text = cli("actions", "show", aid)
    assert text.exit_code == 0, text.stderr
    lines = text.stdout.splitlines()
    assert f"action:         {aid}" in lines
    assert "recommendation: 1: Review training" in lines
    assert "status:         open, OVERDUE" in lines
    assert "due:            2023-12-31 (month_end)" in lines
    assert "owner contact:  Sam Lead <sam.lead@westminster.gov.uk>, contact 1" in lines
    notes = lines.index("Progress notes (newest first):")
    assert lines[notes + 1].endswith("  test: Board agreed")
    assert lines[notes + 2].endswith("  test: Draft ready")  # one line per note
    assert lines[lines.index("History:") + 1].endswith(shown["history"][0]["sentence"])


def test_actions_show_of_an_action_with_nothing_more(
    cli: CliFn, sample_review: Callable[..., Any]
) -> None:
    ids = sample_review("WCA")
    shown = json.loads(cli("actions", "show", str(ids["probation"]), "--json").stdout)
    assert (shown["progress"], shown["progress_notes"], shown["owner_contact"]) == (None, [], None)
    assert shown["overdue"] is False
    text = cli("actions", "show", str(ids["probation"])).stdout
    assert "Progress notes (newest first):\n  none" in text
    assert "due:            none" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["actions", "show", "999"], "no action with id 999"),
        (["actions", "show", "999", "--json"], "no action with id 999"),
        (["actions", "show", "abc"], "'abc' is not a valid integer"),
        (["actions", "show", "0"], "is not in the range 1<=x<=2147483647"),
        (["actions", "list", "--review", "NOPE"], "no review with ref 'NOPE'"),
        (["actions", "list", "--status", "done"], "'done' is not one of"),
        (["actions", "list", "--agency", "Nobody"], "no agency called 'Nobody'"),
        (["actions", "list", "--due-before", "soon"], "'soon' is not a date"),
        (["actions", "update", "999", "--status", "completed"], "no action with id 999"),
        (["actions", "update", "abc", "--status", "completed"], "'abc' is not a valid integer"),
    ],
)
def test_action_mistakes(cli: CliFn, args: list[str], message: str) -> None:
    assert message in _error_line(cli(*args))


def test_due_date_change_needs_a_reason(
    cli: CliFn, sample_review: Callable[..., Any], store: db.Store
) -> None:
    ids = sample_review("WCA")
    with store.transaction() as s:
        events_before = s.scalar(select(func.count()).select_from(AuditEvent))
    line = _error_line(cli("actions", "update", str(ids["training"]), "--due", "2024-03-31"))
    assert "needs --reason" in line
    line = _error_line(cli("actions", "update", str(ids["training"]), "--reason", "why not"))
    assert "give --due as well" in line
    with store.transaction() as s:
        assert s.scalar(select(func.count()).select_from(AuditEvent)) == events_before


def test_due_date_change_is_audited_with_reason(
    cli: CliFn, sample_review: Callable[..., Any]
) -> None:
    ids = sample_review("WCA")
    aid = str(ids["training"])
    result = cli("actions", "update", aid, "--due", "2024-03-31", "--reason", "Board moved meeting")
    assert result.exit_code == 0, result.stderr
    row = next(
        r for r in json.loads(cli("actions", "list", "--json").stdout) if r["id"] == int(aid)
    )
    assert (row["due_date"], row["due_basis"]) == ("2024-03-31", "fixed")
    last = json.loads(cli("audit", "list", "--json").stdout)[-1]
    assert last["kind"] == "action.due_change" and last["subject"] == f"action:{aid}"
    assert last["data"]["reason"] == "Board moved meeting"
    assert last["data"]["before"]["due_date"] == "2023-12-31"
    assert last["data"]["after"]["due_date"] == "2024-03-31"
    assert last["data"]["after"]["sequence"] == 1  # calendars will see the move


def test_status_changes(cli: CliFn, sample_review: Callable[..., Any]) -> None:
    ids = sample_review("WCA")
    aid = str(ids["dip"])
    r = cli(
        "actions",
        "update",
        aid,
        "--status",
        "completed",
        "--completed-on",
        "2024-02-01",
        "--outcome",
        "Dip sample done; report to board",
    )
    assert r.exit_code == 0, r.stderr
    row = next(
        x for x in json.loads(cli("actions", "list", "--json").stdout) if x["id"] == int(aid)
    )
    assert (row["status"], row["completed_on"]) == ("completed", "2024-02-01")
    assert row["outcome"] == "Dip sample done; report to board"
    events = json.loads(cli("audit", "list", "--json").stdout)
    assert events[-1]["kind"] == "action.status"
    assert events[-1]["data"]["before"]["status"] == "open"
    # Reopening clears the completion date.
    assert cli("actions", "update", aid, "--status", "in_progress").exit_code == 0
    row = next(
        x for x in json.loads(cli("actions", "list", "--json").stdout) if x["id"] == int(aid)
    )
    assert (row["status"], row["completed_on"]) == ("in_progress", None)


def test_completed_on_needs_completed_status(cli: CliFn, sample_review: Callable[..., Any]) -> None:
    ids = sample_review("WCA")
    line = _error_line(cli("actions", "update", str(ids["dip"]), "--completed-on", "2024-02-01"))
    assert "--status completed" in line
    line = _error_line(
        cli(
            "actions",
            "update",
            str(ids["dip"]),
            "--status",
            "blocked",
            "--completed-on",
            "2024-02-01",
        )
    )
    assert "only goes with --status completed" in line


def test_nothing_to_update(cli: CliFn, sample_review: Callable[..., Any]) -> None:
    ids = sample_review("WCA")
    assert "nothing to change" in _error_line(cli("actions", "update", str(ids["dip"])))


# --- schema and connection -------------------------------------------------------------------


def test_uninitialised_database_says_run_init(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from dhr_workflow.cli import main

    monkeypatch.chdir(tmp_path)
    env = {"DHR_DATABASE_URL": f"sqlite:///{tmp_path / 'new.db'}"}
    result = CliRunner().invoke(main, ["reviews", "list"], env=env)
    assert "run `dhr-workflow init`" in _error_line(result)
    init = CliRunner().invoke(main, ["init"], env=env)
    assert init.exit_code == 0 and "schema created" in init.stdout
    assert CliRunner().invoke(main, ["reviews", "list"], env=env).exit_code == 0
    again = CliRunner().invoke(main, ["init"], env=env)
    assert "already up to date" in again.stdout


def test_unreachable_database_is_one_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from dhr_workflow.cli import main

    env = {"DHR_DATABASE_URL": "postgresql+psycopg://nobody:s3cret@127.0.0.1:1/none"}
    result = CliRunner().invoke(main, ["reviews", "list"], env=env)
    line = _error_line(result)
    assert line.startswith("error: cannot use the database postgresql+psycopg://nobody:***@")
    assert "s3cret" not in result.stderr


def test_config_error_is_one_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from dhr_workflow.cli import main

    result = CliRunner().invoke(main, ["reviews", "list"], env={"DHR_TIMEZONE": "Nowhere/Town"})
    assert "setting timezone (DHR_TIMEZONE)" in _error_line(result)


def test_contact_renamed_on_reimport(cli: CliFn, tmp_path: Path) -> None:
    cli(
        "contacts",
        "import",
        str(_write(tmp_path, "agency,role,name,email\nPolice,lead,Jo,j@p.uk\n")),
    )
    result = cli(
        "contacts",
        "import",
        str(_write(tmp_path, "agency,role,name,email\nPolice,lead,Jo Smith,j@p.uk\n")),
    )
    assert "0 contact(s) added, 1 renamed" in result.stdout
    [contact] = json.loads(cli("contacts", "list", "--json").stdout)
    assert contact["name"] == "Jo Smith"
    assert json.loads(cli("audit", "list", "--json").stdout)[-2]["kind"] == "contact.update"


def test_multiline_cell_is_kept(cli: CliFn, tmp_path: Path) -> None:
    text = 'agency,role,name,email\n"West Mercia\nPolice",lead,Ann,ann@wm.police.uk\n'
    assert cli("contacts", "import", str(_write(tmp_path, text))).exit_code == 0
    [contact] = json.loads(cli("contacts", "list", "--json").stdout)
    assert contact["agency"] == "West Mercia Police"  # whitespace in names is normalised


def test_unicode_agency_names_stay_distinct(cli: CliFn, tmp_path: Path) -> None:
    text = "agency,role,name,email\n警察,lead,A,a@x.org.uk\n消防,lead,B,b@x.org.uk\n"
    assert cli("contacts", "import", str(_write(tmp_path, text))).exit_code == 0
    rows = json.loads(cli("contacts", "list", "--json").stdout)
    assert {r["agency"] for r in rows} == {"警察", "消防"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["reviews", "add", "R" * 101, "--title", "x"], "at most 100 characters"),
        (
            ["reviews", "add", "R1", "--title", "x", "--partnership", "P" * 201],
            "--partnership is at most 200 characters",
        ),
        (["--actor", "A" * 201, "reviews", "list"], "--actor must be 1 to 200 characters"),
        (
            ["actions", "update", "99999999999999999999", "--status", "completed"],
            "is not in the range 1<=x<=2147483647",
        ),
        (["nonsense"], "No such command 'nonsense'"),
        (["actions", "list", "--bogus"], "No such option '--bogus'"),
    ],
)
def test_more_mistakes_are_one_line(cli: CliFn, args: list[str], message: str) -> None:
    assert message in _error_line(cli(*args))


def test_blank_title_is_refused_on_set(cli: CliFn) -> None:
    cli("reviews", "add", "R1", "--title", "One")
    assert "cannot be empty" in _error_line(cli("reviews", "set", "R1", "--title", "   "))


def test_completion_date_can_be_corrected_not_future(
    cli: CliFn, sample_review: Callable[..., Any]
) -> None:
    ids = sample_review("WCA")
    aid = str(ids["probation"])  # already completed
    r = cli("actions", "update", aid, "--status", "completed", "--completed-on", "2024-01-02")
    assert r.exit_code == 0, r.stderr
    row = next(
        x for x in json.loads(cli("actions", "list", "--json").stdout) if x["id"] == int(aid)
    )
    assert row["completed_on"] == "2024-01-02"
    assert "is in the future" in _error_line(
        cli("actions", "update", aid, "--completed-on", "2999-01-01")
    )


def test_not_a_database_and_unwritable_paths(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from dhr_workflow.cli import main

    text_file = tmp_path / "notes.db"
    text_file.write_text("shopping list\n" * 200)
    result = CliRunner().invoke(
        main, ["reviews", "list"], env={"DHR_DATABASE_URL": f"sqlite:///{text_file}"}
    )
    assert "file is not a database" in _error_line(result)
    result = CliRunner().invoke(
        main, ["init"], env={"DHR_DATABASE_URL": "sqlite:////proc/nope/x.db"}
    )
    assert "cannot create the database file /proc/nope/x.db" in _error_line(result)
    result = CliRunner().invoke(
        main, ["reviews", "list"], env={"DHR_DATABASE_URL": f"sqlite:///{tmp_path / 'typo.db'}"}
    )
    assert "no database at" in _error_line(result)
    assert not (tmp_path / "typo.db").exists()


def test_bad_config_files_are_one_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from dhr_workflow.cli import main

    binary = tmp_path / "dhr.toml"
    binary.write_bytes(b"\xff\xfe\x00t")
    result = CliRunner().invoke(main, ["--config", str(binary), "reviews", "list"])
    assert "is not UTF-8 text" in _error_line(result)
    result = CliRunner().invoke(main, ["--config", str(tmp_path), "reviews", "list"])
    assert "Invalid value for '--config'" in _error_line(result)


# --- tick: operator messages -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("30/11/2026 08:00", dt.datetime(2026, 11, 30, 8, 0)),
        ("30/11/2026", dt.datetime(2026, 11, 30)),
        (" 30/11/2026   08:00:30 ", dt.datetime(2026, 11, 30, 8, 0, 30)),
        ("1/3/2026 8:05", dt.datetime(2026, 3, 1, 8, 5)),
        ("2026-11-30T08:00", dt.datetime(2026, 11, 30, 8, 0)),
        ("2026-11-30 08:00", dt.datetime(2026, 11, 30, 8, 0)),
        ("2026-11-30", dt.datetime(2026, 11, 30)),
        ("2026-11-30T08:00+00:00", dt.datetime(2026, 11, 30, 8, 0, tzinfo=dt.UTC)),
    ],
)
def test_tick_at_takes_iso_and_uk_forms(given: str, expected: dt.datetime) -> None:
    from dhr_workflow.cli import DATETIME

    assert DATETIME.convert(given, None, None) == expected


@pytest.mark.parametrize(
    "given", ["31/02/2026 08:00", "30/11/2026 25:00", "11/30/2026", "30/11/26"]
)
def test_tick_at_refuses_what_is_not_a_time(cli: CliFn, given: str) -> None:
    line = _error_line(cli("tick", "--at", given, "--dry-run"))
    assert f"{given!r} is not a date or time (use YYYY-MM-DD or DD/MM/YYYY" in line


def test_tick_at_in_the_uk_form(cli: CliFn) -> None:
    result = cli("tick", "--at", "30/11/2026 08:00", "--dry-run", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["at"] == "2026-11-30T08:00:00+00:00"  # London, winter


def test_missing_review_date_says_how_to_set_it(cli: CliFn) -> None:
    for ref in ("BDHR2012/13-04", "WCA"):
        assert cli("reviews", "add", ref, "--title", f"Case {ref}").exit_code == 0
    result = cli("tick", "--at", "30/11/2026 08:00", "--dry-run")
    assert result.exit_code == 0, result.stderr
    gaps = [line for line in result.stdout.splitlines() if line.startswith("gap:")]
    assert gaps == [
        "gap: rule six-monthly-report: review BDHR2012/13-04 has no plan-agreed date: set it "
        "with dhr-workflow reviews set BDHR2012/13-04 --plan-agreed DATE",
        "gap: rule six-monthly-report: review WCA has no plan-agreed date: set it with "
        "dhr-workflow reviews set WCA --plan-agreed DATE",
    ]
    data = json.loads(cli("tick", "--at", "30/11/2026", "--dry-run", "--json").stdout)
    [gap] = [g for g in data["gaps"] if g["role"] == "review.plan_agreed_on"]
    assert gap["reviews"] == ["BDHR2012/13-04", "WCA"]
    # doing what it says closes the gap
    assert cli("reviews", "set", "WCA", "--plan-agreed", "01/06/2026").exit_code == 0
    again = cli("tick", "--at", "30/11/2026 08:00", "--dry-run").stdout
    assert "reviews set WCA" not in again and "reviews set BDHR2012/13-04" in again


def test_missing_contact_names_the_review_by_ref(cli: CliFn) -> None:
    assert (
        cli("reviews", "add", "WCA", "--title", "Case", "--plan-agreed", "2026-01-01").exit_code
        == 0
    )
    result = cli("tick", "--at", "01/07/2026 08:00", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert (
        "gap: rule six-monthly-report: nobody is partnership.chair for review WCA (add one "
        "with `dhr-workflow contacts add` or `contacts import`)"
    ) in result.stdout.splitlines()


# --- a commit that fails -----------------------------------------------------------------------

PROBATION = "HM Prison & Probation Service"
BOARD = "Bi-Borough VAWG Strategic Board"


@pytest.mark.parametrize(
    ("args", "claim"),
    [
        (["reviews", "add", "NEW1", "--title", "Case New"], "added review"),
        (["feeds", "create", "--review", "WCA"], "/feeds/"),
        (["actions", "update", "{action}", "--status", "completed"], "completed"),
        (["agencies", "rename", PROBATION, "Probation Service"], "is now"),
        (["agencies", "alias", PROBATION, "Probation Delivery Unit"], "also found"),
        (["agencies", "merge", PROBATION, BOARD], "merged"),
        (["contacts", "deactivate", "{contact}"], "deactivated"),
        (["contacts", "reactivate", "{contact}"], "reactivated"),
        (
            [
                "contacts", "add", "--name", "Jo", "--email", "jo@example.org",
                "--role", "lead", "--agency", BOARD,
            ],
            "added",
        ),
    ],
)  # fmt: skip
def test_nothing_is_said_done_when_the_commit_fails(
    cli: CliFn,
    store: db.Store,
    sample_review: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    claim: str,
) -> None:
    """A full disk shows at COMMIT: the command says so in one line and never prints the new
    state first (issue #15: `actions update` printed it, then failed)."""
    ids = sample_review()
    added = cli(
        "contacts", "add", "--name", "Sam", "--email", "sam@example.org",
        "--role", "lead", "--agency", PROBATION,
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    with store.reading() as s:
        contact = s.scalars(select(Contact.id)).one()
        before = s.scalar(select(func.count()).select_from(AuditEvent))
    if args[:2] == ["contacts", "reactivate"]:
        assert cli("contacts", "deactivate", str(contact)).exit_code == 0
        before += 1
    argv = [a.format(action=ids["dip"], contact=contact) for a in args]

    def full_disk(dialect: Any, dbapi_connection: Any) -> None:
        raise dialect.loaded_dbapi.OperationalError("database or disk is full")

    # The driver's own COMMIT fails, as it does on a full disk; SQLAlchemy wraps it as usual.
    monkeypatch.setattr(DefaultDialect, "do_commit", full_disk)
    result = cli(*argv)
    monkeypatch.undo()

    assert claim not in result.stdout, result.stdout
    assert "disk is full" in _error_line(result)
    with store.reading() as s:  # and nothing was kept
        assert s.scalar(select(func.count()).select_from(AuditEvent)) == before
