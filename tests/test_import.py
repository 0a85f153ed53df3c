"""Importing the three real published plans (and the same plans as CSV, XLSX and DOCX)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import pytest
from docx import Document
from freezegun import freeze_time
from openpyxl import Workbook

from dhr_workflow.importer.readers import read_source
from tests.conftest import CliFn

PLANS = Path(__file__).parent / "data" / "plans"
WESTMINSTER = PLANS / "westminster-case-a.txt"
WORCS = PLANS / "south-worcestershire-case-2.txt"
SOMERSET = PLANS / "somerset-dhr-012.txt"


def _actions(cli: CliFn, review: str) -> list[dict[str, Any]]:
    result = cli("actions", "list", "--review", review, "--json")
    assert result.exit_code == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def _import(cli: CliFn, path: Path, review: str, *extra: str) -> dict[str, Any]:
    result = cli("import", str(path), "--review", review, "--json", *extra)
    assert result.exit_code == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def _audit_kinds(cli: CliFn) -> list[str]:
    return [e["kind"] for e in json.loads(cli("audit", "list", "--json").stdout)]


# --- Westminster -----------------------------------------------------------------------------


def test_westminster(cli: CliFn) -> None:
    report = _import(cli, WESTMINSTER, "WCA")
    assert (report["created"], report["review_created"]) == (29, True)
    rows = _actions(cli, "WCA")
    assert len(rows) == 29
    by_ref = {r["ref"]: r for r in rows}
    completed = [r["ref"] for r in rows if r["status"] == "completed"]
    hmpps = [str(n) for n in range(8, 17)] + ["16b", "17", "18"]
    assert completed == [*hmpps, "19", "20", "28"]
    assert {by_ref[r]["lead_agency"] for r in hmpps} == {"HM Prison & Probation"}
    assert {by_ref[r]["lead_agency"] for r in ("19", "20")} == {"Turning Point"}
    assert by_ref["28"]["completed_on"] == "2023-09-27"
    for ref in ("24", "25", "26", "27"):
        assert by_ref[ref]["due_date"] == "2023-11-30"
        assert by_ref[ref]["target_text"] == "30 th November 2023"
    assert (by_ref["2"]["due_date"], by_ref["2"]["due_basis"]) == ("2023-12-31", "month_end")
    assert by_ref["3"]["due_date"] == "2024-05-31"
    assert by_ref["22"]["due_date"] == "2025-04-30"
    assert by_ref["22"]["target_text"] == (
        "April 2025 is the renewal date. Subject to change if wider Westminster Services are "
        "incorporated"
    )
    assert by_ref["1"]["due_basis"] == "recurring"
    assert by_ref["1"]["target_text"] == "On-going"
    assert "recurs every 6 months" in by_ref["1"]["review_reasons"][0]
    # The unnumbered row under 16 brings its own holder and date: a second action.
    assert by_ref["16b"]["recommendation"] == "16"
    assert by_ref["16b"]["text"].startswith("OM2 to complete OASys assessments")
    # Row 21's date slipped into the milestones column: flagged, not guessed.
    assert by_ref["21"]["due_date"] is None
    assert "milestones column reads 'December 2024'" in by_ref["21"]["review_reasons"][0]
    assert by_ref["1"]["scope"] == "Local"


def test_recurring_row_follows_the_plan_agreed_date(cli: CliFn) -> None:
    _import(cli, WESTMINSTER, "WCA")
    with freeze_time("2024-01-15 10:00:00", real_asyncio=True):
        result = cli("reviews", "set", "WCA", "--plan-agreed", "2023-06-01")
    assert "1 due date(s) followed" in result.stdout
    row = next(r for r in _actions(cli, "WCA") if r["ref"] == "1")
    assert (row["due_date"], row["needs_review"]) == ("2024-06-01", False)


def test_same_agency_from_different_spellings_is_one(cli: CliFn) -> None:
    _import(cli, WESTMINSTER, "WCA")
    rows = _actions(cli, "WCA")
    board = {r["ref"]: r["lead_agency"] for r in rows if r["ref"] in ("2", "3", "5", "6")}
    assert set(board.values()) == {"Bi Borough VAWG Strategic Board"}


# --- South Worcestershire --------------------------------------------------------------------


def test_south_worcestershire(cli: CliFn) -> None:
    report = _import(cli, WORCS, "SW2")
    sections: dict[str, list[str]] = {}
    for a in report["actions"]:
        sections.setdefault(a["section"], []).append(a["ref"])
    assert sections == {
        "overview": [str(n) for n in range(1, 13)],
        "West Mercia police": [str(n) for n in range(1, 7)],
        "CRI Pathway to Recovery": ["1", "2"],
    }
    agency = {(a["section"], a["ref"]): a["lead_agency"] for a in report["actions"]}
    assert {agency[("West Mercia police", str(n))] for n in range(1, 7)} == {"West Mercia Police"}
    assert {agency[("CRI Pathway to Recovery", r)] for r in "12"} == {"CRI Pathway to Recovery"}
    assert agency[("overview", "1")] == "West Mercia Police"
    assert agency[("overview", "4")] == "Worcestershire Acute Hospital Trust"
    assert agency[("overview", "7")] == "West Mercia Women's Aid"
    assert agency[("overview", "9")] == "Worcester Community Housing"

    rows = _actions(cli, "SW2")
    autumn = [r for r in rows if r["target_text"] == "Autumn 2013"]
    assert len(autumn) == 3
    assert {(r["due_date"], r["due_basis"]) for r in autumn} == {("2013-11-30", "season")}
    july = next(r for r in rows if r["target_text"] == "1 st July and ongoing")
    assert july["due_date"] is None
    assert july["needs_review"]
    assert "has no year" in july["review_reasons"][0]
    # Two agencies spelled two ways are still two rows' worth of one agency.
    names = json.loads(cli("actions", "list", "--json", "--agency", "west mercia police").stdout)
    assert len(names) == 8


def test_no_footer_or_html_in_any_field(cli: CliFn) -> None:
    _import(cli, WORCS, "SW2")
    html = re.compile(r"<\s*/?\s*[a-zA-Z][^>]*>")
    for row in _actions(cli, "SW2"):
        for key, value in row.items():
            text = json.dumps(value)
            assert "Confidential" not in text, (key, row["ref"])
            assert "Photocopied" not in text, (key, row["ref"])
            assert not html.search(text), (key, row["ref"], text)


def test_continuation_rows_are_joined(cli: CliFn) -> None:
    _import(cli, WORCS, "SW2")
    rows = {(r["recommendation"], r["lead_agency"]): r for r in _actions(cli, "SW2")}
    rec1 = rows[("1", "West Mercia Police")]
    assert "Update Feb 2014" in rec1["outcome"]  # carried over a page break
    cri = rows[("1", "CRI Pathway to Recovery")]
    assert "that disengage with the Pathways service" in cri["text"]
    assert "• MAPPAs lists currently available and being used." in cri["outcome"].splitlines()


# --- Somerset --------------------------------------------------------------------------------

SOMERSET_SECTIONS = {
    "Avon and Somerset Police": 5,
    "Children's Social Care": 4,
    "Somerset Safeguarding Children Board (LSCB)": 2,
    "Adult Social Care (Somerset County Council)": 7,
    "Somerset Partnership NHS Trust": 6,
    "Somerset Clinical Commissioning Group": 5,
    "Bournemouth Churches Housing Association (to include SIDAS (Knightstone HA))": 8,
    "Mendip District Council Housing Department": 4,
    "Curo Group": 2,
    "Safer Somerset Partnership": 1,
    "Yeovil District Hospital NHS Foundation Trust": 1,
}


def test_somerset_sections_carry_their_agency(cli: CliFn) -> None:
    report = _import(cli, SOMERSET, "SOM12")
    counts: dict[str, int] = {}
    for a in report["actions"]:
        assert a["lead_agency"] == a["section"]
        counts[a["section"]] = counts.get(a["section"], 0) + 1
    assert counts == SOMERSET_SECTIONS
    # The contents list (lines 9-21) imports nothing.
    assert min(a["line"] for a in report["actions"]) == 26


def test_somerset_dates(cli: CliFn) -> None:
    report = _import(cli, SOMERSET, "SOM12")
    due = {(a["section"], a["ref"]): a["due_date"] for a in report["actions"]}
    assert due[("Children's Social Care", "1")] == "2016-12-31"
    bcha = "Bournemouth Churches Housing Association (to include SIDAS (Knightstone HA))"
    assert due[(bcha, "1")] == "2016-06-30"
    assert due[(bcha, "2")] == "2016-01-31"
    assert due[("Somerset Clinical Commissioning Group", "4")] == "2016-02-29"
    assert due[("Yeovil District Hospital NHS Foundation Trust", "1")] == "2015-11-30"


def test_somerset_relative_dates_follow_publication(cli: CliFn) -> None:
    _import(cli, SOMERSET, "SOM12")
    following = [
        r
        for r in _actions(cli, "SOM12")
        if re.search(r"months? (following|post) publication", r["target_text"] or "")
    ]
    assert len(following) >= 8
    for row in following:
        assert (row["due_date"], row["due_basis"], row["needs_review"]) == (None, "relative", True)
        assert "publication date, which is not set yet" in row["review_reasons"][0]
    assert cli("reviews", "set", "SOM12", "--published", "2016-03-15").exit_code == 0
    after = {r["id"]: r for r in _actions(cli, "SOM12")}
    for row in following:
        now = after[row["id"]]
        assert (now["due_date"], now["needs_review"]) == ("2016-06-15", False)
    curo = next(
        r for r in after.values() if r["target_text"] == "1 month from date of report publication"
    )
    assert curo["due_date"] == "2016-04-15"
    kinds = _audit_kinds(cli)
    assert kinds.count("action.due_recompute") >= len(following)
    # The DHR-completion ones still wait for their own anchor.
    police = [r for r in after.values() if r["lead_agency"] == "Avon and Somerset Police"]
    assert all(r["due_date"] is None and r["needs_review"] for r in police)


# --- idempotence and revisions ---------------------------------------------------------------


@pytest.mark.parametrize("plan", [WESTMINSTER, WORCS, SOMERSET], ids=lambda p: p.stem)
def test_importing_twice_changes_nothing(cli: CliFn, plan: Path) -> None:
    first = _import(cli, plan, "R1")
    before = (_actions(cli, "R1"), _audit_kinds(cli))
    second = _import(cli, plan, "R1")
    assert (second["created"], second["updated"]) == (0, 0)
    assert second["unchanged"] == first["created"]
    after = (_actions(cli, "R1"), _audit_kinds(cli))
    assert after[0] == before[0]
    assert after[1][: len(before[1])] == before[1]
    assert "action.create" not in after[1][len(before[1]) :]


def test_revised_plan_updates_in_place(cli: CliFn, tmp_path: Path) -> None:
    _import(cli, WESTMINSTER, "WCA")
    revised = tmp_path / "westminster-revised.txt"
    text = WESTMINSTER.read_text(encoding="utf-8").splitlines()
    text[6] = text[6].replace("\tDecember 2023\t", "\tMarch 2024\t")  # row 2's target
    text[12] = text[12].replace("Create publicity strategy", "Create and publish a strategy")
    revised.write_text("\n".join(text) + "\n", encoding="utf-8")
    report = _import(cli, revised, "WCA")
    assert (report["created"], report["updated"], report["unchanged"]) == (0, 2, 27)
    rows = {r["ref"]: r for r in _actions(cli, "WCA")}
    assert len(rows) == 29
    assert (rows["2"]["due_date"], rows["2"]["target_text"]) == ("2024-03-31", "March 2024")
    assert rows["6"]["text"].startswith("Create and publish a strategy")
    events = json.loads(cli("audit", "list", "--json").stdout)
    updates = [e for e in events if e["kind"] == "action.import_update"]
    assert len(updates) == 2
    row2 = next(e for e in updates if "due_date" in e["data"]["after"])
    assert row2["data"]["before"]["due_date"] == "2023-12-31"
    assert row2["data"]["after"]["due_date"] == "2024-03-31"


def test_coordinators_due_date_survives_reimport(cli: CliFn) -> None:
    _import(cli, WESTMINSTER, "WCA")
    row3 = next(r for r in _actions(cli, "WCA") if r["ref"] == "3")
    cli("actions", "update", str(row3["id"]), "--due", "2024-07-31", "--reason", "Board agreed")
    report = _import(cli, WESTMINSTER, "WCA")
    assert report["updated"] == 0
    row3 = next(r for r in _actions(cli, "WCA") if r["ref"] == "3")
    assert row3["due_date"] == "2024-07-31"


# --- dry run, atomicity, bad input -----------------------------------------------------------


def test_dry_run_writes_nothing(cli: CliFn) -> None:
    kinds = _audit_kinds(cli)
    result = cli("import", str(SOMERSET), "--review", "SOM12", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("DRY RUN, nothing written: somerset-dhr-012.txt (text)")
    assert "45 actions would be created" in result.stdout
    where = "line 71, Adult Social Care (Somerset County Council) rec ASC 2"
    assert f"{where}: due: could not read" in result.stdout
    assert _audit_kinds(cli) == kinds
    assert json.loads(cli("reviews", "list", "--json").stdout) == []
    report = _import(cli, SOMERSET, "SOM12", "--dry-run")
    assert report["dry_run"] is True
    assert len(report["needs_review"]) == 25
    assert {
        "ref": "2",
        "display_ref": "ASC 2",
        "section": "Adult Social Care (Somerset County Council)",
        "line": 71,
        "reasons": ["due: could not read a date from 'following review publication'"],
    } in (report["needs_review"])


def test_failed_import_leaves_store_as_it_was(cli: CliFn, monkeypatch: pytest.MonkeyPatch) -> None:
    from dhr_workflow.importer import apply

    real_write, calls = apply._write, []

    def failing_write(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 10:
            raise RuntimeError("disk full")
        real_write(*args, **kwargs)

    monkeypatch.setattr(apply, "_write", failing_write)
    with pytest.raises(RuntimeError, match="disk full"):
        cli("import", str(WESTMINSTER), "--review", "WCA")
    assert json.loads(cli("reviews", "list", "--json").stdout) == []
    assert json.loads(cli("actions", "list", "--json").stdout) == []
    assert _audit_kinds(cli) == []


def _error(result: Any) -> str:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return str(lines[0])


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.txt", b"", "empty.txt: the file is empty"),
        ("blank.txt", b"  \n\n\t\n", "blank.txt: the file is empty"),
        ("photo.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01", "a binary file, not a plan"),
        (
            "notes.txt",
            b"Minutes of the meeting\nNothing tabular here.\n",
            "no table with a recognisable header",
        ),
        ("broken.docx", b"PK\x03\x04garbage", "a damaged ZIP/Office file"),
        (
            "headers.csv",
            b"Recommendation,Action,Lead Agency,Target date\n",
            "found the table header but no actions under it",
        ),
    ],
)
def test_bad_files_are_one_line_and_write_nothing(
    cli: CliFn, tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    assert message in _error(cli("import", str(path), "--review", "R1"))
    assert json.loads(cli("reviews", "list", "--json").stdout) == []


def test_other_bad_arguments(cli: CliFn, tmp_path: Path) -> None:
    assert "cannot read file" in _error(cli("import", str(tmp_path / "nope.txt"), "--review", "R"))
    assert "is a directory" in _error(cli("import", str(tmp_path), "--review", "R"))
    fmt = _error(cli("import", str(WESTMINSTER), "--review", "R", "--format", "odt"))
    assert "'odt' is not one of 'auto', 'text', 'csv', 'xlsx', 'docx', 'pdf'" in fmt
    forced_pdf = _error(cli("import", str(WESTMINSTER), "--review", "R", "--format", "pdf"))
    assert "westminster-case-a.txt: not a readable PDF" in forced_pdf
    forced = _error(
        cli("import", str(_docx(tmp_path, WESTMINSTER)), "--review", "R", "--format", "text")
    )
    assert "a binary file, not text" in forced


# --- the same plan as CSV, XLSX and DOCX -----------------------------------------------------


def _cells(plan: Path) -> list[tuple[str, ...]]:
    return [line.cells for line in read_source(plan, "text").lines]


def _csv(tmp_path: Path, plan: Path) -> Path:
    path = tmp_path / f"{plan.stem}.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(_cells(plan))
    return path


def _xlsx(tmp_path: Path, plan: Path) -> Path:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for cells in _cells(plan):
        sheet.append(list(cells))
    path = tmp_path / f"{plan.stem}.xlsx"
    book.save(path)
    return path


def _docx(tmp_path: Path, plan: Path) -> Path:
    """Single cells become paragraphs (headings, footers); runs of rows become tables."""
    document = Document()
    table = None
    for cells in _cells(plan):
        if len(cells) == 1:
            table = None
            if cells[0].strip():
                document.add_paragraph(cells[0])
            continue
        if table is None or len(table.columns) != len(cells):
            table = document.add_table(rows=0, cols=len(cells))
        for cell, text in zip(table.add_row().cells, cells, strict=True):
            cell.text = text
    path = tmp_path / f"{plan.stem}.docx"
    document.save(str(path))
    return path


def _comparable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in ("id", "review")} for r in rows]


@pytest.mark.parametrize("plan", [WESTMINSTER, SOMERSET, WORCS], ids=lambda p: p.stem)
@pytest.mark.parametrize("build", [_csv, _xlsx, _docx], ids=["csv", "xlsx", "docx"])
def test_same_plan_in_other_formats(cli: CliFn, tmp_path: Path, plan: Path, build: Any) -> None:
    _import(cli, plan, "TEXT")
    other = build(tmp_path, plan)
    report = _import(cli, other, "OTHER")
    assert report["format"] == other.suffix.lstrip(".")
    assert _comparable(_actions(cli, "OTHER")) == _comparable(_actions(cli, "TEXT"))


def test_documented_template_imports(cli: CliFn) -> None:
    template = Path(__file__).parent.parent / "docs" / "plan-template.csv"
    result = cli("import", str(template), "--review", "TPL")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""  # no progress bar when not at a terminal
    rows = {(r["lead_agency"], r["recommendation"]): r for r in _actions(cli, "TPL")}
    assert len(rows) == 4
    police = rows[("West Mercia Police", "1")]
    assert (police["status"], police["completed_on"], police["due_date"]) == (
        "completed",
        "2024-11-29",
        "2024-09-30",
    )
    assert rows[("Bi Borough VAWG Strategic Board", "2")]["due_date"] == "2023-12-31"
    assert rows[("Safer Westminster Partnership", "1")]["owner"] == "Cat Coordinator"


# --- what real spreadsheets and documents do ---------------------------------------------------


def test_xlsx_cells_as_people_see_them(cli: CliFn, tmp_path: Path) -> None:
    import datetime as dt

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["Ref", "Recommendation", "Action", "Lead Agency", "Target date"])
    sheet.append([1.1, "Police to act", "Brief staff", "Police", dt.datetime(2024, 3, 1)])
    sheet.append([1.10, "Police to audit", "Audit", "Police", dt.datetime(2024, 5, 15)])
    sheet["A3"].number_format = "0.00"
    sheet["E2"].number_format = "mmm-yy"  # shows "Mar-24": the month, so its last day
    key = book.create_sheet("Key")
    key.append(["Recommendation", "Action", "Target date"])
    key.append(["R", "red", "overdue"])
    path = tmp_path / "plan.xlsx"
    book.save(path)
    rows = {r["recommendation"]: r for r in (_import(cli, path, "X1") and _actions(cli, "X1"))}
    assert set(rows) == {"1.1", "1.10"}  # nothing from the Key sheet
    assert (rows["1.1"]["due_date"], rows["1.1"]["target_text"]) == ("2024-03-31", "March 2024")
    assert rows["1.10"]["due_date"] == "2024-05-15"


def test_docx_merged_cells_keep_columns(cli: CliFn, tmp_path: Path) -> None:
    document = Document()
    table = document.add_table(rows=2, cols=5)
    for cell, text in zip(
        table.rows[0].cells,
        ["Recommendation", "Action", "Lead Agency", "Target date", "Status"],
        strict=True,
    ):
        cell.text = text
    row = table.rows[1].cells
    row[0].text = "1) Police to act"
    merged = row[1].merge(row[2])
    merged.text = "Brief staff (police lead)"
    row[3].text = "March 2025"
    row[4].text = "Not started"
    path = tmp_path / "merged.docx"
    document.save(str(path))
    [action] = _import(cli, path, "D1") and _actions(cli, "D1")
    assert (action["due_date"], action["outcome"]) == ("2025-03-31", "Not started")


def test_utf16_text_and_unknown_extensions(cli: CliFn, tmp_path: Path) -> None:
    utf16 = tmp_path / "unicode.txt"
    utf16.write_bytes(
        "Recommendation\tAction\tLead Agency\tTarget date\n"
        "1) Act\tDo it\tPolice\tMay 2024\n".encode("utf-16")
    )
    assert _import(cli, utf16, "U1")["created"] == 1
    script = tmp_path / "mkplan.py"
    script.write_text("rows = ['Recommendation,Action,Lead Agency,Target date']\n")
    assert ".py is not a plan format" in _error(cli("import", str(script), "--review", "U2"))


def test_future_completion_date_is_flagged(cli: CliFn, tmp_path: Path) -> None:
    path = tmp_path / "plan.csv"
    path.write_text(
        "Recommendation,Action,Lead Agency,Target date,Status\n"
        "1,Act,Police,May 2024,Completed; next review due 01/01/2999\n"
    )
    [action] = _import(cli, path, "F1") and _actions(cli, "F1")
    assert (action["status"], action["completed_on"]) == ("completed", None)
    assert "completion date 2999-01-01 is in the future" in action["review_reasons"][0]


def test_revised_text_of_a_completed_action_is_flagged(cli: CliFn, tmp_path: Path) -> None:
    path = tmp_path / "plan.csv"
    path.write_text(
        "Recommendation,Action,Lead Agency,Target date,Status\n"
        "1,Brief staff,Police,May 2024,Completed\n"
        ",Audit files,Police,June 2024,\n"
    )
    _import(cli, path, "V1")
    path.write_text(
        "Recommendation,Action,Lead Agency,Target date,Status\n1,Audit files,Police,June 2024,\n"
    )
    report = _import(cli, path, "V1")
    assert report["not_in_file"]  # the old second action is listed, not deleted
    first = next(r for r in _actions(cli, "V1") if r["ref"] == "1")
    assert first["status"] == "completed"
    assert "completed action changed; check it" in " ".join(first["review_reasons"])
    again = _import(cli, path, "V1")
    assert again["updated"] == 0
    first = next(r for r in _actions(cli, "V1") if r["ref"] == "1")
    assert first["needs_review"]  # stays flagged until someone looks


def test_too_long_agency_names_the_line(cli: CliFn, tmp_path: Path) -> None:
    path = tmp_path / "plan.csv"
    path.write_text(f"Recommendation,Action,Lead Agency,Target date\n1,Act,{'A' * 400},May 2024\n")
    line = _error(cli("import", str(path), "--review", "L1"))
    assert "plan.csv:2: agency name" in line
    assert "longer than 300 characters" in line
