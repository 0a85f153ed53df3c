"""Hostile input: ten thousand wrong feed tokens, and plan text built to break messages
(script, header injection, very long cells, odd Unicode) carried from import to a real SMTP
server and parsed back strictly."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from dhr_workflow import actions, db, feeds, reviews
from dhr_workflow.config import Settings
from dhr_workflow.web import Health, Metrics, create_app
from tests.conftest import ACTOR, NOW, CliFn
from tests.smtp_server import Handler, SmtpServer


def _app(store: db.Store) -> Any:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    return create_app(store, settings, Health(scheduler_running=True), Metrics())


def _feed(store: db.Store) -> tuple[str, str]:
    """A review with one dated action; a live token and a revoked one."""
    with store.transaction() as s:
        reviews.add(s, "R1", "Review one", now=NOW, actor=ACTOR)
        actions.create(
            s, "R1", now=NOW, actor=ACTOR, recommendation="1", lead_agency="Police",
            text="Act", due_date=dt.date(2024, 3, 31), due_basis="fixed",
        )  # fmt: skip
        live = feeds.create(s, "all", None, "live", now=NOW, actor=ACTOR).secret
        dead = feeds.create(s, "all", None, "old", now=NOW, actor=ACTOR)
        feeds.revoke(s, dead.token.id, now=NOW, actor=ACTOR)
    return live, dead.secret


def _wrong_tokens(live: str, revoked: str, n: int) -> list[str]:
    """Random guesses, near misses of the live token, the revoked token, and junk."""
    junk = ["..%2F..%2Fetc%2Fpasswd", "%00", "ünïcödé", "a" * 10_000, "' OR 1=1 --", live.upper()]
    out = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            out.append(f"guess{i:05d}{live[10:]}")
        elif kind == 1:  # the live token with its last characters changed
            out.append(live[:-5] + f"{i % 100_000:05d}")
        elif kind == 2:
            out.append(revoked)
        else:
            out.append(junk[i % len(junk)])
    return out


def _from(app: Any, address: str) -> httpx.AsyncClient:
    """Requests to the app as a client at ``address`` (what the rate limit keys on)."""
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://dhr.test")


@pytest.mark.slow
def test_ten_thousand_wrong_tokens(store: db.Store) -> None:
    live, revoked = _feed(store)
    app = _app(store)
    tokens = _wrong_tokens(live, revoked, 10_000)

    async def scenario() -> tuple[Counter[Any], list[int], list[int], list[int]]:
        answers: Counter[tuple[int, str, tuple[str, ...]]] = Counter()
        # 400 client addresses, 25 guesses each: under the per-address limit, so every
        # answer is the bare 404 — the same status, body and headers whatever was guessed.
        for c in range(400):
            async with _from(app, f"10.0.{c // 250}.{c % 250}") as client:
                for token in tokens[c * 25 : (c + 1) * 25]:
                    r = await client.get(f"/feeds/{token}.ics")
                    answers[(r.status_code, r.text, tuple(sorted(r.headers.keys())))] += 1
        still = []  # every one of those addresses can still read the live feed
        for c in (0, 199, 399):
            async with _from(app, f"10.0.{c // 250}.{c % 250}") as client:
                still.append((await client.get(f"/feeds/{live}.ics")).status_code)
        async with _from(app, "192.0.2.66") as guesser:  # one address guessing on
            codes = [(await guesser.get(f"/feeds/{t}.ics")).status_code for t in tokens[:100]]
        async with _from(app, "192.0.2.77") as bystander:
            others = [
                (await bystander.get(f"/feeds/{live}.ics")).status_code,
                (await bystander.get(f"/feeds/{tokens[0]}.ics")).status_code,
            ]
        return answers, still, codes, others

    answers, still, codes, others = asyncio.run(scenario())
    assert sum(answers.values()) == 10_000
    assert len(answers) == 1, answers
    [(status, body, headers)] = answers
    assert (status, body) == (404, "Not Found")
    assert "etag" not in headers
    assert still == [200, 200, 200]
    assert codes[:30] == [404] * 30  # up to the limit, then 429 for that address only
    assert set(codes[31:]) == {429}
    assert others == [200, 404]


LONG = "Review the policy. " * 6000  # a 114,000-character cell
ODD = (
    "Lead\u202eevil\u202c \u200bzero\u200dwidth e\u0301 \U0001f4a5 \x1b[31mred\x1b[0m "
    "tab\there nul\x00byte"
)


def _hostile_plan(path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["Recommendation", "Action", "Lead Agency", "Owner", "Target date"])
        w.writerow(
            [
                "1",
                f"<script>alert(1)</script> <img src=x onerror=alert(2)> {LONG}",
                "Police",
                ODD,
                "31/03/2024",
            ]
        )
        w.writerow(
            ["2\r\nBcc: victim@example.org", f"{ODD} <b>bold</b>", "Police", "", "31/03/2024"]
        )


def test_hostile_plan_text_never_breaks_a_message(cli: CliFn, tmp_path: Path) -> None:
    (tmp_path / "contacts.csv").write_text(
        "agency,role,name,email\nPolice,lead,Lee \x1b[1mLead\x1b[0m,lead@police.example.org\n"
        ",coordinator,Cat Coordinator,coordinator@csp.example.org\n"
    )
    _hostile_plan(tmp_path / "plan.csv")
    assert cli("contacts", "import", "contacts.csv").exit_code == 0
    people = json.loads(cli("contacts", "list", "--json").stdout)
    assert "Lee Lead" in [p["name"] for p in people]
    (tmp_path / "nul.csv").write_bytes(b"agency,role,name,email\nPolice,lead,A\x00,a@b.org\n")
    refused = cli("contacts", "import", "nul.csv")
    assert (refused.exit_code, refused.stderr.strip()) == (
        2,
        "error: nul.csv: a binary file, not a CSV (save it as CSV UTF-8)",
    )
    imported = cli("import", "plan.csv", "--review", "R1", "--title", "R", "--json")
    assert imported.exit_code == 0, imported.output
    listed = json.loads(cli("actions", "list", "--review", "R1", "--json").stdout)
    assert len(listed) == 2
    for row in listed:  # NUL and terminal escapes are gone; the words are kept
        assert "\x00" not in json.dumps(row) and "\x1b" not in row["text"] + (row["owner"] or "")
    assert cli("tick", "--at", "2024-03-24T08:00", "--rule", "deadline").exit_code == 0
    handler = Handler()
    with SmtpServer(handler) as server:
        sent = cli("send", env={
            "DHR_MAIL_TRANSPORT": "smtp", "DHR_SMTP_HOST": "127.0.0.1",
            "DHR_SMTP_PORT": str(server.port), "DHR_SMTP_SECURITY": "none",
        })  # fmt: skip
    assert sent.exit_code == 0, sent.output
    assert [m.recipients for m in handler.received] == [["lead@police.example.org"]]
    message = handler.received[0].parsed()  # policy.strict: a malformed header raises
    assert message["Bcc"] is None
    assert all("\n" not in v and "\r" not in v for v in message.values())
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    # Markup from PDF extraction is reduced to its text at import (scripts dropped); what is
    # left that looks like markup is text, and escaped.
    assert "<script" not in html and "alert(1)" not in html
    assert "<img" not in html and "&lt;img src=x onerror=alert(2)&gt;" in html
    assert "Review the policy." in text
    assert all(len(line) <= 998 for line in handler.received[0].data.split(b"\r\n"))
