"""Where a tick's time goes, written to a text file for a person to read:

- every SQL statement the tick sends, with its count and time at the driver (``execute``
  only: rows are fetched later, so on SQLite the fetching shows up in the Python profile);
- cProfile of the whole tick, by cumulative and by own time;
- the plans of the slowest SELECTs and of every statement of the bare selection (the floor):
  ``EXPLAIN (ANALYZE, BUFFERS)`` on PostgreSQL, ``EXPLAIN QUERY PLAN`` on SQLite.

Run by the tick section when ``bench/run.py --profile DIR`` is given, after the measurements,
so it never slows down a figure.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import event

from dhr_workflow import db


@dataclass
class Statement:
    sql: str
    params: Any
    count: int = 0
    seconds: float = 0.0
    many: bool = False


@dataclass
class Capture:
    statements: dict[str, Statement] = field(default_factory=dict)

    def slowest(self, n: int) -> list[Statement]:
        return sorted(self.statements.values(), key=lambda s: -s.seconds)[:n]


@contextmanager
def captured(store: db.Store) -> Iterator[Capture]:
    """Time every statement sent through the store's engines while the block runs."""
    capture = Capture()
    started: dict[int, float] = {}

    def before(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        started[id(cursor)] = time.perf_counter()

    def after(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        elapsed = time.perf_counter() - started.pop(id(cursor), time.perf_counter())
        entry = capture.statements.setdefault(sql, Statement(sql, params, many=many))
        entry.count += 1
        entry.seconds += elapsed

    engines = {id(e): e for e in (store.engine, store.read_engine)}.values()
    for engine in engines:
        event.listen(engine, "before_cursor_execute", before)
        event.listen(engine, "after_cursor_execute", after)
    try:
        yield capture
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", before)
            event.remove(engine, "after_cursor_execute", after)


def profile(
    store: db.Store, tick: Callable[[], object], floor: Callable[[], object], path: Path
) -> None:
    """Profile one tick and one floor selection; write what was found to ``path``."""
    profiler = cProfile.Profile()
    with captured(store) as in_tick:
        start = time.perf_counter()
        profiler.enable()
        tick()
        profiler.disable()
        elapsed = time.perf_counter() - start
    with captured(store) as in_floor:
        floor_start = time.perf_counter()
        floor()
        floor_elapsed = time.perf_counter() - floor_start
    sql = sum(s.seconds for s in in_tick.statements.values())
    report = [
        f"tick: {elapsed:.3f} s (under cProfile), SQL execute: {sql:.3f} s in "
        f"{sum(s.count for s in in_tick.statements.values())} statements; "
        f"floor selection: {floor_elapsed:.3f} s",
        "",
        "== the tick's statements, slowest first (count, seconds at execute)",
        *(_line(s) for s in in_tick.slowest(25)),
        "",
        "== cProfile, by cumulative time",
        _stats(profiler, "cumulative", 45),
        "== cProfile, by own time",
        _stats(profiler, "tottime", 30),
        "== plans of the tick's five slowest SELECTs",
        *_plans(store, [s for s in in_tick.slowest(25) if _is_select(s)][:5]),
        "== plans of the floor's statements",
        *_plans(store, [s for s in in_floor.statements.values() if _is_select(s)]),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(report) + "\n")


def _line(s: Statement) -> str:
    flat = " ".join(s.sql.split())
    return f"{s.count:6d} {s.seconds:8.3f}  {flat[:300]}"


def _stats(profiler: cProfile.Profile, order: str, limit: int) -> str:
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(limit)
    return out.getvalue()


def _is_select(s: Statement) -> bool:
    return not s.many and s.sql.lstrip().upper().startswith(("SELECT", "WITH"))


def _plans(store: db.Store, statements: list[Statement]) -> list[str]:
    postgres = store.engine.dialect.name == "postgresql"
    prefix = "EXPLAIN (ANALYZE, BUFFERS) " if postgres else "EXPLAIN QUERY PLAN "
    lines = []
    with store.read_engine.connect() as conn:
        for s in statements:
            lines += ["", f"-- {s.count} × {s.seconds:.3f} s: {' '.join(s.sql.split())[:600]}"]
            try:
                rows = conn.exec_driver_sql(prefix + s.sql, s.params).all()
            except Exception as exc:  # a plan we cannot get is noted, not fatal
                lines.append(f"   (no plan: {exc.__class__.__name__}: {str(exc)[:200]})")
                continue
            lines += ["   " + " | ".join(str(v) for v in row) for row in rows]
    return [*lines, ""]
