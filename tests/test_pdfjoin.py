"""Joining a report's parts a part at a time (reports/pdfjoin.py): the result is a valid PDF
with every page in order, one bookmark per part, and memory that does not grow with the
number of parts."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
import weasyprint
from pypdf import PdfReader

from dhr_workflow.reports import pdfjoin


def _part(tmp_path: Path, name: str, pages: int) -> Path:
    body = "".join(
        f'<section style="page-break-after: always"><h1>{name} page {n}</h1>'
        f'<p>Action {name}-{n} £500 Zoë</p><a href="https://example.org/{name}">link</a></section>'
        for n in range(1, pages + 1)
    )
    path = tmp_path / f"{name}.pdf"
    weasyprint.HTML(string=f"<html><body>{body}</body></html>").write_pdf(str(path))
    return path


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    tmp = tmp_path_factory.mktemp("parts")
    return [_part(tmp, name, pages) for name, pages in (("cover", 1), ("R1", 3), ("R2", 2))]


def test_pages_in_order_with_a_bookmark_per_part(parts: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "joined.pdf"
    marks = ["Contents", "R1: Case one", None]
    assert pdfjoin.join(list(zip(parts, marks, strict=True)), out, "Report £ Zoë") == 6
    reader = PdfReader(out, strict=True)
    texts = [page.extract_text() for page in reader.pages]
    expected = ["cover page 1", *(f"R1 page {n}" for n in (1, 2, 3)), "R2 page 1", "R2 page 2"]
    assert [next(line for line in t.splitlines() if "page" in line) for t in texts] == expected
    assert "Zoë" in texts[1] and "£500" in texts[1]
    assert reader.metadata is not None and reader.metadata.title == "Report £ Zoë"
    outline = [(item.title, reader.get_destination_page_number(item)) for item in reader.outline]
    assert outline == [("Contents", 0), ("R1: Case one", 1)]  # None: no bookmark for R2
    links = [a.get_object()["/A"]["/URI"] for a in reader.pages[5]["/Annots"]]
    assert links == ["https://example.org/R2"]  # what a page uses comes along with it


def test_memory_does_not_grow_with_the_parts(tmp_path: Path) -> None:
    """pypdf's own append kept every part's objects: about 2 MB a review, 4 GB for 2,000."""
    rows = "".join(f"<tr><td>{n}</td><td>Action {n} of the review</td></tr>" for n in range(600))
    part = tmp_path / "review.pdf"  # like a review's part: pages of table rows
    weasyprint.HTML(string=f"<table>{rows}</table>").write_pdf(str(part))

    def peak(copies: int) -> int:
        tracemalloc.start()
        try:
            pdfjoin.join([(part, "R") for _ in range(copies)], tmp_path / "m.pdf", "M")
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    few, many = peak(30), peak(80)
    pages = len(PdfReader(part).pages)
    # What stays is an offset per object written and a number per page: well under a
    # kilobyte a page, whatever the page holds (pypdf's append kept the pages themselves).
    per_page = (many - few) / (50 * pages)
    assert per_page < 1024, (few, many, pages)
    assert len(PdfReader(tmp_path / "m.pdf").pages) == 80 * pages
