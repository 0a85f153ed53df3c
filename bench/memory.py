"""The runner's daemon-memory section: `dhr-workflow run` started as ``bench/daemon.py`` starts
it (which returns once /healthz answers 200, i.e. after the catch-up tick), on an empty store
(the floor: an idle daemon) and on a store of N actions dated around today, so the catch-up
tick has the backlog a first start would have. Resident memory (VmRSS) two seconds after the
catch-up, and the peak (VmHWM) the process reached during it.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import daemon as bench_daemon
from bench.report import Options, Section, Target, median, one_line, ratio, seconds, verdict
from bench.stores import fresh, say
from bench.tick import populate
from dhr_workflow import db

TARGET_MB = 200  # issue #7: the daemon under 200 MB after its catch-up tick over 100k actions
RUNS = 3  # each run starts two daemons and a catch-up tick; three is several
HEADERS = [
    "store", "idle, empty store (floor)", "after catch-up tick", "× floor",
    "peak during catch-up", "catch-up (start to healthy)", "target", "",
]  # fmt: skip


@dataclass
class Memory:
    idle: list[float] = field(default_factory=list)
    after: list[float] = field(default_factory=list)
    peak: list[float] = field(default_factory=list)
    startup: list[float] = field(default_factory=list)


def section(opts: Options, tmp: str) -> Section:
    sec = Section("rss", f"Daemon memory at {opts.rss_actions:,} actions", HEADERS)
    runs = min(opts.runs, RUNS)
    growth = []
    for backend in opts.backends:
        try:
            m = measure(backend, opts.rss_actions, runs, tmp)
        except Exception as exc:  # reported in the table; the other backend still runs
            sec.rows.append([backend, f"failed: {one_line(exc)}", *[""] * 6])
            continue
        after, met = median(m.after), median(m.after) < TARGET_MB
        sec.rows.append(_row(backend, m))
        held, peak = median(m.after) - median(m.idle), median(m.peak) - median(m.idle)
        growth.append(f"{held:.0f} MB on {backend} ({peak:.0f} MB at its peak)")
        sec.targets.append(
            Target(
                f"daemon RSS after catch-up over {opts.rss_actions:,} actions, {backend}",
                f"< {TARGET_MB} MB",
                f"{after:.0f} MB (peak {median(m.peak):.0f} MB)",
                met,
            )
        )
    sec.paragraph = _paragraph(opts, runs)
    if growth:
        sec.paragraph += (
            f" After the catch-up tick the daemon holds {', '.join(growth)} more than idle."
        )
    return sec


def _row(backend: str, m: Memory) -> list[str]:
    after, idle = median(m.after), median(m.idle)
    return [
        backend, f"{idle:.0f} MB", f"{after:.0f} MB", ratio(after, idle),
        f"{median(m.peak):.0f} MB", seconds(median(m.startup)), f"< {TARGET_MB} MB",
        verdict(after < TARGET_MB),
    ]  # fmt: skip


def measure(backend: str, n: int, runs: int, tmp: str) -> Memory:
    m = Memory()
    for run in range(runs):
        with fresh(backend, f"rss-empty-{run}", tmp) as url:
            rss, _, _ = _daemon_memory(url, tmp)
            m.idle.append(rss)
        with fresh(backend, f"rss-{run}", tmp) as url:
            store = db.Store(url)
            populate(store, n, today=dt.date.today())
            store.dispose()
            rss, peak, startup = _daemon_memory(url, tmp)
            m.after.append(rss)
            m.peak.append(peak)
            m.startup.append(startup)
        say(f"rss: {backend} run {run + 1}: idle {m.idle[-1]:.0f} MB, after {rss:.0f} MB")
    return m


def _daemon_memory(url: str, tmp: str) -> tuple[float, float, float]:
    """(RSS MB two seconds after healthy, peak RSS MB, seconds from start to healthy)."""
    start = time.perf_counter()
    proc, _ = bench_daemon.start(url, Path(tmp))
    startup = time.perf_counter() - start
    try:
        time.sleep(2)
        return bench_daemon.rss_mb(proc.pid), _peak_mb(proc.pid), startup
    finally:
        proc.terminate()
        proc.wait(60)


def _peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _paragraph(opts: Options, runs: int) -> str:
    return (
        f"Medians of {runs} runs, each on a fresh store. The floor is the same daemon idle on "
        "an empty store: interpreter, SQLAlchemy, Starlette, APScheduler and the rule set "
        "loaded. The figure is its resident memory two seconds after /healthz first answers "
        f"200, which happens once the catch-up tick over {opts.rss_actions:,} actions has "
        "committed; the peak column is the high-water mark of the whole process, reached "
        "during that tick. Python rarely hands freed memory back to the system, so the peak "
        "is what a host must provision for."
    )
