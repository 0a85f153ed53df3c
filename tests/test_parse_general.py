"""Plans shaped unlike the three shared ones (issue #13): recommendations with no numbers,
sections named in many ways, owners written beside their organisation, garbled PDF cells and
the review's title from the document. Plans are written here as extracted text (tabs between
cells, a wrapped cell as an extra line) or CSV, the shapes the readers produce."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dhr_workflow.importer import names
from dhr_workflow.importer.parse import ParsedPlan, parse_lines
from dhr_workflow.importer.readers import Line
from tests.conftest import CliFn

TITLE = (
    "Safer Northshire Partnership — Domestic Homicide Review into the death of 'Anna' — Action Plan"
)
HEADER = "Recommendation\tAction\tOwner\tTarget date\tProgress"
FOOTER = "Northshire DHR 'Anna' – Confidential – Not to be Photocopied"

# 13 actions in three agency sections, no number on any recommendation, no Lead column: each
# section's heading names the agency. Page breaks repeat the header and the footer.
UNNUMBERED = "\n".join(
    [
        TITLE,
        "",
        "Single Agency Recommendations – Northshire Constabulary",
        "",
        HEADER,
        "Officers should record the rationale when a DASH risk level is changed.\t"
        "Issue guidance to all response officers\tDI Phil Jones\tMarch 2025\t",
        "\tAudit 20 cases for a recorded rationale\tDS Amy Hall\tJune 2025\t",
        "Training on coercive control should be\tDeliver refresher training\t"
        "Training Manager\tSeptember 2025\t",
        "",
        FOOTER,
        "Page 3 of 9",
        "",
        HEADER,
        "refreshed for all call handlers.\tto every shift\t\t\t",
        "Neighbourhood teams should visit repeat victims within 7 days.\t"
        "Add the visit to the repeat victim procedure\tInspector Kay Lee\t31/07/2025\t",
        "",
        "Agency: Northshire NHS Foundation Trust",
        "",
        HEADER,
        "Emergency Department staff should ask about domestic abuse at triage.\t"
        "Add routine enquiry to the triage form\tHead of Safeguarding\t31/03/2025\t",
        "\tand train triage nurses in its use\t\t\t",
        "Safeguarding referrals should be copied to the patient's GP.\t"
        "Change the referral template\tNamed Nurse\tApril 2025\t",
        "The Trust should audit compliance with its domestic abuse policy.\t"
        "Audit 30 records\tSafeguarding Lead\tMay 2025\t",
        "",
        FOOTER,
        "Page 4 of 9",
        HEADER,
        "\tReport the audit to the Trust Board\tChief Nurse\tJuly 2025\t",
        "Staff should have access to IDVA support on site.\t"
        "Fund a hospital IDVA post\tDirector of Nursing\tDecember 2025\t",
        "",
        "Northshire Borough Council",
        HEADER,
        "Housing officers should complete a DASH on every report of abuse.\t"
        "Brief all housing officers\tHousing Manager\tFebruary 2025\t",
        "Tenancy checks should ask about domestic abuse.\t"
        "Add the questions to pre-tenancy checks\tLettings Manager\tMarch 2025\t",
        "The Council should publish its domestic abuse housing policy.\t"
        "Publish the policy\tHead of Housing\tApril 2025\t",
        "\tTell every tenant about it\tCommunications Lead\tJune 2025\t",
        "",
        FOOTER,
        "Page 5 of 9",
    ]
)
SECTIONS = {
    "Northshire Constabulary": ["NC 1", "NC 1b", "NC 2", "NC 3"],
    "Northshire NHS Foundation Trust": ["NNFT 1", "NNFT 2", "NNFT 3", "NNFT 3b", "NNFT 4"],
    "Northshire Borough Council": ["NBC 1", "NBC 2", "NBC 3", "NBC 3b"],
}


def _text(plan: str) -> list[Line]:
    """Lines as the text reader makes them: one a line, tabs between cells."""
    return [Line(n, tuple(row.split("\t"))) for n, row in enumerate(plan.split("\n"), start=1)]


def _parse(plan: str) -> ParsedPlan:
    return parse_lines(_text(plan))


def _import(cli: CliFn, path: Path, review: str, *extra: str) -> dict[str, Any]:
    result = cli("import", str(path), "--review", review, "--json", *extra)
    assert result.exit_code == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def _actions(cli: CliFn, review: str) -> list[dict[str, Any]]:
    result = cli("actions", "list", "--review", review, "--json")
    assert result.exit_code == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def _agency_names(cli: CliFn) -> list[str]:
    return [a["name"] for a in json.loads(cli("agencies", "list", "--json").stdout)]


# --- structure without numbers ---------------------------------------------------------------


def test_unnumbered_recommendations_in_agency_sections() -> None:
    plan = _parse(UNNUMBERED)
    by_section: dict[str, list[str]] = {}
    for row in plan.rows:
        by_section.setdefault(row.section, []).append(row.display_ref)
    assert by_section == SECTIONS
    assert all(r.lead_agency == r.section for r in plan.rows)
    assert not any(r.numbered for r in plan.rows)
    assert plan.rows[0].key == "Northshire Constabulary|1|1|unnumbered"
    assert plan.ignored == []


def test_unnumbered_wrapped_cells_are_joined() -> None:
    rows = {r.display_ref: r for r in _parse(UNNUMBERED).rows}
    # Split across a page, under the repeated header: lower case, and the cell above unfinished.
    assert rows["NC 2"].rec_text == (
        "Training on coercive control should be refreshed for all call handlers."
    )
    assert rows["NC 2"].text == "Deliver refresher training to every shift"
    assert (
        rows["NNFT 1"].text
        == "Add routine enquiry to the triage form and train triage nurses in its use"
    )
    # A row with only an action, a holder and a date: a further action under the same one.
    assert (rows["NNFT 3b"].text, rows["NNFT 3b"].owner) == (
        "Report the audit to the Trust Board",
        "Chief Nurse",
    )
    assert rows["NNFT 3b"].rec_text == rows["NNFT 3"].rec_text


def test_unnumbered_plan_imports_every_action_with_its_agency(cli: CliFn, tmp_path: Path) -> None:
    path = tmp_path / "anna.txt"
    path.write_text(UNNUMBERED + "\n", encoding="utf-8")
    report = _import(cli, path, "NDHR1")
    assert (report["created"], report["ignored_lines"]) == (13, [])
    rows = _actions(cli, "NDHR1")
    assert len(rows) == 13
    by_ref = {r["ref"]: r for r in rows}
    assert sorted(by_ref) == sorted(ref for refs in SECTIONS.values() for ref in refs)
    for section, refs in SECTIONS.items():
        assert {by_ref[ref]["lead_agency"] for ref in refs} == {section}
    assert not any(r["needs_review"] for r in rows)
    assert by_ref["NC 3"]["due_date"] == "2025-07-31"
    again = _import(cli, path, "NDHR1")
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 13)


UNNUMBERED_CSV = """Recommendation,Action,Owner,Target date
Northshire Constabulary
Officers should record the rationale for DASH changes.,Issue guidance,DI Jones,March 2025
,Audit 20 cases,DS Hall,June 2025
Neighbourhood teams should visit repeat victims.,Add the visit to the procedure,Insp Lee,July 2025
Northshire Borough Council
Housing officers should complete a DASH on every report.,Brief officers,Housing Manager,May 2025
"""


def test_unnumbered_csv_with_section_rows_inside_one_table(cli: CliFn, tmp_path: Path) -> None:
    path = tmp_path / "plan.csv"
    path.write_text(UNNUMBERED_CSV, encoding="utf-8")
    report = _import(cli, path, "CSV1")
    assert [(a["display_ref"], a["lead_agency"]) for a in report["actions"]] == [
        ("NC 1", "Northshire Constabulary"),
        ("NC 1b", "Northshire Constabulary"),
        ("NC 2", "Northshire Constabulary"),
        ("NBC 1", "Northshire Borough Council"),
    ]


@pytest.mark.parametrize(
    ("first", "wrapped", "actions"),
    [
        # After a header repeated by a page break, a lone cell is the one above, continued.
        (
            "Officers should review DASH.",
            "Page 2 of 5\n" + HEADER + "\nRisk assessments must be recorded.\t\t\t\t",
            1,
        ),
        # The other cells on the row are continuations too (lower case, a bracket).
        (
            "Officers should review DASH.",
            "Risk assessments must be recorded.\tto every shift\t(Police)\t\t",
            1,
        ),
        # The cell above is unfinished: the row continues it, and brings a second action.
        (
            "Officers should review DASH when",
            "Risk assessments must be recorded.\tAudit cases\tDS Hall\tJune 2025\t",
            2,
        ),
    ],
)
def test_unnumbered_continuations(first: str, wrapped: str, actions: int) -> None:
    row = f"{first}\tDeliver refresher training\tTraining Manager\tSeptember 2025\t"
    plan = _parse("\n".join(["Agency: Northshire Constabulary", HEADER, row, wrapped]))
    assert [r.display_ref for r in plan.rows] == ["NC 1", "NC 1b"][:actions]
    assert {r.rec_text for r in plan.rows} == {f"{first} Risk assessments must be recorded."}


def test_a_stray_row_above_numbered_ones_is_no_recommendation() -> None:
    plan = _parse(
        "\n".join(
            [
                "Agency: Northshire Constabulary",
                HEADER,
                "Recommendations from the IMR author\t\t\t\t",
                "1) Officers should review DASH.\tTrain staff\tDI Jones\tMay 2025\t",
                "2) Officers should refer to MARAC.\tBrief staff\tDI Jones\tJune 2025\t",
            ]
        )
    )
    assert [r.display_ref for r in plan.rows] == ["NC 1", "NC 2"]
    assert all(r.numbered for r in plan.rows)
    assert plan.ignored == [(3, "a row with no recommendation to belong to")]


def test_heading_that_kept_its_tabs() -> None:
    plan = _parse(
        "\n".join(
            [
                HEADER,
                "Officers should review DASH.\tTrain staff\tDI Jones\tMay 2025\t",
                "Agency: Northshire Probation\t\t\t\t",
                "Probation should share risk information.\tAgree protocol\tACO\tMay 2025\t",
            ]
        )
    )
    assert [(r.display_ref, r.lead_agency) for r in plan.rows] == [
        ("1", None),
        ("NP 1", "Northshire Probation"),
    ]
    assert plan.rows[0].rec_text == "Officers should review DASH."


# --- sections and unique refs ----------------------------------------------------------------

RESTARTING = "\n".join(
    [
        "DHR Case No 2 Action Plan",
        "Overview Report Recommendations",
        "Recommendation\tAction\tLead Agency\tTarget date",
        "1) Partnership to monitor the plan\tReport every six months\tNorthshire CSP\tJune 2025",
        "2) Agencies to train staff on stalking\tDeliver training\tNorthshire Council\tMay 2025",
        "Northshire Constabulary Recommendations",
        "Recommendation\tAction\tAction Holder\tTarget date",
        "1) Officers to record rationale\tIssue guidance\tDI Jones\tMarch 2025",
        "2) Officers to refer to MARAC\tBrief officers\tDI Jones\tApril 2025",
        "Single Agency Recommendations – Northshire Council",
        "Recommendation\tAction\tAction Holder\tTarget date",
        "1) Housing to use DASH\tBrief officers\tHousing Manager\tMarch 2025",
        "2) Housing to share with MARAC\tAgree protocol\tHousing Manager\tApril 2025",
    ]
)


def test_numbering_restarting_in_each_section_gives_unique_refs(cli: CliFn, tmp_path: Path) -> None:
    plan = _parse(RESTARTING)
    assert [(r.section, r.ref, r.display_ref) for r in plan.rows] == [
        ("overview", "1", "1"),
        ("overview", "2", "2"),
        ("Northshire Constabulary", "1", "NC 1"),
        ("Northshire Constabulary", "2", "NC 2"),
        ("Northshire Council", "1", "NC2 1"),
        ("Northshire Council", "2", "NC2 2"),
    ]
    # Identity across re-imports is as before: section, the plan's own ref, the action.
    assert plan.rows[2].key == "Northshire Constabulary|1|1"
    path = tmp_path / "case2.txt"
    path.write_text(RESTARTING + "\n", encoding="utf-8")
    report = _import(cli, path, "DHR2")
    assert [a["display_ref"] for a in report["actions"]] == [r.display_ref for r in plan.rows]
    rows = _actions(cli, "DHR2")
    assert sorted(r["ref"] for r in rows) == ["1", "2", "NC 1", "NC 2", "NC2 1", "NC2 2"]
    assert {r["ref"]: r["recommendation"] for r in rows}["NC2 2"] == "2"


@pytest.mark.parametrize(
    ("heading", "agency"),
    [
        ("Single Agency Recommendations – Northshire Constabulary", "Northshire Constabulary"),
        ("Northshire Constabulary – Single Agency Recommendations", "Northshire Constabulary"),
        ("IMR Recommendations: Northshire NHS Trust", "Northshire NHS Trust"),
        ("Recommendations for Northshire Borough Council", "Northshire Borough Council"),
        ("Agency: Northshire Probation", "Northshire Probation"),
        ("Lead agency – Northshire Probation", "Northshire Probation"),
        ("Northshire Women's Aid Action Plan", "Northshire Women's Aid"),
        ("Northshire Women's Aid", "Northshire Women's Aid"),
        ("Bi- Borough Adult Social Care", "Bi-Borough Adult Social Care"),
    ],
)
def test_section_headings_name_the_agency(heading: str, agency: str) -> None:
    plan = _parse(
        "\n".join(
            [
                heading,
                "Recommendation\tAction\tAction Holder\tTarget date",
                "1) Staff to be trained\tDeliver training\tLead Nurse\tMay 2025",
            ]
        )
    )
    [row] = plan.rows
    assert row.lead_agency == agency


@pytest.mark.parametrize(
    ("sections", "prefixes"),
    [
        (["Northshire Constabulary"], ["NC"]),
        (["West Mercia police", "CRI Pathway to Recovery"], ["WMP", "CPR"]),
        (["Adult Social Care (Somerset County Council)"], ["ASC"]),
        (["Northshire Constabulary", "Northshire Council", "North Coast"], ["NC", "NC2", "NC3"]),
        (["The Safer Northshire Partnership"], ["SNP"]),
        (["(ignored)"], ["S"]),
    ],
)
def test_section_prefixes(sections: list[str], prefixes: list[str]) -> None:
    found = names.unique_prefixes(sections)
    assert [found[s] for s in sections] == prefixes


# --- owner and agency apart ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "owner", "agency"),
    [
        (
            "Principal Social Worker, Bi- Borough Adult Social Care",
            "Principal Social Worker",
            "Bi-Borough Adult Social Care",
        ),
        (
            "Operational Safeguarding Team, Bi- Borough Adult Social Care",
            "Operational Safeguarding Team",
            "Bi-Borough Adult Social Care",
        ),
        ("DI Phil Jones (Avon and Somerset Police)", "DI Phil Jones", "Avon and Somerset Police"),
        (
            "Head of Safeguarding – Northshire NHS Trust",
            "Head of Safeguarding",
            "Northshire NHS Trust",
        ),
        ("Jo Bloggs, Northshire Probation Service", "Jo Bloggs", "Northshire Probation Service"),
        # No organisation: all of it is the owner.
        (
            "Jo Bloggs, Team Manager – jo.bloggs@trust.example is updating this",
            "Jo Bloggs, Team Manager – jo.bloggs@trust.example is updating this",
            None,
        ),
        (
            "George O'Neill (SCC ASC Principal Social Worker)",
            "George O'Neill (SCC ASC Principal Social Worker)",
            None,
        ),
        # Only an organisation, or two of them: left as written.
        (
            "Adult Social Care (Somerset County Council)",
            "Adult Social Care (Somerset County Council)",
            None,
        ),
        (
            "Bi Borough VAWG Strategic Board (VAWG Risk & Review Group)",
            "Bi Borough VAWG Strategic Board (VAWG Risk & Review Group)",
            None,
        ),
        ("Northshire Council, Northshire Police", "Northshire Council, Northshire Police", None),
        ("Avon and Somerset Police", "Avon and Somerset Police", None),
        # A role's title that ends in its body: the title is the owner, the body the agency.
        (
            "Head of Safeguarding for Northshire NHS Trust",
            "Head of Safeguarding for Northshire NHS Trust",
            "Northshire NHS Trust",
        ),
        ("Director of Public Health", "Director of Public Health", "Public Health"),
        ("Head of Housing", "Head of Housing", None),
        ("Jo Bloggs, Head of Housing", "Jo Bloggs, Head of Housing", None),
        ("Centre for Domestic Abuse Services", "Centre for Domestic Abuse Services", None),
    ],
)
def test_split_holder(cell: str, owner: str, agency: str | None) -> None:
    assert names.split_holder(cell) == (owner, agency)


def test_lead_cells_with_a_role_give_the_organisation(cli: CliFn, tmp_path: Path) -> None:
    path = tmp_path / "plan.csv"
    path.write_text(
        "Recommendation,Action,Lead Agency,Target date\n"
        '1,Train staff,"Principal Social Worker, Bi- Borough Adult Social Care",May 2025\n'
        '2,Hold a workshop,"Operational Safeguarding Team, Bi- Borough Adult Social Care",'
        "June 2025\n"
        "3,Brief officers,DI Phil Jones (Avon and Somerset Police),July 2025\n",
        encoding="utf-8",
    )
    _import(cli, path, "C1")
    rows = {r["ref"]: r for r in _actions(cli, "C1")}
    assert [(rows[r]["lead_agency"], rows[r]["owner"]) for r in "123"] == [
        ("Bi-Borough Adult Social Care", "Principal Social Worker"),
        ("Bi-Borough Adult Social Care", "Operational Safeguarding Team"),
        ("Avon and Somerset Police", "DI Phil Jones"),
    ]
    assert sorted(_agency_names(cli)) == [
        "Avon and Somerset Police",
        "Bi-Borough Adult Social Care",
    ]
    # The cell as the plan wrote it still finds the agency (contacts files copy it).
    found = cli(
        "actions",
        "list",
        "--json",
        "--agency",
        "Principal Social Worker, Bi- Borough Adult Social Care",
    )
    assert len(json.loads(found.stdout)) == 2


def test_owner_column_names_the_agency_when_nothing_else_does() -> None:
    plan = _parse(
        "\n".join(
            [
                "Recommendation\tAction\tLead Officer (and Agency)\tTarget date",
                "1) Police to act\tBrief officers\tDI Phil Jones (Avon and Somerset Police)\t"
                "May 2025",
                "2) Health to act\tAudit\tDr Ann Lee\tJune 2025",
                "Agency: Northshire NHS Trust",
                "Recommendation\tAction\tLead Officer (and Agency)\tTarget date",
                "1) Trust to act\tAudit\tMatron, Northshire Hospital\tJune 2025",
            ]
        )
    )
    police, health, trust = plan.rows
    assert (police.lead_agency, police.owner) == ("Avon and Somerset Police", "DI Phil Jones")
    assert (health.lead_agency, health.owner) == (None, "Dr Ann Lee")
    # The section names the agency: the holder's words stay as written.
    assert (trust.lead_agency, trust.owner) == (
        "Northshire NHS Trust",
        "Matron, Northshire Hospital",
    )


@pytest.mark.parametrize(
    ("text", "mended"),
    [
        ("Bi- Borough Adult Social Care", "Bi-Borough Adult Social Care"),
        ("Pre- Tenancy Team", "Pre-Tenancy Team"),
        ("Multi- Agency Safeguarding Hub", "Multi-Agency Safeguarding Hub"),
        ("non- engaging clients", "non-engaging clients"),
        ("Adult Social Care - Westminster", "Adult Social Care - Westminster"),
        ("enagaging with services", "enagaging with services"),
        ("Bi-Borough", "Bi-Borough"),
        ("Northshire Safeguarding- Board", "Northshire Safeguarding- Board"),
    ],
)
def test_pdf_debris_in_names_is_mended(text: str, mended: str) -> None:
    assert names.mend(text) == mended


# --- garbled text is flagged, not believed ---------------------------------------------------

GARBLED = "\n".join(
    [
        "Recommendation\tAction\tLead Agency\tAction Holder\tTarget date",
        "1) Police to act\tBrief officers\t31/01/2013\tDI Jones\t",
        "2) Health to act\tAudit records\tLeaders\tNamed GP\tMay 2014",
        "3) Housing to act\tReview lettings\tople who aban 01/04/2014 Γrust\t\tOn-going",
        "4) Council to act\tPublish policy\tNorthshire Council\tJo Bloggs 31/03/2014\t",
        "5) Trust to act\tTrain staff\tNorthshire NHS Trust\tHead of Safeguarding\tJune 2014",
    ]
)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("31/01/2013", "holds a date"),
        ("ople who aban 01/04/2014 Γrust", "holds a date"),
        ("ople who aban", "starts in the middle of a word or sentence"),
        ("Northshire Γrust", "mixes letters of two alphabets"),
        ("Leaders", "is a single word, not an organisation's name"),
        ("Police March 2014", "holds a date"),
        ("Police", None),
        ("NHS", None),
        ("Barnardo's", None),
        ("SafeLives", None),
        ("Société Générale Trust", None),
        ("Northshire Council", None),
    ],
)
def test_agency_problems(name: str, problem: str | None) -> None:
    assert names.agency_problem(name) == problem


def test_garbled_cells_are_flagged_and_never_agencies(cli: CliFn, tmp_path: Path) -> None:
    path = tmp_path / "garbled.txt"
    path.write_text(GARBLED + "\n", encoding="utf-8")
    report = _import(cli, path, "G1")
    assert report["created"] == 5
    assert sorted(_agency_names(cli)) == ["Northshire Council", "Northshire NHS Trust"]
    rows = {r["ref"]: r for r in _actions(cli, "G1")}
    for ref, cell in (("1", "31/01/2013"), ("2", "Leaders"), ("3", "ople who aban")):
        row = rows[ref]
        assert row["lead_agency"] is None
        assert cell in row["owner"]  # kept verbatim
        assert any(r.startswith("agency:") and cell in r for r in row["review_reasons"])
    # A date in the agency or holder cell is never the target date.
    assert (rows["1"]["due_date"], rows["4"]["due_date"]) == (None, None)
    assert rows["1"]["owner"] == "DI Jones 31/01/2013"
    [text] = [r for r in rows["4"]["review_reasons"] if r.startswith("text:")]
    assert "Jo Bloggs 31/03/2014" in text
    assert rows["5"]["review_reasons"] == []
    again = _import(cli, path, "G1")
    assert (again["updated"], again["unchanged"]) == (0, 5)


def test_agency_chosen_for_a_garbled_cell_survives_reimport(cli: CliFn, tmp_path: Path) -> None:
    path = tmp_path / "garbled.txt"
    path.write_text(GARBLED + "\n", encoding="utf-8")
    _import(cli, path, "G1")
    row = next(r for r in _actions(cli, "G1") if r["ref"] == "3")
    fixed = cli("actions", "update", str(row["id"]), "--agency", "Northshire NHS Trust")
    assert fixed.exit_code == 0, fixed.stderr
    again = _import(cli, path, "G1")
    assert (again["updated"], again["unchanged"]) == (0, 5)
    row = next(r for r in _actions(cli, "G1") if r["ref"] == "3")
    assert row["lead_agency"] == "Northshire NHS Trust"
    assert not any(r.startswith("agency:") for r in row["review_reasons"])


def test_garbled_cell_in_an_agency_section_is_flagged_once(cli: CliFn, tmp_path: Path) -> None:
    path = tmp_path / "section.txt"
    path.write_text(
        "Agency: Northshire Council\n"
        "Recommendation\tAction\tLead Agency\tTarget date\n"
        "1) Housing to act\tReview lettings\t31/01/2013\tMay 2025\n",
        encoding="utf-8",
    )
    _import(cli, path, "S1")
    [row] = _actions(cli, "S1")
    assert row["lead_agency"] == "Northshire Council"
    assert [r[:40] for r in row["review_reasons"]] == ["agency: the lead agency cell '31/01/2013"]
    again = _import(cli, path, "S1")
    assert (again["updated"], again["unchanged"]) == (0, 1)


# --- the review's title ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "title", "partnership"),
    [
        (
            [TITLE],
            "Domestic Homicide Review into the death of 'Anna'",
            "Safer Northshire Partnership",
        ),
        (["DHR Case No 2 Action Plan"], "DHR Case No 2", None),
        (
            [
                "South Northshire Community Safety Partnership",
                "Domestic Homicide Review Case No 2",
                "ACTION PLAN",
            ],
            "Domestic Homicide Review Case No 2",
            "South Northshire Community Safety Partnership",
        ),
        (
            ["Somerset Domestic Homicide Review 012 Action Plan"],
            "Somerset Domestic Homicide Review 012",
            None,
        ),
        (
            ["Domestic Homicide Review Case A in Westminster"],
            "Domestic Homicide Review Case A in Westminster",
            None,
        ),
        (["Action Plan"], None, None),
    ],
)
def test_title_from_the_heading(
    lines: list[str], title: str | None, partnership: str | None
) -> None:
    plan = _parse(
        "\n".join(
            [
                *lines,
                "Recommendation\tAction\tLead Agency\tTarget date",
                "1) Act\tDo\tPolice\tMay 2025",
            ]
        )
    )
    assert (plan.title, plan.partnership) == (title, partnership)


def test_new_review_takes_the_plans_title_and_partnership(cli: CliFn, tmp_path: Path) -> None:
    path = tmp_path / "anna.txt"
    path.write_text(UNNUMBERED + "\n", encoding="utf-8")
    _import(cli, path, "A1")
    path.with_name("case2.txt").write_text(RESTARTING + "\n", encoding="utf-8")
    _import(cli, path.with_name("case2.txt"), "B2", "--title", "Given title")
    reviews = {r["ref"]: r for r in json.loads(cli("reviews", "list", "--json").stdout)}
    assert (reviews["A1"]["title"], reviews["A1"]["partnership"]) == (
        "Domestic Homicide Review into the death of 'Anna'",
        "Safer Northshire Partnership",
    )
    assert reviews["B2"]["title"] == "Given title"


# --- the same plan in every format -----------------------------------------------------------


def _docx(plan: str, path: Path) -> None:
    """The plan as a Word document: single-cell lines as paragraphs, runs of table lines as
    tables (a new table after each paragraph, as a page break splits them in converted files)."""
    import docx

    document = docx.Document()
    table = None
    for line in plan.split("\n"):
        cells = line.split("\t")
        if len(cells) == 1:
            document.add_paragraph(line)
            table = None
            continue
        if table is None:
            table = document.add_table(rows=0, cols=len(cells))
        row = table.add_row().cells
        for cell, text in zip(row, cells, strict=True):
            cell.text = text
    document.save(str(path))


def _xlsx(plan: str, path: Path) -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for line in plan.split("\n"):
        sheet.append(line.split("\t"))
    book.save(path)


@pytest.mark.parametrize("fmt", ["docx", "xlsx"])
def test_unnumbered_plan_reads_the_same_in_word_and_excel(
    cli: CliFn, tmp_path: Path, fmt: str
) -> None:
    text = tmp_path / "anna.txt"
    text.write_text(UNNUMBERED + "\n", encoding="utf-8")
    other = tmp_path / f"anna.{fmt}"
    (_docx if fmt == "docx" else _xlsx)(UNNUMBERED, other)
    assert _import(cli, other, "OTHER")["created"] == 13
    assert _import(cli, text, "TEXT")["created"] == 13
    fields = (
        "ref",
        "lead_agency",
        "owner",
        "text",
        "recommendation_text",
        "due_date",
        "review_reasons",
    )

    def comparable(review: str) -> list[tuple[Any, ...]]:
        return [tuple(a.get(f) for f in fields) for a in _actions(cli, review)]

    assert comparable("OTHER") == comparable("TEXT")
