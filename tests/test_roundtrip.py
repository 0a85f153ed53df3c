"""Correcting a plan in a spreadsheet: `export --review REF plan.xlsx|csv`, then `import` it back.

Rows carry an action key and are matched by it; an unchanged export changes nothing; one edited
cell changes that field alone, audited once; bad keys are one line and write nothing.
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook
from sqlalchemy import func, select

from dhr_workflow import actions, agencies, db, reviews
from dhr_workflow.importer import export, read_plan
from dhr_workflow.importer.apply import ImportReport, apply_plan
from dhr_workflow.importer.export import (
    COLUMNS,
    STATUSES,
    action_key,
    export_review,
    parse_key,
    unquote,
)
from dhr_workflow.importer.text import clean
from dhr_workflow.models import Action, AuditEvent, Recommendation
from tests.conftest import ACTOR, NOW, CliFn

TODAY = NOW.date()
HEADERS = [c.header for c in COLUMNS]
COLUMN = {c.field: i for i, c in enumerate(COLUMNS)}  # field -> 0-based column

PLAN_CSV = "".join(
    f"{line}\n"
    for line in (
        "Section,Recommendation,Scope,Action,Lead Agency,Owner,Key Milestones,Target Date,Outcome",
        "overview,1,Local,Report every six months,Safer Westminster Partnership,Cat Coordinator,"
        "Six monthly reports,Ongoing,",
        "overview,2,Local,Review training,Bi Borough VAWG Strategic Board,,"
        "Findings to November meeting,December 2023,",
        'overview,2,Local,"=HYPERLINK(""http://x.example"",""click"")",'
        "Bi Borough VAWG Strategic Board,,,March 2024,",
        'West Mercia Police,1,Local,"- brief officers, twice",West Mercia Police,'
        "Det Supt Head of PVP,,30/09/2023,Completed 29/11/2023",
    )
)


def _plan(tmp_path: Path, text: str = PLAN_CSV) -> Path:
    path = tmp_path / "original.csv"
    path.write_text(text, encoding="utf-8")
    return path


def _ok(result: Any) -> Any:
    assert result.exit_code == 0, result.stderr
    return result


def _actions(cli: CliFn, review: str) -> list[dict[str, Any]]:
    return list(json.loads(_ok(cli("actions", "list", "--review", review, "--json")).stdout))


def _events(cli: CliFn) -> list[dict[str, Any]]:
    return list(json.loads(_ok(cli("audit", "list", "--json")).stdout))


def _import_cli(cli: CliFn, path: Path, review: str) -> dict[str, Any]:
    result = _ok(cli("import", str(path), "--review", review, "--json"))
    return dict(json.loads(result.stdout))


def _error(result: Any) -> str:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # one line, never a traceback
    return str(lines[0])


def _sheet_rows(path: Path) -> list[list[Any]]:
    sheet = load_workbook(path).active
    assert sheet is not None
    return [list(row) for row in sheet.iter_rows(values_only=True)]


def _edit_xlsx(path: Path, edits: dict[tuple[int, str], Any]) -> None:
    """Set cells by (data row, field), as a person typing in Excel would."""
    book = load_workbook(path)
    sheet = book.active
    assert sheet is not None
    for (row, field), value in edits.items():
        sheet.cell(row + 2, COLUMN[field] + 1).value = value
    book.save(path)


def _csv_rows(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        return list(csv.reader(f))


def _save_csv(path: Path, rows: list[list[str]]) -> None:
    # As Excel's "CSV UTF-8" saves it: a byte-order mark, quotes only where needed.
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        csv.writer(f).writerows(rows)


# --- the file itself -------------------------------------------------------------------------


def test_xlsx_export_is_the_template_laid_out_for_people(cli: CliFn, tmp_path: Path) -> None:
    _import_cli(cli, _plan(tmp_path), "WCA")
    ids = [a["id"] for a in _actions(cli, "WCA")]
    out = _ok(cli("export", "--review", "WCA", "plan.xlsx"))
    assert "import plan.xlsx --review WCA" in out.stdout
    book = load_workbook(tmp_path / "plan.xlsx")
    sheet = book.active
    assert sheet is not None
    rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert rows[0] == HEADERS
    assert [r[0] for r in rows[1:]] == [f"WCA-A{i}" for i in ids]
    assert sheet.freeze_panes == "B2"
    assert sheet.column_dimensions["F"].width == 48  # Action
    assert all(c.alignment.wrap_text for c in sheet[2])
    due = sheet.cell(3, COLUMN["due_date"] + 1)
    assert due.value == dt.datetime(2023, 12, 31)  # a real date cell, shown UK-style, grey
    assert (due.number_format, due.fill.fgColor.rgb) == ("DD/MM/YYYY", "FFD9D9D9")
    assert rows[2][COLUMN["target"]] == "December 2023"  # the words, under Target Date
    lists = [v for v in sheet.data_validations.dataValidation if v.type == "list"]
    assert lists[0].formula1 == '"open,in_progress,completed,blocked,withdrawn"'
    assert str(lists[0].sqref).startswith("L2:L")
    # Formula-like cells are text with Excel's quote prefix, never formulas.
    formula = sheet.cell(4, COLUMN["text"] + 1)
    assert (formula.data_type, formula.quotePrefix) == ("s", True)
    assert formula.value == '=HYPERLINK("http://x.example","click")'
    assert sheet.cell(5, COLUMN["text"] + 1).value == "- brief officers, twice"


def test_csv_export_has_a_bom_and_neutralised_formulas(cli: CliFn, tmp_path: Path) -> None:
    _import_cli(cli, _plan(tmp_path), "WCA")
    _ok(cli("export", "--review", "WCA", "plan.csv"))
    data = (tmp_path / "plan.csv").read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    rows = _csv_rows(tmp_path / "plan.csv")
    assert rows[0] == HEADERS
    assert rows[3][COLUMN["text"]] == '\'=HYPERLINK("http://x.example","click")'
    assert rows[4][COLUMN["text"]] == "'- brief officers, twice"
    assert rows[2][COLUMN["due_date"]] == "2023-12-31"
    assert rows[4][COLUMN["status"]] == "completed"


def test_export_names_its_problems(cli: CliFn, tmp_path: Path) -> None:
    _import_cli(cli, _plan(tmp_path), "WCA")
    assert "writes .xlsx or .csv" in _error(cli("export", "--review", "WCA", "plan.ods"))
    assert "no review with ref 'NOPE'" in _error(cli("export", "--review", "NOPE", "p.xlsx"))
    assert "cannot write there" in _error(cli("export", "--review", "WCA", "no/such/p.csv"))


@pytest.mark.parametrize(
    ("stored", "in_csv", "in_xlsx", "quote_prefix"),
    [
        ("Brief staff", "Brief staff", "Brief staff", False),
        ("=SUM(A1:A9)", "'=SUM(A1:A9)", "=SUM(A1:A9)", True),
        ("+44 20 7946 0000", "'+44 20 7946 0000", "+44 20 7946 0000", True),
        ("- first\n- second", "'- first\n- second", "- first\n- second", True),
        ("@Home Housing", "'@Home Housing", "@Home Housing", True),
        ("  =1+1", "'=1+1", "=1+1", True),  # Excel skips the spaces
        ("'=1+1", "''=1+1", "''=1+1", True),  # an apostrophe of its own survives
        ("'quoted'", "'quoted'", "'quoted'", False),
        ("a\x0bb", "a\x0bb", "a\nb", False),  # a vertical tab: a line break, as read
        ("a\x01b", "a\x01b", "ab", False),  # a control character: dropped, as read
    ],
)
def test_formula_like_cells_are_neutralised_and_read_back(
    stored: str, in_csv: str, in_xlsx: str, quote_prefix: bool
) -> None:
    assert export.csv_cell(stored) == in_csv
    assert export.xlsx_cell(stored) == (in_xlsx, quote_prefix)
    assert unquote(clean(in_csv)) == clean(stored)
    assert unquote(clean(in_xlsx)) == clean(stored)


@pytest.mark.parametrize(
    ("key", "parsed"),
    [
        ("WCA-A17", ("WCA", 17)),
        (" BDHR2012/13-04-A3 ", ("BDHR2012/13-04", 3)),
        ("X-A1-A2", ("X-A1", 2)),
        ("WCA-17", None),
        ("WCA-A", None),
        ("17", None),
        ("-A17", None),
    ],
)
def test_action_keys(key: str, parsed: tuple[str, int] | None) -> None:
    assert parse_key(key) == parsed
    if parsed:
        assert action_key(*parsed) == key.strip()


# --- importing it back -------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".xlsx", ".csv"])
def test_unchanged_export_changes_nothing(cli: CliFn, tmp_path: Path, suffix: str) -> None:
    _import_cli(cli, _plan(tmp_path), "WCA")
    path = tmp_path / f"plan{suffix}"
    _ok(cli("export", "--review", "WCA", str(path)))
    before, events = _actions(cli, "WCA"), _events(cli)
    report = _import_cli(cli, path, "WCA")
    assert (report["created"], report["updated"], report["unchanged"]) == (0, 0, 4)
    assert report["not_in_file"] == []
    assert _actions(cli, "WCA") == before
    assert [e["kind"] for e in _events(cli)[len(events) :]] == ["plan.import"]


def test_corrections_apply_by_key_once_each(cli: CliFn, tmp_path: Path) -> None:
    _import_cli(cli, _plan(tmp_path), "WCA")
    first = _actions(cli, "WCA")
    path = tmp_path / "plan.xlsx"
    _ok(cli("export", "--review", "WCA", str(path)))
    book = load_workbook(path)
    sheet = book.active
    assert sheet is not None
    sheet.insert_rows(2)  # a new action at the top, without a key: it must not shift the rest
    new = ["", "overview", "2", "", "", "Audit the training", "Safer Westminster Partnership"]
    for index, value in enumerate(new, start=1):
        sheet.cell(2, index).value = value
    sheet.cell(2, COLUMN["target"] + 1).value = "June 2024"
    sheet.cell(3, COLUMN["owner"] + 1).value = "Dana Director"  # action 1
    sheet.cell(4, COLUMN["target"] + 1).value = "March 2025"  # action 2's words...
    sheet.cell(4, COLUMN["due_date"] + 1).value = dt.datetime(2030, 1, 1)  # ...not this
    sheet.cell(5, COLUMN["status"] + 1).value = "withdrawn"  # action 3
    sheet.cell(3, COLUMN["rec_text"] + 1).value = "Monitor the plan"  # recommendation 1
    book.save(path)
    events = _events(cli)
    report = _import_cli(cli, path, "WCA")
    assert (report["created"], report["updated"], report["unchanged"]) == (1, 3, 1)
    rows = _actions(cli, "WCA")
    assert [r["id"] for r in rows] == [*(a["id"] for a in first), 5]
    assert rows[0]["owner"] == "Dana Director"
    assert rows[0]["recommendation_text"] == "Monitor the plan"
    assert (rows[1]["target_text"], rows[1]["due_date"]) == ("March 2025", "2025-03-31")
    assert rows[2]["status"] == "withdrawn"
    assert rows[2]["text"] == first[2]["text"]
    assert rows[3] == first[3]
    # numbered after recommendation 2's actions, whatever its place in the sheet
    assert (rows[4]["ref"], rows[4]["text"], rows[4]["due_date"]) == (
        "2c",
        "Audit the training",
        "2024-06-30",
    )
    new_events = _events(cli)[len(events) :]
    updates = [e for e in new_events if e["kind"] == "action.import_update"]
    assert len(updates) == 3  # one per corrected action, before and after
    owner = next(e for e in updates if "owner_text" in e["data"]["after"])
    assert owner["data"]["before"]["owner_text"] == "Cat Coordinator"
    assert [e["kind"] for e in new_events].count("recommendation.import_update") == 1
    again = _import_cli(cli, path, "WCA")  # the same file again: nothing new, nothing twice
    assert (again["created"], again["updated"]) == (0, 0)
    assert len(_actions(cli, "WCA")) == 5


def test_read_only_columns_are_ignored(cli: CliFn, tmp_path: Path) -> None:
    _import_cli(cli, _plan(tmp_path), "WCA")
    path = tmp_path / "plan.csv"
    _ok(cli("export", "--review", "WCA", str(path)))
    rows = _csv_rows(path)
    rows[2][COLUMN["due_date"]] = "2030-01-01"
    rows[2][COLUMN["flags"]] = ""
    rows[1][COLUMN["flags"]] = "due: made up"
    _save_csv(path, rows)
    before = _actions(cli, "WCA")
    assert _import_cli(cli, path, "WCA")["updated"] == 0
    assert _actions(cli, "WCA") == before


def test_workflow_status_follows_the_importers_rules(cli: CliFn, tmp_path: Path) -> None:
    _import_cli(cli, _plan(tmp_path), "WCA")
    path = tmp_path / "plan.csv"
    _ok(cli("export", "--review", "WCA", str(path)))
    rows = _csv_rows(path)
    rows[1][COLUMN["status"]] = "Completed"  # any case; no date in the words: today
    rows[2][COLUMN["status"]] = ""  # blank: no change
    rows[3][COLUMN["outcome"]] = "Completed 10/01/2024"  # the outcome completes, as ever
    rows[4][COLUMN["status"]] = "in progress"  # reopened: no completion date
    _save_csv(path, rows)
    _import_cli(cli, path, "WCA")
    got = [(a["status"], a["completed_on"]) for a in _actions(cli, "WCA")]
    today = dt.date.fromisoformat(got[0][1])  # the CLI's own today, in the partnership's zone
    assert abs((today - dt.date.today()).days) <= 1
    assert got == [
        ("completed", today.isoformat()),
        ("open", None),
        ("completed", "2024-01-10"),
        ("in_progress", None),
    ]


def test_a_correction_is_remembered_like_one_on_the_actions_page(
    cli: CliFn, tmp_path: Path
) -> None:
    original = _plan(tmp_path)
    _import_cli(cli, original, "WCA")
    path = tmp_path / "plan.xlsx"
    _ok(cli("export", "--review", "WCA", str(path)))
    _edit_xlsx(path, {(0, "owner"): "Dana Director", (1, "target"): "March 2025"})
    _import_cli(cli, path, "WCA")
    again = _import_cli(cli, original, "WCA")  # the original plan still says the old things
    assert again["updated"] == 0
    rows = _actions(cli, "WCA")
    assert rows[0]["owner"] == "Dana Director"
    assert (rows[1]["target_text"], rows[1]["due_date"]) == ("March 2025", "2025-03-31")
    revised = PLAN_CSV.replace("Cat Coordinator", "Sam Smith")
    _import_cli(cli, _plan(tmp_path, revised), "WCA")  # a plan that says something new wins
    assert _actions(cli, "WCA")[0]["owner"] == "Sam Smith"


BAD_KEYS = [
    ("WCA-17", "'WCA-17' in the Action key column is not a key from `dhr-workflow export`"),
    ("XYZ-A1", "action key XYZ-A1 is of review XYZ, not WCA; import the file with --review"),
    ("WCA-A999", "action key WCA-A999: review WCA has no action 999; export the review again"),
]


@pytest.mark.parametrize(("key", "message"), BAD_KEYS)
def test_a_bad_key_is_one_line_and_writes_nothing(
    cli: CliFn, tmp_path: Path, key: str, message: str
) -> None:
    _import_cli(cli, _plan(tmp_path), "WCA")
    path = tmp_path / "plan.csv"
    _ok(cli("export", "--review", "WCA", str(path)))
    rows = _csv_rows(path)
    rows[1][COLUMN["owner"]] = "Dana Director"
    rows[3][COLUMN["action_key"]] = key
    _save_csv(path, rows)
    before, events = _actions(cli, "WCA"), _events(cli)
    line = _error(cli("import", str(path), "--review", "WCA"))
    assert line.startswith("error: plan.csv:4: ")
    assert message in line
    assert (_actions(cli, "WCA"), _events(cli)) == (before, events)


def test_other_bad_rows_are_one_line(cli: CliFn, tmp_path: Path) -> None:
    _import_cli(cli, _plan(tmp_path), "WCA")
    path = tmp_path / "plan.csv"
    _ok(cli("export", "--review", "WCA", str(path)))
    exported = _csv_rows(path)
    rows = [*exported, exported[2]]
    _save_csv(path, rows)
    assert "plan.csv:6: action key WCA-A2 is also on row 3" in _error(
        cli("import", str(path), "--review", "WCA")
    )
    rows = [list(r) for r in exported]
    rows[2][COLUMN["status"]] = "done"
    _save_csv(path, rows)
    assert "plan.csv:3: Workflow status 'done' is not one of open, in_progress" in _error(
        cli("import", str(path), "--review", "WCA")
    )
    rows = [list(r) for r in exported]
    rows[3][COLUMN["rec_ref"]] = ""  # with no target of its own, the row runs into the one
    rows[3][COLUMN["target"]] = ""  # above, key and all
    _save_csv(path, rows)
    assert "plan.csv:3: the row below this one has an action key but no Recommendation ref" in (
        _error(cli("import", str(path), "--review", "WCA"))
    )


def test_csv_quotes_are_double_quotes_whatever_the_cells_say(tmp_path: Path) -> None:
    # The sniffer, left to guess the quoting, read the apostrophes of 'Soon' as quote marks.
    path = tmp_path / "plan.csv"
    _save_csv(
        path,
        [
            ["Recommendation", "Action", "Lead Agency", "Target date", "Outcome"],
            ["1", "'Soon'", "Police", "May 2024", "it's\ntwo lines"],
            ["2", 'He said "done", then left', "Police", "June 2024", ""],
        ],
    )
    _, plan = read_plan(path)
    assert [(r.rec_ref, r.text, r.outcome) for r in plan.rows] == [
        ("1", "'Soon'", "it's\ntwo lines"),
        ("2", 'He said "done", then left', ""),
    ]


# --- properties: any plan survives the round trip ------------------------------------------------

# Text as people paste it: punctuation, quotes, line breaks, tabs, stray control characters,
# any script, markup-like and formula-like starts.
TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"))
    | st.sampled_from(list("\n\r\t\x0b\x01,;\"'=+-@<>& ")),
    max_size=24,
)
AGENCIES = ["West Mercia Police", "=HYPERLINK Trust", "@Home Housing", "+Plus Partnership"]
OTHER_AGENCIES = ["Safer Westminster Partnership", "Turning Point"]  # what an edit names
REASONS = ["due: could not read a date from 'soon'", "status: check it"]
ACTION = st.fixed_dictionaries(
    {
        "section": st.sampled_from(["overview", "West Mercia Police"]),
        "rec": st.sampled_from(["1", "2", "1.10"]),
        "rec_text": TEXT,
        "scope": st.none() | st.sampled_from(["Local", "-regional", "'=quoted"]),
        "text": TEXT,
        "owner_text": st.none() | TEXT,
        "milestones": st.none() | TEXT,
        "target_text": st.none() | st.sampled_from(["December 2023", "=1+1", "On-going"]) | TEXT,
        "outcome": st.none() | TEXT,
        "status": st.sampled_from(STATUSES),
        "lead_agency": st.none() | st.sampled_from(AGENCIES),
        "review_reasons": st.lists(st.sampled_from(REASONS), max_size=2, unique=True),
    }
)
PLANS = st.lists(ACTION, min_size=1, max_size=4)
# Examples kept few enough that each property takes seconds on each backend; RT_EXAMPLES=500
# for a longer hunt. No shrinking: it took minutes per failure and the example prints unshrunk.
PROPERTY = settings(
    max_examples=int(os.environ.get("RT_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
_refs = itertools.count(1)


PLACE_KEYS = ("section", "rec", "rec_text", "scope")  # the recommendation's, not the action's


def _build(store: db.Store, plan: list[dict[str, Any]]) -> str:
    """A review holding these actions as stored, not as any import would clean them."""
    ref = f"P{next(_refs)}"
    with store.transaction() as s:
        reviews.add(s, ref, "Property", now=NOW, actor=ACTOR)
        for name in (*AGENCIES, *OTHER_AGENCIES):
            agencies.find_or_create(s, name, now=NOW, actor=ACTOR)
        places: dict[tuple[str, str], int] = {}
        for a in plan:
            place = (a["section"], a["rec"])
            index = places[place] = places.get(place, 0) + 1
            fields = {k: v for k, v in a.items() if k not in PLACE_KEYS}
            actions.create(
                s, ref, now=NOW, actor=ACTOR, recommendation=a["rec"], section=a["section"],
                recommendation_text=a["rec_text"], scope=a["scope"],
                source_key=f"{a['section']}|{a['rec']}|{index}",
                completed_on=dt.date(2023, 5, 1) if a["status"] == "completed" else None,
                needs_review=bool(a["review_reasons"]), **fields,
            )  # fmt: skip
    return ref


def _import(store: db.Store, path: Path, ref: str) -> ImportReport:
    source, plan = read_plan(path)
    with store.transaction() as s:
        return apply_plan(
            s, ref, plan, title=None, source=path.name, digest=source.sha256, today=TODAY,
            now=NOW + dt.timedelta(days=1), actor=ACTOR, dry_run=False,
        )  # fmt: skip


def _state(store: db.Store, ref: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """Every column of the review's actions and recommendations, and the audit log's length."""
    with store.reading() as s:
        review_id = reviews.get(s, ref).id
        rows = [
            [{c.key: getattr(o, c.key) for c in model.__table__.columns} for o in s.scalars(
                select(model).where(model.review_id == review_id).order_by(model.id)
            )]
            for model in (Action, Recommendation)
        ]  # fmt: skip
        events = s.scalar(select(func.count()).select_from(AuditEvent)) or 0
    return rows[0], rows[1], events


@pytest.mark.slow
@PROPERTY
@given(plan=PLANS, suffix=st.sampled_from([".xlsx", ".csv"]))
def test_any_plan_exported_and_imported_back_is_unchanged(
    store: db.Store, tmp_path: Path, plan: list[dict[str, Any]], suffix: str
) -> None:
    ref = _build(store, plan)
    path = tmp_path / f"{ref}{suffix}"
    with store.reading() as s:
        export_review(s, ref, path)
    _, parsed = read_plan(path)
    for row, action in zip(parsed.rows, _state(store, ref)[0], strict=True):
        # read back as written: the neutraliser's apostrophe is gone again
        assert unquote(row.text) == clean(action["text"])
        assert unquote(row.target) == clean(action["target_text"] or "")
    before = _state(store, ref)
    report = _import(store, path, ref)
    assert (report.count("create"), report.count("update")) == (0, 0)
    after = _state(store, ref)
    assert after[:2] == before[:2]
    assert after[2] == before[2] + 1  # the plan.import record alone


# An edit as a person types it, and the columns of the action it may change.
EDIT_WORDS = st.text(alphabet="abcdefghij XYZ,.'", min_size=1, max_size=12).map(
    lambda t: f"Edited {t}".strip()
)
EDITS: dict[str, tuple[str, ...]] = {
    "text": ("text",),
    "owner": ("owner_text",),
    "milestones": ("milestones",),
    "outcome": ("outcome",),
    "target": ("target_text", "due_date", "due_basis", "due_rule", "review_reasons", "sequence"),
    "agency": ("lead_agency_id", "review_reasons"),
    "status": ("status", "completed_on", "review_reasons", "sequence"),
    "rec_text": (),
    "scope": (),
}
BOOKKEEPING = {"updated_at", "source_file", "source_row", "overrides", "needs_review"}


def _new_value(field: str, words: str, which: int) -> str:
    if field == "target":
        return "March 2031"
    if field == "agency":
        return OTHER_AGENCIES[which % len(OTHER_AGENCIES)]
    if field == "status":
        return STATUSES[which % len(STATUSES)]
    return words


def _edit(path: Path, row: int, field: str, value: str) -> None:
    if path.suffix == ".xlsx":
        _edit_xlsx(path, {(row, field): value})
        return
    rows = _csv_rows(path)
    rows[row + 1][COLUMN[field]] = value
    _save_csv(path, rows)


@pytest.mark.slow
@PROPERTY
@given(
    plan=PLANS,
    suffix=st.sampled_from([".xlsx", ".csv"]),
    field=st.sampled_from(sorted(EDITS)),
    words=EDIT_WORDS,
    which=st.integers(0, 100),
)
def test_one_edited_cell_changes_that_field_alone(
    store: db.Store,
    tmp_path: Path,
    plan: list[dict[str, Any]],
    suffix: str,
    field: str,
    words: str,
    which: int,
) -> None:
    ref = _build(store, plan)
    path = tmp_path / f"{ref}{suffix}"
    with store.reading() as s:
        export_review(s, ref, path)
    row = which % len(plan)
    exported = _sheet_rows(path) if suffix == ".xlsx" else _csv_rows(path)
    old = unquote(str(exported[row + 1][COLUMN[field]] or ""))
    value = _new_value(field, words, which)
    assume(clean(value) != clean(old))
    _edit(path, row, field, value)
    before = _state(store, ref)
    _import(store, path, ref)
    after = _state(store, ref)
    assert after[2] == before[2] + 2  # one change, and the plan.import record
    changed = [
        (i, {k for k in b if b[k] != a[k]} - BOOKKEEPING)
        for i, (b, a) in enumerate(zip(before[0], after[0], strict=True))
        if a != b
    ]
    if field in ("rec_text", "scope"):  # the recommendation's, not the action's
        assert changed == []
        assert sum(b != a for b, a in zip(before[1], after[1], strict=True)) == 1
        return
    assert before[1] == after[1]
    [(index, keys)] = changed
    assert index == row
    assert keys <= set(EDITS[field])
    assert EDITS[field][0] in keys
