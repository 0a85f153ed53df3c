"""Benchmark: outbox throughput to a loopback SMTP sink, against a raw client's ceiling.

    python bench/outbox.py [--messages 5000] [--runs 3]

A real SMTP server (aiosmtpd) on 127.0.0.1 accepts and discards. The ceiling is a bare
aiosmtplib client sending the same prebuilt messages over one connection; the figure is the
outbox sender (claim a batch, build each message, send, record the outcomes and their audit
events a group at a time) draining N pending digests from a SQLite store. Medians of several
runs; each run times the raw client and then the outbox, so both see the same machine load.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiosmtplib
from aiosmtpd.controller import Controller
from sqlalchemy import insert

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dhr_workflow import db, messages, outbox  # noqa: E402
from dhr_workflow.config import Settings  # noqa: E402
from dhr_workflow.models import Notification  # noqa: E402
from dhr_workflow.transports import SmtpTransport  # noqa: E402
from tests.smtp_server import free_port  # noqa: E402

NOW = dt.datetime(2024, 6, 3, 9, tzinfo=dt.UTC)
TEXT = (
    "Hello,\n\nThese 3 Domestic Homicide Review actions are due soon:\n"
    + (
        "* WCA rec. 24: Review the content of the Safeguarding and Domestic Abuse training\n"
        "  Lead agency: Adult Social Care; due 30 November 2023 (in 7 days)\n"
    )
    * 3
)
HTML = "<html><body>" + "<p>" + TEXT.replace("\n", "<br>") + "</p>" * 5 + "</body></html>"


class Sink:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


def populate(store: db.Store, n: int) -> None:
    with store.transaction() as s:
        s.execute(insert(Notification), [{
            "rule_id": "deadline", "template": "due_soon", "to_addrs": [f"lead{i}@example.org"],
            "cc_addrs": [], "subject": f"3 DHR actions due soon ({i})", "text_body": TEXT,
            "html_body": HTML, "message_id": f"<bench-{i}@dhr-workflow>", "state": "pending",
            "attempts": 0, "next_attempt_at": NOW, "created_at": NOW,
        } for i in range(n)])  # fmt: skip


async def raw_client(port: int, msgs: list[Any]) -> None:
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
    await client.connect()
    for msg in msgs:
        await client.send_message(msg)
    await client.quit()


def run_outbox(port: int, n: int, batch: int) -> float:
    """Seconds for our sender to send N pending digests from a fresh SQLite store."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        db.migrate(url)
        return drain(url, port, n, batch)


def drain(url: str, port: int, n: int, batch: int) -> float:
    """Seconds for our sender to send N pending digests from the (empty, migrated) store at
    ``url``: claim, build, send, record and audit, batch after batch."""
    store = db.Store(url)
    try:
        populate(store, n)
        settings = Settings(
            _env_file=None,
            mail_transport="smtp",
            smtp_host="127.0.0.1",  # type: ignore[call-arg]
            smtp_port=port,
            smtp_security="none",
            mail_batch_size=batch,
        )
        start, sent = time.perf_counter(), 0
        while sent < n:
            result = asyncio.run(
                outbox.send_batch(
                    store, SmtpTransport(settings), settings, clock=lambda: NOW, owner="bench"
                )
            )
            sent += len(result.sent)
            if result.claimed == 0:
                raise RuntimeError("outbox stalled")
        return time.perf_counter() - start
    finally:
        store.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=200)
    args = parser.parse_args()
    port = free_port()
    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        note = Notification(
            to_addrs=["lead@example.org"],
            cc_addrs=[],
            subject="x",
            text_body=TEXT,
            html_body=HTML,
            message_id="<x@dhr-workflow>",
        )
        prebuilt = []
        for i in range(args.messages):
            msg = messages.build(note, mail_from="dhr@example.org", now=NOW)
            msg.replace_header("Message-ID", f"<raw-{i}@dhr-workflow>")
            prebuilt.append(msg)
        ceiling, ours = [], []
        for _ in range(args.runs):
            start = time.perf_counter()
            asyncio.run(raw_client(port, prebuilt))
            ceiling.append(time.perf_counter() - start)
            ours.append(run_outbox(port, args.messages, args.batch))
    finally:
        controller.stop()
    c, o = statistics.median(ceiling), statistics.median(ours)
    n = args.messages
    print(f"{n:,} digests to a loopback SMTP sink; median of {args.runs} runs")
    print(f"  raw aiosmtplib client (ceiling):  {n / c:8.0f} msg/s  ({c:.2f} s)")
    print(
        f"  outbox sender, SQLite store:       {n / o:8.0f} msg/s  ({o:.2f} s), "
        f"{c / o:.0%} of the ceiling"
    )


if __name__ == "__main__":
    main()
