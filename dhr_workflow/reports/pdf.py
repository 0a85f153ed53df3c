"""The report as PDF: the HTML report laid out by WeasyPrint (A4, running heads with the
partnership's name and the security marking, page numbers).

One review is one document ("Page 3 of 12"). ``--all`` is laid out a review at a time, so a
store of any size never holds more than one review's layout in memory: the cover is laid out
first to learn its length, each review then starts on the page after the one before ("Page
N": the total is not known while it is written), the cover is laid out again with the
contents' page numbers, and the parts are joined a part at a time (``pdfjoin``), each review
a bookmark.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

from dhr_workflow.reports import html, pdfjoin
from dhr_workflow.reports.data import Cover, Request, ReviewReport


def _layout(document: str) -> Any:
    import weasyprint

    return weasyprint.HTML(string=document).render()


def write_document(document: str, path: Path) -> int:
    """One HTML document as a PDF; returns its number of pages."""
    laid = _layout(document)
    laid.write_pdf(str(path))
    return len(laid.pages)


class SingleWriter:
    """One review (or the family variant): the whole document at once."""

    needs_cover = False

    def __init__(self, path: Path, meta: html.Meta, req: Request) -> None:
        self.path, self.meta, self.req = path, meta, req
        self.parts: list[str] = [html.head(meta)]

    def start(self, cover: Cover | None) -> None:
        pass

    def review(self, rep: ReviewReport) -> None:
        if self.req.family:
            self.parts = [html.family(self.meta, rep, self.req)]
        else:
            self.parts.append(html.review(self.meta, rep, len(self.parts)))

    def finish(self) -> None:
        if not self.req.family:
            self.parts.append(html.tail(self.meta))
        write_document("".join(self.parts), self.path)


class ManyWriter:
    """Every review: a cover with contents, then each review laid out on its own."""

    needs_cover = True

    def __init__(self, path: Path, meta: html.Meta, req: Request) -> None:
        self.path, self.req = path, req
        self.meta = dataclasses.replace(meta, numbered_of=False)
        self.work = tempfile.TemporaryDirectory(prefix="dhr-report-")
        self.parts: list[tuple[Path, str | None]] = []
        self.firsts: list[int] = []
        self.cover: Cover | None = None
        self.next_page = 1

    def _cover(self, toc: list[int]) -> tuple[Path, int]:
        assert self.cover is not None
        path = Path(self.work.name) / "cover.pdf"
        body = html.cover(self.meta, self.cover, self.req, toc)
        pages = write_document(html.head(self.meta) + body + html.tail(self.meta), path)
        return path, pages

    def start(self, cover: Cover | None) -> None:
        self.cover = cover
        assert cover is not None
        # Placeholder page numbers at least as wide as the real ones: the same length.
        _, pages = self._cover([99999] * len(cover.reviews))
        self.next_page = pages + 1

    def review(self, rep: ReviewReport) -> None:
        meta = dataclasses.replace(self.meta, first_page=self.next_page)
        path = Path(self.work.name) / f"review-{len(self.parts)}.pdf"
        body = html.review(meta, rep, len(self.parts))
        pages = write_document(html.head(meta) + body + html.tail(meta), path)
        self.parts.append((path, f"{rep.ref}: {rep.title}"))
        self.firsts.append(self.next_page)
        self.next_page += pages

    def finish(self) -> None:
        try:
            cover, _ = self._cover(self.firsts)
            pdfjoin.join([(cover, "Contents"), *self.parts], self.path, self.meta.title)
        finally:
            self.work.cleanup()
