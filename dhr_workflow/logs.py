"""The daemon's log: repeated identical warnings and errors rate-limited.

A fault that repeats in a tight loop (asyncio's accept loop out of file handles, a flood of
refused connections) must not bury everything else, nor fill the disk: 366,665 identical
"Too many open files" lines in a minute were seen. The first of a kind is logged; the same
message again within the window is counted, not written; the next one after the window says
how many were held back.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable

WINDOW = 60.0  # seconds
KINDS = 1000  # distinct messages remembered (bounded memory)


class RepeatFilter(logging.Filter):
    """Lets through one record per distinct (logger, level, message) per ``window`` seconds,
    at WARNING and above; lower levels pass untouched."""

    def __init__(self, window: float = WINDOW, clock: Callable[[], float] | None = None) -> None:
        super().__init__()
        self.window = window
        self.clock = clock or time.monotonic
        self.seen: OrderedDict[tuple[str, int, str], tuple[float, int]] = OrderedDict()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.levelno, record.getMessage())
        now = self.clock()
        last = self.seen.get(key)
        if last is not None and now - last[0] < self.window:
            self.seen[key] = (last[0], last[1] + 1)
            return False
        held = last[1] if last is not None else 0
        self.seen[key] = (now, 0)
        self.seen.move_to_end(key)
        while len(self.seen) > KINDS:
            self.seen.popitem(last=False)
        if held:
            record.msg = f"{record.getMessage()} (and {held} more like it, not logged)"
            record.args = None
        return True


def install(window: float = WINDOW) -> RepeatFilter:
    """Put one :class:`RepeatFilter` on every handler of the root logger."""
    repeat = RepeatFilter(window)
    for handler in logging.getLogger().handlers:
        handler.addFilter(repeat)
    return repeat
