"""What a benchmark section hands back to the runner (``bench/run.py``), and the formatting
every section shares: medians, percentiles, ratios, and a table as Markdown."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Options:
    """The runner's choices, handed to every section."""

    sizes: tuple[int, ...]
    backends: tuple[str, ...]
    runs: int
    quick: bool
    messages: int  # outbox
    feed_actions: int
    clients: tuple[int, ...]
    requests: int  # per client and kind of request
    lookups: int  # token lookups per kind
    rss_actions: int
    profile: str | None = None  # a directory: the tick section writes where its time goes


@dataclass(frozen=True)
class Target:
    """A target the issue states, and whether this run met it."""

    what: str
    target: str
    result: str
    met: bool


@dataclass
class Section:
    key: str
    title: str
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    paragraph: str = ""
    targets: list[Target] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    load: str = ""  # the machine's load average around the section


def target_summary(targets: Sequence[Target]) -> str:
    """One sentence: which of the issue's targets this section met and missed."""
    if not targets:
        return ""
    met = [t for t in targets if t.met]
    missed = [t for t in targets if not t.met]
    text = f"Against the issue's targets: {len(met)} met, {len(missed)} missed"
    if missed:
        text += " (" + "; ".join(f"{t.what}: {t.result}, target {t.target}" for t in missed) + ")"
    return text + "."


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def p95(values: Sequence[float]) -> float:
    """The 95th percentile (nearest rank), or the largest value when there are few."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def seconds(value: float) -> str:
    if math.isnan(value):
        return "—"
    if value >= 1:
        return f"{value:.2f} s"
    if value >= 0.001:
        return f"{value * 1000:.1f} ms"
    return f"{value * 1e6:.0f} µs"


def ratio(value: float, base: float) -> str:
    if math.isnan(value) or math.isnan(base) or base == 0:
        return "—"
    return f"{value / base:.2f}×"


def percent(value: float, base: float) -> str:
    if math.isnan(value) or math.isnan(base) or base == 0:
        return "—"
    return f"{value / base:.0%}"


def verdict(met: bool) -> str:
    return "**met**" if met else "**missed**"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def one_line(exc: BaseException) -> str:
    """An exception as one short line for a table cell."""
    text = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {text[0] if text else ''}"[:160]
