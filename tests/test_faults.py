"""Faults: a slow or absent mail server, the clock crossing the DST changes, a review's anchor
date moving under scheduled reminders, the database restarting under a running daemon, and the
daemon killed in the middle of a send burst.

Marked ``faults`` (``pytest -m faults`` runs them alone); CI runs them with everything else.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.message
import itertools
import shutil
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import icalendar
import pytest
import time_machine
from apscheduler.schedulers.base import BaseScheduler
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.pool import NullPool

from dhr_workflow import actions, audit, contacts, db, engine, feeds, messages, outbox, reviews
from dhr_workflow.config import Settings
from dhr_workflow.durations import parse_cron
from dhr_workflow.models import Action, AuditEvent, Firing, Notification
from dhr_workflow.transports import DeliveryError, SmtpTransport
from tests.conftest import ACTOR, NOW, CliFn
from tests.smtp_server import Handler, SmtpServer, free_port
from tests.test_daemon import Daemon, due_soon, environment, seed, wait_for
from tests.test_delivery import Clock

pytestmark = pytest.mark.faults

ROOT = Path(__file__).resolve().parent.parent
LONDON = ZoneInfo("Europe/London")
CONTACTS = """agency,role,name,email
Police,lead,Lee Lead,lead@police.example.org
Health,lead,Hal Lead,lead@health.example.org
Probation,lead,Pat Lead,lead@probation.example.org
,coordinator,Cat Coordinator,coordinator@csp.example.org
"""


def enqueue_three(store: db.Store, tmp_path: Path) -> dt.datetime:
    """Three overdue reminders in the outbox, one per agency lead; returns when they were made."""
    people = tmp_path / "contacts.csv"
    people.write_text(CONTACTS)
    with store.transaction() as s:
        reviews.add(s, "R1", "Review one", now=NOW, actor=ACTOR)
        contacts.import_rows(s, contacts.read_csv(people), now=NOW, actor=ACTOR, source="c")
        for n, agency in enumerate(("Police", "Health", "Probation"), start=1):
            actions.create(
                s,
                "R1",
                now=NOW,
                actor=ACTOR,
                recommendation=str(n),
                lead_agency=agency,
                text=f"Action {n}",
                due_date=dt.date(2024, 1, 31),
                due_basis="fixed",
            )
    ruleset, templates = engine.load_rules(ROOT / "rules", ROOT / "templates" / "email", LONDON)
    when = dt.datetime(2024, 2, 1, 8, tzinfo=LONDON)
    ctx = engine.Context(when, LONDON, "england", templates, mail_from="dhr@csp.example.org")
    with store.transaction() as s:
        result = engine.commit(
            s, engine.evaluate(s, ruleset, ctx, only=["deadline"]), ctx, actor=ACTOR
        )
    assert len(result.messages) == 3
    return when


def smtp_settings(port: int, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "mail_transport": "smtp", "smtp_host": "127.0.0.1", "smtp_port": port,
        "smtp_security": "none", "smtp_timeout": 5, "mail_from": "dhr@csp.example.org",
        "mail_retry_seconds": 60,
    }  # fmt: skip
    return Settings(_env_file=None, **(values | extra))  # type: ignore[call-arg]


def send_once(store: db.Store, settings: Settings, clock: Clock) -> outbox.BatchResult:
    """One batch, bounded: a sender that hangs fails the test instead of blocking it."""
    _, templates = engine.load_rules(ROOT / "rules", ROOT / "templates" / "email", LONDON)
    batch = outbox.send_batch(
        store, SmtpTransport(settings), settings, clock=clock, owner="test", templates=templates
    )

    async def bounded() -> outbox.BatchResult:
        return await asyncio.wait_for(batch, 60)

    return asyncio.run(bounded())


def note_rows(store: db.Store) -> list[Notification]:
    with store.reading() as s:
        return list(s.scalars(select(Notification).order_by(Notification.id)))


# --- the mail server ---------------------------------------------------------------------------


def test_slow_server_times_out_and_the_sender_moves_on(store: db.Store, tmp_path: Path) -> None:
    made = enqueue_three(store, tmp_path)
    handler = Handler(rcpt_delay=3)  # slower than the client's patience
    clock = Clock(made + dt.timedelta(minutes=1))
    with SmtpServer(handler) as server:
        settings = smtp_settings(server.port, smtp_timeout=0.5)
        slow = send_once(store, settings, clock)
        # Every message was tried once, timed out, and went back to wait: none stuck in
        # 'sending', none given up.
        assert (len(slow.retried), slow.sent, slow.dead) == (3, [], [])
        rows = note_rows(store)
        assert {r.state for r in rows} == {"pending"}
        assert all("timed out" in (r.last_error or "").lower() for r in rows), [
            r.last_error for r in rows
        ]
        handler.rcpt_delay = 0
        clock.advance(minutes=3)
        fast = send_once(store, settings, clock)
        time.sleep(3.5)  # the server's abandoned slow sessions finish; none may deliver
    assert sorted(fast.sent) == [r.id for r in rows]
    delivered = Counter(email.message_from_bytes(m.data)["Message-ID"] for m in handler.received)
    assert set(delivered) == {r.message_id for r in rows}
    assert set(delivered.values()) == {1}


def test_a_connection_slower_than_the_timeout_says_timed_out() -> None:
    """Each step of the SMTP greeting within the timeout but the whole not: asyncio's bound on
    the whole fires, with no words of its own. The error says "timed out", not the name of an
    exception class that would read as a fault in the program."""

    async def scenario() -> tuple[str, int]:
        sessions: list[asyncio.Task[None]] = []

        async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            sessions.append(task)
            try:
                await asyncio.sleep(0.6)
                writer.write(b"220 slow.test ESMTP\r\n")
                await reader.readline()  # EHLO
                await asyncio.sleep(0.6)
            finally:
                writer.close()

        server = await asyncio.start_server(slow, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        # A login makes the client say EHLO inside connect(): two steps, each 0.6 s.
        settings = smtp_settings(port, smtp_timeout=1.0, smtp_username="u", smtp_password="p")
        transport = SmtpTransport(settings)
        try:
            await transport.send(email.message.EmailMessage(), ["lead@agency.example.org"])
        except DeliveryError as exc:
            return str(exc), port
        finally:
            server.close()
            await asyncio.gather(*sessions, return_exceptions=True)
            await server.wait_closed()
        return "sent", port

    said, port = asyncio.run(scenario())
    assert said == f"cannot connect to 127.0.0.1:{port}: timed out"


def test_server_slow_to_accept_data_repeats_at_most_once(store: db.Store, tmp_path: Path) -> None:
    """A timeout after the body has gone is SMTP's one ambiguous case: the server may still
    accept. The message is then tried again with the same Message-ID (mail clients collapse
    it) — repeated at most once, never lost."""
    made = enqueue_three(store, tmp_path)
    handler = Handler(data_delay=1.5)
    clock = Clock(made + dt.timedelta(minutes=1))
    with SmtpServer(handler) as server:
        settings = smtp_settings(server.port, smtp_timeout=0.5)
        first = send_once(store, settings, clock)
        assert len(first.retried) == 3
        handler.data_delay = 0
        time.sleep(2)
        clock.advance(minutes=3)
        second = send_once(store, settings, clock)
    assert len(second.sent) == 3
    delivered = Counter(email.message_from_bytes(m.data)["Message-ID"] for m in handler.received)
    assert set(delivered) == {r.message_id for r in note_rows(store)}
    assert max(delivered.values()) <= 2
    print(f"\nslow DATA: {sum(delivered.values()) - len(delivered)} of 3 repeated once")


def test_server_down_for_over_an_hour(store: db.Store, tmp_path: Path) -> None:
    """Connections refused for 80 minutes of simulated time, the sender running every minute:
    a handful of attempts with backoff (no hammering), nothing given up, no failure notices,
    and every message delivered once within one backoff interval of the server's return —
    at most DHR_MAIL_RETRY_MAX_SECONDS (15 minutes), where the plain doubling held them
    another 20 to 80 minutes."""
    made = enqueue_three(store, tmp_path)
    port = free_port()
    settings = smtp_settings(port)
    clock = Clock(made)
    for _ in range(80):  # the server is down: nothing listens on the port
        result = send_once(store, settings, clock)
        assert result.sent == result.dead == result.failed == []
        clock.advance(minutes=1)
    rows = note_rows(store)
    assert {r.state for r in rows} == {"pending"}
    attempts = [r.attempts for r in rows]
    # Backoff doubles from one minute up to 15: about nine tries in 80 minutes, not eighty.
    assert all(6 <= a <= 11 for a in attempts), attempts
    assert all("cannot connect" in (r.last_error or "") for r in rows)
    back = clock.now
    scheduled = {r.id: r.next_attempt_at for r in rows}
    handler = Handler()
    with SmtpServer(handler, port=port):
        while any(r.state != "sent" for r in note_rows(store)):
            assert clock.now - back <= dt.timedelta(minutes=16), "held past the 15-minute cap"
            send_once(store, settings, clock)
            clock.advance(minutes=1)
    rows = note_rows(store)
    assert len(rows) == 3  # no delivery_failure notices: nothing failed for good
    for r in rows:  # each went at its scheduled retry (the sender runs every minute)
        assert r.sent_at is not None
        assert dt.timedelta(0) <= r.sent_at - scheduled[r.id] < dt.timedelta(minutes=1)
    waited = max(r.sent_at for r in rows if r.sent_at) - back.astimezone(dt.UTC)
    assert sorted(m.recipients[0] for m in handler.received) == [
        "lead@health.example.org",
        "lead@police.example.org",
        "lead@probation.example.org",
    ]
    with store.reading() as s:
        kinds = Counter(s.scalars(select(AuditEvent.kind).where(AuditEvent.kind.like("notif%"))))
    assert kinds["notification.sent"] == 3
    assert kinds["notification.pending"] == sum(attempts)  # every failed try is on record
    print(
        f"\nSMTP down 80 simulated minutes: attempts per message {attempts}, "
        f"delivered {waited} after it came back"
    )


# --- the clock -----------------------------------------------------------------------------------

DAILY_RULES = """rules:
  - id: morning
    schedule: "0 8 * * *"
    applies_to: {needs_review: true, status: [open, in_progress]}
    notify: {to: [coordinator], template: needs_review}
  - id: night
    schedule: "30 1 * * *"
    applies_to: {needs_review: true, status: [open, in_progress]}
    notify: {to: [night-desk@csp.example.org], template: needs_review}
"""


def scheduler_runs(expr: str, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    """The run times APScheduler gives a job with this schedule: each next run is computed
    from the previous one, a moment after it ran (as AsyncIOScheduler does)."""
    trigger = parse_cron(expr, LONDON)
    runs: list[dt.datetime] = []
    previous, now = None, start
    while (fire := trigger.get_next_fire_time(previous, now)) is not None and fire < end:
        runs.append(fire)
        # Aware arithmetic drops the fold of the repeated hour: step in UTC.
        previous, now = fire, (fire.astimezone(dt.UTC) + dt.timedelta(seconds=1)).astimezone(LONDON)
    return runs


class ManualScheduler(BaseScheduler):  # type: ignore[misc]
    """APScheduler's own job processing, driven by hand: no timer thread, jobs run inline."""

    def wakeup(self) -> None:
        pass

    def shutdown(self, wait: bool = True) -> None:
        super().shutdown(wait)


@pytest.mark.parametrize("expr", ["30 1 * * *", "*/20 * * * *", "0 8 * * *"])
def test_the_scheduler_through_the_repeated_autumn_hour(expr: str) -> None:
    """APScheduler's own job processing, with the clock moved through 25 October 2026 in
    five-minute steps (time-machine: freezegun replaces the datetime class and loses the
    ``fold`` of the repeated hour, which sends APScheduler's cron maths into a loop that real
    clocks never see). The 01:30 job runs at both 01:30s — the engine's slot key then sends
    once — the 8 a.m. job once, and nothing stalls."""

    def frozen(*_: object) -> None:
        raise TimeoutError("the scheduler looped in the repeated hour")

    fired: list[dt.datetime] = []
    scheduler = ManualScheduler(timezone=LONDON, executors={"default": {"type": "debug"}})
    previous = signal.signal(signal.SIGALRM, frozen)
    start = dt.datetime(2026, 10, 24, 23, 0, tzinfo=dt.UTC)
    try:
        with time_machine.travel(start, tick=False) as clock:
            trigger = parse_cron(expr, LONDON)
            scheduler.add_job(lambda: fired.append(dt.datetime.now(dt.UTC)), trigger)
            scheduler.start()
            while dt.datetime.now(dt.UTC) < start + dt.timedelta(hours=12):
                signal.alarm(5)
                scheduler._process_jobs()
                signal.alarm(0)
                clock.shift(dt.timedelta(minutes=5))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        scheduler.shutdown(wait=False)
    utc = [f.strftime("%H:%M") for f in fired]
    if expr == "30 1 * * *":
        assert utc == ["00:30", "01:30"]  # 01:30 BST, then 01:30 GMT
        assert {f.astimezone(LONDON).strftime("%H:%M") for f in fired} == {"01:30"}
    elif expr == "0 8 * * *":
        assert utc == ["08:00"]  # 8 a.m. GMT, the day the clocks went back
    else:  # every 20 minutes of real time, through both 01:00-02:00 hours
        assert len(fired) == 12 * 3
        assert all(b - a == dt.timedelta(minutes=20) for a, b in itertools.pairwise(fired))


@pytest.mark.parametrize(
    "change", [dt.date(2026, 3, 29), dt.date(2026, 10, 25)], ids=["spring", "autumn"]
)
def test_daily_jobs_run_once_across_the_clock_change(
    store: db.Store, tmp_path: Path, change: dt.date
) -> None:
    """Europe/London: 01:30 does not exist on the spring day and happens twice on the autumn
    day. The 8 a.m. job runs once a day at 8 a.m. local; the 01:30 job once a day — also when
    the scheduler runs it twice in the repeated hour, and whenever a restarted daemon's
    catch-up tick (here: every 15 minutes) evaluates everything again."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "daily.yaml").write_text(DAILY_RULES)
    people = tmp_path / "contacts.csv"
    people.write_text(CONTACTS)
    with store.transaction() as s:
        reviews.add(s, "R1", "Review one", now=NOW, actor=ACTOR)
        contacts.import_rows(s, contacts.read_csv(people), now=NOW, actor=ACTOR, source="c")
        actions.create(
            s, "R1", now=NOW, actor=ACTOR, recommendation="1", lead_agency="Police",
            text="Undated", review_reasons=["due: no target date"],
        )  # fmt: skip
    ruleset, templates = engine.load_rules(tmp_path / "rules", ROOT / "templates" / "email", LONDON)
    start = dt.datetime.combine(change - dt.timedelta(days=1), dt.time(0), LONDON)
    end = dt.datetime.combine(change + dt.timedelta(days=2), dt.time(0), LONDON)
    runs: list[tuple[dt.datetime, list[str] | None]] = [
        *((t, ["morning"]) for t in scheduler_runs("0 8 * * *", start, end)),
        *((t, ["night"]) for t in scheduler_runs("30 1 * * *", start, end)),
    ]
    if change.month == 10:  # the scheduler itself offers the repeated 01:30 twice
        assert sum(1 for t, r in runs if r == ["night"] and t.date() == change) == 2
    t = start
    while t < end:
        runs.append((t, None))
        t = (t.astimezone(dt.UTC) + dt.timedelta(minutes=15)).astimezone(LONDON)
    for when, only in sorted(runs, key=lambda run: run[0].astimezone(dt.UTC)):
        ctx = engine.Context(when, LONDON, "england", templates)
        with store.transaction() as s:
            engine.commit(s, engine.evaluate(s, ruleset, ctx, only=only), ctx, actor="scheduler")
    catch_up = [n for n in note_rows(store) if n.created_at == start]
    assert sorted(n.rule_id for n in catch_up) == ["morning", "night"]  # yesterday's, once
    notes = [n for n in note_rows(store) if n.created_at > start]
    days = [change + dt.timedelta(days=d) for d in (-1, 0, 1)]
    made = Counter((n.rule_id, n.created_at.astimezone(LONDON).date()) for n in notes)
    assert made == {(rule, day): 1 for rule in ("morning", "night") for day in days}
    mornings = sorted(n.created_at for n in notes if n.rule_id == "morning")
    assert [m.astimezone(LONDON).strftime("%H:%M") for m in mornings] == ["08:00"] * 3
    # 8 a.m. local is 08:00 UTC in winter and 07:00 UTC in summer.
    utc_hours = [m.astimezone(dt.UTC).hour for m in mornings]
    assert utc_hours == ([8, 7, 7] if change.month == 3 else [7, 8, 8])


# --- a review's anchor date ----------------------------------------------------------------------


def _calendar_events(store: db.Store, action_id: int) -> list[tuple[str, str, int, dt.date]]:
    """(template, METHOD, SEQUENCE, DTSTART) of every invitation about one action, in order."""
    found = []
    for note in note_rows(store):
        for part in messages.calendar_parts(note):
            cal = icalendar.Calendar.from_ical(part)
            for event in cal.walk("VEVENT"):
                if str(event["UID"]) == f"dhr-action-{action_id}@dhr-workflow":
                    found.append(
                        (
                            note.template,
                            str(cal["METHOD"]),
                            int(event["SEQUENCE"]),
                            event["DTSTART"].dt,
                        )
                    )
    return found


def _feed_event(store: db.Store, secret: str, action_id: int) -> tuple[int, dt.date]:
    with store.reading() as s:
        token = feeds.lookup(s, secret)
        assert token is not None
        cal = icalendar.Calendar.from_ical(feeds.render(s, token))
    [event] = [
        e for e in cal.walk("VEVENT") if str(e["UID"]) == f"dhr-action-{action_id}@dhr-workflow"
    ]
    return int(event["SEQUENCE"]), event["DTSTART"].dt


def test_anchor_change_moves_due_dates_ladders_and_calendars(
    cli: CliFn, store: db.Store, tmp_path: Path
) -> None:
    people = tmp_path / "contacts.csv"
    people.write_text(CONTACTS)
    plan = tmp_path / "plan.csv"
    plan.write_text(
        "Recommendation,Action,Lead Agency,Target date\n"
        "1,Publish the revised policy,Police,3 months following review publication\n"
        "2,Brief staff,Health,30/06/2024\n"
    )
    assert cli("contacts", "import", str(people)).exit_code == 0
    assert cli("import", str(plan), "--review", "R1", "--title", "Review one").exit_code == 0
    assert cli("reviews", "set", "R1", "--published", "2024-01-10").exit_code == 0
    with store.transaction() as s:
        policy = s.scalars(select(Action).where(Action.ref == "1")).one()
        assert policy.due_date == dt.date(2024, 4, 10)
        seq = policy.sequence  # the first date given is already a change from 'no date'
        secret = feeds.create(s, "all", None, "all", now=NOW, actor=ACTOR).secret
    assert _feed_event(store, secret, policy.id) == (seq, dt.date(2024, 4, 10))

    def tick(day: str) -> list[str]:
        """A full tick (every rule and the calendar follow-up); what it made about the policy."""
        before = {n.id for n in note_rows(store)}
        result = cli("tick", "--at", f"{day}T08:00")
        assert result.exit_code == 0, result.output
        return sorted(
            n.template for n in note_rows(store) if n.id not in before and about_policy(n)
        )

    def about_policy(note: Notification) -> bool:
        with store.reading() as s:
            fired = s.scalars(
                select(Firing.subject_id).where(
                    Firing.notification_id == note.id, Firing.subject_type == "action"
                )
            )
            uid = f"UID:dhr-action-{policy.id}@dhr-workflow"
            return policy.id in set(fired) or any(uid in p for p in messages.calendar_parts(note))

    assert tick("2024-04-03") == ["due_soon"]  # -7d, with an invitation
    assert _calendar_events(store, policy.id) == [
        ("due_soon", "REQUEST", seq, dt.date(2024, 4, 10))
    ]

    # Publication was a month later than first recorded: the due date follows, the calendar
    # sequence goes up, and the ladder starts again from the new date.
    assert cli("reviews", "set", "R1", "--published", "2024-02-10").exit_code == 0
    with store.reading() as s:
        moved = s.get_one(Action, policy.id)
        assert (moved.due_date, moved.sequence) == (dt.date(2024, 5, 10), seq + 1)
        recomputed = [
            audit.event_dict(e)["data"]
            for e in s.scalars(
                select(AuditEvent).where(
                    AuditEvent.subject == f"action:{policy.id}",
                    AuditEvent.kind == "action.due_recompute",
                )
            )
        ]
    assert recomputed[-1]["before"]["due_date"] == "2024-04-10"
    assert (recomputed[-1]["after"]["due_date"], recomputed[-1]["anchor"]) == (
        "2024-05-10",
        "published_on",
    )
    assert tick("2024-04-04") == ["calendar_update"]
    assert _calendar_events(store, policy.id)[-1] == (
        "calendar_update", "REQUEST", seq + 1, dt.date(2024, 5, 10)
    )  # fmt: skip
    assert tick("2024-04-05") == []
    # 11 April: a day after the old date (no 'overdue' for it) and within 30 days of the new.
    assert tick("2024-04-11") == ["due_soon"]
    assert tick("2024-05-03") == ["due_soon"]  # -7d of the new date
    assert _calendar_events(store, policy.id)[-1] == (
        "due_soon",
        "REQUEST",
        seq + 1,
        dt.date(2024, 5, 10),
    )
    assert _feed_event(store, secret, policy.id) == (seq + 1, dt.date(2024, 5, 10))
    assert "overdue" not in {n.template for n in note_rows(store) if about_policy(n)}


# --- the daemon: database restart, SIGKILL ------------------------------------------------------


def minutely_rules(tmp_path: Path) -> Path:
    """The default rules with the ladder running every minute."""
    rules = tmp_path / "rules"
    rules.mkdir(exist_ok=True)
    text_ = (ROOT / "rules" / "default.yaml").read_text()
    (rules / "default.yaml").write_text(text_.replace('"0 8 * * 1-5"', '"* * * * *"'))
    return rules


def message_ids(store: db.Store) -> set[str]:
    with store.reading() as s:
        return set(s.scalars(select(Notification.message_id)))


def unsent(store: db.Store) -> list[tuple[int, str, str, str | None]]:
    with store.reading() as s:
        return [
            (n.id, n.template, n.state, n.last_error)
            for n in s.scalars(select(Notification).where(Notification.state != "sent"))
        ]


def all_sent(store: db.Store) -> bool:
    return not unsent(store)


def _answers(url: str) -> bool:
    engine = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 2})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False
    finally:
        engine.dispose()


@pytest.mark.slow
@pytest.mark.postgres
def test_database_restart_under_a_running_daemon(tmp_path: Path, daemons: list[Daemon]) -> None:
    """PostgreSQL stopped for a few seconds and started again under a running daemon: 503
    while it is down, then it carries on, nothing lost. The server stopped is a private
    cluster made for this test (tests/pg_cluster.py): the machine's own PostgreSQL, which
    other test sessions and people use, stays up throughout."""
    from tests.conftest import PG_URL
    from tests.pg_cluster import private_cluster

    shared_before = _answers(PG_URL)
    with private_cluster() as cluster:
        _restart_under_a_daemon(tmp_path, daemons, cluster, PG_URL if shared_before else None)


def _restart_under_a_daemon(
    tmp_path: Path, daemons: list[Daemon], cluster: Any, shared: str | None
) -> None:
    url = cluster.url
    db.migrate(url)
    due_soon(url, tmp_path, 0, 40)
    handler = Handler()
    with SmtpServer(handler) as smtp:
        env = environment(
            url,
            smtp.port,
            DHR_RULES_DIR=str(minutely_rules(tmp_path)),
            DHR_MAIL_LEASE_SECONDS="10",
        )
        daemon = Daemon(env, tmp_path)
        daemons.append(daemon)
        daemon.wait_healthy(60)
        wait_for(lambda: len(handler.received) >= 40, 60, "the first 40 messages")
        statuses: list[int] = []
        shared_up: list[bool] = []

        def probe() -> None:
            try:
                statuses.append(httpx.get(daemon.url("/healthz"), timeout=2).status_code)
            except httpx.HTTPError:
                statuses.append(0)

        def while_down() -> None:
            probe()
            if shared is not None:
                shared_up.append(_answers(shared))

        cluster.restart(down_for=4, during=while_down)
        probe()
        assert statuses[0] == 503  # the outage showed in /healthz, then it recovered
        assert shared_up in ([], [True]), "the machine's own PostgreSQL was stopped"
        # New work after the restart: the next minutely tick and the sender must pick it up
        # on fresh connections.
        due_soon(url, tmp_path, 40, 20)
        store = db.Store(url)
        wait_for(lambda: len(handler.received) >= 60, 150, "the 20 messages after the restart")
        # A batch whose outcome could not be recorded while the database was away is sent
        # again when its lease expires (same Message-ID): wait for the outbox to be empty.
        wait_for(lambda: all_sent(store), 60, "the outbox to empty")
        health = daemon.wait_healthy(60)
        assert health["database"] == "ok"
        assert daemon.proc.poll() is None, daemon.log.read_text()
        assert daemon.stop() == 0
    expected = message_ids(store)
    assert unsent(store) == []
    store.dispose()
    received = Counter(m.parsed()["Message-ID"] for m in handler.received)
    assert set(received) == expected  # none lost
    repeats = sum(received.values()) - len(received)
    assert repeats <= 50, f"{repeats} repeated: more than one batch in flight"
    print(
        f"\nprivate cluster stopped and started: {len(expected)} messages, none lost, "
        f"{repeats} repeated; /healthz while down and right after: {statuses}; the machine's "
        f"own PostgreSQL meanwhile: {shared_up or 'not running'}"
    )


@pytest.mark.slow
def test_sigkill_in_a_send_burst_loses_nothing(tmp_path: Path, daemons: list[Daemon]) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    seed(url, tmp_path, overdue=0, undated=0)
    due_soon(url, tmp_path, 0, 400)
    batch = 50
    handler = Handler(data_delay=0.004)  # a few ms per message: the burst takes seconds
    with SmtpServer(handler) as smtp:
        env = environment(
            url,
            smtp.port,
            DHR_MAIL_LEASE_SECONDS="3",
            DHR_MAIL_BATCH_SIZE=str(batch),
        )
        first = Daemon(env, tmp_path)
        daemons.append(first)
        first.wait_healthy(60)
        wait_for(lambda: len(handler.received) >= 120, 60, "the burst to be under way")
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait()
        at_kill = len(handler.received)
        assert at_kill < 400, "the burst finished before the kill; slow the sink down"
        second = Daemon({**env, "DHR_HTTP_PORT": str(free_port())}, tmp_path)
        daemons.append(second)
        second.wait_healthy(60)
        store = db.Store(url)
        wait_for(lambda: all_sent(store), 120, "every message to be sent after the restart")
        expected = message_ids(store)
        with store.reading() as s:
            reminders = s.scalar(
                select(func.count())
                .select_from(Notification)
                .where(Notification.template == "due_soon")
            )
        store.dispose()
        assert second.stop() == 0
    received = [m.parsed()["Message-ID"] for m in handler.received]
    assert set(received) == expected  # none lost
    assert reminders == 400  # one each, never enqueued twice by the restarted daemon's tick
    repeats = len(received) - len(set(received))
    assert repeats <= batch, f"{repeats} repeated: more than the batch in flight"
    print(f"\nSIGKILL after {at_kill} of {len(expected)} sent: none lost, {repeats} repeated")


def test_a_tick_slower_than_the_job_timeout_is_waited_for_not_doubled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The first tick over a very large store can outlast the job timeout. Abandoning it
    would not stop its thread, only let the next run start beside it: it is reported and
    waited for, and a run due meanwhile is skipped."""
    import threading

    from dhr_workflow import daemon as daemon_module

    url = f"sqlite:///{tmp_path / 'store.db'}"
    seed(url, tmp_path, overdue=0, undated=0)
    settings = Settings(_env_file=None, database_url=url)  # type: ignore[call-arg]
    running, runs = threading.Lock(), []

    def slow_tick(self: Any, only: list[str] | None) -> int:
        assert running.acquire(blocking=False), "two ticks ran at once"
        try:
            time.sleep(0.6)
            runs.append(only)
            return 0
        finally:
            running.release()

    monkeypatch.setattr(daemon_module, "JOB_TIMEOUT", 0.2)
    monkeypatch.setattr(daemon_module.Daemon, "_tick_sync", slow_tick)
    d = daemon_module.Daemon(settings)

    async def scenario() -> None:
        first = asyncio.create_task(d._tick(["deadline"]))
        await asyncio.sleep(0.4)  # past the timeout, the first still running
        await d._tick(["deadline"])  # due again meanwhile: skipped
        await first

    with caplog.at_level("WARNING", logger="dhr_workflow.daemon"):
        asyncio.run(scenario())
    d.store.dispose()
    d.web_store.dispose()
    assert runs == [["deadline"]]
    assert "tick deadline still running after" in caplog.text
    assert "tick deadline skipped" in caplog.text
    assert d.health.job_errors == {}
    assert "deadline" in d.health.last_tick


# --- the database file under a running daemon -----------------------------------------------


def _healthz(daemon: Daemon, n: int = 1) -> list[tuple[int, dict[str, Any]]]:
    """``n`` concurrent health checks: (status, body) of each."""
    from concurrent.futures import ThreadPoolExecutor

    def one(_: int) -> tuple[int, dict[str, Any]]:
        r = httpx.get(daemon.url("/healthz"), timeout=10)
        return r.status_code, r.json()

    with ThreadPoolExecutor(min(n, 16)) as pool:
        return list(pool.map(one, range(n)))


def test_database_file_deleted_or_replaced_under_the_daemon(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    """Deleted: /healthz says so (503) where it stayed 200 while writes went to the deleted
    inode, concurrent health checks never re-create an empty file, the sender's failure is
    logged once with the reason (not once a second). Replaced: 503 too."""
    path = tmp_path / "store.db"
    url = f"sqlite:///{path}"
    seed(url, tmp_path, overdue=0, undated=0)
    with SmtpServer(Handler()) as smtp:
        daemon = Daemon(environment(url, smtp.port), tmp_path)
        daemons.append(daemon)
        daemon.wait_healthy(60)
        path.unlink()
        answers = _healthz(daemon, 24)
        wait_for(lambda: "is missing" in daemon.log.read_text(), 15, "the sender's failure")
        time.sleep(3)  # the sender tries every second meanwhile
        answers += _healthz(daemon, 8)
        assert not path.exists(), "a health check or a job re-created the database file"
        fresh = tmp_path / "fresh" / "store.db"
        db.migrate(f"sqlite:///{fresh}")
        shutil.copy(fresh, path)  # someone puts another file at the path
        replaced = _healthz(daemon)
        assert daemon.stop() == 0
    assert {status for status, _ in answers} == {503}
    assert {body["database"] for _, body in answers} == {
        "file missing (deleted or moved while in use)"
    }
    assert replaced[0][0] == 503
    assert replaced[0][1]["database"] == "file replaced while in use"
    log = daemon.log.read_text()
    failures = [line for line in log.splitlines() if "job sender failed" in line]
    assert 1 <= len(failures) <= 2, log  # rate-limited: one a minute, not one a second
    assert f"the database file {path} is missing (deleted or moved while in use)" in failures[0]
    assert "Traceback" not in log


def test_database_read_only_under_the_daemon(tmp_path: Path, daemons: list[Daemon]) -> None:
    """A store that turns read-only (permissions, a full or read-only mount): /healthz says
    "read-only" (503), the log says "read-only" (not "unable to open database file"), and the
    daemon carries on once it is writable again."""
    from tests.test_store_file import make_read_only, make_writable, without_file_override

    path = tmp_path / "data" / "store.db"
    path.parent.mkdir()
    url = f"sqlite:///{path}"
    seed(url, tmp_path, overdue=0, undated=0)
    with SmtpServer(Handler()) as smtp:
        daemon = Daemon(environment(url, smtp.port), tmp_path, preexec=without_file_override)
        daemons.append(daemon)
        daemon.wait_healthy(60)
        make_read_only(path)
        try:
            wait_for(lambda: "read-only" in daemon.log.read_text(), 15, "the sender's failure")
            [(status, body)] = _healthz(daemon)
        finally:
            make_writable(path)
        assert (status, body["database"]) == (503, "read-only")
        assert daemon.wait_healthy(15)["database"] == "ok"
        assert daemon.stop() == 0
    log = daemon.log.read_text()
    assert f"job sender failed: the database file {path} is read-only" in log
    assert "unable to open database file" not in log
