"""Importing plans from PDF: PDFs built here (reportlab for exact layouts, WeasyPrint from HTML
for the three real plans) must import as the same plan does from text."""

from __future__ import annotations

import html
import io
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from reportlab.lib import colors, pdfencrypt
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen import canvas
from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate, Table, TableStyle

from dhr_workflow.importer.readers import detect_format, read_source
from dhr_workflow.importer.text import clean
from tests.conftest import CliFn
from tests.web_support import Site, csrf, site_fixture  # noqa: F401

PLANS = Path(__file__).parent / "data" / "plans"
STYLES = getSampleStyleSheet()
HEADER = ("Recommendation", "Action", "Lead Agency", "Target Date", "Outcome")
# A plan as a coordinator has it: agency sections, each with its own table.
SECTIONS: dict[str, list[tuple[str, ...]]] = {
    "West Mercia Police": [
        (
            "1. The police should review how calls from repeat victims are graded",
            "Brief all response officers on the revised grading policy for repeat callers, "
            "with a refresher at each shift briefing",
            "West Mercia Police",
            "30/09/2024",
            "Completed 29/11/2024",
        ),
        (
            "2. Supervisors should check DASH risk assessments",
            "Audit a sample of twenty DASH forms each quarter",
            "West Mercia Police",
            "December 2024",
            "",
        ),
    ],
    "Turning Point": [
        (
            "3. Drug treatment services should ask about domestic abuse at assessment",
            "Add routine enquiry to the assessment form and train key workers",
            "Turning Point",
            "Within 3 months of the completion of the DHR",
            "",
        ),
        (
            "4. Referrals to MARAC should be tracked",
            "Keep a MARAC referral log reviewed monthly by the service manager",
            "Turning Point",
            "March 2025",
            "In progress",
        ),
    ],
}


_WIDTHS = [150, 210, 110, 90, 90]


def _p(text: str, style: str = "BodyText") -> Paragraph:
    return Paragraph(html.escape(text), STYLES[style])


def _table(rows: list[tuple[str, ...]], *, ruled: bool, repeat: bool = True) -> Table:
    table = Table(
        [[_p(c) for c in row] for row in [HEADER, *rows]],
        colWidths=_WIDTHS,
        repeatRows=1 if repeat else 0,
    )
    style: list[Any] = [("VALIGN", (0, 0), (-1, -1), "TOP")]
    if ruled:
        style.append(("GRID", (0, 0), (-1, -1), 0.5, colors.black))
    table.setStyle(TableStyle(style))
    return table


def _furniture(pdf: canvas.Canvas, doc: Any) -> None:
    """A running title and a page number on every page, as real plans have."""
    width, height = doc.pagesize
    pdf.saveState()
    pdf.setFont("Helvetica", 8)
    pdf.drawString(40, height - 25, "Confidential – Not to be Photocopied")
    pdf.drawRightString(width - 40, 20, f"Page {doc.page}")
    pdf.restoreState()


def _build(
    path: Path, story: list[Any], pagesize: tuple[float, float] = A4, furniture: Any = _furniture
) -> Path:
    doc = SimpleDocTemplate(str(path), pagesize=pagesize, leftMargin=25, rightMargin=25)
    doc.build(story, onFirstPage=furniture, onLaterPages=furniture)
    return path


def _plan_story(sections: dict[str, list[tuple[str, ...]]], *, ruled: bool) -> list[Any]:
    story: list[Any] = [_p("Domestic Homicide Review Case K Action Plan", "Title")]
    for agency, rows in sections.items():
        story += [_p(agency, "Heading2"), _table(rows, ruled=ruled)]
    return story


def _text_plan(path: Path, sections: dict[str, list[tuple[str, ...]]]) -> Path:
    """The same plan as extracted text: one tab-separated line per row."""
    lines = ["Domestic Homicide Review Case K Action Plan"]
    for agency, rows in sections.items():
        lines += [agency, "\t".join(HEADER), *("\t".join(row) for row in rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _import(cli: CliFn, path: Path, review: str) -> dict[str, Any]:
    result = cli("import", str(path), "--review", review, "--json")
    assert result.exit_code == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def _actions(cli: CliFn, review: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(
        cli("actions", "list", "--review", review, "--json").stdout
    )
    return rows


def _comparable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: _words(v) for k, v in r.items() if k != "id"} | {"review": None} for r in rows]


def _words(value: Any) -> Any:
    """Line breaks inside a cell are where the PDF wrapped it, not words of the plan; a word
    hyphenated at a line end ("pre-\nrelease") is whole again in the PDF's reading."""
    if not isinstance(value, str):
        return value
    return " ".join(re.sub(r"(\w-)\s+(?=[a-z])", r"\1", value).split())


def _same_as_text(cli: CliFn, pdf: Path, text: Path) -> list[dict[str, Any]]:
    """The PDF's actions, checked to be those of the text (sections included)."""
    report = _import(cli, pdf, "PDF")
    assert report["format"] == "pdf"
    sections = [(a["section"], a["ref"]) for a in report["actions"]]
    assert sections == [(a["section"], a["ref"]) for a in _import(cli, text, "TEXT")["actions"]]
    from_pdf = _actions(cli, "PDF")
    assert _comparable(from_pdf) == _comparable(_actions(cli, "TEXT"))
    return [
        {**row, "section": section} for row, (section, _) in zip(from_pdf, sections, strict=True)
    ]


# --- plans laid out as coordinators lay them out ---------------------------------------------


@pytest.mark.parametrize("ruled", [True, False], ids=["ruled", "unruled"])
@pytest.mark.parametrize("pagesize", [A4, landscape(A4)], ids=["portrait", "landscape"])
def test_plan_reads_as_its_text(
    cli: CliFn, tmp_path: Path, ruled: bool, pagesize: tuple[float, float]
) -> None:
    pdf = _build(tmp_path / "plan.pdf", _plan_story(SECTIONS, ruled=ruled), pagesize)
    rows = _same_as_text(cli, pdf, _text_plan(tmp_path / "plan.txt", SECTIONS))
    got = {(r["section"], r["ref"]): r for r in rows}
    assert list(got) == [
        ("West Mercia Police", "WMP 1"),
        ("West Mercia Police", "WMP 2"),
        ("Turning Point", "TP 3"),
        ("Turning Point", "TP 4"),
    ]
    first = got[("West Mercia Police", "WMP 1")]
    assert first["text"] == (
        "Brief all response officers on the revised grading policy for repeat callers, "
        "with a refresher at each shift briefing"
    )
    assert (first["status"], first["completed_on"]) == ("completed", "2024-11-29")
    assert got[("West Mercia Police", "WMP 2")]["due_date"] == "2024-12-31"
    assert {r["lead_agency"] for r in rows} == {"West Mercia Police", "Turning Point"}
    assert got[("Turning Point", "TP 3")]["due_basis"] == "relative"


_CENTRED = ParagraphStyle(
    "centred", parent=STYLES["BodyText"], alignment=1, fontName="Helvetica-Bold"
)
_LAYOUTS: dict[str, tuple[list[Any], ParagraphStyle | None]] = {
    # only the header boxed: found as a one-row ruled table, the rows below by their columns
    "header-boxed": ([("GRID", (0, 0), (-1, 0), 0.5, colors.black)], None),
    "header-shaded": ([("BACKGROUND", (0, 0), (-1, 0), colors.lightgrey)], None),
    "rules-between-rows": ([("LINEBELOW", (0, 0), (-1, -1), 0.5, colors.black)], None),
    "header-centred": ([], _CENTRED),  # header words not above the left edge of the column
    "rows-not-spaced": (
        [("TOPPADDING", (0, 0), (-1, -1), 0), ("BOTTOMPADDING", (0, 0), (-1, -1), 0)],
        None,
    ),
}


@pytest.mark.parametrize("layout", list(_LAYOUTS))
def test_other_table_layouts_read_as_their_text(cli: CliFn, tmp_path: Path, layout: str) -> None:
    extra, header_style = _LAYOUTS[layout]
    # the first row leaves its outcome empty, so its own columns are one short
    sections = {
        "Agency: Safer Westminster Partnership": [SECTIONS["West Mercia Police"][1]],
        **SECTIONS,
    }
    story: list[Any] = [_p("Domestic Homicide Review Case K Action Plan", "Title")]
    for agency, rows in sections.items():
        header = [Paragraph(html.escape(h), header_style or STYLES["BodyText"]) for h in HEADER]
        table = Table([header, *[[_p(c) for c in row] for row in rows]], colWidths=_WIDTHS)
        table.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), *extra]))
        story += [_p(agency, "Heading2"), table]
    pdf = _build(tmp_path / "plan.pdf", story)
    rows = _same_as_text(cli, pdf, _text_plan(tmp_path / "plan.txt", sections))
    assert [r["ref"] for r in rows] == ["SWP 2", "WMP 1", "WMP 2", "TP 3", "TP 4"]
    assert rows[0]["due_date"] == "2024-12-31"
    assert rows[3]["lead_agency"] == "Turning Point"


def test_landscape_page_turned_by_rotate_reads_the_same(cli: CliFn, tmp_path: Path) -> None:
    """Landscape as some exports make it: portrait paper, the content drawn sideways and the
    page turned by /Rotate 90 for display."""
    from pypdf import PdfReader, PdfWriter

    plan = _build(tmp_path / "wide.pdf", _plan_story(SECTIONS, ruled=True), landscape(A4))
    writer = PdfWriter(clone_from=PdfReader(plan))
    for page in writer.pages:
        page.rotate(270)
        page.transfer_rotation_to_content()
        page.rotate(90)
    turned = tmp_path / "turned.pdf"
    writer.write(turned)
    assert PdfReader(turned).pages[0].rotation == 90
    assert [ln.cells for ln in read_source(turned).lines] == [
        ln.cells for ln in read_source(plan).lines
    ]
    _same_as_text(cli, turned, _text_plan(tmp_path / "plan.txt", SECTIONS))


@pytest.mark.parametrize(
    "number", ["- {n} -", "{n} | P a g e", "Case K action plan v2 – page {n}", "{n}/3"]
)
def test_page_numbers_in_any_form_are_furniture(cli: CliFn, tmp_path: Path, number: str) -> None:
    def furniture(pdf: canvas.Canvas, doc: Any) -> None:
        pdf.setFont("Helvetica", 8)
        pdf.drawCentredString(A4[0] / 2, 20, number.format(n=doc.page))

    sections = {**SECTIONS, "Adult Social Care": [SECTIONS["Turning Point"][0]]}
    story: list[Any] = [_p("Domestic Homicide Review Case K Action Plan", "Title")]
    for agency, rows in sections.items():  # a page each
        story += [_p(agency, "Heading2"), _table(rows, ruled=True), PageBreak()]
    pdf = _build(tmp_path / "plan.pdf", story[:-1], furniture=furniture)
    rows = _same_as_text(cli, pdf, _text_plan(tmp_path / "plan.txt", sections))
    assert [r["section"] for r in rows][-1] == "Adult Social Care"


def test_header_repeated_on_every_page_and_page_furniture(cli: CliFn, tmp_path: Path) -> None:
    rows = [
        (
            f"{n}. The partnership should check progress on item {n}",
            f"Report progress on item {n} to the board with evidence of the change made",
            "Safer Westminster Partnership",
            f"{n % 28 + 1}/03/2025",
            "",
        )
        for n in range(1, 61)
    ]
    story = [_p("Domestic Homicide Review Case K Action Plan", "Title"), _table(rows, ruled=True)]
    pdf = _build(tmp_path / "long.pdf", story)
    source = read_source(pdf)
    assert sum(line.cells == HEADER for line in source.lines) >= 3  # once per page
    report = _import(cli, pdf, "LONG")
    assert [a["ref"] for a in report["actions"]] == [str(n) for n in range(1, 61)]
    actions = _actions(cli, "LONG")
    assert actions[59]["text"] == (
        "Report progress on item 60 to the board with evidence of the change made"
    )
    assert actions[59]["due_date"] == "2025-03-05"
    assert not any("Page" in a["text"] or "Confidential" in a["text"] for a in actions)


def _across_a_page_break(
    tmp_path: Path, before: list[tuple[str, ...]], after: list[tuple[str, ...]], *, repeat: bool
) -> Path:
    """Two tables as a page break leaves one: the header repeated on the second or not."""
    second = _table(after, ruled=True)
    if not repeat:
        second = Table([[_p(c) for c in row] for row in after], colWidths=_WIDTHS)
        second.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.5, colors.black)]))
    story: list[Any] = [
        _p("Domestic Homicide Review Case K Action Plan", "Title"),
        _table(before, ruled=True),
        PageBreak(),
        second,
    ]
    return _build(tmp_path / "cut.pdf", story)


@pytest.mark.parametrize("repeat", [True, False], ids=["header-repeated", "no-header"])
def test_row_cut_by_a_page_break_is_one_action(cli: CliFn, tmp_path: Path, repeat: bool) -> None:
    """Row 2 cut as Word cuts it: its action and outcome go on at the top of the next page
    in a row with no ref."""
    cut_row = (
        "2. Supervisors should check DASH risk assessments",
        "Audit a sample of twenty DASH forms each quarter",
        "West Mercia Police",
        "December 2024",
        "First audit done in",
    )
    rest = ("", "and report the findings to the force lead", "", "", "October 2024")
    before = [SECTIONS["West Mercia Police"][0], cut_row]
    pdf = _across_a_page_break(tmp_path, before, [rest, *SECTIONS["Turning Point"]], repeat=repeat)
    report = _import(cli, pdf, "CUT")
    assert [a["ref"] for a in report["actions"]] == ["1", "2", "3", "4"]
    cut = _actions(cli, "CUT")[1]
    assert cut["text"] == (
        "Audit a sample of twenty DASH forms each quarter and report the findings to the force lead"
    )
    assert cut["outcome"] == "First audit done in October 2024"
    assert cut["due_date"] == "2024-12-31"


_FIRST = (
    "1. Probation should improve the quality of assessments",
    "Brief practitioners at the team meeting",
    "HM Prison & Probation",
    "March 2024",
    "",
)


def test_second_action_cut_by_a_page_break_stays_a_second_action(
    cli: CliFn, tmp_path: Path
) -> None:
    """A row with no ref of its own (a second action under recommendation 1) cut in two: its
    date is above the break and its holder below. Joined, it has both, so it is action 1b;
    read as two rows, the part above would have been taken for more of action 1."""
    upper = ("", "Complete OASys assessments for", "", "June 2024", "")
    lower = ("", "all open cases within the timescales", "HM Prison & Probation", "", "")
    pdf = _across_a_page_break(tmp_path, [_FIRST, upper], [lower], repeat=True)
    _import(cli, pdf, "SECOND")
    first, second = _actions(cli, "SECOND")
    assert (first["ref"], first["text"], first["due_date"]) == (
        "1",
        "Brief practitioners at the team meeting",
        "2024-03-31",
    )
    assert (second["ref"], second["lead_agency"], second["due_date"]) == (
        "1b",
        "HM Prison & Probation",
        "2024-06-30",
    )
    assert second["text"] == "Complete OASys assessments for all open cases within the timescales"


def test_a_row_starting_a_page_afresh_is_not_joined(cli: CliFn, tmp_path: Path) -> None:
    # No cell goes on mid-sentence: its own row, here a second action under recommendation 1.
    fresh = ("", "Audit ten OASys assessments", "HM Prison & Probation", "June 2024", "")
    pdf = _across_a_page_break(tmp_path, [_FIRST], [fresh], repeat=True)
    report = _import(cli, pdf, "FRESH")
    assert [a["ref"] for a in report["actions"]] == ["1", "1b"]
    assert _actions(cli, "FRESH")[0]["text"] == "Brief practitioners at the team meeting"


@pytest.mark.parametrize("ruled", [True, False], ids=["ruled", "unruled"])
def test_superscript_ordinals_stay_in_their_date(cli: CliFn, tmp_path: Path, ruled: bool) -> None:
    # Word sets the "th" of "30th" raised and smaller: a line of its own unless kept beside it.
    rows = [
        ("1. Police to brief", "Brief officers", "Police", "30<super>th</super> November 2024", ""),
        ("2. Health to audit", "Audit records", "NHS Trust", "1<super>st</super> May 2025", ""),
    ]
    table = Table(
        [[_p(h) for h in HEADER], *[[Paragraph(c, STYLES["BodyText"]) for c in r] for r in rows]],
        colWidths=_WIDTHS,
    )
    table.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.5, colors.black)] if ruled else []))
    pdf = _build(
        tmp_path / "plan.pdf", [_p("Domestic Homicide Review Action Plan", "Title"), table]
    )
    _import(cli, pdf, "SUP")
    got = [(a["target_text"], a["due_date"]) for a in _actions(cli, "SUP")]
    assert got == [("30 th November 2024", "2024-11-30"), ("1 st May 2025", "2025-05-01")]


def test_cell_lines_are_joined_as_the_sentence_they_wrap() -> None:
    from dhr_workflow.importer.pdf import _unwrap

    assert _unwrap("Brief all\nresponse officers") == "Brief all response officers"
    assert _unwrap("a multi-\nagency audit") == "a multi-agency audit"
    assert _unwrap("Actions:\n• brief staff\n• audit\nforms") == (
        "Actions:\n• brief staff\n• audit forms"
    )
    assert _unwrap("Training\na) police\nb) health") == "Training\na) police\nb) health"


# --- the three real plans, laid out as PDF by WeasyPrint -------------------------------------


def _html_plan(plan: Path) -> str:
    """Single cells as paragraphs, runs of rows as bordered tables (a new table where the
    width changes), as the DOCX test builds them."""
    parts: list[str] = [
        "<style>@page { size: A4 landscape; margin: 1.5cm }"
        "body { font: 9pt sans-serif } td { border: 1px solid black;"
        " vertical-align: top; padding: 2px 4px }"
        "table { border-collapse: collapse; width: 100% }</style>"
    ]
    width = 0
    for line in read_source(plan, "text").lines:
        cells = line.cells
        if len(cells) == 1:
            parts.append("</table>" if width else "")
            width = 0
            if cells[0].strip():
                parts.append(f"<p>{_html_cell(cells[0])}</p>")
            continue
        if len(cells) != width:
            parts.append(("</table>" if width else "") + "<table>")
            width = len(cells)
        parts.append("<tr>" + "".join(f"<td>{_html_cell(c)}</td>" for c in cells) + "</tr>")
    return "".join(parts) + ("</table>" if width else "")


def _html_cell(text: str) -> str:
    return "<br>".join(html.escape(line) for line in clean(text).splitlines())


# Somerset is left out: WeasyPrint, cutting its rows at page breaks, moves a cell's first line
# to the next page while the cells beside it stay (so a row's top comes before its ref), a
# layout Word never makes; the page-break cases are built exactly with reportlab above.
@pytest.mark.slow
@pytest.mark.parametrize("name", ["westminster-case-a", "south-worcestershire-case-2"])
def test_real_plans_as_pdf(cli: CliFn, tmp_path: Path, name: str) -> None:
    from weasyprint import HTML

    text = PLANS / f"{name}.txt"
    pdf = tmp_path / f"{name}.pdf"
    HTML(string=_html_plan(text)).write_pdf(pdf)
    _same_as_text(cli, pdf, text)


# --- files that are not plans in PDF ---------------------------------------------------------


def _error(result: Any) -> str:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return str(lines[0])


def _canvas_pdf(draw: Any, **options: Any) -> bytes:
    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=A4, **options)
    draw(pdf)
    pdf.save()
    return out.getvalue()


def _encrypted() -> bytes:
    secret = pdfencrypt.StandardEncryption("secret", canPrint=0)
    return _canvas_pdf(lambda pdf: pdf.drawString(72, 700, "Action plan"), encrypt=secret)


def _scanned(stamped: bool = False) -> bytes:
    """Pages that are only pictures of text, as a scanner makes them; some scanners or
    document systems stamp a page number or reference on them as text."""
    image = ImageReader(Image.new("RGB", (200, 280), "white"))

    def draw(pdf: canvas.Canvas) -> None:
        for n in (1, 2):
            pdf.drawImage(image, 20, 20, A4[0] - 40, A4[1] - 40)
            if stamped:
                pdf.drawString(40, 10, f"Scanned by MFD-3 — page {n} of 2")
            pdf.showPage()

    return _canvas_pdf(draw)


def _plan_bytes(tmp_path: Path) -> bytes:
    return _build(tmp_path / "whole.pdf", _plan_story(SECTIONS, ruled=True)).read_bytes()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda _: _encrypted(), "plan.pdf: is password-protected: save an unprotected copy"),
        (lambda _: _scanned(), "plan.pdf: has no text layer (a scan?): run it through OCR"),
        (lambda _: _scanned(stamped=True), "plan.pdf: has no text layer (a scan?)"),
        (
            lambda _: b"Recommendation\tAction\n1\tbrief staff\n",
            "plan.pdf: not a PDF despite its name",
        ),
        (lambda tmp: _plan_bytes(tmp)[:400], "plan.pdf: not a readable PDF"),
        (lambda _: b"%PDF-1.7\n%\xe2\xe3\n1 0 obj\n<< /Type", "plan.pdf: not a readable PDF"),
    ],
    ids=["encrypted", "scanned", "scanned-stamped", "not-a-pdf", "truncated", "header-only"],
)
def test_bad_pdfs_are_one_line_and_write_nothing(
    cli: CliFn, tmp_path: Path, make: Any, message: str
) -> None:
    path = tmp_path / "plan.pdf"
    path.write_bytes(make(tmp_path))
    assert message in _error(cli("import", str(path), "--review", "R1"))
    assert json.loads(cli("reviews", "list", "--json").stdout) == []


def test_a_pdf_locked_only_against_editing_is_read(cli: CliFn, tmp_path: Path) -> None:
    # An owner password with no user password restricts printing or copying; anyone may read.
    locked = pdfencrypt.StandardEncryption("", ownerPassword="owner", canPrint=0, canCopy=0)
    doc = SimpleDocTemplate(str(tmp_path / "plan.pdf"), pagesize=A4, encrypt=locked)
    doc.build(_plan_story(SECTIONS, ruled=True))
    assert len(_import(cli, tmp_path / "plan.pdf", "LOCKED")["actions"]) == 4


def test_format_is_told_by_content_then_name(tmp_path: Path) -> None:
    data = _plan_bytes(tmp_path)
    assert detect_format(tmp_path / "plan.txt", data) == "pdf"  # misnamed: the content wins
    assert detect_format(tmp_path / "plan", b"\r\n" + data) == "pdf"  # junk before the header
    with pytest.raises(Exception, match="not a PDF despite its name"):
        detect_format(tmp_path / "plan.pdf", b"\x89PNG\r\n\x1a\n")


# --- long plans ------------------------------------------------------------------------------


def _long_plan(tmp_path: Path, pages: int) -> Path:
    """About one page per section: a heading and a table of four actions."""
    rows = SECTIONS["West Mercia Police"] + SECTIONS["Turning Point"]
    story: list[Any] = [_p("Domestic Homicide Review Case K Action Plan", "Title")]
    for n in range(1, pages + 1):
        story += [_p(f"Agency: Partner agency {n}", "Heading2"), _table(rows, ruled=True)]
        story.append(PageBreak())
    return _build(tmp_path / "long.pdf", story[:-1])


def test_thirty_pages_are_read_with_progress(tmp_path: Path) -> None:
    path = _long_plan(tmp_path, 30)
    seen: list[tuple[int, int]] = []
    started = time.monotonic()
    source = read_source(path, progress=lambda done, total: seen.append((done, total)))
    elapsed = time.monotonic() - started
    assert seen == [(n, 30) for n in range(1, 31)]
    assert sum(line.cells == HEADER for line in source.lines) == 30
    assert sum(line.cells[0].startswith("4. Referrals") for line in source.lines) == 30
    assert elapsed < 60, f"30 pages took {elapsed:.1f}s"


@pytest.mark.slow
def test_two_hundred_pages_import(cli: CliFn, tmp_path: Path) -> None:
    path = _long_plan(tmp_path, 200)
    started = time.monotonic()
    report = _import(cli, path, "BIG")
    elapsed = time.monotonic() - started
    assert len(report["actions"]) == 800  # four on each page, each page its own agency
    assert elapsed < 120, f"200 pages took {elapsed:.1f}s"  # 15-30 s measured


# --- the web upload --------------------------------------------------------------------------


def _upload(site: Site, name: str, content: bytes) -> Any:
    client = site.client()
    site.sign_in(client, "cat@csp.example.org")
    page = client.get("/import")
    assert 'accept=".docx,.xlsx,.pdf,' in page.text
    uploaded = client.post(
        "/import",
        data={"csrf_token": csrf(page.text), "review": "WEB"},
        files={"plan": (name, content, "application/pdf")},
    )
    return client, uploaded


def test_web_upload_reads_a_pdf_plan(site: Site, tmp_path: Path) -> None:
    client, uploaded = _upload(site, "Case K plan.pdf", _plan_bytes(tmp_path))
    assert uploaded.status_code == 303, uploaded.text
    preview = client.get(uploaded.headers["location"])
    assert "4 new actions" in preview.text
    assert "Turning Point" in preview.text  # a new agency name, read from the PDF


def test_web_upload_of_a_scan_says_so(site: Site) -> None:
    _, refused = _upload(site, "scan.pdf", _scanned())
    assert refused.status_code == 400
    assert "scan.pdf: has no text layer (a scan?)" in html.unescape(refused.text)
    assert "/tmp/" not in refused.text
