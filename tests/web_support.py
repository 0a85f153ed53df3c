"""The web app in-process for HTTP-level tests: a seeded store, a clock the test moves, a
memory mailer that catches sign-in links, and a helper that signs a client in through them."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from dhr_workflow import actions, contacts, db, reviews
from dhr_workflow.config import load_settings
from dhr_workflow.transports import MemoryTransport
from dhr_workflow.web import Health, Metrics, create_app
from tests.test_delivery import Clock

START = dt.datetime(2024, 3, 4, 9, 0, tzinfo=dt.UTC)  # a Monday
BASE = "http://127.0.0.1:8080"
PEOPLE = """agency,role,name,email,review
,coordinator,Cat Coordinator,cat@csp.example.org,
,chair,Chris Chair,chris@csp.example.org,
Police,lead,Lee Lead,lee@police.example.org,
Police,manager,Max Manager,max@police.example.org,
Health,lead,Hal Lead,hal@health.example.org,
,family_liaison,Fay Liaison,fay@csp.example.org,R1
"""
# Plan text that only the Health agency (and the partnership) may read.
HEALTH_SECRET = "Review the GP records of the victims partner"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_LINK = re.compile(r"https?://\S+/signin/[\w-]+")


@dataclass
class Site:
    url: str
    store: db.Store
    clock: Clock
    mail: MemoryTransport
    ids: dict[str, int]
    tmp: Path
    apps: list[Any] = field(default_factory=list)

    def client(self, *, address: str = BASE, **settings: Any) -> TestClient:
        """A browser-like client of a new app instance (same store, clock and mailer)."""
        app = create_app(
            self.store,
            load_settings(database_url=self.url, **settings),
            Health(),
            Metrics(),
            clock=self.clock,
            transport=lambda: self.mail,
        )
        client = TestClient(app, base_url=address, follow_redirects=False)
        self.apps.append(client)
        return client

    def links_for(self, email: str) -> list[str]:
        found = []
        for message, recipients in self.mail.sent:
            if email in recipients:
                body = message.get_body(("plain",))
                assert body is not None
                found += _LINK.findall(body.get_content())
        return found

    def ask_link(self, client: TestClient, email: str) -> Any:
        page = client.get("/signin")
        return client.post("/signin", data={"email": email, "csrf_token": csrf(page.text)})

    def sign_in(self, client: TestClient, email: str) -> None:
        before = len(self.links_for(email))
        self.ask_link(client, email)
        links = self.links_for(email)
        assert len(links) == before + 1, f"no sign-in link was sent to {email}"
        self.use_link(client, links[-1])

    def use_link(self, client: TestClient, link: str) -> Any:
        path = link.split("://", 1)[1].split("/", 1)[1]
        page = client.get(f"/{path}")
        assert page.status_code == 200, page.text
        return client.post(f"/{path}", data={"csrf_token": csrf(page.text)})


def session_csrf(client: TestClient) -> str:
    """The CSRF token a client's session holds (the cookie is signed, not encrypted), for a
    page that shows no form to this person."""
    payload = client.cookies["dhr_session"].split(".", 1)[0]
    data = json.loads(base64.b64decode(payload + "=" * (-len(payload) % 4)))
    return str(data["csrf"])


def csrf(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def seed(url: str, tmp: Path) -> dict[str, int]:
    """Review R1: a Police action (overdue), a Health action with confidential text, an
    undated Police action flagged for review; the people above."""
    store = db.Store(url)
    people = tmp / "people.csv"
    people.write_text(PEOPLE)
    today = START.date()
    try:
        with store.transaction() as s:
            reviews.add(s, "R1", "Case one", now=START, actor="test")
            contacts.import_rows(
                s, contacts.read_csv(people), now=START, actor="test", source="people.csv"
            )
            rows = [
                ("police", "Police", "Train response officers", today - dt.timedelta(days=20)),
                ("health", "Health", HEALTH_SECRET, today + dt.timedelta(days=10)),
                ("undated", "Police", "Brief the board on progress", None),
            ]
            ids = {}
            for n, (key, agency, text, due) in enumerate(rows, start=1):
                ids[key] = actions.create(
                    s,
                    "R1",
                    now=START,
                    actor="test",
                    recommendation=str(n),
                    recommendation_text=f"Recommendation {n}",
                    lead_agency=agency,
                    ref=str(n),
                    text=text,
                    target_text=due.strftime("%B %Y") if due else "Ongoing",
                    due_date=due,
                    due_basis="fixed" if due else "none",
                    review_reasons=[] if due else ["due: 'Ongoing' is not a date"],
                ).id
            return ids
    finally:
        store.dispose()


@pytest.fixture(name="site")
def site_fixture(db_url: str, tmp_path: Path) -> Iterator[Site]:
    """The seeded web app (import as ``site_fixture``; tests take ``site``)."""
    ids = seed(db_url, tmp_path)
    store = db.Store(db_url)
    s = Site(db_url, store, Clock(START), MemoryTransport(), ids, tmp_path)
    yield s
    for client in s.apps:
        client.close()
    store.dispose()
