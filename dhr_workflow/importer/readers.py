"""Plan documents to lines of cells, whatever the format.

Every reader yields :class:`Line` objects: the cells of one table row, or a single cell for a
paragraph or heading. The parser (``parse.py``) never needs to know which format it came from.
Extracted text: one line per row, cells separated by tabs. CSV/XLSX: one line per sheet row.
DOCX: paragraphs and table rows in document order. PDF (``pdf.py``): ruled and unruled tables
row by row, other text paragraph by paragraph, page by page.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from dhr_workflow.errors import InvalidInput

Format = Literal["text", "csv", "xlsx", "docx", "pdf"]
FORMATS: tuple[Format, ...] = ("text", "csv", "xlsx", "docx", "pdf")
_EXTENSIONS: dict[str, Format] = {
    ".txt": "text", ".tsv": "text", ".text": "text", ".csv": "csv", ".xlsx": "xlsx",
    ".xlsm": "xlsx", ".docx": "docx", ".pdf": "pdf",
}  # fmt: skip
# Column IV, the old Excel limit: no plan's table is wider; a cell beyond it is a stray.
MAX_COLUMN = 256


@dataclass(frozen=True)
class Line:
    number: int  # 1-based line, row or paragraph number in the source, for messages
    cells: tuple[str, ...]


@dataclass(frozen=True)
class Source:
    path: Path
    format: Format
    lines: list[Line]
    sha256: str
    warnings: tuple[str, ...] = ()  # read, but a person should look (e.g. mixed encodings)


def read_source(
    path: Path,
    fmt: Format | Literal["auto"] = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> Source:
    """All lines of a plan file; a clear :class:`InvalidInput` for anything unreadable.
    ``progress`` hears (pages read, pages) as a PDF is read; other formats read at once."""
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise InvalidInput(f"{path}: is a directory, not a plan file") from None
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read file ({exc.strerror})") from None
    data = _utf16_to_utf8(data)
    if not data.strip():
        raise InvalidInput(f"{path}: the file is empty")
    chosen = detect_format(path, data) if fmt == "auto" else fmt
    if chosen in ("text", "csv") and _binary(data):
        raise InvalidInput(f"{path}: a binary file, not {chosen}; use --format auto")
    notes: list[str] = []
    if chosen == "pdf":
        from dhr_workflow.importer.pdf import read_pdf  # imports Line from here

        lines = list(read_pdf(path, data, notes, progress))
    else:
        reader = {"text": _text, "csv": _csv, "xlsx": _xlsx, "docx": _docx}[chosen]
        lines = list(reader(path, data, notes))
    return Source(path, chosen, lines, hashlib.sha256(data).hexdigest(), tuple(notes))


def _utf16_to_utf8(data: bytes) -> bytes:
    # Excel's "Unicode Text" is UTF-16 with a byte-order mark.
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            return data.decode("utf-16").encode("utf-8")
        except UnicodeDecodeError:
            return data
    return data


def _binary(data: bytes) -> bool:
    return data[:4] == b"PK\x03\x04" or b"\x00" in data[:4096]


def detect_format(path: Path, data: bytes) -> Format:
    """From the content first (a .txt that is really a Word file is still a Word file)."""
    if data[:4] == b"PK\x03\x04":
        return _office_kind(path, data)
    # The PDF header may follow a little junk (some mail gateways prepend a line).
    if b"%PDF-" in data[:1024]:
        return "pdf"
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        raise InvalidInput(
            f"{path}: not a PDF despite its name (no %PDF- header); it may be damaged, or "
            "another kind of file renamed: save or download it again"
        )
    if _binary(data):
        raise InvalidInput(f"{path}: a binary file, not a plan (use text, CSV, XLSX, DOCX or PDF)")
    if suffix and suffix not in _EXTENSIONS:
        raise InvalidInput(
            f"{path}: {suffix} is not a plan format (text, CSV, XLSX, DOCX or PDF); "
            "give --format to read it anyway"
        )
    by_extension = _EXTENSIONS.get(suffix)
    if by_extension in ("text", "csv"):
        return by_extension
    # only counting tabs and commas: a character cut in two at the end does not matter
    first = data[:8192].decode("utf-8", errors="replace").splitlines()[:20]
    return (
        "text"
        if sum("\t" in line for line in first) >= sum("," in line for line in first)
        else "csv"
    )


def _office_kind(path: Path, data: bytes) -> Format:
    try:
        names = set(zipfile.ZipFile(io.BytesIO(data)).namelist())
    except zipfile.BadZipFile:
        raise InvalidInput(f"{path}: a damaged ZIP/Office file; save it again and retry") from None
    if "word/document.xml" in names:
        return "docx"
    if "xl/workbook.xml" in names:
        return "xlsx"
    raise InvalidInput(
        f"{path}: a ZIP file that is neither a Word (.docx) nor an Excel (.xlsx) document"
    )


def decode(path: Path, data: bytes) -> tuple[str, list[int]]:
    """Text in UTF-8 or, as Excel and Word save it on UK machines when not told UTF-8, Windows
    "ANSI" (cp1252). A file that mixes them (UTF-8 with lines pasted from elsewhere) is read
    line by line, each line UTF-8 if it is, else cp1252 — never one guess for the whole file,
    which would turn every UTF-8 "Zoë" into "ZoÃ«". Returns the text and, for a mixed file,
    the lines read as cp1252."""
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError:
        pass
    parts, cp1252, utf8 = [], [], False
    for number, raw in enumerate(data.removeprefix(b"\xef\xbb\xbf").splitlines(True), 1):
        try:
            parts.append(raw.decode("utf-8"))
            utf8 |= not raw.isascii()
        except UnicodeDecodeError:
            try:
                parts.append(raw.decode("cp1252"))
            except UnicodeDecodeError:
                raise InvalidInput(
                    f"{path}:{number}: neither UTF-8 nor Windows-1252 text; save it as UTF-8"
                ) from None
            cp1252.append(number)
    return "".join(parts), cp1252 if utf8 else []  # all cp1252: a file in one encoding


def _mixed(lines: list[int]) -> str:
    shown = ", ".join(map(str, lines[:10])) + (f" and {len(lines) - 10} more" if lines[10:] else "")
    return (
        f"line{'s' if len(lines) > 1 else ''} {shown} read as Windows-1252, the rest as UTF-8 "
        "(the file mixes them): check the accents and £ signs there"
    )


def _decoded(path: Path, data: bytes, notes: list[str]) -> str:
    text, cp1252 = decode(path, data)
    if cp1252:
        notes.append(_mixed(cp1252))
    return text


def _text(path: Path, data: bytes, notes: list[str]) -> Iterator[Line]:
    for number, line in enumerate(_decoded(path, data, notes).splitlines(), start=1):
        yield Line(number, tuple(line.split("\t")))


def _csv(path: Path, data: bytes, notes: list[str]) -> Iterator[Line]:
    text = _decoded(path, data, notes)
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:8192], ",;\t")
    except csv.Error:
        dialect = csv.excel
    # Only the delimiter is guessed: spreadsheets quote with " and double it inside (RFC 4180),
    # and the sniffer, left to guess the quoting too, took the apostrophes of 'soon' in a cell
    # for quote marks and ran rows together.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=dialect.delimiter)
    start = 1
    try:
        for row in reader:
            yield _sheet_line(start, row)
            start = reader.line_num + 1  # quoted cells may span lines
    except csv.Error as exc:
        raise InvalidInput(f"{path}:{reader.line_num}: not a readable CSV file ({exc})") from None


def _sheet_line(number: int, values: list[str]) -> Line:
    """A spreadsheet row as a line. Spreadsheets pad rows to the sheet's width, so trailing
    empty cells carry no meaning: a row with only its first cell filled is a heading-like line,
    which the parser reads as a section heading or, inside a table, as a wrapped first cell."""
    cells = list(values)
    while len(cells) > 1 and not cells[-1].strip():
        cells.pop()
    return Line(number, tuple(cells) if cells else ("",))


def _cell_text(value: object, number_format: str = "General") -> str:
    """A spreadsheet cell as the words a person sees in it."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        value = value.date()
    if isinstance(value, dt.date):
        if "d" not in number_format.lower():  # shown as "Mar-24": a month, not its first day
            return value.strftime("%B %Y")
        return value.strftime("%d/%m/%Y")  # written UK-style for the target grammar
    if isinstance(value, float):
        decimals = re.fullmatch(r"0\.(0+)", number_format)
        if decimals:  # "1.10" stays 1.10, not 1.1
            return f"{value:.{len(decimals.group(1))}f}"
        if value.is_integer():
            return str(int(value))
    return str(value)


def _xlsx(path: Path, data: bytes, notes: list[str]) -> Iterator[Line]:
    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for damaged files
        raise InvalidInput(
            f"{path}: not a readable Excel workbook ({exc.__class__.__name__})"
        ) from None
    offset = 0  # sheets are numbered on from the row count of the ones before
    for index, sheet in enumerate(book.worksheets):
        if index:
            yield Line(offset, ())  # a new sheet: the parser starts afresh
        last, beyond = 0, []
        for number, cells in _present_rows(sheet):
            texts = {c.column: _cell_text(c.value, c.number_format) for c in cells}
            beyond += [c.coordinate for c in cells if c.column > MAX_COLUMN and c.value is not None]
            row = [texts.get(column, "") for column in range(1, _width(texts) + 1)]
            last = number
            if row:
                yield _sheet_line(offset + number, row)
        if beyond:
            notes.append(_beyond(sheet.title, beyond))
        offset += last
    book.close()


def _width(texts: dict[int, str]) -> int:
    """Up to the last filled cell, and no further than MAX_COLUMN."""
    filled = [column for column, text in texts.items() if text.strip() and column <= MAX_COLUMN]
    return max(filled, default=0)


def _beyond(sheet: str, cells: list[str]) -> str:
    more = f" and {len(cells) - 1} more" if len(cells) > 1 else ""
    return (
        f"sheet {sheet!r}: cell {cells[0]}{more} beyond column IV ({MAX_COLUMN}) left out; "
        "no plan table is that wide"
    )


def _present_rows(sheet: Any) -> Iterator[tuple[int, list[Any]]]:
    """The rows a sheet's XML holds and, in each, the cells it holds: openpyxl's read-only
    reader (``ReadOnlyWorksheet._cells_by_row``) without its filling in of missing rows and
    columns, which one cell at XFD1048576, or a ``<dimension ref="A1:XFD1048576">``, turns
    into 17 billion empty cells."""
    from openpyxl.cell.read_only import ReadOnlyCell
    from openpyxl.worksheet._reader import WorkSheetParser

    book = sheet.parent
    with sheet._get_source() as source:
        parser = WorkSheetParser(
            source,
            sheet._shared_strings,
            data_only=True,
            epoch=book.epoch,
            date_formats=book._date_formats,
            timedelta_formats=book._timedelta_formats,
        )
        for number, cells in parser.parse():
            yield number, [ReadOnlyCell(sheet, **cell) for cell in cells]


def _docx(path: Path, data: bytes, notes: list[str]) -> Iterator[Line]:
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:  # python-docx raises several types for damaged files
        raise InvalidInput(
            f"{path}: not a readable Word document ({exc.__class__.__name__})"
        ) from None
    number = 0
    for block in document.iter_inner_content():
        if isinstance(block, Paragraph):
            number += 1
            yield Line(number, (block.text,))
        elif isinstance(block, Table):
            for row in block.rows:
                number += 1
                yield Line(number, tuple(_unmerged(row.cells)))


def _unmerged(cells: list[object]) -> list[str]:
    """A merged cell comes back once per grid column it spans: keep its text in the first
    and leave the others empty, so later columns keep their places under the header."""
    previous: object = None
    texts = []
    for cell in cells:
        tc = getattr(cell, "_tc", cell)
        texts.append("" if tc is previous else "\n".join(p.text for p in cell.paragraphs))  # type: ignore[attr-defined]
        previous = tc
    return texts
