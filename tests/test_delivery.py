"""Delivery against a real SMTP server on loopback (aiosmtpd): security modes, faults, and the
outbox's promises — every message once, none lost."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import ssl
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import pytest
import trustme
from sqlalchemy import select

from dhr_workflow import actions, contacts, db, engine, outbox, reviews
from dhr_workflow.config import Settings
from dhr_workflow.models import AuditEvent, Notification
from dhr_workflow.transports import FileTransport, MemoryTransport, SmtpTransport
from tests.conftest import ACTOR, NOW
from tests.smtp_server import Handler, SmtpServer

ROOT = Path(__file__).resolve().parent.parent
LONDON = ZoneInfo("Europe/London")
DUE = dt.date(2024, 1, 31)
LATER = dt.datetime(2024, 6, 1, 9, 0, tzinfo=dt.UTC)  # after every tick in these tests
CONTACTS = """agency,role,name,email,review
Police,lead,Lee Lead,lead@police.example.org,
Police,manager,Max Manager,manager@police.example.org,
Health,lead,Hal Lead,lead@health.example.org,
,coordinator,Cat Coordinator,coordinator@csp.example.org,
,chair,Chris Chair,chair@csp.example.org,
"""


class Clock:
    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += dt.timedelta(**kw)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls(ca: trustme.CA) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


@pytest.fixture
def rules() -> tuple[Any, Any]:
    return engine.load_rules(ROOT / "rules", ROOT / "templates" / "email", LONDON)


@pytest.fixture
def plan(store: db.Store, tmp_path: Path) -> Callable[..., dict[str, int]]:
    with store.transaction() as s:
        reviews.add(s, "R1", "Review one", now=NOW, actor=ACTOR)
    path = tmp_path / "contacts.csv"
    path.write_text(CONTACTS)
    with store.transaction() as s:
        contacts.import_rows(s, contacts.read_csv(path), now=NOW, actor=ACTOR, source="c.csv")

    def make(*agencies: str, due: dt.date = DUE) -> dict[str, int]:
        ids = {}
        with store.transaction() as s:
            for n, agency in enumerate(agencies, start=1):
                a = actions.create(
                    s,
                    "R1",
                    now=NOW,
                    actor=ACTOR,
                    recommendation=str(n),
                    lead_agency=agency,
                    text=f"Action {n} <b>&</b>",
                    due_date=due,
                    due_basis="fixed",
                )
                ids[f"{agency}{n}"] = a.id
        return ids

    return make


def tick(store: db.Store, rules: Any, day: dt.date) -> engine.TickResult:
    ruleset, templates = rules
    ctx = engine.Context(
        dt.datetime.combine(day, dt.time(8), LONDON),
        LONDON,
        "england",
        templates,
        mail_from="dhr@csp.example.org",
    )
    with store.transaction() as s:
        return engine.commit(
            s,
            engine.evaluate(s, ruleset, ctx, only=["deadline", "calendar"]),
            ctx,
            actor="scheduler",
        )


def settings_for(server: SmtpServer | None, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "mail_transport": "smtp", "smtp_host": "127.0.0.1",
        "smtp_port": server.port if server else 1, "smtp_security": "none", "smtp_timeout": 5,
        "mail_from": "dhr@csp.example.org", "mail_retry_seconds": 60,
    }  # fmt: skip
    return Settings(_env_file=None, **(values | extra))  # type: ignore[call-arg]


def send(
    store: db.Store,
    transport: Any,
    settings: Settings,
    clock: Clock,
    rules: Any,
    owner: str = "test",
) -> outbox.BatchResult:
    return asyncio.run(
        outbox.send_batch(store, transport, settings, clock=clock, owner=owner, templates=rules[1])
    )


def states(store: db.Store) -> dict[int, str]:
    with store.reading() as s:
        return dict(s.execute(select(Notification.id, Notification.state)).all())


# --- the message itself ------------------------------------------------------------------------


def test_message_parts_and_headers(store: db.Store, rules: Any, plan: Any) -> None:
    ids = plan("Police")
    tick(store, rules, dt.date(2024, 1, 24))  # the -7d step: due_soon with an invitation
    transport = MemoryTransport()
    result = send(store, transport, settings_for(None), Clock(LATER), rules)
    assert len(result.sent) == 1
    [(message, recipients)] = transport.sent
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.strict)
    assert isinstance(parsed, EmailMessage)
    assert recipients == ["lead@police.example.org"]
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed["X-Auto-Response-Suppress"] == "All"
    assert parsed["Message-ID"].endswith("@dhr-workflow>")
    assert parsed["Date"]
    kinds = [p.get_content_type() for p in parsed.walk() if not p.is_multipart()]
    assert kinds == ["text/plain", "text/html", "text/calendar"]
    html = next(p for p in parsed.walk() if p.get_content_type() == "text/html").get_content()
    assert "Action 1 &lt;b&gt;&amp;&lt;/b&gt;" in html
    part = next(p for p in parsed.walk() if p.get_content_type() == "text/calendar")
    assert part.get_param("method") == "REQUEST"
    cal = icalendar.Calendar.from_ical(part.get_payload(decode=True))
    [event] = cal.walk("VEVENT")
    assert str(cal["METHOD"]) == "REQUEST"
    assert str(event["UID"]) == f"dhr-action-{ids['Police1']}@dhr-workflow"
    assert event["DTSTART"].dt == DUE
    assert event["DTEND"].dt == DUE + dt.timedelta(days=1)
    assert int(event["SEQUENCE"]) == 0
    assert str(event["ORGANIZER"]) == "mailto:dhr@csp.example.org"
    assert str(event["ATTENDEE"]) == "mailto:lead@police.example.org"


def test_completed_or_moved_actions_update_the_calendar(
    store: db.Store, rules: Any, plan: Any
) -> None:
    ids = plan("Police", "Health")
    tick(store, rules, dt.date(2024, 1, 24))
    transport = MemoryTransport()
    send(store, transport, settings_for(None), Clock(LATER), rules)
    with store.transaction() as s:
        actions.update(
            s,
            ids["Police1"],
            actions.ActionChange(status=actions.ActionStatus("completed")),
            today=dt.date(2024, 1, 25),
            now=NOW,
            actor=ACTOR,
        )
        actions.update(
            s,
            ids["Health2"],
            actions.ActionChange(due=dt.date(2024, 3, 31), reason="agreed"),
            today=dt.date(2024, 1, 25),
            now=NOW,
            actor=ACTOR,
        )
    result = tick(store, rules, dt.date(2024, 1, 25))
    updates = [m for m in result.messages if m.template == "calendar_update"]
    assert sorted(m.to[0] for m in updates) == [
        "lead@health.example.org",
        "lead@police.example.org",
    ]
    assert tick(store, rules, dt.date(2024, 1, 26)).messages == []  # once only
    send(store, transport, settings_for(None), Clock(LATER), rules)
    calendars = {}
    for message, _ in transport.sent[2:]:
        part = next(p for p in message.walk() if p.get_content_type() == "text/calendar")
        cal = icalendar.Calendar.from_ical(part.get_payload(decode=True))
        calendars[message["To"]] = (str(cal["METHOD"]), cal.walk("VEVENT")[0])
    method, event = calendars["lead@police.example.org"]
    assert (method, str(event["STATUS"]), int(event["SEQUENCE"])) == ("CANCEL", "CANCELLED", 1)
    method, event = calendars["lead@health.example.org"]
    assert (method, event["DTSTART"].dt, int(event["SEQUENCE"])) == (
        "REQUEST",
        dt.date(2024, 3, 31),
        1,
    )


# --- SMTP, for real ----------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
@pytest.mark.parametrize("security", ["none", "starttls", "tls"])
def test_smtp_security_modes_with_auth(
    store: db.Store,
    rules: Any,
    plan: Any,
    security: str,
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    plan("Police")
    tick(store, rules, dt.date(2024, 2, 1))  # overdue: to the owner
    handler = Handler()
    users = {"dhr": "s3cret"}
    with SmtpServer(handler, security=security, server_tls=tls[0], users=users) as server:
        settings = settings_for(
            server, smtp_security=security, smtp_username="dhr", smtp_password="s3cret"
        )
        transport = SmtpTransport(settings, tls_context=tls[1])
        result = send(store, transport, settings, Clock(LATER), rules)
    with store.reading() as s:
        error = s.get_one(Notification, 1).last_error
    assert len(result.sent) == 1, error
    [received] = handler.received
    assert received.recipients == ["lead@police.example.org"]
    parsed = received.parsed()
    assert parsed["Subject"] == "Overdue: DHR R1 action 1"
    assert {p.get_content_type() for p in parsed.walk()} >= {"text/plain", "text/html"}


def test_wrong_password_is_retried_not_lost(
    store: db.Store, rules: Any, plan: Any, tls: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    plan("Police")
    tick(store, rules, dt.date(2024, 2, 1))
    with SmtpServer(
        Handler(), security="starttls", server_tls=tls[0], users={"dhr": "right"}
    ) as server:
        settings = settings_for(
            server, smtp_security="starttls", smtp_username="dhr", smtp_password="wrong"
        )
        result = send(
            store, SmtpTransport(settings, tls_context=tls[1]), settings, Clock(LATER), rules
        )
    assert result.retried == [1]
    with store.reading() as s:
        note = s.get_one(Notification, 1)
        assert note.last_error is not None
        assert "login refused" in note.last_error
        assert "wrong" not in note.last_error


def test_server_down_then_back(store: db.Store, rules: Any, plan: Any) -> None:
    plan("Police", "Health")
    tick(store, rules, dt.date(2024, 2, 1))
    clock = Clock(LATER)
    handler = Handler()
    server = SmtpServer(handler)  # not started: connections are refused
    settings = settings_for(server)
    first = send(store, SmtpTransport(settings), settings, clock, rules)
    assert sorted(first.retried) == [1, 2]
    assert set(states(store).values()) == {"pending"}
    assert send(store, SmtpTransport(settings), settings, clock, rules).claimed == 0  # backoff
    with server:
        clock.advance(minutes=2)
        second = send(store, SmtpTransport(settings), settings, clock, rules)
        clock.advance(hours=1)
        third = send(store, SmtpTransport(settings), settings, clock, rules)
    assert sorted(second.sent) == [1, 2]
    assert third.claimed == 0
    assert sorted(r for m in handler.received for r in m.recipients) == [
        "lead@health.example.org",
        "lead@police.example.org",
    ]


def test_451_is_retried(store: db.Store, rules: Any, plan: Any) -> None:
    plan("Police")
    tick(store, rules, dt.date(2024, 2, 1))
    handler = Handler(data_reply="451 4.3.0 try again later")
    clock = Clock(LATER)
    with SmtpServer(handler) as server:
        settings = settings_for(server)
        assert send(store, SmtpTransport(settings), settings, clock, rules).retried == [1]
        handler.data_reply = None
        clock.advance(minutes=5)
        assert send(store, SmtpTransport(settings), settings, clock, rules).sent == [1]
    assert len(handler.received) == 1


def test_550_for_one_recipient_tells_the_coordinator(
    store: db.Store, rules: Any, plan: Any
) -> None:
    plan("Police")
    tick(store, rules, dt.date(2024, 2, 15))  # escalation: manager, owner, coordinator
    handler = Handler(refuse={"manager@police.example.org": "550 5.1.1 no such user"})
    clock = Clock(LATER)
    with SmtpServer(handler) as server:
        settings = settings_for(server)
        first = send(store, SmtpTransport(settings), settings, clock, rules)
        notices = send(store, SmtpTransport(settings), settings, clock, rules)
    with store.reading() as s:
        by_to = {n.to_addrs[0]: n for n in s.scalars(select(Notification))}
    assert first.failed == [by_to["manager@police.example.org"].id]
    assert len(first.sent) == 2
    assert len(notices.sent) == 1
    delivered = sorted(r for m in handler.received for r in m.recipients)
    assert delivered == [
        "coordinator@csp.example.org",
        "coordinator@csp.example.org",
        "lead@police.example.org",
    ]
    notice = handler.received[-1]
    text = notice.parsed().get_body(("plain",)).get_content()
    assert "550 5.1.1 no such user" in text
    assert f"outbox retry {by_to['manager@police.example.org'].id}" in text


def test_550_for_everyone_fails_at_once(store: db.Store, rules: Any, plan: Any) -> None:
    plan("Police")
    tick(store, rules, dt.date(2024, 2, 1))
    handler = Handler(refuse={"lead@police.example.org": "550 5.1.1 no such user"})
    with SmtpServer(handler) as server:
        settings = settings_for(server)
        result = send(store, SmtpTransport(settings), settings, Clock(LATER), rules)
    assert result.failed == [1]
    assert states(store) == {1: "failed", 2: "pending"}  # 2: the notice to the coordinator
    with store.reading() as s:
        kinds = list(
            s.scalars(select(AuditEvent.kind).where(AuditEvent.kind.like("notification.%")))
        )
    assert "notification.failed" in kinds


def _zoe(store: db.Store, plan: Any) -> None:
    plan("Probation")
    with store.transaction() as s:
        contacts.add(
            s,
            contacts.ContactInput("Zoë Lead", "zoë@probation.example.org", "lead", "Probation"),
            now=NOW,
            actor=ACTOR,
        )


def test_non_ascii_address_without_smtputf8_fails_at_once(
    store: db.Store, rules: Any, plan: Any
) -> None:
    _zoe(store, plan)
    tick(store, rules, dt.date(2024, 2, 1))  # overdue: to Probation's lead
    handler = Handler()
    clock = Clock(LATER)
    with SmtpServer(handler, smtputf8=False) as server:  # as many relays: retrying cannot help
        settings = settings_for(server)
        first = send(store, SmtpTransport(settings), settings, clock, rules)
        notices = send(store, SmtpTransport(settings), settings, clock, rules)
    assert (first.failed, first.retried) == ([1], [])
    assert states(store) == {1: "failed", 2: "sent"}
    with store.reading() as s:
        failed = s.get(Notification, 1)
        assert failed is not None and failed.last_error is not None
        assert failed.last_error.startswith(
            "zoë@probation.example.org: an address with non-ASCII characters needs a mail "
            "server that offers SMTPUTF8, and this one does not"
        )
    assert notices.sent == [2]  # the coordinator is told at once
    [notice] = handler.received
    assert notice.recipients == ["coordinator@csp.example.org"]
    assert "SMTPUTF8" in notice.parsed().get_body(("plain",)).get_content()


def test_non_ascii_address_with_smtputf8_is_delivered(
    store: db.Store, rules: Any, plan: Any
) -> None:
    _zoe(store, plan)
    tick(store, rules, dt.date(2024, 2, 1))
    handler = Handler()
    with SmtpServer(handler, smtputf8=True) as server:
        settings = settings_for(server)
        assert send(store, SmtpTransport(settings), settings, Clock(LATER), rules).sent == [1]
    assert handler.received[0].recipients == ["zoë@probation.example.org"]


def test_dropped_connection_mid_batch(store: db.Store, rules: Any, plan: Any) -> None:
    plan("Police", "Health")
    with store.transaction() as s:  # a third recipient, so the batch has three messages
        contacts.import_rows(
            s,
            [
                contacts.ContactRow(
                    2, "Fire", contacts.ContactRole.LEAD, "Fay", "lead@fire.example.org", ""
                )
            ],
            now=NOW,
            actor=ACTOR,
            source="x",
            allow_new_agencies=True,
        )
        actions.create(
            s,
            "R1",
            now=NOW,
            actor=ACTOR,
            recommendation="3",
            lead_agency="Fire",
            text="Action 3",
            due_date=DUE,
            due_basis="fixed",
        )
    tick(store, rules, dt.date(2024, 2, 1))
    handler = Handler(drop_after=1)
    clock = Clock(LATER)
    with SmtpServer(handler) as server:
        settings = settings_for(server)
        first = send(store, SmtpTransport(settings), settings, clock, rules)
        clock.advance(minutes=5)
        send(store, SmtpTransport(settings), settings, clock, rules)
    assert len(first.sent) >= 2  # the rest went out over a new connection
    assert set(states(store).values()) == {"sent"}
    assert len({r for m in handler.received for r in m.recipients}) == 3
    assert len(handler.received) == 3  # each once


def test_dead_after_max_attempts(store: db.Store, rules: Any, plan: Any) -> None:
    plan("Police")
    tick(store, rules, dt.date(2024, 2, 1))
    clock = Clock(LATER)
    settings = settings_for(None, mail_max_attempts=3)
    for _ in range(3):
        send(store, SmtpTransport(settings), settings, clock, rules)
        clock.advance(hours=2)
    assert states(store) == {1: "dead", 2: "pending"}  # 2: the coordinator's notice


def test_crash_after_claim_is_resent_after_the_lease(
    store: db.Store, rules: Any, plan: Any
) -> None:
    """A sender that dies holding a claim loses nothing: the lease expires and another sends."""
    plan("Police")
    tick(store, rules, dt.date(2024, 2, 1))
    with store.transaction() as s:
        assert outbox.claim(
            s, owner="crashed", now=LATER, limit=10, lease=dt.timedelta(minutes=5)
        ) == [1]
    clock = Clock(LATER)
    transport = MemoryTransport()
    assert send(store, transport, settings_for(None), clock, rules).claimed == 0  # still held
    clock.advance(minutes=6)
    assert send(store, transport, settings_for(None), clock, rules).sent == [1]
    assert len(transport.sent) == 1


def test_two_senders_claim_disjoint_batches(
    db_url: str, rules: Any, plan: Any, store: db.Store
) -> None:
    plan("Police", "Health")
    tick(store, rules, dt.date(2024, 2, 1))
    other = db.Store(db_url)
    try:
        with store.transaction() as a:
            mine = outbox.claim(a, owner="a", now=LATER, limit=1, lease=dt.timedelta(minutes=5))
        with other.transaction() as b:
            theirs = outbox.claim(b, owner="b", now=LATER, limit=10, lease=dt.timedelta(minutes=5))
    finally:
        other.dispose()
    assert len(mine) == 1
    assert set(mine).isdisjoint(theirs)
    assert sorted(mine + theirs) == [1, 2]


def test_file_transport_writes_private_eml(
    store: db.Store, rules: Any, plan: Any, tmp_path: Path
) -> None:
    plan("Police")
    tick(store, rules, dt.date(2024, 2, 1))
    directory = tmp_path / "mail"
    result = send(store, FileTransport(directory), settings_for(None), Clock(LATER), rules)
    assert result.sent == [1]
    [eml] = directory.glob("*.eml")
    assert eml.stat().st_mode & 0o077 == 0
    parsed = email.message_from_bytes(eml.read_bytes(), policy=email.policy.strict)
    assert parsed["To"] == "lead@police.example.org"


# --- the commands --------------------------------------------------------------------------------


def test_send_and_outbox_commands(cli: Any, tmp_path: Path) -> None:
    plan_file = ROOT / "tests" / "data" / "plans" / "westminster-case-a.txt"
    assert cli("import", str(plan_file), "--review", "WCA").exit_code == 0
    people = tmp_path / "people.csv"
    people.write_text(
        "agency,role,name,email\nBi Borough VAWG Strategic Board,lead,Sam,"
        "sam@westminster.example.org\n,coordinator,Cat,cat@westminster.example.org\n"
    )
    assert cli("contacts", "import", str(people)).exit_code == 0
    assert cli("tick", "--at", "2024-01-02").exit_code == 0
    listed = cli("outbox", "list", "--json")
    rows = __import__("json").loads(listed.stdout)
    assert {r["state"] for r in rows} == {"pending"}
    mail_dir = tmp_path / "out"
    result = cli("send", env={"DHR_MAIL_DIR": str(mail_dir)})
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"sent {len(rows)},")
    assert len(list(mail_dir.glob("*.eml"))) == len(rows)
    shown = cli("outbox", "show", str(rows[0]["id"]))
    assert "Auto-Submitted: auto-generated" in shown.stdout
    refused = cli("outbox", "retry", str(rows[0]["id"]))
    assert refused.exit_code == 2
    assert "only failed or dead messages can be retried" in refused.stderr
    assert "no message with id 999" in cli("outbox", "show", "999").stderr


def test_send_window_holds_messages_until_it_opens(store: db.Store, rules: Any, plan: Any) -> None:
    plan("Police")
    tick(store, rules, dt.date(2024, 2, 1))
    settings = settings_for(None, send_window="mon-fri 08:00-18:00")
    transport = MemoryTransport()
    saturday = Clock(dt.datetime(2024, 6, 1, 10, 0, tzinfo=LONDON))
    assert send(store, transport, settings, saturday, rules).claimed == 0
    bank_holiday = Clock(dt.datetime(2024, 5, 27, 10, 0, tzinfo=LONDON))
    assert send(store, transport, settings, bank_holiday, rules).claimed == 0
    early = Clock(dt.datetime(2024, 6, 3, 7, 59, tzinfo=LONDON))
    assert send(store, transport, settings, early, rules).claimed == 0
    monday = Clock(dt.datetime(2024, 6, 3, 8, 0, tzinfo=LONDON))
    assert send(store, transport, settings, monday, rules).sent == [1]


@pytest.mark.parametrize("window", ["weekdays 9-5", "mon-fri 18:00-08:00", "mon-fri 25:00-26:00"])
def test_bad_send_window_is_a_setting_error(window: str) -> None:
    from dhr_workflow.config import load_settings
    from dhr_workflow.errors import ConfigError

    with pytest.raises(ConfigError, match="setting send_window"):
        load_settings(send_window=window)


def test_stopping_sender_gives_back_untried_messages(
    store: db.Store, rules: Any, plan: Any
) -> None:
    plan("Police", "Health")
    tick(store, rules, dt.date(2024, 2, 1))
    transport = MemoryTransport()
    calls = []

    def stop() -> bool:  # a SIGTERM arrives after the first message
        calls.append(1)
        return len(calls) > 1

    result = asyncio.run(
        outbox.send_batch(
            store,
            transport,
            settings_for(None),
            clock=Clock(LATER),
            owner="me",
            templates=rules[1],
            stop=stop,
        )
    )
    assert len(result.sent) == 1
    assert sorted(states(store).values()) == ["pending", "sent"]  # the other is free again
    with store.reading() as s:
        pending = s.scalars(select(Notification).where(Notification.state == "pending")).one()
        assert (pending.lease_owner, pending.lease_until) == (None, None)
