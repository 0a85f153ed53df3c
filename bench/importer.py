"""The runner's import section: the three real plans in ``tests/data/plans/``, each imported
into a fresh SQLite store, in-process (the service functions ``dhr-workflow import`` calls:
read, parse, apply in one transaction) and through the CLI as a user runs it.

What is a page? The plans are text extracted from Word/PDF documents and carry no form feeds.
Their documents repeat the table's header row at the top of every page the action table
spans, and the parser counts each header row it finds (``ParsedPlan.headers_found``), so a
"page" here is one header row: one page of the action table as printed. It is a proxy, and
the table says per action and per KB too.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.report import Options, Section, median, one_line, ratio, seconds
from bench.stores import fresh, say
from dhr_workflow import db
from dhr_workflow.importer.apply import apply_plan
from dhr_workflow.importer.parse import ParsedPlan, parse_lines
from dhr_workflow.importer.readers import read_source

ROOT = Path(__file__).resolve().parent.parent
PLANS = ROOT / "tests" / "data" / "plans"
NOW = dt.datetime(2024, 6, 3, 9, tzinfo=dt.UTC)
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


def section(opts: Options, tmp: str) -> Section:
    sec = Section("import", "Plan import", HEADERS)
    done = []
    for path in sorted(PLANS.glob("*.txt")):
        try:
            f = measure(path, opts.runs, tmp)
        except Exception as exc:  # reported in the table; the other plans still run
            sec.rows.append([path.name, f"failed: {one_line(exc)}", *[""] * 8])
            continue
        sec.rows.append(_row(f))
        done.append(f)
    sec.paragraph = _paragraph(opts) + _ranges(done)
    return sec


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
            f.full.append(_import(url, path))
        with fresh("sqlite", f"cli-{path.stem}-{run}", tmp) as url:
            f.cli.append(_cli_import(url, path, tmp))
    say(f"import: {path.name}: {median(f.full) * 1000:.0f} ms in-process")
    return f


def _parsed(path: Path) -> ParsedPlan:
    return parse_lines(read_source(path).lines)


def _import(url: str, path: Path) -> float:
    """Seconds to read, parse and apply the plan, committed, as ``dhr-workflow import`` does."""
    store = db.Store(url)
    try:
        start = time.perf_counter()
        source = read_source(path)
        plan = parse_lines(source.lines)
        with store.transaction() as s:
            apply_plan(
                s, "BENCH", plan, title=None, source=path.name, digest=source.sha256,
                today=NOW.date(), now=NOW, actor="bench", dry_run=False,
            )  # fmt: skip
        return time.perf_counter() - start
    finally:
        store.dispose()


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
