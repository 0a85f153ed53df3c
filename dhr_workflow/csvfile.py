"""The CSV files a coordinator keeps by hand (contacts, the agency directory): read as UTF-8
text, a row at a time, every problem named by its file and line, all-or-nothing."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from dhr_workflow.errors import InvalidInput

Row = TypeVar("Row")


def read_rows(
    path: Path,
    check_header: Callable[[list[str]], None],
    make_row: Callable[[int, dict[str, str]], Row],
) -> tuple[list[Row], list[str]]:
    """Each non-blank row through ``make_row(line, cells)``, cells named by the lower-case
    header and stripped; the rows it made, and ``path:line: problem`` for each it refused."""
    reader = csv.reader(io.StringIO(read_text(path), newline=""))
    rows, errors = [], []
    try:
        header = [h.strip().lower() for h in next(reader, [])]
        check_header(header)
        start = reader.line_num + 1
        for values in reader:
            cells = {
                name: (values[i] if i < len(values) else "").strip()
                for i, name in enumerate(header)
            }
            if any(cells.values()):
                try:
                    rows.append(make_row(start, cells))
                except InvalidInput as exc:
                    errors.append(f"{path}:{start}: {exc}")
            start = reader.line_num + 1  # a quoted cell may span lines: say where a row starts
    except csv.Error as exc:
        raise InvalidInput(f"{path}:{reader.line_num}: not readable as CSV ({exc})") from None
    return rows, errors


def refuse(errors: list[str]) -> None:
    """Nothing from a file with any problem: the first, and how many more."""
    if errors:
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise InvalidInput(f"{errors[0]}{more}; nothing from this file was imported")


def read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read file ({exc.strerror})") from None
    if b"\x00" in data:
        raise InvalidInput(f"{path}: a binary file, not a CSV (save it as CSV UTF-8)")
    try:
        return data.decode("utf-8-sig")  # Excel writes a BOM
    except UnicodeDecodeError:
        pass
    # Refused rather than guessed: names and addresses go into every message. The lines are
    # named, because a file mixing encodings cannot be mended by saving it again.
    bad = _not_utf8(data)
    which = ", ".join(map(str, bad[:10])) + (f" and {len(bad) - 10} more" if bad[10:] else "")
    which = f"lines {which} are" if len(bad) > 1 else f"line {which} is"
    raise InvalidInput(
        f"{path}:{bad[0]}: not a UTF-8 text CSV file ({which} not UTF-8): save it as CSV UTF-8 "
        "and check the accents and £ signs there"
    ) from None


def _not_utf8(data: bytes) -> list[int]:
    bad = []
    for number, raw in enumerate(data.splitlines(), start=1):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            bad.append(number)
    return bad or [1]
