"""Working through many rows a batch at a time.

BATCH is 500: small enough that a statement's bind parameters (one per value in an ``IN``
list, several per row of an executemany) stay well inside every backend's limit (SQLite's
is 32,766 since 3.32, lower before), and that memory stays bounded however large the store;
large enough that a tick over a large backlog is not dominated by round trips.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

BATCH = 500

T = TypeVar("T")


def chunked(items: Iterable[T], size: int = BATCH) -> Iterator[list[T]]:
    """``items`` in lists of ``size`` (the last may be shorter), consumed as they go: a
    generator's items are never all held at once."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
