"""Benchmark: `dhr-workflow report --all` over N actions in every format (issue #14).

    python bench/report_all.py [--sizes 10000,100000] [--formats csv,xlsx,html,pdf]
                               [--backend sqlite|postgresql]

Data: ``bench/tick.py``'s store (50 actions a review, 50 agencies, 90% dated, 20% completed)
plus an ``action.create`` audit event per action, so the trend's replay reads a real log. Each
report is a fresh ``dhr-workflow report --all`` process; its wall time and its peak resident
memory (``ru_maxrss`` from wait4) are measured. Bounded memory shows as a peak that does not
grow with N. Prints a Markdown table (and, with ``--section``, the runner's Section shape).
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

from bench.report import Section, markdown_table, seconds  # noqa: E402
from bench.stores import analyze, bulk_insert, bulk_load, fresh, say  # noqa: E402
from bench.tick import LONDON, TODAY, populate  # noqa: E402
from dhr_workflow import db  # noqa: E402
from dhr_workflow.models import Action, AuditEvent  # noqa: E402

HEADERS = ["backend", "actions", "reviews", "format", "wall time", "peak RSS", "file size"]
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
        with store.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    else:
        analyze(store)


def run_report(url: str, fmt: str, out: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one `dhr-workflow report --all` process."""
    env = {**os.environ, "DHR_DATABASE_URL": url, "DHR_PARTNERSHIP": "Bench CSP"}
    cmd = [sys.executable, "-m", "dhr_workflow", "report", "--all", "--as-of",
           TODAY.isoformat(), "--format", fmt, "-o", str(out)]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"report --format {fmt} failed")
    return elapsed, usage.ru_maxrss / 1024


def measure(backend: str, sizes: list[int], formats: list[str], tmp: str) -> Section:
    section = Section("report", "Reports: report --all", HEADERS)
    for n in sizes:
        with fresh(backend, f"report-{n}", tmp) as url:
            store = db.Store(url)
            populate(store, n, today=TODAY)
            _audit(store)
            _settle(store)
            store.dispose()
            for fmt in formats:
                out = Path(tmp) / f"report-{n}.{fmt}"
                say(f"report: {backend} {n:,} actions, {fmt}")
                took, peak = run_report(url, fmt, out)
                size = out.stat().st_size / 1024 / 1024
                row = [backend, f"{n:,}", f"{max(1, n // 50):,}", fmt, seconds(took)]
                section.rows.append([*row, f"{peak:.0f} MB", f"{size:.1f} MB"])
                say(f"  {seconds(took)}, peak {peak:.0f} MB, {size:.1f} MB")
    return section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--formats", default="csv,xlsx,html,pdf")
    parser.add_argument("--backend", default="sqlite", choices=["sqlite", "postgresql"])
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="dhr-bench-report-") as tmp:
        section = measure(args.backend, sizes, args.formats.split(","), tmp)
    print(markdown_table(section.headers, section.rows))


if __name__ == "__main__":
    main()
