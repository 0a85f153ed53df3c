"""PDF files joined into one without holding them all: bounded memory for ``report --all``.

pypdf's ``PdfWriter.append`` (and qpdf) keep every page of every part until the end: about
2 MB a review, 4 GB for a national store's 2,000 reviews. Here each part is read, its pages
and everything they use (fonts, images, content streams, links) are renumbered and written
out at once, and the part is dropped: what stays in memory is one offset per object and one
reference per page. The page tree is flat, and each part becomes one bookmark at its first
page. Stream data is copied as it is stored (already compressed), never decoded.
"""

from __future__ import annotations

import gc
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from pypdf import PdfReader
from pypdf.generic import (
    ArrayObject,
    DictionaryObject,
    IndirectObject,
    NameObject,
    NullObject,
    NumberObject,
    PdfObject,
    StreamObject,
    TextStringObject,
)

CATALOG, PAGES = 1, 2  # written last, when the pages and bookmarks are known


class _Out:
    """The output file: objects written as they come, their offsets kept for the xref."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        self.offsets: dict[int, int] = {}
        self.next_id = PAGES + 1
        fh.write(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")

    def reserve(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def write(self, number: int, obj: PdfObject) -> None:
        self.offsets[number] = self.fh.tell()
        self.fh.write(f"{number} 0 obj\n".encode())
        obj.write_to_stream(self.fh)
        self.fh.write(b"\nendobj\n")

    def finish(self, info: int) -> None:
        start = self.fh.tell()
        size = self.next_id
        lines = [f"xref\n0 {size}\n", "0000000000 65535 f \n"]
        lines += [f"{self.offsets[n]:010d} 00000 n \n" for n in range(1, size)]
        lines.append(
            f"trailer\n<< /Size {size} /Root {CATALOG} 0 R /Info {info} 0 R >>\n"
            f"startxref\n{start}\n%%EOF\n"
        )
        self.fh.write("".join(lines).encode())


def _copy_part(out: _Out, path: Path) -> list[int]:
    """Write one part's pages and what they reach; returns the new numbers of its pages."""
    reader = PdfReader(path)
    numbers: dict[tuple[int, int], int] = {}
    queue: deque[tuple[int, int]] = deque()

    def renumber(ref: IndirectObject) -> IndirectObject:
        key = (ref.idnum, ref.generation)
        if key not in numbers:
            numbers[key] = out.reserve()
            queue.append(key)
        return _ref(numbers[key])

    def remap(obj: Any) -> Any:
        if isinstance(obj, IndirectObject):
            return renumber(obj)
        if isinstance(obj, StreamObject):  # keep the stored (compressed) bytes as they are
            copy = obj.__class__()
            copy._data = obj._data
            copy.update({k: remap(v) for k, v in obj.items()})
            return copy
        if isinstance(obj, DictionaryObject):
            return DictionaryObject({k: remap(v) for k, v in obj.items()})
        if isinstance(obj, ArrayObject):
            return ArrayObject(remap(v) for v in obj)
        return obj

    pages = []
    for page in reader.pages:
        assert page.indirect_reference is not None  # pages are always indirect objects
        pages.append(renumber(page.indirect_reference).idnum)
    page_keys = set(queue)
    while queue:
        key = queue.popleft()
        obj = reader.get_object(IndirectObject(key[0], key[1], reader)) or NullObject()
        if key in page_keys and isinstance(obj, DictionaryObject):  # its page tree stays
            obj = DictionaryObject({k: v for k, v in obj.items() if k != "/Parent"})
            obj[NameObject("/Parent")] = _ref(PAGES)
        out.write(numbers[key], remap(obj))
    return pages


def _bookmarks(out: _Out, marks: list[tuple[str, int]]) -> int | None:
    """A flat outline: one entry per part, at its first page."""
    if not marks:
        return None
    root = out.reserve()
    ids = [out.reserve() for _ in marks]
    for i, (title, page) in enumerate(marks):
        item = DictionaryObject(
            {
                NameObject("/Title"): TextStringObject(title),
                NameObject("/Parent"): _ref(root),
                NameObject("/Dest"): ArrayObject([_ref(page), NameObject("/Fit")]),
            }
        )
        if i:
            item[NameObject("/Prev")] = _ref(ids[i - 1])
        if i + 1 < len(ids):
            item[NameObject("/Next")] = _ref(ids[i + 1])
        out.write(ids[i], item)
    outline = {"/Type": NameObject("/Outlines"), "/Count": NumberObject(len(ids))}
    outline |= {"/First": _ref(ids[0]), "/Last": _ref(ids[-1])}
    out.write(root, DictionaryObject({NameObject(k): v for k, v in outline.items()}))
    return root


def _ref(number: int) -> IndirectObject:
    return IndirectObject(number, 0, None)


def join(parts: Sequence[tuple[Path, str | None]], path: Path, title: str) -> int:
    """Write the parts (file, bookmark title or None) one after another into ``path``;
    returns the number of pages."""
    with path.open("wb") as fh:
        out = _Out(fh)
        kids: list[int] = []
        marks: list[tuple[str, int]] = []
        for done, (part, mark) in enumerate(parts, 1):
            pages = _copy_part(out, part)
            if done % 25 == 0:  # a reader's objects point back at it: only the cycle
                gc.collect()  # collector frees them, and left alone it runs too rarely
            if mark and pages:
                marks.append((mark, pages[0]))
            kids += pages
        tree = {"/Type": NameObject("/Pages"), "/Count": NumberObject(len(kids))}
        tree["/Kids"] = ArrayObject(_ref(k) for k in kids)
        out.write(PAGES, DictionaryObject({NameObject(k): v for k, v in tree.items()}))
        catalog = DictionaryObject(
            {NameObject("/Type"): NameObject("/Catalog"), NameObject("/Pages"): _ref(PAGES)}
        )
        outline = _bookmarks(out, marks)
        if outline is not None:
            catalog[NameObject("/Outlines")] = _ref(outline)
            catalog[NameObject("/PageMode")] = NameObject("/UseOutlines")
        out.write(CATALOG, catalog)
        info = out.reserve()
        out.write(info, DictionaryObject({NameObject("/Title"): TextStringObject(title)}))
        out.finish(info)
    return len(kids)
