"""The runner's import section: generated plans at scale, then the three real plans.

At scale (issue #15: a 2k-row CSV took 16 s, 8k rows 56 s, 157k rows was killed after 500 s):
generated CSV plans of 1,000, 10,000 and 100,000 actions (:func:`plan_csv`), each on SQLite and
PostgreSQL, medians of several runs, every figure beside its floor from the same run:

- read: the file's lines (``read_source``): the floor of parsing them;
- parse: lines to plan rows (``parse_lines``);
- bare executemany: as many action rows inserted with one executemany in one transaction:
  the floor of storing them;
- import: read, parse and apply, committed, into a fresh store, as ``dhr-workflow import``
  does it (parse outside the transaction, apply inside);
- write transaction: that import's transaction from its BEGIN to its COMMIT. On SQLite the
  write lock is held all that time, so the daemon's sender and tick wait behind it (up to the
  busy timeout, ``db.BUSY_TIMEOUT``); on PostgreSQL the audit chain's advisory lock is held as long;
- re-import: the same file again into the same store: nothing changes, so it is the
  comparison alone (which also runs inside the write transaction).

The real plans: each imported into a fresh SQLite store, in-process and through the CLI.
What is a page? The plans are text extracted from Word/PDF documents and carry no form feeds.
Their documents repeat the table's header row at the top of every page the action table
spans, and the parser counts each header row it finds (``ParsedPlan.headers_found``), so a
"page" here is one header row: one page of the action table as printed. It is a proxy, and
the table says per action and per KB too.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import event

from bench.report import (
    Options,
    Section,
    Target,
    markdown_table,
    median,
    one_line,
    ratio,
    seconds,
)
from bench.stores import fresh, say
from dhr_workflow import db, reviews
from dhr_workflow.importer.apply import apply_plan
from dhr_workflow.importer.parse import ParsedPlan, parse_lines
from dhr_workflow.importer.readers import read_source
from dhr_workflow.models import Action

ROOT = Path(__file__).resolve().parent.parent
PLANS = ROOT / "tests" / "data" / "plans"
NOW = dt.datetime(2024, 6, 3, 9, tzinfo=dt.UTC)
SIZES, QUICK_SIZES = (1_000, 10_000, 100_000), (1_000, 5_000)
LINEAR = 0.8  # rows/s at the largest size against the next one down: "roughly flat"
BUSY_TIMEOUT = float(db.BUSY_TIMEOUT)  # how long a queued SQLite writer waits

# --- generated plans ---------------------------------------------------------------------------

AGENCIES = (
    "West Mercia Police", "Metropolitan Police Service", "Avon and Somerset Police",
    "Westminster City Council", "Adult Social Care", "Children's Services", "NHS England",
    "Clinical Commissioning Group", "Community Safety Partnership", "National Probation Service",
    "Community Rehabilitation Company", "Worcestershire Acute Hospitals NHS Trust",
    "Herefordshire and Worcestershire Health and Care NHS Trust", "Women's Aid",
    "Victim Support", "Housing Options", "Public Health", "Turning Point",
    "Local Safeguarding Children Board", "Bi Borough VAWG Strategic Board",
)  # fmt: skip
# Target words in the forms targets.read_target reads: fixed, month, season, relative,
# recurring, none and completed.
TARGETS = (
    "31/12/2024", "30 th November 2023", "December 2024", "Mar-25", "Autumn 2024", "15.03.2025",
    "3 months following review publication", "6 months of the plan being agreed",
    "Six monthly", "On-going", "TBC", "Completed – 27/09/23.",
)  # fmt: skip
STATUSES = ("", "", "In progress", "Completed", "Awaiting update", "Complete - training delivered")
HEADER = ("Recommendation", "Action", "Lead Agency", "Target date", "Status")


def plan_csv(rows: int, seed: int = 7) -> str:
    """A plan of ``rows`` actions as a partnership's CSV export has them: numbered
    recommendations with their text, a fifth of them with a second action on an unnumbered
    row below, about 20 lead agencies, target words of every kind, a status column, and an
    "Agency: ..." section heading every 50 recommendations. The same plan for the same seed."""
    rng = random.Random(seed)  # noqa: S311 - test data, not a secret
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HEADER)
    written = rec = 0
    while written < rows:
        if rec % 50 == 0:
            writer.writerow([f"Agency: {rng.choice(AGENCIES)}"])
        rec += 1
        writer.writerow([
            f"{rec}. Agencies should review how risk is shared (recommendation {rec})",
            f"Deliver briefing {rec} to all front-line staff on coercive control",
            rng.choice(AGENCIES), rng.choice(TARGETS), rng.choice(STATUSES),
        ])  # fmt: skip
        written += 1
        if written < rows and rng.random() < 0.2:  # a second action, holder and date its own
            writer.writerow([
                "", f"Audit compliance with briefing {rec}", rng.choice(AGENCIES),
                rng.choice(TARGETS[:6]), "",
            ])  # fmt: skip
            written += 1
    return out.getvalue()


# --- at scale ----------------------------------------------------------------------------------

SCALE_HEADERS = [
    "store", "rows", "read lines (floor)", "parse", "parse rows/s", "× read",
    "bare executemany (floor)", "import", "import rows/s", "× floors", "write transaction",
    "re-import, unchanged", "its write transaction",
]  # fmt: skip


@dataclass
class ScaleFigures:
    backend: str
    rows: int
    read: list[float] = field(default_factory=list)
    parse: list[float] = field(default_factory=list)
    floor: list[float] = field(default_factory=list)  # bare executemany
    full: list[float] = field(default_factory=list)
    held: list[float] = field(default_factory=list)  # the import's write transaction
    again: list[float] = field(default_factory=list)
    again_held: list[float] = field(default_factory=list)


def section(opts: Options, tmp: str) -> Section:
    sec = Section("import", "Plan import", SCALE_HEADERS)
    done = []
    for backend in opts.backends:
        _warm_up(backend, tmp)
        for n in QUICK_SIZES if opts.quick else SIZES:
            try:
                f = measure_scale(backend, n, opts.runs, tmp)
            except Exception as exc:  # reported in the table; the other sizes still run
                failed = [backend, f"{n:,}", f"failed: {one_line(exc)}"]
                sec.rows.append(failed + [""] * (len(SCALE_HEADERS) - len(failed)))
                continue
            sec.rows.append(_scale_row(f))
            done.append(f)
    sec.targets = _targets(done)
    sec.paragraph = "\n\n".join([_scale_paragraph(opts, done), _real_plans(opts, tmp)])
    return sec


def measure_scale(backend: str, n: int, runs: int, tmp: str) -> ScaleFigures:
    f = ScaleFigures(backend, n)
    path = Path(tmp) / f"plan-{n}.csv"
    if not path.exists():
        path.write_text(plan_csv(n), encoding="utf-8")
    for run in range(runs):
        start = time.perf_counter()
        source = read_source(path)
        f.read.append(time.perf_counter() - start)
        start = time.perf_counter()
        plan = parse_lines(source.lines)
        f.parse.append(time.perf_counter() - start)
        assert len(plan.rows) == n, (len(plan.rows), n)
        with fresh(backend, f"floor-{n}-{run}", tmp) as url:
            f.floor.append(_bare_executemany(url, plan))
        with fresh(backend, f"scale-{n}-{run}", tmp) as url:
            for total, held in (f.full, f.held), (f.again, f.again_held):
                seconds_total, seconds_held = _timed_import(url, path)
                total.append(seconds_total)
                held.append(seconds_held)
        say(
            f"import: {backend} {n:,} rows, run {run + 1}: parse {f.parse[-1]:.2f} s, "
            f"import {f.full[-1]:.2f} s (transaction {f.held[-1]:.2f} s), "
            f"again {f.again[-1]:.2f} s, floor {f.floor[-1]:.2f} s"
        )
    return f


def _warm_up(backend: str, tmp: str) -> None:
    """One small import first, untimed: the first in a process pays for compiling every
    statement and pattern once, which would be charged to the smallest size."""
    path = Path(tmp) / "warm-up.csv"
    path.write_text(plan_csv(500), encoding="utf-8")
    with fresh(backend, "warm-up", tmp) as url:
        _timed_import(url, path)


@contextmanager
def _transactions(store: db.Store) -> Iterator[list[float]]:
    """When each transaction on the store's writer began: on SQLite, after BEGIN IMMEDIATE
    (db.py's listener runs first), so from the moment the write lock is held."""
    began: list[float] = []

    def stamp(_conn: Any) -> None:
        began.append(time.perf_counter())

    event.listen(store.engine, "begin", stamp)
    try:
        yield began
    finally:
        event.remove(store.engine, "begin", stamp)


def _timed_import(url: str, path: Path) -> tuple[float, float]:
    """Seconds to read, parse and apply the plan, committed, as ``dhr-workflow import`` does;
    and the seconds its write transaction lasted."""
    store = db.Store(url)
    try:
        with _transactions(store) as began:
            start = time.perf_counter()
            source = read_source(path)
            plan = parse_lines(source.lines)
            with store.transaction() as s:
                apply_plan(
                    s, "BENCH", plan, title=None, source=path.name, digest=source.sha256,
                    today=NOW.date(), now=NOW, actor="bench", dry_run=False,
                )  # fmt: skip
            end = time.perf_counter()
        return end - start, end - began[0]
    finally:
        store.dispose()


FLOOR_COLUMNS = (
    "review_id", "ref", "text", "target_text", "status", "due_basis", "needs_review",
    "review_reasons", "sequence", "source_key", "overrides", "created_at", "updated_at",
)  # fmt: skip


def _bare_executemany(url: str, plan: ParsedPlan) -> float:
    """Seconds to store one action row per plan row, with one DB-API executemany in one
    transaction: no ORM, no comparison, no audit. The review is made beforehand, untimed."""
    store = db.Store(url)
    try:
        with store.transaction() as s:
            review_id = reviews.add(s, "FLOOR", "Floor", now=NOW, actor="bench").id
        dialect = store.engine.dialect
        stamp, no_reasons, no_overrides, no = (
            _bound(dialect, column, value)
            for column, value in (("created_at", NOW), ("review_reasons", []),
                                  ("overrides", {}), ("needs_review", False))
        )  # fmt: skip
        rows = [
            (review_id, r.ref, r.text or r.rec_text, r.target or None, "open", "none", no,
             no_reasons, 0, r.key, no_overrides, stamp, stamp)
            for r in plan.rows
        ]  # fmt: skip
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        sql = f"INSERT INTO action ({', '.join(FLOOR_COLUMNS)}) VALUES ({', '.join([mark] * 13)})"  # noqa: S608
        start = time.perf_counter()
        with store.engine.begin() as conn:
            conn.exec_driver_sql(sql, rows)
        return time.perf_counter() - start
    finally:
        store.dispose()


def _bound(dialect: Any, column: str, value: Any) -> Any:
    """A value as the column's type hands it to the driver (JSON as text, UTC datetimes)."""
    processor = Action.__table__.c[column].type.dialect_impl(dialect).bind_processor(dialect)
    return processor(value) if processor else value


def _rate(rows: int, value: float) -> str:
    return f"{rows / value:,.0f}" if value else "—"


def _scale_row(f: ScaleFigures) -> list[str]:
    read, parse, floor, full = median(f.read), median(f.parse), median(f.floor), median(f.full)
    return [
        f.backend, f"{f.rows:,}", seconds(read), seconds(parse), _rate(f.rows, parse),
        ratio(parse, read), seconds(floor), seconds(full), _rate(f.rows, full),
        ratio(full, read + floor), seconds(median(f.held)), seconds(median(f.again)),
        seconds(median(f.again_held)),
    ]  # fmt: skip


def _linearity(done: list[ScaleFigures], backend: str) -> tuple[ScaleFigures, ScaleFigures] | None:
    """The two largest sizes measured on a backend: rows/s should not fall between them."""
    mine = sorted((f for f in done if f.backend == backend), key=lambda f: f.rows)
    return (mine[-2], mine[-1]) if len(mine) >= 2 else None


def _flat(small: ScaleFigures, large: ScaleFigures, times: str) -> float:
    """Rows/s at the large size as a fraction of rows/s at the small one."""
    a, b = median(getattr(small, times)), median(getattr(large, times))
    return (large.rows / b) / (small.rows / a)


def _targets(done: list[ScaleFigures]) -> list[Target]:
    targets = []
    for backend in dict.fromkeys(f.backend for f in done):
        pair = _linearity(done, backend)
        if pair is None:
            continue
        small, large = pair
        for what, times in (("parse", "parse"), ("import", "full")):
            kept = _flat(small, large, times)
            targets.append(
                Target(
                    f"{what} rows/s at {large.rows:,} against {small.rows:,} rows, {backend}",
                    f"≥ {LINEAR:.0%} (linear)",
                    f"{kept:.0%}",
                    kept >= LINEAR,
                )
            )
        if backend == "sqlite":
            held = median(large.held)
            targets.append(
                Target(
                    f"write lock held by a {large.rows:,}-row import, sqlite",
                    f"< {BUSY_TIMEOUT:.0f} s (the busy timeout)",
                    seconds(held),
                    held < BUSY_TIMEOUT,
                )
            )
    return targets


def _scale_paragraph(opts: Options, done: list[ScaleFigures]) -> str:
    text = (
        f"Generated CSV plans (`plan_csv` in `bench/importer.py`: numbered recommendations, "
        "a fifth with a second action below, 20 lead agencies, target words of every kind the "
        "grammar reads, a status column, an agency section every 50 recommendations), medians "
        f"of {opts.runs} runs, each import into a fresh store (schema created beforehand, not "
        "timed). Floors from the same runs: reading the file's lines for the parse; for the "
        "import, reading the lines plus one bare DB-API executemany of as many action rows in "
        "one transaction (no ORM, no comparison, no audit). The import is what "
        "`dhr-workflow import` does: read and parse outside the transaction, then compare, "
        "write the actions, their recommendations and one audit event each, and commit. The "
        "write transaction is that import's BEGIN to COMMIT: on SQLite the time the write lock "
        "is held, which the daemon's sender and tick wait out (up to the busy timeout, "
        f"{BUSY_TIMEOUT:.0f} s) before they fail with 'database is locked'; on PostgreSQL the "
        "time the audit chain's advisory lock is held, which the sender's audit appends wait "
        "out (without a timeout). "
        "The re-import is the same file into the same store: nothing changes, so it measures "
        "the comparison, which also runs inside the write transaction."
    )
    for backend in dict.fromkeys(f.backend for f in done):
        pair = _linearity(done, backend)
        if pair:
            small, large = pair
            text += (
                f" On {backend}, rows/s at {large.rows:,} rows are "
                f"{_flat(small, large, 'parse'):.0%} (parse) and "
                f"{_flat(small, large, 'full'):.0%} (import) of those at {small.rows:,}."
            )
    return text


# --- the real plans ----------------------------------------------------------------------------

HEADERS = [
    "plan", "pages (table header rows)", "actions", "KB", "read + parse (floor)",
    "import, in-process", "× floor", "per page", "per action", "CLI import (with start-up)",
]  # fmt: skip


@dataclass
class PlanFigures:
    path: Path
    pages: int = 0
    actions: int = 0
    parse: list[float] = field(default_factory=list)
    full: list[float] = field(default_factory=list)
    cli: list[float] = field(default_factory=list)


def _real_plans(opts: Options, tmp: str) -> str:
    """The real plans' table and its paragraph, as Markdown under the scale figures."""
    rows, done = [], []
    for path in sorted(PLANS.glob("*.txt")):
        try:
            f = measure(path, opts.runs, tmp)
        except Exception as exc:  # reported in the table; the other plans still run
            rows.append([path.name, f"failed: {one_line(exc)}", *[""] * 8])
            continue
        rows.append(_row(f))
        done.append(f)
    return "\n\n".join(
        [
            "The three real plans in `tests/data/plans/`, on SQLite:",
            markdown_table(HEADERS, rows),
            _paragraph(opts) + _ranges(done),
        ]
    )


def _row(f: PlanFigures) -> list[str]:
    parse, full = median(f.parse), median(f.full)
    return [
        f.path.name, str(f.pages), str(f.actions), f"{f.path.stat().st_size / 1024:.0f}",
        seconds(parse), seconds(full), ratio(full, parse), seconds(full / f.pages),
        seconds(full / f.actions), seconds(median(f.cli)),
    ]  # fmt: skip


def measure(path: Path, runs: int, tmp: str) -> PlanFigures:
    f = PlanFigures(path)
    for run in range(runs):
        start = time.perf_counter()
        plan = _parsed(path)
        f.parse.append(time.perf_counter() - start)
        f.pages, f.actions = plan.headers_found, len(plan.rows)
        with fresh("sqlite", f"import-{path.stem}-{run}", tmp) as url:
            f.full.append(_timed_import(url, path)[0])
        with fresh("sqlite", f"cli-{path.stem}-{run}", tmp) as url:
            f.cli.append(_cli_import(url, path, tmp))
    say(f"import: {path.name}: {median(f.full) * 1000:.0f} ms in-process")
    return f


def _parsed(path: Path) -> ParsedPlan:
    return parse_lines(read_source(path).lines)


def _cli_import(url: str, path: Path, tmp: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DHR_")}
    env["DHR_DATABASE_URL"] = url
    command = [sys.executable, "-m", "dhr_workflow", "import", str(path), "--review", "BENCH"]
    start = time.perf_counter()
    subprocess.run(command, cwd=tmp, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def _ranges(done: list[PlanFigures]) -> str:
    if not done:
        return ""

    def span(values: list[float]) -> str:
        return f"{seconds(min(values))}–{seconds(max(values))}"

    per_page = [median(f.full) / f.pages for f in done]
    times = [median(f.full) / median(f.parse) for f in done]
    return (
        f" In this run: {span(per_page)} a page, the import {min(times):.0f}–{max(times):.0f}× "
        "the reading and parsing (so the time is in matching and writing, not in reading the "
        f"text), and {span([median(f.cli) for f in done])} for a coordinator at the command line."
    )


def _paragraph(opts: Options) -> str:
    return (
        f"Medians of {opts.runs} runs, each into a fresh SQLite store (schema created "
        "beforehand, not timed). The extracted text has no form feeds, so a page is one "
        "repetition of the action table's header row, which these documents print at the top "
        "of every page the table spans (the parser counts them); per action is the less "
        "arguable unit. The floor is reading and parsing the file without touching a store; "
        "the import adds agency matching, target-date reading, the rows themselves and an "
        "audit event per change, in one transaction. The CLI column is what a coordinator "
        "waits for: the same import through `python -m dhr_workflow import`, including "
        "interpreter start-up and imports, which dominate it."
    )
