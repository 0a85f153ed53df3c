"""The scale benchmarks of issue #7 in one run: a table on stdout and in docs/benchmarks.md.

    python bench/run.py                      # everything, full sizes (writes docs/benchmarks.md)
    python bench/run.py --quick              # small sizes, a smoke run (writes no file)
    python bench/run.py --only tick --sizes 1000000 --backends postgresql
    python bench/run.py --only feeds,tokens --output /tmp/feeds.md
    python bench/run.py --only import        # plans of 1k, 10k, 100k rows on both stores

Sections (``--only``): tick, outbox, feeds, tokens, import, rss. Each section runs on its own;
one that fails is reported in the output and the others still run. Every figure is a median
of several runs with its floor (or ceiling) and the ratio beside it, and a met/missed verdict
where the issue states a target. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shlex
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402

from bench import delivery, feeds, importer, memory, report_all, stores, tick  # noqa: E402
from bench.report import (  # noqa: E402
    Options,
    Section,
    markdown_table,
    one_line,
    target_summary,
    verdict,
)

SECTIONS: dict[str, Callable[[Options, str], Section]] = {
    "tick": tick.section,
    "outbox": delivery.section,
    "feeds": feeds.feeds_section,
    "tokens": feeds.tokens_section,
    "import": importer.section,
    "report": report_all.section,
    "rss": memory.section,
}
FULL = {"sizes": "10000,100000,1000000", "runs": 5, "messages": 3000, "feed_actions": 5000,
        "clients": "1,8,32", "requests": 30, "lookups": 2000, "rss_actions": 100_000}  # fmt: skip
QUICK = {"sizes": "2000,10000", "runs": 3, "messages": 300, "feed_actions": 1000,
         "clients": "1,4", "requests": 10, "lookups": 200, "rss_actions": 5000}  # fmt: skip


def parse_args(
    argv: list[str] | None = None,
) -> tuple[Options, list[str], Path | None, Path | None]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default=",".join(SECTIONS), help="sections, comma-separated")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--sizes", help=f"actions per tick run (default {FULL['sizes']})")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--runs", type=int, help="runs per median (default 5; quick 3)")
    parser.add_argument("--messages", type=int, help="outbox messages per run")
    parser.add_argument("--feed-actions", type=int, help="actions in the store a feed shows")
    parser.add_argument("--clients", help="concurrent feed clients (default 1,8,32)")
    parser.add_argument("--requests", type=int, help="requests per feed client and kind")
    parser.add_argument("--lookups", type=int, help="token lookups per kind")
    parser.add_argument("--rss-actions", type=int, help="actions for the daemon memory figure")
    parser.add_argument(
        "--profile", metavar="DIR", help="tick: also write SQL timings, cProfile and plans here"
    )
    parser.add_argument("--pg-url", default=stores.PG_ADMIN_URL, help="PostgreSQL to create in")
    parser.add_argument(
        "--output",
        help="Markdown file to write (default: docs/benchmarks.md for a full run of every "
        "section, none otherwise; '-' for none)",
    )
    parser.add_argument(
        "--update",
        metavar="FILE",
        help="replace only the sections run in this Markdown file (e.g. docs/benchmarks.md), "
        "each marked with this run's command, date and commit",
    )
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    stores.PG_ADMIN_URL = args.pg_url
    update = Path(args.update) if args.update else None
    return _options(args), chosen, _output(args, chosen), update


def _options(args: argparse.Namespace) -> Options:
    base = QUICK if args.quick else FULL

    def pick(name: str) -> object:
        value = getattr(args, name)
        return base[name] if value is None else value

    def ints(value: object) -> tuple[int, ...]:
        return tuple(int(v) for v in str(value).split(",") if v.strip())

    return Options(
        sizes=ints(pick("sizes")),
        backends=tuple(b.strip() for b in args.backends.split(",") if b.strip()),
        runs=int(str(pick("runs"))),
        quick=args.quick,
        messages=int(str(pick("messages"))),
        feed_actions=int(str(pick("feed_actions"))),
        clients=ints(pick("clients")),
        requests=int(str(pick("requests"))),
        lookups=int(str(pick("lookups"))),
        rss_actions=int(str(pick("rss_actions"))),
        profile=args.profile,
    )


def _output(args: argparse.Namespace, chosen: list[str]) -> Path | None:
    if args.update:
        return None
    if args.output == "-":
        return None
    if args.output:
        return Path(args.output)
    full = not args.quick and chosen == list(SECTIONS)
    return ROOT / "docs" / "benchmarks.md" if full else None


# --- running ---------------------------------------------------------------------------------


def run_section(key: str, opts: Options) -> Section:
    """One section in its own temporary directory; any failure becomes the section's error."""
    stores.say(f"== {key}")
    start, load = time.perf_counter(), _load()
    try:
        with tempfile.TemporaryDirectory(prefix=f"dhr-bench-{key}-") as tmp:
            section = SECTIONS[key](opts, tmp)
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        section = Section(key, key, error=one_line(exc))
    section.seconds = time.perf_counter() - start
    section.load = f"{load} → {_load()}"
    return section


def _load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def machine(opts: Options) -> list[tuple[str, str]]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    return [
        ("date", dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("git commit", _git_commit()),
        ("CPU", f"{os.cpu_count()} × {cpu}"),
        ("memory", _memory()),
        ("OS", platform.platform()),
        ("Python", platform.python_version()),
        ("SQLite", sqlite3.sqlite_version),
        ("PostgreSQL", _postgres_version() if "postgresql" in opts.backends else "not used"),
        ("load average at start (1, 5, 15 min)", _load()),
    ]


def _git_commit() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.rstrip("\n")  # keep porcelain's leading status columns

    commit = git("log", "-1", "--format=%h %s")
    dirty = git("status", "--porcelain", "--", "dhr_workflow", "rules", "templates").splitlines()
    changed = ", ".join(line[3:] for line in dirty)
    return commit + (f" (with uncommitted changes to {changed})" if dirty else "")


def _memory() -> str:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return f"{int(line.split()[1]) / 1024 / 1024:.0f} GB"
    return "unknown"


def _postgres_version() -> str:
    try:
        engine = create_engine(stores.PG_ADMIN_URL)
        with engine.connect() as conn:
            version = str(conn.scalar(text("SHOW server_version")))
        engine.dispose()
        return version
    except Exception as exc:
        return f"unavailable ({one_line(exc)})"


# --- output ----------------------------------------------------------------------------------


def render_section(section: Section) -> str:
    parts = [f"## {section.title}", ""]
    if section.error:
        parts += [f"**This section failed:** {section.error}", ""]
    if section.rows:
        parts += [markdown_table(section.headers, section.rows), ""]
    text = " ".join(p for p in (section.paragraph, target_summary(section.targets)) if p)
    if text:
        parts += [text, ""]
    parts += [f"*{section.seconds:.0f} s; load average {section.load}.*", ""]
    return "\n".join(parts)


def render_targets(sections: list[Section]) -> str:
    rows = [[t.what, t.target, t.result, verdict(t.met)] for s in sections for t in s.targets]
    if not rows:
        return "No section with a target ran (or none completed).\n"
    return markdown_table(["what", "target", "result", ""], rows) + "\n"


def render_document(
    sections: list[Section], opts: Options, about: list[tuple[str, str]], command: str
) -> str:
    head = [
        "# Benchmarks",
        "",
        "Written by `bench/run.py` (issue #7's scale benchmarks); rerun it rather than edit. "
        "Medians of several runs; each figure has its floor or ceiling, measured in the same "
        "run on the same data, and the ratio beside it.",
        "",
        "## How to run",
        "",
        "```sh",
        ".venv/bin/python bench/run.py                 # everything: this file",
        ".venv/bin/python bench/run.py --quick         # small sizes, a smoke run, no file",
        ".venv/bin/python bench/run.py --only tick --sizes 1000000 --backends postgresql",
        "```",
        "",
        "PostgreSQL comes from `--pg-url` (default: the loopback server, user postgres); the "
        "runner creates a database per measurement and drops it afterwards. `--profile DIR` "
        "also writes, per tick size, the SQL statements with their times, a cProfile and the "
        f"query plans. This file came from `{command}`, which took "
        f"{sum(s.seconds for s in sections) / 60:.0f} minutes.",
        "",
        "## Machine",
        "",
        *[f"- {name}: {value}" for name, value in about],
        f"- runs per median: {opts.runs}",
        "",
        "The machine is shared: other people's tests and benchmarks may run at the same time. "
        "Each section notes the load average before and after it; figures taken under a load "
        "above the core count are slower than the same code on a quiet machine.",
        "",
        "## Targets (issue #7)",
        "",
        render_targets(sections),
    ]
    return "\n".join(head) + "\n" + "\n".join(render_section(s) for s in sections)


def update_document(
    path: Path, section: Section, about: list[tuple[str, str]], command: str
) -> None:
    """Replace one section of a document the runner wrote (or add it at the end), saying
    which run it came from: the other sections keep theirs."""
    facts = dict(about)
    stamp = (
        f"*This section: `{command}`, {facts.get('date', '?')}, commit "
        f"{facts.get('git commit', '?').split(' ')[0]}.*\n\n"
    )
    block = render_section(section) + "\n" + stamp
    text = path.read_text(encoding="utf-8")
    heading = re.compile(rf"^## {re.escape(section.title)}\n.*?(?=^## |\Z)", re.M | re.S)
    if heading.search(text):
        text = heading.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    opts, chosen, output, update = parse_args(argv)
    about = machine(opts)
    command = "python bench/run.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    sections: list[Section] = []
    for key in chosen:
        sections.append(run_section(key, opts))
        print(render_section(sections[-1]), flush=True)
        if output is not None:  # after every section: a late failure loses nothing
            output.write_text(render_document(sections, opts, about, command.strip()))
        if update is not None and not sections[-1].error:
            update_document(update, sections[-1], about, command.strip())
    print("## Targets\n\n" + render_targets(sections))
    if output is not None or update is not None:
        stores.say(f"wrote {output or update}")
    return 1 if any(s.error for s in sections) else 0


if __name__ == "__main__":
    sys.exit(main())
