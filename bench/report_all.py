"""Benchmark: `dhr-workflow report --all` over N actions in every format (issue #14).

    python bench/report_all.py [--sizes 10000,100000] [--formats csv,xlsx,html,pdf]
                               [--backend sqlite|postgresql] [--runs 3]

Data: ``bench/tick.py``'s store (50 actions a review, 50 agencies, 90% dated, 20% completed)
plus an ``action.create`` audit event per action, so the trend's replay reads a real log. Each
report is a fresh ``dhr-workflow report`` process; its wall time and its peak resident memory
(``ru_maxrss`` from wait4) are measured, medians of ``--runs``. The floor is the same format for
one review (``--review R0``, 50 actions) on the same store: start-up, imports and a report's
fixed cost. Bounded memory shows as a peak that stays near the floor's and does not grow with
N. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import select  # noqa: E402

from bench.report import (  # noqa: E402
    Options,
    Section,
    Target,
    markdown_table,
    median,
    ratio,
    seconds,
)
from bench.stores import analyze, bulk_insert, bulk_load, fresh, say  # noqa: E402
from bench.tick import LONDON, TODAY, populate  # noqa: E402
from dhr_workflow import db  # noqa: E402
from dhr_workflow.models import Action, AuditEvent  # noqa: E402

HEADERS = [
    "backend", "actions", "reviews", "format", "wall time", "one review (floor)", "× floor",
    "peak RSS", "one review's peak (floor)", "× floor", "file size",
]  # fmt: skip
EVENT_COLUMNS = ("seq", "at", "actor", "kind", "subject", "data", "prev_hash", "hash")


def _audit(store: db.Store) -> None:
    """An action.create event per action (the hash chain is not the point here)."""
    now = dt.datetime.combine(TODAY, dt.time(9), LONDON)
    with store.reading() as s:
        found = s.execute(
            select(Action.id, Action.status, Action.due_date, Action.completed_on)
        ).all()
    rows = (
        (n, now - dt.timedelta(days=400), "bench", "action.create", f"action:{aid}",
         json.dumps({"after": {"status": status, "due_date": str(due) if due else None,
                               "completed_on": str(done) if done else None}}),
         "0" * 64, f"{n:064x}")
        for n, (aid, status, due, done) in enumerate(found, start=1)
    )  # fmt: skip
    with store.engine.begin() as conn, bulk_load(conn, AuditEvent.__table__):
        bulk_insert(conn, AuditEvent.__table__, EVENT_COLUMNS, rows)


def _settle(store: db.Store) -> None:
    """As a store in use would be: SQLite's write-ahead log folded into the file (a bulk load
    leaves it as large as the data, and every reader would page through it)."""
    if store.engine.dialect.name == "sqlite":
        raw = store.engine.raw_connection()  # outside SQLAlchemy's BEGIN: a checkpoint
        try:  # cannot run inside a transaction
            raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[union-attr]
        finally:
            raw.close()
    else:
        analyze(store)


def run_report(url: str, fmt: str, out: Path, scope: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one `dhr-workflow report` process."""
    env = {**os.environ, "DHR_DATABASE_URL": url, "DHR_PARTNERSHIP": "Bench CSP"}
    cmd = [sys.executable, "-m", "dhr_workflow", "report", *scope, "--as-of",
           TODAY.isoformat(), "--format", fmt, "-o", str(out)]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"report {' '.join(scope)} --format {fmt} failed")
    return elapsed, usage.ru_maxrss / 1024


def _medians(url: str, fmt: str, out: Path, scope: list[str], runs: int) -> tuple[float, float]:
    took = [run_report(url, fmt, out, scope) for _ in range(runs)]
    return median([t for t, _ in took]), median([m for _, m in took])


def measure(backend: str, sizes: list[int], formats: list[str], runs: int, tmp: str) -> Section:
    """Each format: `report --all` beside its floor, `report --review R1` (one review of 50
    actions: the process, its imports and a report's fixed cost) on the same store."""
    section = Section("report", "Reports: report --all", HEADERS)
    for n in sizes:
        with fresh(backend, f"report-{n}-{'-'.join(formats)}", tmp) as url:
            store = db.Store(url)
            populate(store, n, today=TODAY)
            _audit(store)
            _settle(store)
            store.dispose()
            for fmt in formats:
                out = Path(tmp) / f"report-{n}.{fmt}"
                say(f"report: {backend} {n:,} actions, {fmt}, {runs} run(s)")
                one_took, one_peak = _medians(url, fmt, out, ["--review", "R0"], runs)
                took, peak = _medians(url, fmt, out, ["--all"], runs)
                size = out.stat().st_size / 1024 / 1024
                section.rows.append([
                    backend, f"{n:,}", f"{max(1, n // 50):,}", fmt, seconds(took),
                    seconds(one_took), ratio(took, one_took), f"{peak:.0f} MB",
                    f"{one_peak:.0f} MB", ratio(peak, one_peak), f"{size:.1f} MB",
                ])  # fmt: skip
                say(f"  {seconds(took)} (one review {seconds(one_took)}), peak {peak:.0f} MB")
    return section


SIZES, QUICK_SIZES = (10_000, 100_000), (2_000,)
FORMATS = ("csv", "xlsx", "html")
BOUNDED = 1.5  # peak RSS at the largest size against the smallest: memory that does not grow


def section(opts: Options, tmp: str) -> Section:
    """The runner's section: every format at every size on each backend, and the PDF (a
    WeasyPrint layout of every page, minutes per thousand actions) once at the smallest."""
    sizes = QUICK_SIZES if opts.quick else SIZES
    parts = []
    for backend in opts.backends:
        parts.append(measure(backend, list(sizes), list(FORMATS), opts.runs, tmp))
        parts.append(measure(backend, [sizes[0]], ["pdf"], 1, tmp))
    sec = Section("report", "Reports: report --all", HEADERS)
    sec.rows = [row for part in parts for row in part.rows]
    sec.targets = _bounded(sec.rows, sizes)
    sec.paragraph = (
        f"Medians of {opts.runs} runs (the PDF: one run), each a fresh `dhr-workflow report` "
        "process; wall time and peak resident memory (ru_maxrss). The floor is the same format "
        "for one review of 50 actions on the same store (`--review R0`): start-up, imports and "
        "a report's fixed cost. Data: bench/tick.py's store (50 actions a review) and an "
        "action.create audit event per action for the trend. Memory is bounded when the peak "
        "at the largest size stays within "
        f"{BOUNDED:.1f}× the peak at the smallest: one review is held at a time, and the "
        "PDF's parts are joined a part at a time (reports/pdfjoin.py)."
    )
    return sec


def _bounded(rows: list[list[str]], sizes: tuple[int, ...]) -> list[Target]:
    if len(sizes) < 2:
        return []
    peaks = {(r[0], r[1], r[3]): float(r[7].split()[0]) for r in rows}
    small, large = f"{sizes[0]:,}", f"{sizes[-1]:,}"
    targets = []
    for backend, _, fmt in sorted(k for k in peaks if k[1] == large):
        grew = peaks[(backend, large, fmt)] / peaks[(backend, small, fmt)]
        targets.append(
            Target(
                f"report --all {fmt} peak memory at {large} against {small} actions, {backend}",
                f"≤ {BOUNDED:.1f}× (bounded)",
                f"{grew:.2f}×",
                grew <= BOUNDED,
            )
        )
    return targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--formats", default="csv,xlsx,html,pdf")
    parser.add_argument("--backend", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--runs", type=int, default=3, help="runs per median")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="dhr-bench-report-") as tmp:
        section = measure(args.backend, sizes, args.formats.split(","), args.runs, tmp)
    print(markdown_table(section.headers, section.rows))


if __name__ == "__main__":
    main()
