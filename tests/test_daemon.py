"""The daemon as an operator runs it: `dhr-workflow run` in a subprocess, a real SMTP server on
loopback, real HTTP requests, two independent iCal parsers, real signals."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import icalendar
import pytest
import vobject
from sqlalchemy import func, select, text

from dhr_workflow import actions, contacts, db, outbox, reviews
from dhr_workflow.models import AuditEvent, Notification
from tests.smtp_server import Handler, SmtpServer, free_port

ROOT = Path(__file__).resolve().parent.parent
NOW = dt.datetime.now(dt.UTC)
TODAY = NOW.date()
CONTACTS = """agency,role,name,email
Police,lead,Lee Lead,lead@police.example.org
Police,manager,Max Manager,manager@police.example.org
Health,lead,Hal Lead,lead@health.example.org
,coordinator,Cat Coordinator,coordinator@csp.example.org
,chair,Chris Chair,chair@csp.example.org
"""
EVERY_MINUTE = """rules:
  - id: minutely-undated
    schedule: "* * * * *"
    applies_to: {needs_review: true}
    notify: {to: coordinator, template: needs_review}
"""


def seed(url: str, tmp_path: Path, *, overdue: int = 2, undated: int = 1) -> None:
    db.migrate(url)
    store = db.Store(url)
    people = tmp_path / "contacts.csv"
    people.write_text(CONTACTS)
    with store.transaction() as s:
        reviews.add(s, "R1", "Review one", now=NOW, actor="test")
        contacts.import_rows(s, contacts.read_csv(people), now=NOW, actor="test", source="c")
        for n in range(overdue):
            actions.create(
                s,
                "R1",
                now=NOW,
                actor="test",
                recommendation=str(n + 1),
                lead_agency="Police" if n % 2 == 0 else "Health",
                text=f"Overdue action {n + 1}",
                due_date=TODAY - dt.timedelta(days=2),
                due_basis="fixed",
            )
        # Due 40 days ago and never reminded (as if the daemon had been down since before
        # the first step): on start, one escalation to the chair, no backlog.
        actions.create(
            s,
            "R1",
            now=NOW,
            actor="test",
            recommendation="old",
            lead_agency="Health",
            text="Long overdue action",
            due_date=TODAY - dt.timedelta(days=40),
            due_basis="fixed",
        )
        for n in range(undated):
            actions.create(
                s,
                "R1",
                now=NOW,
                actor="test",
                recommendation=f"u{n}",
                lead_agency="Police",
                text="Undated action",
                review_reasons=["due: no target date"],
            )
    store.dispose()


class Daemon:
    def __init__(
        self, env: dict[str, str], cwd: Path, preexec: Callable[[], None] | None = None
    ) -> None:
        self.port = int(env["DHR_HTTP_PORT"])
        self.log = cwd / f"daemon-{self.port}.log"
        self.log_file = self.log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dhr_workflow", "run"],
            cwd=cwd,
            env=env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec,  # limits for the child only (open files, capabilities)
        )

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log_file.close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_healthy(self, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                r = httpx.get(self.url("/healthz"), timeout=2)
                if r.status_code == 200:
                    body: dict[str, Any] = r.json()
                    return body
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"daemon never healthy:\n{self.log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def environment(url: str, smtp_port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DHR_")}
    env.update({
        "DHR_DATABASE_URL": url, "DHR_MAIL_TRANSPORT": "smtp", "DHR_SMTP_HOST": "127.0.0.1",
        "DHR_SMTP_PORT": str(smtp_port), "DHR_SMTP_SECURITY": "none",
        "DHR_HTTP_PORT": str(free_port()), "DHR_SEND_INTERVAL_SECONDS": "1",
        "DHR_MAIL_FROM": "dhr@csp.example.org", **extra,
    })  # fmt: skip
    return env


@pytest.mark.slow
def test_daemon_end_to_end(tmp_path: Path, daemons: list[Daemon]) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    seed(url, tmp_path)
    rules = tmp_path / "rules"
    # The default rules, with the ladder running every minute so the test does not depend on
    # the day of the week it runs on.
    shutil_copy(ROOT / "rules" / "default.yaml", rules / "default.yaml")
    ladder = (rules / "default.yaml").read_text().replace('"0 8 * * 1-5"', '"* * * * *"')
    (rules / "default.yaml").write_text(ladder)
    (rules / "minutely.yaml").write_text(EVERY_MINUTE)
    handler = Handler()
    with SmtpServer(handler) as smtp:
        env = environment(url, smtp.port, DHR_RULES_DIR=str(rules))
        feed_url = _create_feed(env, tmp_path)
        daemon = Daemon(env, tmp_path)
        daemons.append(daemon)
        health = daemon.wait_healthy()
        assert health["scheduler_running"] is True
        assert health["database"] == "ok"
        # The catch-up tick on start: an overdue reminder to each owner and the undated
        # action to the coordinator, each once (the minutely rule may add one more).
        wait_for(lambda: len(handler.received) >= 3, 30, "the first messages")
        time.sleep(2)
        first = {(m.recipients[0], m.parsed()["Subject"]) for m in handler.received}
        assert {
            ("lead@police.example.org", "Overdue: DHR R1 action 1"),
            ("lead@health.example.org", "Overdue: DHR R1 action 2"),
            ("coordinator@csp.example.org", "1 DHR action needs a date or a lead agency"),
        } <= first
        ids = [m.parsed()["Message-ID"] for m in handler.received]
        assert len(ids) == len(set(ids))
        to_chair = [m for m in handler.received if m.recipients == ["chair@csp.example.org"]]
        assert [m.parsed()["Subject"] for m in to_chair] == [
            "Escalation: DHR R1 action old overdue 40 days"
        ]
        assert not any(
            "action old" in subject and "Escalation" not in subject for _, subject in first
        )

        _check_feed(daemon, feed_url)

        # A broken rule file on SIGHUP is refused; the old rules keep firing every minute.
        (rules / "broken.yaml").write_text("ladders:\n  - id: x\n    steps: []\n")
        before = _count_for(handler, "coordinator@csp.example.org")
        daemon.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload refused" in daemon.log.read_text(), 10, "the refusal")
        wait_for(
            lambda: _count_for(handler, "coordinator@csp.example.org") > before,
            75,
            "the minutely rule to fire after the refused reload",
        )
        assert daemon.wait_healthy()["job_errors"] == {}

        started = time.monotonic()
        assert daemon.stop(signal.SIGTERM) == 0
        assert time.monotonic() - started < 10
    store = db.Store(url)
    with store.reading() as s:
        kinds = set(s.scalars(select(AuditEvent.kind)))
        pending = s.scalar(
            select(func.count()).select_from(Notification).where(Notification.state != "sent")
        )
    store.dispose()
    assert {"daemon.start", "rules.reload_refused", "daemon.stop"} <= kinds
    assert pending == 0


def shutil_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(source.read_text())


def _count_for(handler: Handler, address: str) -> int:
    return sum(1 for m in handler.received if address in m.recipients)


def _create_feed(env: dict[str, str], cwd: Path) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "dhr_workflow", "feeds", "create", "--all", "--label", "everything"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip().split(": ", 1)[1]


def _check_feed(daemon: Daemon, feed_url: str) -> None:
    path = feed_url.split(str(daemon.port), 1)[1]
    r = httpx.get(daemon.url(path), timeout=5)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/calendar")
    one = icalendar.Calendar.from_ical(r.content)
    other = vobject.readOne(r.text)
    uids_one = sorted(str(e["UID"]) for e in one.walk("VEVENT"))
    uids_other = sorted(e.uid.value for e in other.vevent_list)
    assert uids_one == uids_other
    assert len(uids_one) == 6  # the dated open actions, all overdue: on their dates and today
    assert str(one["METHOD"]) == "PUBLISH"
    due = {
        e.dtstart.value
        for e in other.vevent_list
        if not e.uid.value.endswith("-overdue@dhr-workflow")
    }
    assert due == {TODAY - dt.timedelta(days=2), TODAY - dt.timedelta(days=40)}
    again_today = {e.dtstart.value for e in other.vevent_list} - due
    assert len(again_today) == 1 and again_today <= {TODAY, TODAY + dt.timedelta(days=1)}  # London
    again = httpx.get(daemon.url(path), headers={"If-None-Match": r.headers["etag"]}, timeout=5)
    assert again.status_code == 304
    wrong = httpx.get(daemon.url("/feeds/not-a-real-token.ics"), timeout=5)
    assert (wrong.status_code, wrong.text) == (404, "Not Found")
    metrics = httpx.get(daemon.url("/metrics"), timeout=5).text
    assert 'dhr_ticks_total{rule="deadline"}' in metrics


@pytest.mark.slow
@pytest.mark.postgres
def test_three_replicas_send_each_message_once(
    tmp_path: Path, daemons: list[Daemon], pg_server_url: str
) -> None:
    from tests.conftest import _truncate_pg

    _truncate_pg(pg_server_url)
    engine_ = db.make_engine(pg_server_url)
    with engine_.begin() as conn:
        conn.execute(text("SELECT 1"))
    engine_.dispose()
    due_soon(pg_server_url, tmp_path, 0, 1000)
    handler = Handler()
    with SmtpServer(handler) as smtp:
        env = {
            **environment(pg_server_url, smtp.port),
            "DHR_MAIL_LEASE_SECONDS": "3",
            "DHR_MAIL_BATCH_SIZE": "20",
        }
        for _ in range(3):
            daemons.append(Daemon({**env, "DHR_HTTP_PORT": str(free_port())}, tmp_path))
        for d in daemons:
            d.wait_healthy(60)
        time.sleep(1.5)
        daemons[0].proc.send_signal(signal.SIGKILL)  # one replica dies mid-run
        daemons[0].proc.wait()
        store = db.Store(pg_server_url)

        def all_sent() -> bool:
            with store.reading() as s:
                return not s.scalar(
                    select(func.count())
                    .select_from(Notification)
                    .where(Notification.state != "sent")
                )

        wait_for(all_sent, 120, "every message to be sent")
        with store.reading() as s:
            expected = set(s.scalars(select(Notification.message_id)))
        store.dispose()
        for d in daemons[1:]:
            assert d.stop() == 0
    received = [m.parsed()["Message-ID"] for m in handler.received]
    assert set(received) == expected  # none lost
    repeats = len(received) - len(set(received))
    # Only what the killed replica had sent but not yet recorded (one group) can go twice.
    assert repeats <= outbox.RECORD_EVERY, f"{repeats} messages sent twice"
    print(f"\n3 replicas, {len(expected)} messages, {repeats} repeated after SIGKILL")


def due_soon(url: str, tmp_path: Path, first: int, count: int) -> None:
    """Actions ``first``..``first+count-1`` due in five days, each with its own agency lead
    (one reminder each); the review is made if the store has none yet."""
    people = tmp_path / f"agencies-{first}.csv"
    people.write_text(
        "agency,role,name,email\n"
        + "".join(
            f"Agency {i},lead,Lead {i},lead{i}@agency.example.org\n"
            for i in range(first, first + count)
        )
    )
    store = db.Store(url)
    with store.transaction() as s:
        if s.scalar(select(func.count()).select_from(reviews.Review)) == 0:
            reviews.add(s, "R1", "Review one", now=NOW, actor="test")
        contacts.import_rows(
            s, contacts.read_csv(people), now=NOW, actor="test", source="c",
            allow_new_agencies=True,
        )  # fmt: skip
        for i in range(first, first + count):
            actions.create(
                s,
                "R1",
                now=NOW,
                actor="test",
                recommendation=str(i),
                lead_agency=f"Agency {i}",
                text=f"Action {i}",
                due_date=TODAY + dt.timedelta(days=5),
                due_basis="fixed",
            )
    store.dispose()


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    import socket

    url = f"sqlite:///{tmp_path / 'store.db'}"
    seed(url, tmp_path, overdue=0, undated=0)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = environment(url, 1, DHR_HTTP_PORT=str(port))
        result = subprocess.run(
            [sys.executable, "-m", "dhr_workflow", "run"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: cannot listen on 127.0.0.1:{port}")
    )
    assert "Traceback" not in result.stderr


# --- what the operator reads in the log --------------------------------------------------------


def _in_process(tmp_path: Path, **settings: Any) -> Any:
    """The daemon object on a seeded store, without serving (its jobs called directly)."""
    from dhr_workflow.config import Settings
    from dhr_workflow.daemon import Daemon as RealDaemon

    url = f"sqlite:///{tmp_path / 'store.db'}"
    seed(url, tmp_path, overdue=0, undated=0)
    return RealDaemon(Settings(_env_file=None, database_url=url, **settings))  # type: ignore[call-arg]


def _events(daemon: Any, kind: str) -> list[dict[str, Any]]:
    from dhr_workflow import audit

    with daemon.store.reading() as s:
        rows = s.scalars(select(AuditEvent).where(AuditEvent.kind == kind))
        return [audit.event_dict(e)["data"] for e in rows]


def test_each_new_gap_is_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The long-overdue action's escalation has no agency manager to go to, and the
    six-monthly report no agreed-plan date to count from: each is said once in the daemon's
    log, as it is audited once — not at every tick, and never silently."""
    daemon = _in_process(tmp_path)
    try:
        with caplog.at_level("WARNING", logger="dhr_workflow.daemon"):
            for _ in range(3):
                daemon._tick_sync(None)
        gaps = _events(daemon, "rule.gap")
    finally:
        daemon.store.dispose()
        daemon.web_store.dispose()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("gap: ")]
    assert len(gaps) == len(lines) == 2, lines
    assert sorted(lines) == [
        "gap: rule deadline: nobody is agency.manager for actions 1, so nobody was told "
        "(add one with `dhr-workflow contacts add` or `contacts import`)",
        "gap: rule six-monthly-report: review R1 has no plan-agreed date: set it with "
        "dhr-workflow reviews set R1 --plan-agreed DATE",
    ]


@pytest.mark.parametrize(
    "error",
    [MemoryError("YAML alias bomb"), RecursionError("maximum recursion depth"), KeyError("x")],
    ids=["memory", "recursion", "bug"],
)
def test_a_reload_that_raises_anything_is_refused_logged_and_audited(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
) -> None:
    """SIGHUP's reload runs in a thread; a loader that raised anything but a UserError (a YAML
    bomb's MemoryError) used to end that thread with no log line and no event."""
    import asyncio

    daemon = _in_process(tmp_path)
    rules = daemon.ruleset

    def explode() -> Any:
        raise error

    monkeypatch.setattr(daemon, "_load", explode)

    async def hup() -> None:
        daemon.tasks = set()
        daemon._on_hup()
        await asyncio.gather(*daemon.tasks, return_exceptions=True)

    try:
        with caplog.at_level("ERROR", logger="dhr_workflow.daemon"):
            asyncio.run(hup())
        refused = _events(daemon, "rules.reload_refused")
    finally:
        daemon.store.dispose()
        daemon.web_store.dispose()
    assert daemon.ruleset is rules  # the current rules stay
    said = f"{error.__class__.__name__}: {error!s}"
    assert f"reload refused, keeping the current rules: {said}" in caplog.text
    assert refused == [{"error": said}]


def test_an_edited_template_takes_effect_at_reload_once_checked(tmp_path: Path) -> None:
    """Templates are loaded with the rule set: an edit on disk changes nothing until SIGHUP's
    reload has checked it (so a half-saved or broken template never reaches a tick), and a
    broken edit is refused there, the last good wording kept."""
    import shutil

    from dhr_workflow.templates import sample_context

    templates = tmp_path / "templates"
    shutil.copytree(Path(__file__).resolve().parent.parent / "templates" / "email", templates)
    daemon = _in_process(tmp_path, templates_dir=templates)

    def subject() -> str:
        return str(daemon.templates.render("overdue", sample_context("action")).subject)

    try:
        before = subject()
        (templates / "overdue.subject.txt").write_text("Edited: {{ total }} overdue\n")
        assert subject() == before  # on disk only
        daemon.reload()
        assert subject() == "Edited: 1 overdue"
        (templates / "overdue.subject.txt").write_text("{% if %}\n")
        daemon.reload()
        assert subject() == "Edited: 1 overdue"
        assert _events(daemon, "rules.reload_refused")
    finally:
        daemon.store.dispose()
        daemon.web_store.dispose()
