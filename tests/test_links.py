"""The pages a message's links open, over HTTP on both backends: report progress, mark as done,
ask for more time, each as its recipient without signing in; what a link may not do (another
action, another purpose, after revocation or expiry, a guessed token); the token kept out of
the audit log, the daemon's log and /metrics; and each page in a real browser with axe.

Screenshots go to $SCREENSHOT_DIR when it is set (`SCREENSHOT_DIR=docs/screenshots pytest
tests/test_links.py -k browser`), else to the test's temporary directory.
"""

from __future__ import annotations

import datetime as dt
import html
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from sqlalchemy import func, select
from starlette.testclient import TestClient

from dhr_workflow import actions, audit, db, links
from dhr_workflow.config import load_settings
from dhr_workflow.models import (
    ActionLink,
    ActionStatus,
    ActionUpdate,
    AuditEvent,
    ExtensionRequest,
    Notification,
)
from dhr_workflow.web import Health, Metrics, create_app
from dhr_workflow.web.act import MISS_LIMIT
from tests.browser import (
    axe_violations,
    browser_fixture,  # noqa: F401
    fill_in,
    format_violations,
    screenshot,
    serve_asgi,
    submit_and_wait,
)
from tests.test_daemon import Daemon, environment
from tests.web_support import (
    BASE,
    HEALTH_SECRET,
    START,
    Site,
    csrf,
    seed,
    session_csrf,
    site_fixture,  # noqa: F401
)

LEE, HAL, CAT = "lee@police.example.org", "hal@health.example.org", "cat@csp.example.org"


def make_link(site: Site, key: str, purpose: str, recipient: str = LEE) -> str:
    """A stored link for an action of the seeded review, as the engine makes them: its path."""
    new = links.make(site.ids[key], recipient, purpose)
    with site.store.transaction() as s:
        links.store(s, [new], now=site.clock())
    return links.path(new)


def send(client: TestClient, path: str, **fields: Any) -> Any:
    """Open a link's page and send its form with these fields."""
    page = client.get(path)
    assert page.status_code == 200, page.text
    return client.post(path, data={"csrf_token": csrf(page.text), **fields})


def main_text(page: str) -> str:
    body = page.split("<main", 1)[1].split("</main>", 1)[0]
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body))).strip()


def error_summary(page: str) -> list[str]:
    box = page.split('class="govuk-error-summary', 1)
    assert len(box) == 2, "no error summary on the page"
    return [
        html.unescape(re.sub(r"\s+", " ", m).strip())
        for m in re.findall(r'<a href="#[^"]+">(.*?)</a>', box[1].split("</ul>", 1)[0], re.S)
    ]


def events(site: Site, kind: str | None = None) -> list[AuditEvent]:
    with site.store.reading() as s:
        query = select(AuditEvent).order_by(AuditEvent.seq)
        if kind is not None:
            query = query.where(AuditEvent.kind == kind)
        return list(s.scalars(query))


def count(site: Site, model: Any) -> int:
    with site.store.reading() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def link_row(site: Site, path: str) -> ActionLink:
    with site.store.reading() as s:
        found = links.find(s, path.rsplit("/", 1)[1])
        assert found is not None
        return found


def action(site: Site, key: str) -> Any:
    with site.store.reading() as s:
        return actions.get(s, site.ids[key])


def notes(site: Site, key: str) -> list[ActionUpdate]:
    with site.store.reading() as s:
        return actions.progress_notes(s, site.ids[key])


def written(site: Site) -> tuple[int, int, int]:
    """What any change would add to: audit events, progress notes, extension requests."""
    return count(site, AuditEvent), count(site, ActionUpdate), count(site, ExtensionRequest)


# --- report progress ---------------------------------------------------------------------------


def test_progress_is_recorded_as_the_recipient(site: Site) -> None:
    path = make_link(site, "police", "progress")
    client = site.client()
    page = client.get(path)
    assert page.status_code == 200
    shown = main_text(page.text)
    for expected in ("R1", "Recommendation 1", "Train response officers", "Police"):
        assert expected in shown
    assert "13 February 2024" in shown and "Overdue" in shown
    assert HEALTH_SECRET not in page.text  # another action's text
    assert "Sign out" not in page.text  # nobody is signed in
    sent = client.post(
        path,
        data={"csrf_token": csrf(page.text), "note": "Half the officers trained",
              "status": "in_progress"},
    )  # fmt: skip
    assert sent.status_code == 200
    assert "Progress recorded" in sent.text
    assert "Half the officers trained" in main_text(sent.text)
    assert "In progress (was open)" in main_text(sent.text)
    assert action(site, "police").status == ActionStatus.IN_PROGRESS
    [note] = notes(site, "police")
    assert (note.author, note.source, note.note) == (LEE, "link", "Half the officers trained")
    [event] = events(site, "action.status")
    assert event.actor == LEE
    assert f'"link":{link_row(site, path).id}' in event.data
    # The link works again for the next update.
    again = send(client, path, note="All trained but two", status="")
    assert again.status_code == 200
    assert [n.note for n in notes(site, "police")] == [
        "All trained but two",
        "Half the officers trained",
    ]


def test_blocked_needs_a_reason_and_a_note_is_required(site: Site) -> None:
    path = make_link(site, "police", "progress")
    client = site.client()
    before = written(site)
    empty = send(client, path, note="", status="")
    assert empty.status_code == 400
    assert error_summary(empty.text) == ["Enter what has been done"]
    blocked = send(client, path, note="Waiting on HR", status="blocked", blocker=" ")
    assert blocked.status_code == 400
    assert error_summary(blocked.text) == ["Enter what is blocking it"]
    assert 'value="blocked" checked' in blocked.text  # what was chosen is kept
    assert "Waiting on HR" in blocked.text
    too_long = send(client, path, note="x" * 5001, status="")
    assert error_summary(too_long.text) == ["What has been done must be 5000 characters or fewer"]
    assert written(site) == before  # nothing half-written
    saved = send(client, path, note="Waiting on HR", status="blocked", blocker="No trainer")
    assert saved.status_code == 200
    assert action(site, "police").status == ActionStatus.BLOCKED
    assert notes(site, "police")[0].note == "Waiting on HR\n\nBlocked: No trainer"


# --- mark as done ------------------------------------------------------------------------------


def test_done_completes_once_and_a_second_click_shows_what_was_recorded(site: Site) -> None:
    path = make_link(site, "police", "done")
    client = site.client()
    form = client.get(path)
    assert 'value="4"' in form.text and 'value="2024"' in form.text  # today, by default
    before = written(site)
    future = send(
        client, path, outcome="All trained",
        **{"completed_on-day": "5", "completed_on-month": "3", "completed_on-year": "2024"},
    )  # fmt: skip
    assert future.status_code == 400
    assert error_summary(future.text) == ["The date it was completed must be today or earlier"]
    empty = send(client, path, outcome="", **{"completed_on-day": "", "completed_on-month": ""})
    assert error_summary(empty.text) == [
        "Enter the date it was completed",
        "Enter what the action achieved",
    ]
    assert written(site) == before
    assert link_row(site, path).used_at is None
    done = send(
        client, path, outcome="All response officers trained",
        **{"completed_on-day": "1", "completed_on-month": "3", "completed_on-year": "2024"},
    )  # fmt: skip
    assert done.status_code == 200
    assert "Action marked as done" in done.text
    finished = action(site, "police")
    assert (finished.status, finished.completed_on, finished.outcome) == (
        ActionStatus.COMPLETED, dt.date(2024, 3, 1), "All response officers trained",
    )  # fmt: skip
    assert notes(site, "police")[0].note == "All response officers trained"
    used = link_row(site, path)
    assert used.used_at == START
    [event] = events(site, "action.status")
    assert event.actor == LEE and f'"link":{used.id}' in event.data
    # A second visit, and a second click, change nothing and show what was recorded.
    after = written(site)
    site.clock.advance(days=2)
    for again in (
        client.get(path),
        client.post(path, data={"csrf_token": session_csrf(client), "outcome": "Again",
                                "completed_on-day": "2", "completed_on-month": "3",
                                "completed_on-year": "2024"}),
    ):  # fmt: skip
        assert again.status_code == 200
        shown = main_text(again.text)
        assert "This action has already been marked as done" in shown
        assert "All response officers trained" in shown
        assert "1 March 2024" in shown
        assert "4 Mar 2024, 9:00am, from lee@police.example.org" in shown
    assert written(site) == after
    assert action(site, "police").outcome == "All response officers trained"


def test_done_after_someone_else_completed_it_changes_nothing(site: Site) -> None:
    path = make_link(site, "police", "done")
    with site.store.transaction() as s:
        actions.update(
            s, site.ids["police"], actions.ActionChange(status=ActionStatus.COMPLETED),
            today=site.clock().date(), now=site.clock(), actor=CAT, source="web",
        )  # fmt: skip
    client = site.client()
    before = written(site)
    page = client.get(path)
    assert "This action is already completed" in page.text
    assert "4 March 2024" in main_text(page.text)
    posted = client.post(
        path,
        data={"csrf_token": session_csrf(client), "outcome": "Done",
              "completed_on-day": "1", "completed_on-month": "3", "completed_on-year": "2024"},
    )  # fmt: skip
    assert posted.status_code == 200
    assert "This action is already completed" in posted.text
    assert written(site) == before
    assert link_row(site, path).used_at is None


def test_the_coordinator_can_reopen_an_action_done_by_link(site: Site) -> None:
    path = make_link(site, "police", "done")
    send(
        site.client(), path, outcome="Trained",
        **{"completed_on-day": "1", "completed_on-month": "3", "completed_on-year": "2024"},
    )  # fmt: skip
    cat = site.client()
    site.sign_in(cat, CAT)
    page = cat.get(f"/actions/{site.ids['police']}")
    reopened = cat.post(
        f"/actions/{site.ids['police']}",
        data={"csrf_token": csrf(page.text), "form": "progress", "status": "open",
              "note": "Two officers still to train", "outcome": "Trained"},
    )  # fmt: skip
    assert reopened.status_code == 303
    assert action(site, "police").status == ActionStatus.OPEN
    # The used link still says what it recorded, and changes nothing.
    again = site.client().get(path)
    assert "This action has already been marked as done" in again.text


# --- ask for more time -------------------------------------------------------------------------


def test_more_time_goes_to_the_coordinator(site: Site) -> None:
    path = make_link(site, "health", "extend", HAL)  # due 14 March 2024
    client = site.client()
    before = written(site)
    for day, month, message in [
        ("1", "3", "The new date must be after today, 4 March 2024"),
        ("10", "3", "The new date must be after the current due date, 14 March 2024"),
        ("31", "2", "The date you propose must be a real date, like 31 3 2025"),
    ]:
        refused = send(
            client, path, reason="Waiting for records",
            **{"proposed_due-day": day, "proposed_due-month": month, "proposed_due-year": "2024"},
        )  # fmt: skip
        assert refused.status_code == 400
        assert error_summary(refused.text) == [message]
    no_reason = send(
        client, path, reason="",
        **{"proposed_due-day": "30", "proposed_due-month": "4", "proposed_due-year": "2024"},
    )  # fmt: skip
    assert error_summary(no_reason.text) == ["Enter why more time is needed"]
    assert written(site) == before
    sent = send(
        client, path, reason="Waiting for the GP records",
        **{"proposed_due-day": "30", "proposed_due-month": "4", "proposed_due-year": "2024"},
    )  # fmt: skip
    assert sent.status_code == 200
    shown = main_text(sent.text)
    assert "Request sent" in shown
    assert "Cat Coordinator, at cat@csp.example.org" in shown
    assert "You will hear by email" in shown
    with site.store.reading() as s:
        [req] = s.scalars(select(ExtensionRequest))
        [note] = s.scalars(select(Notification).where(Notification.template == "extension_request"))
    link = link_row(site, path)
    assert (req.requested_by, req.link_id, req.state) == (HAL, link.id, "pending")
    assert (req.current_due, req.proposed_due) == (dt.date(2024, 3, 14), dt.date(2024, 4, 30))
    assert note.to_addrs == [CAT] and note.reply_to == HAL
    assert note.subject == "More time asked: DHR R1 action 2"
    assert f"http://127.0.0.1:8080/actions/{site.ids['health']}" in note.text_body
    assert "Waiting for the GP records" in note.text_body and "Hal Lead" in note.text_body
    [event] = events(site, "extension.request")
    assert event.actor == HAL and f'"link":{link.id}' in event.data
    assert action(site, "health").due_date == dt.date(2024, 3, 14)  # until the coordinator agrees
    # Asking again, from the page or by sending the form again, is not a second request.
    again = client.get(path)
    assert "More time has already been asked for" in again.text
    assert "30 April 2024" in main_text(again.text)
    twice = client.post(
        path,
        data={"csrf_token": session_csrf(client), "reason": "Again",
              "proposed_due-day": "31", "proposed_due-month": "5", "proposed_due-year": "2024"},
    )  # fmt: skip
    assert "More time has already been asked for" in twice.text
    assert count(site, ExtensionRequest) == 1


# --- what a link may not do --------------------------------------------------------------------


def test_a_link_acts_on_its_own_action_only(site: Site) -> None:
    lee = make_link(site, "police", "progress")
    hal = make_link(site, "health", "progress", HAL)
    client = site.client()
    # Whatever names another action in the form is ignored: the token decides.
    sent = send(
        client, lee, note="Police progress", status="", action_id=str(site.ids["health"]),
        action=str(site.ids["health"]), id=str(site.ids["health"]),
    )  # fmt: skip
    assert sent.status_code == 200
    assert [n.note for n in notes(site, "police")] == ["Police progress"]
    assert notes(site, "health") == []
    # A changed token is no link at all.
    secret = lee.rsplit("/", 1)[1]
    changed = "/act/" + secret[:-1] + ("A" if secret[-1] != "A" else "B")
    before = written(site)
    assert client.get(changed).status_code == 404
    refused = client.post(changed, data={"csrf_token": session_csrf(client), "note": "x"})
    assert refused.status_code == 404
    assert written(site) == before
    # Another recipient's token reaches their action only, and shows nothing of Lee's.
    page = client.get(hal)
    assert HEALTH_SECRET in page.text and "Train response officers" not in page.text
    send(client, hal, note="Health progress", status="")
    assert [n.note for n in notes(site, "police")] == ["Police progress"]
    assert [(n.note, n.author) for n in notes(site, "health")] == [("Health progress", HAL)]


def test_links_are_single_purpose(site: Site) -> None:
    progress = make_link(site, "police", "progress")
    extend = make_link(site, "police", "extend")
    client = site.client()
    before = written(site)
    completing = send(
        client, progress, note="Finished", status="completed", outcome="All trained",
        **{"completed_on-day": "1", "completed_on-month": "3", "completed_on-year": "2024"},
    )  # fmt: skip
    assert completing.status_code == 400
    assert error_summary(completing.text) == ["Select a status from the list"]
    assert written(site) == before
    # The completion fields are not this link's: a note is all it records.
    noted = send(
        client, progress, note="Nearly there", status="", outcome="All trained",
        **{"completed_on-day": "1", "completed_on-month": "3", "completed_on-year": "2024"},
    )  # fmt: skip
    assert noted.status_code == 200
    police = action(site, "police")
    assert (police.status, police.completed_on, police.outcome) == ("open", None, None)
    before = written(site)
    noting = send(client, extend, note="Just a note", status="in_progress")
    assert noting.status_code == 400
    assert error_summary(noting.text) == [
        "Enter the date you propose",
        "Enter why more time is needed",
    ]
    assert written(site) == before
    assert [n.note for n in notes(site, "police")] == ["Nearly there"]


def test_revoked_and_expired_links_say_whom_to_contact(site: Site) -> None:
    progress = make_link(site, "police", "progress")
    done = make_link(site, "police", "done")
    health = make_link(site, "health", "progress", HAL)
    client = site.client()
    form = client.get(health)
    with site.store.transaction() as s:
        assert links.revoke(s, site.ids["health"], now=site.clock(), actor=CAT) == 1
    for answer in (
        client.get(health),
        client.post(health, data={"csrf_token": csrf(form.text), "note": "x", "status": ""}),
    ):
        assert answer.status_code == 410
        shown = main_text(answer.text)
        assert "This link no longer works" in shown
        assert "withdrawn the links" in shown
        assert "Cat Coordinator, at cat@csp.example.org" in shown
        assert HEALTH_SECRET not in answer.text
    assert notes(site, "health") == []
    # Completed on 1 March: the links work for 60 days after, then not.
    send(
        client, done, outcome="Trained",
        **{"completed_on-day": "1", "completed_on-month": "3", "completed_on-year": "2024"},
    )  # fmt: skip
    site.clock.now = dt.datetime(2024, 4, 30, 9, 0, tzinfo=dt.UTC)  # the 60th day
    assert client.get(progress).status_code == 200
    assert "already been marked as done" in client.get(done).text
    site.clock.now = dt.datetime(2024, 5, 1, 9, 0, tzinfo=dt.UTC)
    for path in (progress, done):
        expired = client.get(path)
        assert expired.status_code == 410
        shown = main_text(expired.text)
        assert "completed on 1 March 2024" in shown and "60 days" in shown
        assert "Cat Coordinator, at cat@csp.example.org" in shown


def test_the_coordinator_revokes_an_actions_links_in_the_app(site: Site) -> None:
    path = make_link(site, "police", "progress")
    make_link(site, "police", "done")
    other = make_link(site, "health", "done", HAL)
    cat = site.client()
    site.sign_in(cat, CAT)
    page = cat.get(f"/actions/{site.ids['police']}")
    shown = main_text(page.text)
    assert "Links sent about this action" in shown
    assert "lee@police.example.org Report progress" in shown and "Works" in shown
    revoked = cat.post(
        f"/actions/{site.ids['police']}",
        data={"csrf_token": csrf(page.text), "form": "revoke_links"},
    )
    assert revoked.status_code == 303
    after = cat.get(revoked.headers["location"])
    assert "2 links revoked" in after.text
    assert "Revoke all links for this action" not in after.text  # none left to revoke
    [event] = events(site, "links.revoke")
    assert (event.actor, event.subject) == (CAT, f"action:{site.ids['police']}")
    assert site.client().get(path).status_code == 410
    assert site.client().get(other).status_code == 200  # another action's links still work
    # Only people who may change the action see its links, or revoke them.
    lee = site.client()
    site.sign_in(lee, LEE)
    assert "Links sent about this action" not in lee.get(f"/actions/{site.ids['police']}").text
    refused = lee.post(
        f"/actions/{site.ids['police']}",
        data={"csrf_token": session_csrf(lee), "form": "revoke_links"},
    )
    assert refused.status_code == 404


def test_a_get_changes_nothing(site: Site) -> None:
    paths = [make_link(site, "police", p) for p in links.PURPOSES]
    before = written(site)
    for path in paths * 2:  # as a mail scanner would, twice
        assert site.client().get(path).status_code == 200
    assert written(site) == before
    assert all(link_row(site, p).used_at is None for p in paths)


def test_a_post_without_the_pages_token_changes_nothing(site: Site) -> None:
    path = make_link(site, "police", "progress")
    client = site.client()
    client.get(path)
    refused = client.post(path, data={"note": "Forged", "status": "in_progress"})
    assert refused.status_code == 400
    assert "The form has expired" in refused.text
    assert notes(site, "police") == []


def test_unknown_tokens_get_one_page_and_guessing_is_limited(site: Site) -> None:
    real = make_link(site, "police", "progress")
    client = site.client()
    pages = set()
    for n in range(MISS_LIMIT):
        missed = client.get(f"/act/guess-{n}" if n % 2 else "/act/" + "x" * (n * 30 + 1))
        assert missed.status_code == 404
        pages.add(re.sub(r'nonce="[^"]+"', "", missed.text))
    assert len(pages) == 1
    assert "Page not found" in pages.pop()
    blocked = client.get("/act/one-guess-too-many")
    assert blocked.status_code == 429
    assert blocked.headers["retry-after"] == "900"
    # A real link is always served, even to an address that guessed (a shared council NAT).
    assert client.get(real).status_code == 200
    with TestClient(client.app, base_url=BASE, client=("10.0.0.2", 50000)) as other:
        assert other.get("/act/guess-x").status_code == 404  # another client is not held up
    site.clock.advance(minutes=16)
    assert client.get("/act/guess-again").status_code == 404


def test_the_token_never_reaches_the_audit_log(site: Site) -> None:
    paths = {p: make_link(site, "health", p, HAL) for p in links.PURPOSES}
    client = site.client()
    send(client, paths["progress"], note="Records requested", status="in_progress")
    send(
        client, paths["extend"], reason="GP practice closed",
        **{"proposed_due-day": "30", "proposed_due-month": "4", "proposed_due-year": "2024"},
    )  # fmt: skip
    send(
        client, paths["done"], outcome="Records reviewed",
        **{"completed_on-day": "4", "completed_on-month": "3", "completed_on-year": "2024"},
    )  # fmt: skip
    secrets = [p.rsplit("/", 1)[1] for p in paths.values()]
    found = events(site)
    named = {e.kind for e in found if '"link":' in e.data}
    assert named == {"action.status", "extension.request"}
    for event in found:
        for secret in secrets:
            assert secret not in f"{event.actor} {event.subject} {event.data}"
    with site.store.reading() as s:
        hashes = set(s.scalars(select(ActionLink.token_hash)))
        assert audit.verify(s).ok
    assert not any(secret in hashes for secret in secrets)  # only hashes are stored


@pytest.mark.slow
def test_the_token_stays_out_of_the_daemon_log_and_metrics(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    db.migrate(url)
    ids = seed(url, tmp_path)
    store = db.Store(url)
    new = links.make(ids["police"], LEE, "progress")
    with store.transaction() as s:
        links.store(s, [new], now=dt.datetime.now(dt.UTC))
    env = environment(
        url, 1, DHR_MAIL_TRANSPORT="file", DHR_MAIL_DIR=str(tmp_path / "mail"),
        DHR_LOG_LEVEL="DEBUG",
    )  # fmt: skip
    daemon = Daemon(env, tmp_path)
    daemons.append(daemon)
    daemon.wait_healthy(60)
    exposed: dict[str, str] = {}
    with httpx.Client(base_url=daemon.url(""), timeout=5) as client:
        page = client.get(links.path(new))
        assert page.status_code == 200
        sent = client.post(
            links.path(new), data={"csrf_token": csrf(page.text), "note": "Via the daemon"}
        )
        assert sent.status_code == 200
        for n in range(MISS_LIMIT + 3):  # near misses until limited: 404s, then 429s
            client.get(f"/act/{new.secret[:-4]}x{n:03d}")
        exposed["/metrics"] = client.get("/metrics").text
        exposed["/healthz"] = client.get("/healthz").text
    assert daemon.stop() == 0
    exposed["log"] = daemon.log.read_text()
    export = tmp_path / "audit.csv"
    cli = subprocess.run(
        [sys.executable, "-m", "dhr_workflow", "audit", "export", "--csv", str(export)],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    exposed["audit export"] = cli.stdout + cli.stderr
    exposed["audit"] = export.read_text()
    assert "Via the daemon" in exposed["audit"]  # the place looked at is the real one
    assert "dhr_ticks_total" in exposed["/metrics"]
    for where, content in exposed.items():
        assert new.secret not in content, f"the link's token appears in {where}"
    with store.reading() as s:
        assert s.scalar(select(func.count()).select_from(ActionUpdate)) == 1
    store.dispose()


# --- the pages in a real browser ----------------------------------------------------------------


def test_each_page_in_a_browser(site: Site, browser: WebDriver, tmp_path: Path) -> None:
    shots = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path)
    app = create_app(
        site.store, load_settings(database_url=site.url), Health(), Metrics(),
        clock=site.clock, transport=lambda: site.mail,
    )  # fmt: skip
    paths = {p: make_link(site, "police", p) for p in links.PURPOSES}
    extend = make_link(site, "health", "extend", HAL)

    def check(name: str, heading: str) -> None:
        assert heading in browser.find_element(By.TAG_NAME, "h1").text
        found = axe_violations(browser)
        assert found == [], f"{name}: {format_violations(found)}"
        screenshot(browser, shots / f"{name}.png")

    with serve_asgi(app) as base:
        browser.get(base + paths["progress"])
        check("link-progress", "Report progress")
        fill_in(browser, {"note": "Half the officers trained; the rest in April."})
        browser.find_element(By.CSS_SELECTOR, "input[name=status][value=in_progress]").click()
        submit_and_wait(browser, "main form")
        check("link-thanks", "Progress recorded")
        browser.get(base + paths["done"])
        check("link-done", "Mark as done")
        fill_in(browser, {"outcome": "All response officers trained by 1 March."})
        submit_and_wait(browser, "main form")
        assert "Action marked as done" in browser.find_element(By.TAG_NAME, "main").text
        browser.get(base + paths["done"])
        check("link-done-used", "already been marked as done")
        browser.get(base + extend)
        check("link-extend", "Ask for more time")
        fill_in(browser, {
            "proposed_due-day": "30", "proposed_due-month": "4", "proposed_due-year": "2024",
            "reason": "The GP practice has not yet sent the records we asked for in February.",
        })  # fmt: skip
        submit_and_wait(browser, "main form")
        check("link-extend-sent", "Request sent")
        site.clock.now = START + dt.timedelta(days=70)
        browser.get(base + paths["progress"])
        check("link-expired", "This link no longer works")
