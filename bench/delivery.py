"""The runner's outbox section: our sender against a raw aiosmtplib client, on the same
loopback SMTP sink in the same run, reusing ``bench/outbox.py`` (its sink, its messages, its
raw client, and on SQLite its measurement of the sender).

On PostgreSQL the sender drains a fresh database the same way ``run_outbox`` drains SQLite.
"""

from __future__ import annotations

import asyncio
import time
from email.message import EmailMessage

from aiosmtpd.controller import Controller

from bench import outbox as bench_outbox
from bench.report import Options, Section, Target, median, one_line, percent, verdict
from bench.stores import fresh, say
from dhr_workflow import messages
from dhr_workflow.models import Notification
from tests.smtp_server import free_port

TARGET = 0.5  # issue #7: the sender at half the raw client's rate or better
BATCH = 200
HEADERS = [
    "store", "messages", "raw aiosmtplib client (ceiling)", "outbox sender", "of ceiling",
    "target", "",
]  # fmt: skip


def section(opts: Options, tmp: str) -> Section:
    sec = Section("outbox", "Outbox throughput", HEADERS)
    port = free_port()
    controller = Controller(bench_outbox.Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        prebuilt = _prebuilt(opts.messages)
        for backend in opts.backends:
            try:
                raw, ours = _runs(backend, port, prebuilt, opts, tmp)
            except Exception as exc:  # reported in the table; the other backend still runs
                sec.rows.append([backend, f"{opts.messages:,}", f"failed: {one_line(exc)}"])
                continue
            sec.rows.append(_row(backend, opts.messages, raw, ours))
            sec.targets.append(_target(backend, opts.messages, raw, ours))
    finally:
        controller.stop()
    sec.paragraph = _paragraph(opts)
    return sec


def _prebuilt(n: int) -> list[EmailMessage]:
    """The raw client's messages: the same digest, built once, each with its own Message-ID."""
    note = Notification(
        to_addrs=["lead@example.org"],
        cc_addrs=[],
        subject="x",
        text_body=bench_outbox.TEXT,
        html_body=bench_outbox.HTML,
        message_id="<x@dhr-workflow>",
    )
    built = []
    for i in range(n):
        msg = messages.build(note, mail_from="dhr@example.org", now=bench_outbox.NOW)
        msg.replace_header("Message-ID", f"<raw-{i}@dhr-workflow>")
        built.append(msg)
    return built


def _runs(
    backend: str, port: int, prebuilt: list[EmailMessage], opts: Options, tmp: str
) -> tuple[list[float], list[float]]:
    """Seconds per run for the raw client and for our sender, alternating."""
    raw, ours = [], []
    for run in range(opts.runs):
        start = time.perf_counter()
        asyncio.run(bench_outbox.raw_client(port, prebuilt))
        raw.append(time.perf_counter() - start)
        if backend == "sqlite":
            ours.append(bench_outbox.run_outbox(port, opts.messages, BATCH))
        else:
            with fresh(backend, f"outbox-{run}", tmp) as url:
                ours.append(bench_outbox.drain(url, port, opts.messages, BATCH))
        say(f"outbox: {backend} run {run + 1}: raw {raw[-1]:.2f} s, sender {ours[-1]:.2f} s")
    return raw, ours


def _row(backend: str, n: int, raw: list[float], ours: list[float]) -> list[str]:
    ceiling, rate = n / median(raw), n / median(ours)
    return [
        backend, f"{n:,}", f"{ceiling:,.0f} msg/s", f"{rate:,.0f} msg/s", percent(rate, ceiling),
        f"≥ {TARGET:.0%}", verdict(rate >= TARGET * ceiling),
    ]  # fmt: skip


def _target(backend: str, n: int, raw: list[float], ours: list[float]) -> Target:
    ceiling, rate = n / median(raw), n / median(ours)
    return Target(
        f"outbox sender on {backend}",
        f"≥ {TARGET:.0%} of the raw client",
        f"{rate:,.0f} of {ceiling:,.0f} msg/s = {percent(rate, ceiling)}",
        rate >= TARGET * ceiling,
    )


def _paragraph(opts: Options) -> str:
    return (
        f"Medians of {opts.runs} runs of {opts.messages:,} pending digests (text and HTML, about "
        "4 KB each) sent to an aiosmtpd server on loopback that accepts and discards. The "
        "ceiling is a bare aiosmtplib client sending the same prebuilt messages over one "
        "connection, run alternately with our sender so both see the same machine. Our sender "
        "does the whole job: claim a batch, build each message, send, record the outcomes and "
        "their audit events. The SQLite figure is `bench/outbox.py`'s own measurement; on "
        "PostgreSQL the same loop drains a fresh database."
    )
