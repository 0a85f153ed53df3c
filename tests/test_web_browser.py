"""The web app in a real browser against the real daemon: `dhr-workflow run` in a subprocess,
sign-in links caught by a real SMTP server (aiosmtpd), headless Chromium through Selenium,
axe-core on every page, and the CLI, the outbox, the feed and `audit verify` afterwards.

Screenshots of every page go to $SCREENSHOT_DIR when it is set (docs/screenshots/ is made
that way: `SCREENSHOT_DIR=docs/screenshots pytest tests/test_web_browser.py`), else to the
test's temporary directory.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import icalendar
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select
from sqlalchemy import select

from dhr_workflow import actions, contacts, db, reviews
from dhr_workflow.importer import read_plan
from dhr_workflow.importer.apply import apply_plan
from dhr_workflow.models import Notification
from dhr_workflow.targets import add_months
from tests.browser import (
    axe_violations,
    browser_fixture,  # noqa: F401
    fill_in,
    format_violations,
    screenshot,
    submit_and_wait,
)
from tests.smtp_server import Handler, SmtpServer
from tests.test_daemon import Daemon, environment, wait_for

PLANS = Path(__file__).parent / "data" / "plans"
PLAN, SOMERSET = PLANS / "westminster-case-a.txt", PLANS / "somerset-dhr-012.txt"
NOW = dt.datetime.now(dt.UTC)
TODAY = NOW.date()
CAT = "cat@csp.example.org"
LEAD = "lee@turningpoint.example.org"
# The manager's address is wrong in the contacts file; the coordinator corrects it.
WRONG, RIGHT = "manager@vawg.example.org", "vawg.manager@westminster.example.org"
PEOPLE = f"""agency,role,name,email
,coordinator,Cat Coordinator,{CAT}
,chair,Chris Chair,chris@csp.example.org
Bi Borough VAWG Strategic Board,lead,Vic Lead,vic@vawg.example.org
Bi Borough VAWG Strategic Board,manager,Val Manager,{WRONG}
Turning Point and Westminster VAWG Housing First Project,lead,Lee Lead,{LEAD}
"Principal Social Worker, Bi- Borough Adult Social Care",lead,Ash Lead,ash@biborough.example.org
"""
# The plan names one body two ways; the coordinator merges them. (The two "Bi- Borough Adult
# Social Care" teams need no merge: the importer reads both cells as that one agency.)
MERGED_AWAY = "Turning Point and Westminster VAWG Housing First Project"
MERGED_INTO = "Turning Point"


def _seed(url: str, tmp: Path) -> None:
    db.migrate(url)
    store = db.Store(url)
    people = tmp / "people.csv"
    people.write_text(PEOPLE)
    _, plan = read_plan(PLAN)
    with store.transaction() as s:
        apply_plan(
            s, "WCA", plan, title="Domestic Homicide Review Case A", source=PLAN.name,
            digest="x", today=TODAY, now=NOW, actor="test", dry_run=False,
        )  # fmt: skip
        contacts.import_rows(s, contacts.read_csv(people), now=NOW, actor="test", source="p")
    store.dispose()


def _cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dhr_workflow", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _outbox(env: dict[str, str], cwd: Path) -> list[dict[str, Any]]:
    listed = _cli(env, cwd, "outbox", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows: list[dict[str, Any]] = json.loads(listed.stdout)
    return rows


class Visit:
    """The browser on the daemon: every page is checked with axe and photographed."""

    def __init__(self, browser: WebDriver, base: str, shots: Path) -> None:
        self.browser, self.base, self.shots = browser, base, shots
        self.pages: list[str] = []

    def open(self, path: str) -> None:
        self.browser.get(self.base + path)

    def check(self, name: str) -> None:
        """axe finds nothing serious or critical; the page is photographed whole."""
        found = axe_violations(self.browser)
        assert found == [], f"{name}: {format_violations(found)}"
        screenshot(self.browser, self.shots / f"{name}.png")
        self.pages.append(name)

    def text(self) -> str:
        return str(self.browser.find_element(By.TAG_NAME, "main").text)

    def submit(self, form_value: str | None = None) -> str:
        """Submit the form with that hidden ``form`` value (or the main form)."""
        if form_value is None:
            return submit_and_wait(self.browser, "main form[method=post]")
        button = self.browser.find_element(
            By.XPATH, f"//form[input[@name='form' and @value='{form_value}']]//button"
        )
        return submit_and_wait(self.browser, button)

    def sign_in(self, email: str, smtp: Handler, *, name: str | None = None) -> None:
        self.browser.delete_all_cookies()
        self.open("/")
        assert self.browser.current_url.endswith("/signin")
        fill_in(self.browser, {"email": email})
        if name:
            self.check(f"{name}-signin")
        before = len(smtp.received)
        self.submit()
        assert "Check your email" in self.text()
        if name:
            self.check(f"{name}-check-email")
        wait_for(lambda: len(smtp.received) > before, 15, f"the sign-in email to {email}")
        link = _link(smtp, email)
        self.browser.get(link)
        if name:
            self.check(f"{name}-signin-confirm")
        self.submit()


def _link(smtp: Handler, email: str) -> str:
    for received in reversed(smtp.received):
        if email in received.recipients:
            body = received.parsed().get_body(("plain",))
            assert body is not None
            found = re.search(r"http://\S+/signin/[\w-]+", body.get_content())
            assert found
            return found.group(0)
    raise AssertionError(f"no sign-in email to {email}")


Running = tuple[Daemon, Handler, dict[str, str]]


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    where = os.environ.get("SCREENSHOT_DIR")
    return Path(where) if where else tmp_path / "screenshots"


@pytest.fixture
def running(
    tmp_path: Path, daemons: list[Daemon]
) -> Iterator[tuple[Daemon, Handler, dict[str, str]]]:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    _seed(url, tmp_path)
    handler = Handler()
    with SmtpServer(handler) as smtp:
        env = environment(url, smtp.port, DHR_PARTNERSHIP="Safer Westminster Partnership")
        daemon = Daemon(env, tmp_path)
        daemons.append(daemon)
        daemon.wait_healthy()
        yield daemon, handler, env


@pytest.mark.slow
def test_a_coordinator_corrects_the_store_and_everything_follows(
    browser: WebDriver,
    running: Running,
    tmp_path: Path,
    shots: Path,
) -> None:
    daemon, smtp, env = running
    visit = Visit(browser, daemon.url(""), shots)
    actions_by_text = {
        a["text"][:40]: a
        for a in json.loads(_cli(env, tmp_path, "actions", "list", "--json").stdout)
    }
    undated = next(a for a in actions_by_text.values() if a["needs_review"] and a["id"] != 1)
    moving = next(a for a in actions_by_text.values() if a["due_date"] == "2023-12-31")
    other_agency = next(
        a for a in actions_by_text.values() if a["lead_agency"] == "Bi Borough VAWG Strategic Board"
    )

    visit.sign_in(CAT, smtp, name="coordinator")
    assert "Dashboard" in visit.text()
    visit.check("dashboard")

    # 1. Correct the manager's address.
    visit.open("/contacts")
    visit.check("contacts")
    browser.find_element(By.LINK_TEXT, "Val Manager").click()
    visit.check("contact-edit")
    fill_in(browser, {"email": RIGHT})
    visit.submit("details")
    assert "Contact saved." in visit.text()

    # 2. Merge the project into the charity that runs it.
    visit.open("/agencies")
    visit.check("agencies")
    browser.find_element(By.LINK_TEXT, MERGED_AWAY).click()
    visit.check("agency-edit")
    Select(browser.find_element(By.ID, "into")).select_by_visible_text(MERGED_INTO)
    visit.submit("merge")
    assert f"Merged into {MERGED_INTO}" in visit.text()

    # 3. Settle a needs-review flag.
    visit.open(f"/actions/{undated['id']}")
    visit.check("action")
    fill_in(browser, {"settle": "no deadline: ongoing work, reported at each board"})
    visit.submit("settle")
    assert "Flag settled" in visit.text()

    # 4. Move a due date, with a reason; a bad date first.
    new_due = TODAY + dt.timedelta(days=90)  # beyond the -30d step at the tick below
    visit.open(f"/actions/{moving['id']}")
    fill_in(browser, {"due-day": "31", "due-month": "2", "due-year": "2030", "reason": "x"})
    visit.submit("due")
    assert "There is a problem" in browser.page_source
    visit.check("action-error")
    fill_in(
        browser,
        {
            "due-day": str(new_due.day), "due-month": str(new_due.month),
            "due-year": str(new_due.year), "reason": "extension agreed at board",
        },
    )  # fmt: skip
    visit.submit("due")
    assert "Due date changed." in visit.text()
    assert "extension agreed at board" in visit.text()  # the history says why
    visit.check("action-after")

    # 5. The review's calendar link, and the other pages.
    visit.open("/reviews/WCA")
    visit.check("review")
    visit.submit("feed")
    feed_url = browser.find_element(By.CSS_SELECTOR, "code.app-feed-url").text
    visit.open("/upcoming")
    visit.check("upcoming")
    visit.open("/import")
    visit.check("import")
    fill_in(browser, {"review": "SOM-012"})
    browser.find_element(By.ID, "plan").send_keys(str(SOMERSET))
    visit.submit()
    assert "Check the import" in visit.text()
    visit.check("import-preview")
    fill_in(browser, {"title": "Somerset DHR 012"})
    visit.submit("confirm")
    assert "Plan imported:" in visit.text()
    visit.open("/actions/999999")
    assert "Page not found" in visit.text()
    visit.check("not-found")

    # --- what follows from it ------------------------------------------------------------
    later = (dt.datetime.combine(TODAY, dt.time(9)) + dt.timedelta(days=31)).isoformat()
    dry = json.loads(_cli(env, tmp_path, "tick", "--dry-run", "--json", "--at", later).stdout)
    addressed = {a for m in dry["messages"] for a in (*m["to"], *m["cc"])}
    assert RIGHT in addressed and WRONG not in addressed
    about = {a for m in dry["messages"] for a in m["actions"]}
    assert moving["id"] not in about  # its ladder starts again from the new date
    assert undated["id"] not in {
        a for m in dry["messages"] if m["template"] == "needs_review" for a in m["actions"]
    }
    # A real tick at that time: the outbox holds messages to the corrected address only.
    queued = {m["id"] for m in _outbox(env, tmp_path)}
    ticked = _cli(env, tmp_path, "tick", "--at", later)
    assert ticked.returncode == 0, ticked.stderr
    new = [m for m in _outbox(env, tmp_path) if m["id"] not in queued]
    assert any(RIGHT in (*m["to"], *m["cc"]) for m in new)
    assert not any(WRONG in (*m["to"], *m["cc"]) for m in new)
    # The feed shows the new date, and the merged agency's name.
    feed = icalendar.Calendar.from_ical(httpx.get(feed_url, timeout=10).content)
    events = {str(e["UID"]): e for e in feed.walk("VEVENT")}
    moved = next(e for uid, e in events.items() if uid.startswith(f"dhr-action-{moving['id']}@"))
    assert moved.decoded("DTSTART") == new_due
    assert MERGED_AWAY not in feed.to_ical().decode()
    # The audit log holds every change, by the coordinator, and is intact.
    verified = _cli(env, tmp_path, "audit", "verify")
    assert verified.returncode == 0, verified.stderr
    log = json.loads(_cli(env, tmp_path, "audit", "list", "--json").stdout)
    mine = {e["kind"] for e in log if e["actor"] == CAT}
    assert {
        "signin",
        "contact.update",
        "agency.merge",
        "action.settle",
        "action.due_change",
    } <= mine

    # --- an agency lead sees their agency's actions only ---------------------------------
    visit.sign_in(LEAD, smtp, name="lead")
    assert "You can see the actions your agency leads" in visit.text()
    visit.check("lead-dashboard")
    visit.open("/reviews/WCA")
    page = visit.text()
    assert "Housing First" in page or "Turning Point" in page
    assert other_agency["text"][:30] not in page
    visit.check("lead-review")
    visit.open(f"/actions/{other_agency['id']}")
    assert "Page not found" in visit.text()
    assert other_agency["text"][:30] not in browser.page_source
    visit.open("/contacts")
    assert "Page not found" in visit.text()
    assert len(visit.pages) >= 18


# --- acting from a message (issue #12) ------------------------------------------------------

ACT_PEOPLE = f"""agency,role,name,email
,coordinator,Cat Coordinator,{CAT}
,chair,Chris Chair,chris@csp.example.org
Police,lead,Pat Police,pat@police.example.org
Health,lead,Hana Health,hana@health.example.org
Housing,lead,Hugo Housing,hugo@housing.example.org
"""
EVERY_MINUTE = "* * * * *"


def _act_seed(url: str, tmp: Path, due: dt.date) -> dict[str, int]:
    """Three actions due in a week, one per agency; the partnership report counts from a plan
    agreed a month ago (its first report is five months away)."""
    db.migrate(url)
    store = db.Store(url)
    people = tmp / "people.csv"
    people.write_text(ACT_PEOPLE)
    ids = {}
    with store.transaction() as s:
        reviews.add(
            s, "R1", "Case one", now=NOW, actor="test",
            plan_agreed_on=TODAY - dt.timedelta(days=30),
        )  # fmt: skip
        contacts.import_rows(
            s, contacts.read_csv(people), now=NOW, actor="test", source="p",
            allow_new_agencies=True,
        )  # fmt: skip
        for n, agency in enumerate(("Police", "Health", "Housing"), start=1):
            ids[agency] = actions.create(
                s, "R1", now=NOW, actor="test", recommendation=str(n), ref=str(n),
                recommendation_text=f"Recommendation {n}", lead_agency=agency,
                text=f"{agency} action", due_date=due, due_basis="fixed",
            ).id  # fmt: skip
    store.dispose()
    return ids


def _mail_to(smtp: Handler, address: str, subject_part: str) -> EmailMessage:
    for received in reversed(smtp.received):
        message = received.parsed()
        if address in received.recipients and subject_part in str(message["Subject"]):
            return message
    raise AssertionError(f"no message to {address} about {subject_part!r}")


def _link_in(message: EmailMessage, label: str) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    found = re.search(rf"{label}: (http\S+)", body.get_content())
    assert found, f"no {label!r} link"
    return found.group(1)


@pytest.mark.slow
def test_people_answer_their_reminders_and_the_coordinator_decides(
    browser: WebDriver, tmp_path: Path, daemons: list[Daemon], shots: Path
) -> None:
    due = TODAY + dt.timedelta(days=7)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    ids = _act_seed(url, tmp_path, due)
    rules = tmp_path / "rules"
    rules.mkdir()
    shipped = (Path(__file__).parent.parent / "rules" / "default.yaml").read_text()
    (rules / "default.yaml").write_text(shipped.replace('"0 8 * * 1-5"', f'"{EVERY_MINUTE}"'))
    handler = Handler()
    with SmtpServer(handler) as smtp_server:
        env = environment(url, smtp_server.port, DHR_RULES_DIR=str(rules))
        env["DHR_BASE_URL"] = f"http://127.0.0.1:{env['DHR_HTTP_PORT']}"
        daemon = Daemon(env, tmp_path)
        daemons.append(daemon)
        daemon.wait_healthy()
        # The catch-up tick: each owner (their agency's lead) is reminded a week ahead.
        for lead in ("pat@police", "hana@health", "hugo@housing"):
            wait_for(lambda lead=lead: any(f"{lead}.example.org" in m.recipients
                     for m in handler.received), 30, f"the reminder to {lead}")  # fmt: skip
        visit = Visit(browser, daemon.url(""), shots)

        # 1. Pat asks for more time; Cat approves; Pat hears; the calendar and ladder follow.
        reminder = _mail_to(handler, "pat@police.example.org", "Due in 7 days")
        assert reminder["Reply-To"] == CAT
        browser.get(_link_in(reminder, "Ask for more time"))
        new_due = due + dt.timedelta(days=40)
        fill_in(browser, {"proposed_due-day": str(new_due.day),
                          "proposed_due-month": str(new_due.month),
                          "proposed_due-year": str(new_due.year),
                          "reason": "Training budget comes in next quarter"})  # fmt: skip
        visit.submit()
        assert "Cat Coordinator" in visit.text()
        wait_for(lambda: any(CAT in m.recipients for m in handler.received), 30, "the request")
        visit.sign_in(CAT, handler)
        visit.open(f"/actions/{ids['Police']}")
        assert "Training budget comes in next quarter" in visit.text()
        button = browser.find_element(By.XPATH, "//button[@value='approve']")
        submit_and_wait(browser, button)
        assert "approved" in visit.text().lower()
        wait_for(
            lambda: any("pat@police.example.org" in m.recipients and "agreed" in
                        str(m.parsed()["Subject"]).lower() for m in handler.received),
            30, "the decision",
        )  # fmt: skip
        calendar = _cli(env, tmp_path, "tick", "--rule", "calendar")
        assert calendar.returncode == 0, calendar.stderr
        wait_for(lambda: any("Calendar update" in str(m.parsed()["Subject"]) and
                             "pat@police.example.org" in m.recipients
                             for m in handler.received), 30, "the calendar update")  # fmt: skip
        update = _mail_to(handler, "pat@police.example.org", "Calendar update")
        [part] = [p for p in update.walk() if p.get_content_type() == "text/calendar"]
        event = icalendar.Calendar.from_ical(part.get_payload(decode=True)).walk("VEVENT")[0]
        [first] = [p for p in reminder.walk() if p.get_content_type() == "text/calendar"]
        invited = icalendar.Calendar.from_ical(first.get_payload(decode=True)).walk("VEVENT")[0]
        assert event.decoded("DTSTART") == new_due
        assert int(event["SEQUENCE"]) == int(invited["SEQUENCE"]) + 1
        week_before = dt.datetime.combine(new_due - dt.timedelta(days=7), dt.time(9)).isoformat()
        ladder = json.loads(
            _cli(env, tmp_path, "tick", "--dry-run", "--json", "--at", week_before).stdout
        )
        assert any(ids["Police"] in m["actions"] and m["template"] == "due_soon"
                   for m in ladder["messages"])  # fmt: skip

        # 2. Hana marks hers done: no later reminder about it.
        browser.delete_all_cookies()
        done = _link_in(
            _mail_to(handler, "hana@health.example.org", "Due in 7 days"), "Mark as done"
        )
        browser.get(done)
        fill_in(browser, {"outcome": "Training delivered to all response officers"})
        visit.submit()
        browser.get(done)  # a second click shows what was recorded
        assert "Training delivered to all response officers" in visit.text()
        overdue = dt.datetime.combine(due + dt.timedelta(days=2), dt.time(9)).isoformat()
        later = json.loads(
            _cli(env, tmp_path, "tick", "--dry-run", "--json", "--at", overdue).stdout
        )
        about = [m for m in later["messages"] if ids["Health"] in m["actions"]]
        # only the calendar's cancellation of the invitation, no reminder
        assert [m["rule"] for m in about] == ["calendar"]

        # 3. Hugo reports progress: the next partnership report carries it.
        progress = _link_in(
            _mail_to(handler, "hugo@housing.example.org", "Due in 7 days"), "Report progress"
        )
        browser.get(progress)
        fill_in(browser, {"note": "Housing officers briefed; policy draft with legal"})
        visit.submit()
        next_report = dt.datetime.combine(add_months(TODAY - dt.timedelta(days=30), 6), dt.time(9))
        ticked = _cli(env, tmp_path, "tick", "--rule", "six-monthly-report",
                      "--at", (next_report + dt.timedelta(days=2)).isoformat())  # fmt: skip
        assert ticked.returncode == 0, ticked.stderr
        store = db.Store(url)
        with store.reading() as s:
            bodies = list(
                s.scalars(
                    select(Notification.text_body).where(
                        Notification.template == "partnership_report"
                    )
                )
            )
        store.dispose()
        assert bodies
        assert all("Housing officers briefed; policy draft with legal" in b for b in bodies)
