"""PDF plans to lines, with pdfplumber: the same :class:`Line` objects as every other reader.

A page is read as blocks in vertical order:
- ruled tables (cells bounded by drawn lines, as Word and most exports draw them): one line
  per table row, each cell's text whole however many lines it wraps over;
- everything else, line by line: a line of text with three or more columns set apart by wide
  gaps starts an unruled table, whose column positions then place the words of the lines
  below it (on later pages too) into cells; a row's wrapped lines are kept together when the
  table spaces its rows apart; other text becomes one single-cell line per paragraph.

A row cut by a page break goes on at the top of the next page's table (below the repeated
header, if there is one) as a row without a ref. When that row reads as the rest of the cut
one (a cell goes on in lower case, mid-sentence) the reader joins the two, so the parser sees
the row whole: a second action under the same recommendation that a page break cut in two is
still one row with its holder and date. Any other row without a ref is left to the parser,
which continues the action above or, if it brings its own holder and date, starts a second one.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from dhr_workflow.errors import InvalidInput
from dhr_workflow.importer.readers import Line

# Called after each page with (pages read, pages in the file).
PageProgress = Callable[[int, int], None]

_RULED = {"vertical_strategy": "lines", "horizontal_strategy": "lines"}
_BULLET_START = re.compile(r"^([•▪●◦\-–*]|\(?[a-z0-9]{1,3}[.)])\s", re.I)
_ALIGN = 3.0  # points: a word this close to a column's left edge starts that column
_MARGIN = 0.08  # of the page's height: where running headers and footers sit


@dataclass
class _Text:
    """A line of text on a page: its words left to right."""

    top: float
    bottom: float
    size: float
    bold: bool
    words: list[dict[str, Any]]

    @property
    def x0(self) -> float:
        return float(self.words[0]["x0"])

    def segments(self) -> list[list[dict[str, Any]]]:
        """Runs of words split where the gap is wider than a space: the cells of a table line."""
        runs = [[self.words[0]]]
        for before, word in pairwise(self.words):
            if word["x0"] - before["x1"] > 0.9 * self.size:
                runs.append([])
            runs[-1].append(word)
        return runs


@dataclass
class _Block:
    top: float
    rows: list[tuple[str, ...]]
    ruled: bool = False
    margin: bool = False  # a paragraph in the page's top or bottom margin


@dataclass
class _State:
    """What carries from page to page: the columns of the unruled table being read, the
    header and last row of the last ruled table."""

    columns: list[float] = field(default_factory=list)
    header: tuple[str, ...] | None = None
    last_row: int | None = None  # its index in the output
    # paragraphs in a page's margin: (index in the output, page, text with numbers as #)
    margins: list[tuple[int, int, str]] = field(default_factory=list)


def read_pdf(
    path: Path, data: bytes, notes: list[str], progress: PageProgress | None = None
) -> Iterator[Line]:
    """The lines of a PDF plan; one clear :class:`InvalidInput` for a file it cannot read."""
    from pdfminer.pdfdocument import PDFEncryptionError
    from pdfplumber.utils.exceptions import PdfminerException

    try:
        rows = _read(path, data, progress)
    except PdfminerException as exc:
        # a password needed to open it, or an encryption pdfminer cannot undo
        if exc.args and isinstance(exc.args[0], PDFEncryptionError):
            raise InvalidInput(
                f"{path}: is password-protected: save an unprotected copy "
                "(print to PDF, or remove the password in the PDF reader) and import that"
            ) from None
        raise _damaged(path, exc) from None
    except InvalidInput:
        raise
    except Exception as exc:  # pdfminer raises many types on a damaged file
        raise _damaged(path, exc) from None
    return iter([Line(number, cells) for number, cells in enumerate(rows, start=1)])


def _damaged(path: Path, exc: Exception, page: int | None = None) -> InvalidInput:
    cause = exc.args[0] if isinstance(exc.args and exc.args[0], Exception) else exc
    where = f"page {page} cannot be read" if page else "not a readable PDF"
    return InvalidInput(
        f"{path}: {where} ({cause.__class__.__name__}: {str(cause)[:80]}); "
        "it may be damaged or cut short: save or download it again"
    )


def _read(path: Path, data: bytes, progress: PageProgress | None) -> list[tuple[str, ...]]:
    import pdfplumber

    out: list[tuple[str, ...]] = []
    state = _State()
    pictures = 0
    with pdfplumber.open(io.BytesIO(data)) as pdf:
        total = len(pdf.pages)
        if not total:
            raise InvalidInput(f"{path}: a PDF with no pages")
        for index, page in enumerate(pdf.pages, start=1):
            try:
                _add_page(out, _blocks(page, state), state, index)
                pictures += _picture(page)
            except Exception as exc:  # one damaged page: say which
                raise _damaged(path, exc, index) from None
            page.close()  # drops the page's parsed objects: memory stays flat on long files
            if progress is not None:
                progress(index, total)
    if pictures == total or not any(cell.strip() for cells in out for cell in cells):
        raise InvalidInput(
            f"{path}: has no text layer (a scan?): run it through OCR (most scanners and "
            "PDF readers can) or import the plan's Word or Excel original"
        )
    return _without_page_numbers(out, state.margins, total)


def _without_page_numbers(
    out: list[tuple[str, ...]], margins: list[tuple[int, int, str]], pages: int
) -> list[tuple[str, ...]]:
    """Without the page headers and footers that differ only in their numbers ("- 3 -",
    "3 | P a g e", "Case K v2 page 3"), found in the margins of at least half the pages.
    The parser drops furniture that repeats word for word; these it would take for a
    heading (a section named "- 3 -") or for more of the action above."""
    on_pages: dict[str, set[int]] = {}
    for _, page, text in margins:
        on_pages.setdefault(text, set()).add(page)
    furniture = {t for t, seen in on_pages.items() if "#" in t and len(seen) >= max(2, pages / 2)}
    drop = {index for index, _, text in margins if text in furniture}
    return [row for index, row in enumerate(out) if index not in drop]


def _picture(page: Any) -> bool:
    """A scanned page: a picture over most of it and next to no text (a stamped page
    number or file name at most)."""
    area = sum((i["x1"] - i["x0"]) * (i["bottom"] - i["top"]) for i in page.images)
    return bool(area >= 0.5 * page.width * page.height and len(page.chars) < 200)


def _blocks(page: Any, state: _State) -> list[_Block]:
    """A page's ruled tables and its other text, in vertical order."""
    tables = [t for t in page.find_tables(_closed(page)) if _is_table(t)]
    # (not split by font size: a page turned by /Rotate gives 17.999... beside 18.0)
    words = page.extract_words(return_chars=True)
    blocks = [_Block(t.bbox[1], _table_rows(t, words), ruled=True) for t in tables]
    outside = [w for w in words if not any(_inside(w, t.bbox) for t in tables)]
    blocks += _text_blocks(_lines_of(outside), state, page.height)
    return sorted(blocks, key=lambda b: b.top)


def _closed(page: Any) -> dict[str, Any]:
    """The "lines" strategy, with a rule added where the page's vertical rules start and end:
    a row cut by the page break is often drawn open (no rule under its part on this page, or
    over its part on the next), and a cell with an open side is not found at all."""
    ends = [(e["top"], e["bottom"]) for e in page.edges if e["orientation"] == "v"]
    if not ends:
        return _RULED
    rules = [min(top for top, _ in ends), max(bottom for _, bottom in ends)]
    return {**_RULED, "explicit_horizontal_lines": rules}


def _is_table(table: Any) -> bool:
    # A box drawn round a note is one cell: text, not a table.
    return any(sum(cell is not None for cell in row.cells) > 1 for row in table.rows)


def _inside(word: dict[str, Any], box: Sequence[float]) -> bool:
    x: float = (word["x0"] + word["x1"]) / 2
    y: float = (word["top"] + word["bottom"]) / 2
    return box[0] <= x <= box[2] and box[1] <= y <= box[3]


def _table_rows(table: Any, words: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """Each row's own cells. pdfplumber lays every row on the grid of all the table's rules,
    with None where a row has no cell of its own (a cell spanning columns, or a row drawn
    with other widths, as Word allows and tables stacked on one another look): those are
    left out, so a row's cells are those a reader sees, as extracted text gives them."""
    rows = []
    for row in table.rows:
        texts = tuple(_cell_text(box, words) for box in row.cells if box is not None)
        if any(texts):
            rows.append(texts)
    return rows


def _cell_text(box: Sequence[float], words: list[dict[str, Any]]) -> str:
    """A cell's words, line by line as the text outside tables is read."""
    lines = _lines_of([w for w in words if _inside(w, box)])
    return _unwrap("\n".join(" ".join(w["text"] for w in line.words) for line in lines))


def _unwrap(text: str) -> str:
    """A cell's lines as the sentence they wrap: joined by spaces, but a bullet or numbered
    item keeps its own line, and a word hyphenated at the line end is whole again."""
    out = ""
    for line in (part.strip() for part in text.splitlines()):
        if not line:
            continue
        if not out:
            out = line
        elif _BULLET_START.match(line):
            out += "\n" + line
        elif out.endswith("-") and out[-2:-1].isalpha() and line[:1].islower():
            out += line
        else:
            out += " " + line
    return out


def _lines_of(words: list[dict[str, Any]]) -> list[_Text]:
    """Words grouped into lines of text: a word that shares most of its height with a line
    is on it (so a superscript "th" stays beside its "30", not on a line of its own)."""
    lines: list[_Text] = []
    for word in sorted(words, key=lambda w: (w["top"], w["x0"])):
        line = lines[-1] if lines else None
        size = word["bottom"] - word["top"]  # the font size, as pdfplumber measures it
        shared = min(word["bottom"], line.bottom) - max(word["top"], line.top) if line else 0
        if line is not None and shared >= 0.4 * min(size, line.bottom - line.top):
            line.words.append(word)
            line.top, line.bottom = min(line.top, word["top"]), max(line.bottom, word["bottom"])
            line.size = max(line.size, size)
        else:
            bold = "bold" in word["chars"][0]["fontname"].lower()
            lines.append(_Text(word["top"], word["bottom"], size, bold, [word]))
    for line in lines:
        line.words.sort(key=lambda w: w["x0"])
    return lines


def _text_blocks(lines: list[_Text], state: _State, height: float) -> list[_Block]:
    """Paragraphs and unruled tables from the lines outside ruled tables."""
    blocks: list[_Block] = []
    run: list[tuple[_Text, list[str]]] = []  # consecutive lines of an unruled table
    paragraph: list[_Text] = []
    for line in lines:
        cells = _in_columns(line, state.columns)
        if cells is None and len(line.segments()) >= 3:  # a table with columns of its own
            state.columns = [float(segment[0]["x0"]) for segment in line.segments()]
            cells = _in_columns(line, state.columns)
            if run:
                blocks.append(_unruled(run))
                run = []
        if cells is None:
            if paragraph and not _same_paragraph(paragraph[-1], line):
                blocks.append(_paragraph(paragraph, height))
                paragraph = []
            paragraph.append(line)
            continue
        if paragraph:
            blocks.append(_paragraph(paragraph, height))
            paragraph = []
        if run and line.top - run[-1][0].bottom > 2 * line.size:  # far below: a new table
            blocks.append(_unruled(run))
            run = []
        run.append((line, cells))
    if paragraph:
        blocks.append(_paragraph(paragraph, height))
    if run:
        blocks.append(_unruled(run))
    return blocks


def _in_columns(line: _Text, columns: list[float]) -> list[str] | None:
    """The line's words placed in the table's columns, or None when it does not line up."""
    if not columns or line.x0 < columns[0] - _ALIGN:
        return None
    for segment in line.segments():
        if not any(abs(segment[0]["x0"] - x) <= _ALIGN for x in columns):
            return None
    cells: list[list[str]] = [[] for _ in columns]
    for word in line.words:
        column = max(i for i, x in enumerate(columns) if x <= word["x0"] + _ALIGN)
        cells[column].append(word["text"])
    return [" ".join(words) for words in cells]


def _same_paragraph(above: _Text, line: _Text) -> bool:
    return (
        line.top - above.bottom <= 0.6 * line.size
        and abs(line.size - above.size) < 0.5
        and line.bold == above.bold
    )


def _paragraph(lines: list[_Text], height: float) -> _Block:
    text = _unwrap("\n".join(" ".join(w["text"] for w in line.words) for line in lines))
    margin = lines[-1].bottom < _MARGIN * height or lines[0].top > (1 - _MARGIN) * height
    return _Block(lines[0].top, [(text,)], margin=margin)


def _unruled(run: list[tuple[_Text, list[str]]]) -> _Block:
    """An unruled table's lines as rows. When the table leaves more space between rows than
    between the lines of a cell, lines are grouped into rows by that space (so a cell wrapped
    over three lines is one cell); when all lines are evenly spaced, each line is a row and
    the parser joins the lines that carry no ref."""
    # measured at the foot of the lines: a raised "th" moves a line's top, never its foot
    gaps = [b[0].bottom - a[0].bottom for a, b in pairwise(run)]
    pitch = min(gaps, default=0.0)
    spaced = any(
        gap > pitch + 0.3 * line.size for gap, (line, _) in zip(gaps, run[1:], strict=False)
    )
    rows: list[list[str]] = [list(run[0][1])]
    for gap, (line, cells) in zip(gaps, run[1:], strict=False):
        if spaced and gap <= pitch + 0.3 * line.size:
            rows[-1] = [
                f"{a}\n{b}" if a and b else a or b for a, b in zip(rows[-1], cells, strict=True)
            ]
        else:
            rows.append(list(cells))
    return _Block(run[0][0].top, [tuple(_unwrap(c) for c in row) for row in rows])


def _add_page(out: list[tuple[str, ...]], blocks: list[_Block], state: _State, page: int) -> None:
    first = True
    for block in blocks:
        if block.margin:
            numbered = re.sub(r"\d+", "#", " ".join(block.rows[0][0].lower().split()))
            state.margins.append((len(out), page, numbered))
        rows = block.rows
        if block.ruled and first:
            rows = _join_cut_row(out, rows, state)
            first = False
        if block.ruled and rows and rows[0] != state.header:
            state.header = rows[0]
        out.extend(_trimmed(row) for row in rows)
        if block.ruled and rows:
            state.last_row = len(out) - 1


def _join_cut_row(
    out: list[tuple[str, ...]], rows: list[tuple[str, ...]], state: _State
) -> list[tuple[str, ...]]:
    """The page's first table without the rest of the previous page's cut row, which is
    joined back to it."""
    if state.last_row is None:
        return rows
    at = 1 if rows and rows[0] == state.header else 0
    if at >= len(rows) or not _goes_on(out[state.last_row], rows[at]):
        return rows
    cut, rest = _padded(out[state.last_row], rows[at])
    out[state.last_row] = _trimmed(
        tuple(_unwrap(f"{a}\n{b}") for a, b in zip(cut, rest, strict=True))
    )
    return [*rows[:at], *rows[at + 1 :]]


def _goes_on(cut: tuple[str, ...], rest: tuple[str, ...]) -> bool:
    """The rest of a cut row: no ref of its own, and a cell that the cut part began goes on
    mid-sentence (in lower case). A row that starts its cells afresh is left to the parser."""
    if rest[0]:
        return False
    return any(a and b[:1].islower() for a, b in zip(*_padded(cut, rest), strict=True))


def _padded(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[list[str], list[str]]:
    width = max(len(a), len(b))
    return [*a, *[""] * (width - len(a))], [*b, *[""] * (width - len(b))]


def _trimmed(cells: tuple[str, ...]) -> tuple[str, ...]:
    """Without trailing empty cells: a row with only its first cell filled (a section name
    across the table's width) is a heading-like line, as the parser reads it from a
    spreadsheet."""
    end = len(cells)
    while end > 1 and not cells[end - 1].strip():
        end -= 1
    return cells[:end]
