"""The plan table parser on small, synthetic tables: one behaviour per test."""

from __future__ import annotations

import pytest

from dhr_workflow.importer.parse import column_roles, parse_lines
from dhr_workflow.importer.readers import Line
from dhr_workflow.importer.text import clean


def _lines(*rows: str) -> list[Line]:
    return [Line(n, tuple(row.split("|"))) for n, row in enumerate(rows, start=1)]


@pytest.mark.parametrize(
    ("header", "roles"),
    [
        (
            "#|Recommendations|Scope|Action to take|Lead Agency|Key milestones|Target date|"
            "Completion Date and Outcome",
            [
                "ref",
                "recommendation",
                "scope",
                "action",
                "agency",
                "milestones",
                "target",
                "outcome",
            ],
        ),
        (
            "Recommendation|Action Required by Agency|Implementation Lead|"
            "Target date for Completion|Summary of Action Taken & Date",
            ["recommendation", "action", "owner", "target", "outcome"],
        ),
        (
            "Recommendation|Scope|Action Required|Action Holder|Key Milestones|Target Date|"
            "Date of Completion and Outcome",
            ["recommendation", "scope", "action", "owner", "milestones", "target", "outcome"],
        ),
        (
            "Ref|Recommendation|Action|Lead Officer and Agency|Deadline|Outcome/Progress",
            ["ref", "recommendation", "action", "owner", "target", "outcome"],
        ),
        (
            "Section|Recommendation|Action|Lead agency|Owner|Due date|Status",
            ["section", "recommendation", "action", "agency", "owner", "target", "outcome"],
        ),
    ],
)
def test_header_synonyms(header: str, roles: list[str]) -> None:
    found = column_roles(header.split("|"))
    assert found is not None
    assert list(found.values()) == roles


@pytest.mark.parametrize("line", ["Name|Email|Phone", "Recommendation|Notes", "Page 3|of 12"])
def test_not_headers(line: str) -> None:
    assert column_roles(line.split("|")) is None


@pytest.mark.parametrize(
    ("cell", "ref", "text"),
    [
        ("Recommendation No 3 Police to review", "3", "Police to review"),
        ("Recommendation 4: Health to audit", "4", "Health to audit"),
        ("3) The police should", "3", "The police should"),
        ("1.1 Ensure that", "1.1", "Ensure that"),
        ("<p>2) Where DASH</p>", "2", "Where DASH"),
        ("12. Partnership to", "12", "Partnership to"),
    ],
)
def test_recommendation_refs_as_written(cell: str, ref: str, text: str) -> None:
    plan = parse_lines(
        _lines("Recommendation|Action|Lead Agency|Target date", f"{cell}|Do it|Police|May 2024")
    )
    [row] = plan.rows
    assert (row.rec_ref, row.rec_text) == (ref, text)


def test_continuations_second_actions_debris_and_footers() -> None:
    plan = parse_lines(
        _lines(
            "Contents",
            "Police|2",
            "Police",
            "Recommendation|Action|Action Holder|Target Date|Outcome",
            "1) Police to brief|Brief all|DI Jones|Within 3 months of|",
            "officers on DASH|staff|||",
            "Plan – Confidential – Not to be Photocopied",
            "Recommendation|Action|Action Holder|Target Date|Outcome",
            "rationale|and managers||the completion of the DHR|",
            "|Second task|Commissioners|28 th February 2016|Complete",
            "---|--|---|--|--",
            "2 cases per month|||||",
            "Health",
            "Recommendation|Action|Action Holder|Target Date|Outcome",
            "1) Health to audit|Audit|Named GP|May 2016|",
        )
    )
    assert [(r.section, r.ref) for r in plan.rows] == [
        ("Police", "1"),
        ("Police", "1b"),
        ("Health", "1"),
    ]
    first, second, health = plan.rows
    assert first.text == "Brief all staff and managers"
    assert first.target == "Within 3 months of the completion of the DHR"
    assert (second.text, second.owner, second.outcome) == (
        "Second task",
        "Commissioners",
        "Complete",
    )
    assert (
        second.rec_text
        == first.rec_text
        == ("Police to brief officers on DASH rationale 2 cases per month")
    )
    assert (health.lead_agency, first.lead_agency) == ("Health", "Police")
    assert not any(
        "Confidential" in v for r in plan.rows for v in vars(r).values() if isinstance(v, str)
    )


def test_wrapped_holder_is_a_continuation_not_a_second_action() -> None:
    plan = parse_lines(
        _lines(
            "Recommendation|Action Holder|Target Date",
            "6) In safeguarding|George O'Neill|3 months following review",
            "cases|(SCC ASC Principal Social Worker)|publication",
        )
    )
    [row] = plan.rows
    assert row.owner == "George O'Neill (SCC ASC Principal Social Worker)"
    assert row.target == "3 months following review publication"


def test_rows_before_any_header_and_orphans_are_not_actions() -> None:
    plan = parse_lines(
        _lines(
            "1) A numbered line in the introduction|x|y",
            "Recommendation|Action|Lead Agency|Target date",
            "|continuation with nothing above it||",
        )
    )
    assert plan.rows == []
    assert plan.ignored == [(3, "a row with no recommendation to belong to")]


def test_agency_named_in_the_action_column() -> None:
    plan = parse_lines(
        _lines(
            "Recommendation|Action Required by Agency|Implementation Lead|Target date",
            "Recommendation No 1 Police to act|West Mercia Police|Det Supt|July 2014",
            "Recommendation No 2 Health to act|1. Audit practices. 2. Train leads.|GP|May 2014",
        )
    )
    one, two = plan.rows
    assert (one.lead_agency, one.text) == ("West Mercia Police", "")
    assert (two.lead_agency, two.text) == (None, "1. Audit practices. 2. Train leads.")


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>One</p> <p>Two</p>", "One\nTwo"),
        ("<ul><li>First</li><li>Second &amp; third</li></ul>", "• First\n• Second & third"),
        ('<ul style="list-style-type: none"> • MAPPAs lists • Update', "• MAPPAs lists\n• Update"),
        ("<p>unclosed <b>bold", "unclosed bold"),
        ("plain   text\u00a0here", "plain text here"),
        ("<script>alert(1)</script>ok", "ok"),
        ("Contact <jane@nhs.net> if risk is <high>", "Contact <jane@nhs.net> if risk is <high>"),
    ],
)
def test_html_to_text(html: str, text: str) -> None:
    assert clean(html) == text


@pytest.mark.parametrize(
    ("header", "roles"),
    [
        (
            "Rec|Recommendation|Action|Lead Agency/Organisation|Deadline date|RAG Status",
            ["ref", "recommendation", "action", "agency", "target", "outcome"],
        ),
        (
            "Recommendation|Action|Responsible agency|Target date|Revised target date|"
            "Date completed",
            ["recommendation", "action", "agency", "target", "outcome"],
        ),
        (
            "Recommendation|Desired outcome|Action|Target date|Status",
            ["recommendation", "milestones", "action", "target", "outcome"],
        ),
    ],
)
def test_more_header_synonyms(header: str, roles: list[str]) -> None:
    found = column_roles(header.split("|"))
    assert found is not None
    assert sorted(found.values()) == sorted(roles)


def test_revised_target_column_wins() -> None:
    found = column_roles(["Recommendation", "Action", "Target date", "Revised target date"])
    assert found == {0: "recommendation", 1: "action", 3: "target"}


@pytest.mark.parametrize("ref", ["Recommendation No 1", "(1)", "Rec 1", "R1", "1", "1)"])
def test_worded_refs_in_a_ref_column(ref: str) -> None:
    plan = parse_lines(
        _lines(
            "Ref|Recommendation|Action|Lead Agency|Target date",
            f"{ref}|Police to act|Do it|Police|May 2024",
        )
    )
    assert [r.rec_ref for r in plan.rows] == ["1"]


def test_repeated_agency_heading_is_a_section_not_furniture() -> None:
    plan = parse_lines(
        _lines(
            "Agency: Avon and Somerset Police",
            "Recommendation|Action|Action Holder|Target date",
            "1) Police to act|Do it|DI Jones|May 2024",
            "Agency: Avon and Somerset Police",
            "Recommendation|Action|Action Holder|Target date",
            "2) Police to act again|Do more|DI Jones|June 2024",
            "Agency: NHS Somerset",
            "Recommendation|Action|Action Holder|Target date",
            "1) Health to act|Audit|Named GP|July 2024",
        )
    )
    assert [(r.lead_agency, r.ref) for r in plan.rows] == [
        ("Avon and Somerset Police", "1"),
        ("Avon and Somerset Police", "2"),
        ("NHS Somerset", "1"),
    ]


def test_heading_ending_in_recommendations_names_the_agency() -> None:
    plan = parse_lines(
        _lines(
            "Avon and Somerset Police Recommendations",
            "Recommendation|Action|Action Holder|Target date",
            "1) Police to act|Do it|DI Jones|May 2024",
        )
    )
    assert plan.rows[0].lead_agency == "Avon and Somerset Police"


def test_section_rows_inside_one_spreadsheet_table() -> None:
    plan = parse_lines(
        _lines(
            "Recommendation|Action|Owner|Target date",
            "Police",
            "1|Brief officers|DI Jones|May 2024",
            "2|Audit DASH|DI Jones|June 2024",
            "Health",
            "1|Audit GP practice|Named GP|July 2024",
        )
    )
    assert [(r.section, r.ref, r.rec_text) for r in plan.rows] == [
        ("Police", "1", ""),
        ("Police", "2", ""),
        ("Health", "1", ""),
    ]


@pytest.mark.parametrize(
    ("cell", "section", "agency"),
    [
        ("Agency: West Mercia Police", "West Mercia Police", "West Mercia Police"),
        ("Overview Report", "overview", None),
        ("Police Recommendations", "Police", "Police"),
    ],
)
def test_section_column_reads_like_a_heading(cell: str, section: str, agency: str | None) -> None:
    plan = parse_lines(
        _lines("Section|Recommendation|Action|Target date", f"{cell}|1|Act|May 2024")
    )
    assert (plan.rows[0].section, plan.rows[0].lead_agency) == (section, agency)


def test_unmapped_columns_stay_out_of_mapped_ones() -> None:
    plan = parse_lines(
        _lines(
            "Recommendation|Action|Lead Agency|Target date|Comments",
            "1) Act|Do it|Police|March 2024|Chased 01/02/2024 no reply",
        )
    )
    assert plan.rows[0].target == "March 2024"


def test_footer_that_kept_its_tabs_is_skipped() -> None:
    plan = parse_lines(
        _lines(
            "Recommendation|Action|Lead Agency|Target date",
            "1) Act|Do it|Police|March 2024",
            "Plan – Confidential – Not to be Photocopied|||",
            "Page 4 of 9|||",
            "continued text|||",
        )
    )
    assert plan.rows[0].rec_text == "Act continued text"


def test_new_sheet_starts_afresh() -> None:
    lines = _lines("Recommendation|Action|Lead Agency|Target date", "1) Act|Do it|Police|May 2024")
    key = [Line(10, ()), Line(11, ("Key",)), Line(12, ("R = red", "A = amber"))]
    plan = parse_lines([*lines, *key])
    assert [r.ref for r in plan.rows] == ["1"]
