"""Render one real example of every email template into docs/examples/.

    python docs/examples/generate.py

Imports the Westminster demo plan into a temporary store, adds contacts, runs ticks on the
dates that trigger each rule, completes an invited action (calendar update), fails one send
(delivery failure), and writes each template's first message as NAME.eml (exactly as sent)
and NAME.html (its HTML part, to open in a browser).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import tempfile
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select

from dhr_workflow import actions, contacts, db, engine, extensions, messages, outbox
from dhr_workflow.config import Settings
from dhr_workflow.importer.apply import apply_plan
from dhr_workflow.importer.parse import parse_lines
from dhr_workflow.importer.readers import read_source
from dhr_workflow.models import Action, Notification
from dhr_workflow.templates import Templates
from dhr_workflow.transports import DeliveryError, MemoryTransport

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent
LONDON = ZoneInfo("Europe/London")
START = dt.datetime(2023, 6, 1, 9, tzinfo=LONDON)
BASE = "https://dhr.westminster.example.org"  # the web app the messages link to
CONTACTS = """agency,role,name,email,review
Bi Borough VAWG Strategic Board,lead,Sam Lead,sam.lead@westminster.example.org,
Bi Borough VAWG Strategic Board,manager,Mo Manager,mo.manager@westminster.example.org,
Adult Social Care Westminster City Council,lead,Ada Lead,ada.lead@westminster.example.org,
"Principal Social Worker, Bi- Borough Adult Social Care",lead,Pat Worker,pat@rbkc.example.org,
Safer Westminster Partnership,lead,Sid Lead,sid@westminster.example.org,
Westminster Housing Needs,lead,Hana Lead,hana@westminster.example.org,
,coordinator,Cat Coordinator,cat.coordinator@westminster.example.org,
,chair,Chris Chair,chris.chair@westminster.example.org,
,family_liaison,Fay Liaison,fay@advocacy.example.org,WCA
"""


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/examples.db"
        db.migrate(url)
        store = db.Store(url)
        settings = Settings(
            _env_file=None,
            mail_from="dhr-workflow@westminster.example.org",  # type: ignore[call-arg]
            partnership="Safer Westminster Partnership",
        )
        ruleset, templates = engine.load_rules(ROOT / "rules", ROOT / "templates" / "email", LONDON)
        source = read_source(ROOT / "tests" / "data" / "plans" / "westminster-case-a.txt")
        people = Path(tmp) / "contacts.csv"
        people.write_text(CONTACTS)
        with store.transaction() as s:
            apply_plan(
                s,
                "WCA",
                parse_lines(source.lines),
                title=None,
                source="westminster",
                digest=source.sha256,
                today=START.date(),
                now=START,
                actor="example",
                dry_run=False,
            )
            from dhr_workflow import anchors

            anchors.update_review(
                s,
                "WCA",
                today=START.date(),
                now=START,
                actor="example",
                plan_agreed_on=dt.date(2023, 6, 1),
            )
            contacts.import_rows(
                s, contacts.read_csv(people), now=START, actor="example", source="contacts.csv"
            )

        def tick(day: dt.date) -> None:
            ctx = engine.Context(
                dt.datetime.combine(day, dt.time(9), LONDON),
                LONDON,
                "england",
                templates,
                settings.partnership,
                settings.mail_from,
                BASE,
            )
            with store.transaction() as s:
                engine.commit(s, engine.evaluate(s, ruleset, ctx), ctx, actor="example")

        for day in (
            dt.date(2023, 11, 1),
            dt.date(2023, 11, 24),
            dt.date(2023, 12, 1),
            dt.date(2024, 1, 20),
        ):
            tick(day)
        with store.transaction() as s:  # an invited action completes: its calendar follows
            invited = s.scalars(select(Action).where(Action.ref == "24")).one()
            actions.update(
                s,
                invited.id,
                actions.ActionChange(status=actions.ActionStatus.COMPLETED),
                today=dt.date(2023, 11, 28),
                now=START,
                actor="example",
            )
        tick(dt.date(2023, 11, 28))
        _extension(store, templates)
        _fail_one(store, settings, templates)
        _write_examples(store, settings)
        store.dispose()


def _extension(store: db.Store, templates: Templates) -> None:
    """Sam asks for more time through a message's link; Cat agrees."""
    mail = extensions.Mail(templates, BASE, "Safer Westminster Partnership")
    when = dt.datetime(2024, 1, 22, 9, tzinfo=LONDON)
    with store.transaction() as s:
        action = s.scalars(select(Action).where(Action.ref == "2")).one()
        asked = extensions.request(
            s, action_id=action.id, requested_by="sam.lead@westminster.example.org",
            proposed_due=dt.date(2024, 3, 31), link_id=None, today=when.date(), now=when,
            reason="The training review waits for the new e-learning module, due in March",
            mail=mail,
        )  # fmt: skip
        extensions.decide(
            s, asked.id, approve=True, note="Agreed at the VAWG board on 22 January",
            decided_by="cat.coordinator@westminster.example.org", today=when.date(), now=when,
            mail=mail,
        )  # fmt: skip


def _fail_one(store: db.Store, settings: Settings, templates: object) -> None:
    """The manager's escalation bounces: the coordinator's notice names that message, that
    address and that reason (one consistent story)."""
    with store.transaction() as s:
        victim = s.scalars(
            select(Notification)
            .where(Notification.template == "escalation")
            .order_by(Notification.id)
        ).first()
        assert victim is not None
        victim.state = "pending"
        failing = MemoryTransport(
            fail=DeliveryError(f"550 5.1.1 <{victim.to_addrs[0]}>: no such user", permanent=True)
        )
        for other in s.scalars(select(Notification).where(Notification.id != victim.id)):
            other.next_attempt_at = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)  # keep them queued
    asyncio.run(
        outbox.send_batch(
            store,
            failing,
            settings,
            owner="example",
            clock=lambda: dt.datetime(2024, 1, 22, 9, tzinfo=dt.UTC),
            templates=templates,
        )
    )  # type: ignore[arg-type]


def _write_examples(store: db.Store, settings: Settings) -> None:
    with store.reading() as s:
        notes = list(s.scalars(select(Notification).order_by(Notification.id)))
    seen = set()
    for note in notes:
        if note.template in seen:
            continue
        seen.add(note.template)
        message = messages.build(
            note, mail_from=settings.mail_from, now=dt.datetime(2024, 1, 22, 9, tzinfo=dt.UTC)
        )
        (OUT / f"{note.template}.eml").write_bytes(message.as_bytes())
        (OUT / f"{note.template}.html").write_text(note.html_body or "", encoding="utf-8")
        print(f"{note.template}: {note.subject}")


if __name__ == "__main__":
    main()
