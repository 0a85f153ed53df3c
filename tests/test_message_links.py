"""Every deadline message can be acted on: links per recipient and action, the coordinator
named and set as Reply-To, people greeted by name, and no message about an escalation that
claims reminders nobody sent — on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import email
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from dhr_workflow import actions, db, engine, links, messages
from dhr_workflow.models import ActionLink, Notification
from tests.conftest import ACTOR, LONDON, NOW, CliFn, D
from tests.test_engine import at

BASE = "https://dhr.example.org"


def _tick(store: db.Store, rules: tuple[Any, Any], when: dt.datetime, *, dry_run: bool = False):  # type: ignore[no-untyped-def]
    ruleset, templates = rules
    ctx = engine.Context(
        when, LONDON, "england", templates, "Safer Example", "dhr@example.org", BASE
    )
    with store.reading() if dry_run else store.transaction() as s:
        result = engine.evaluate(s, ruleset, ctx)
        if not dry_run:
            engine.commit(s, result, ctx, actor="scheduler")
    return result


def _outbox(store: db.Store) -> list[tuple[Notification, EmailMessage]]:
    with store.reading() as s:
        notes = list(s.scalars(select(Notification).order_by(Notification.id)))
    built = []
    for note in notes:
        raw = messages.build(note, mail_from="dhr@example.org", now=NOW).as_bytes()
        parsed = email.message_from_bytes(raw, policy=policy.strict)
        assert isinstance(parsed, EmailMessage)
        built.append((note, parsed))
    return built


def _text(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def test_each_recipient_gets_their_own_links_for_each_action(
    store: db.Store, rules: Any, world: Any
) -> None:
    ids = world(a=("Police", D(2024, 1, 10), "open"))
    _tick(store, rules, at(D(2024, 1, 11)))  # +1d: overdue to the lead (owner), lead copied
    [(note, message)] = [(n, m) for n, m in _outbox(store) if n.template == "overdue"]
    text = _text(message)
    urls = {p: line.split(": ", 1)[1] for line in text.splitlines() for p in links.PURPOSES
            if line.strip().startswith({"progress": "Report progress:", "done": "Mark as done:",
                                        "extend": "Ask for more time:"}[p])}  # fmt: skip
    assert set(urls) == set(links.PURPOSES)
    with store.reading() as s:
        for purpose, url in urls.items():
            assert url.startswith(f"{BASE}/act/")
            link = links.find(s, url.rsplit("/", 1)[1])
            assert link is not None
            assert (link.action_id, link.recipient, link.purpose) == (
                ids["a"], note.to_addrs[0], purpose,
            )  # fmt: skip
            # only the hash is kept
            assert url.rsplit("/", 1)[1] not in (link.token_hash, *note.to_addrs)
        assert s.scalar(select(func.count()).select_from(ActionLink)) == 3


def test_a_dry_run_stores_no_links(store: db.Store, rules: Any, world: Any) -> None:
    world(a=("Police", D(2024, 1, 10), "open"))
    result = _tick(store, rules, at(D(2024, 1, 11)), dry_run=True)
    assert result.messages
    with store.reading() as s:
        assert s.scalar(select(func.count()).select_from(ActionLink)) == 0


def test_messages_greet_by_name_and_answer_to_the_coordinator(
    store: db.Store, rules: Any, world: Any
) -> None:
    world(a=("Police", D(2024, 1, 10), "open"))
    _tick(store, rules, at(D(2024, 1, 11)))
    names = {
        "lead@police.example.org": "Lee Lead",  # the overdue reminder
        "chair@csp.example.org": "Chris Chair",  # the six-monthly report, its copy, the family's
        "coordinator@csp.example.org": "Cat Coordinator",
        "fay@advocacy.example.org": "Fay Liaison",
    }
    sent = _outbox(store)
    assert {n.to_addrs[0] for n, _ in sent} == set(names)
    for note, message in sent:
        assert message["Reply-To"] == "coordinator@csp.example.org"
        text = _text(message)
        assert text.startswith(f"Hello {names[note.to_addrs[0]]},")
        if note.to_addrs == ["coordinator@csp.example.org"]:  # not told to write to herself
            assert "You receive this as the review's DHR coordinator." in text
        else:
            assert "Your DHR coordinator is Cat Coordinator <coordinator@csp.example.org>" in text
        html = message.get_body(("html",))
        assert html is not None
        if note.to_addrs != ["coordinator@csp.example.org"]:
            assert "mailto:coordinator@csp.example.org" in str(html.get_content())


def test_a_plan_imported_45_days_late_tells_the_owner_in_the_same_tick(
    cli: CliFn, tmp_path: Path, store: db.Store, rules: Any, world: Any
) -> None:
    """Imported with its actions already 45 days overdue: one tick escalates and tells the
    owner (here the agency lead) at once; no message claims a reminder nobody sent."""
    ids = world(a=("Police", D(2024, 1, 1), "open"), b=("Health", D(2024, 1, 1), "open"))
    result = _tick(store, rules, at(D(2024, 2, 15)))  # 45 days after
    to = sorted(m.to[0] for m in result.messages if m.rule == "deadline")
    assert to == [
        "chair@csp.example.org",
        "lead@health.example.org",
        "lead@police.example.org",
        "manager@police.example.org",
    ]
    texts = {n.to_addrs[0]: _text(m) for n, m in _outbox(store) if n.rule_id == "deadline"}
    for address, text in texts.items():
        assert "earlier reminders have not resolved" not in text, address
        assert "Reminders sent before" not in text, address
        assert "No reminder about this due date was sent before this one." in text
    for lead in ("lead@police.example.org", "lead@health.example.org"):
        assert (
            "is overdue and is being escalated; this is the first reminder we have sent you"
            in (texts[lead])
        )
    assert "first reminder we have sent you" not in texts["manager@police.example.org"]
    assert f"action {ids['a']}" in texts["manager@police.example.org"]
    # The next escalation (30 days on) says which reminders went before; the leads, told
    # already, are not told again as if for the first time.
    later = _tick(store, rules, at(D(2024, 3, 18)))
    assert sorted(m.to[0] for m in later.messages if m.rule == "deadline") == [
        "chair@csp.example.org",
        "manager@police.example.org",
    ]
    newest = {
        n.to_addrs[0]: _text(m)
        for n, m in _outbox(store)[-len(later.messages) :]
        if n.rule_id == "deadline"
    }
    assert "Reminders sent before: 30 days after." in newest["chair@csp.example.org"]


def test_a_lead_told_by_an_earlier_step_gets_no_first_notice(
    store: db.Store, rules: Any, world: Any
) -> None:
    world(a=("Police", D(2024, 1, 10), "open"))
    _tick(store, rules, at(D(2024, 1, 11)))  # overdue: the lead is told
    result = _tick(store, rules, at(D(2024, 1, 25)))  # +10bd: manager, copying owner
    texts = {
        n.to_addrs[0]: _text(m)
        for n, m in _outbox(store)[-len(result.messages) :]
        if n.rule_id == "deadline"
    }
    assert set(texts) == {"manager@police.example.org", "lead@police.example.org",
                          "coordinator@csp.example.org"}  # fmt: skip
    assert all("first reminder we have sent you" not in t for t in texts.values())
    assert "Reminders sent before: 1 day after." in texts["manager@police.example.org"]
    assert "earlier reminders have not resolved it" in texts["manager@police.example.org"]


def test_the_needs_review_message_links_each_action(
    store: db.Store, rules: Any, world: Any
) -> None:
    ids = world(u=("Police", None, "open"))
    _tick(store, rules, at(D(2024, 1, 15)))  # a Monday: the weekly needs-review email
    [message] = [m for n, m in _outbox(store) if n.template == "needs_review"]
    assert f"Open it: {BASE}/actions/{ids['u']}" in _text(message)
    with store.reading() as s:  # the coordinator's checklist carries no act-links
        assert s.scalar(select(func.count()).select_from(ActionLink)) == 0


def test_the_partnership_report_lists_progress_since_the_last_one(
    store: db.Store, rules: Any, world: Any
) -> None:
    ids = world(a=("Police", D(2024, 3, 31), "open"))
    with store.transaction() as s:
        actions.update(
            s, ids["a"], actions.ActionChange(note="Training booked for 12 March"),
            today=D(2023, 12, 5), now=at(D(2023, 12, 5)), actor="lead@police.example.org",
        )  # fmt: skip
    _tick(store, rules, at(D(2023, 12, 1)))  # the report of 1 Dec: the note is not yet there
    _tick(store, rules, at(D(2024, 6, 1)))  # six months after: it is
    reports = [m for n, m in _outbox(store) if n.template == "partnership_report"]
    assert "Training booked" not in _text(reports[0])
    assert "Progress since the last report (1):" in _text(reports[-1])
    assert "Training booked for 12 March" in _text(reports[-1])
    family = [m for n, m in _outbox(store) if n.template == "family_update"]
    assert all("Training booked" not in _text(m) for m in family)


def test_no_act_links_without_a_web_address(store: db.Store, rules: Any, world: Any) -> None:
    world(a=("Police", D(2024, 1, 10), "open"))
    ruleset, templates = rules
    ctx = engine.Context(at(D(2024, 1, 11)), LONDON, "england", templates)
    with store.transaction() as s:
        engine.commit(s, engine.evaluate(s, ruleset, ctx), ctx, actor=ACTOR)
    assert all("/act/" not in _text(m) for _, m in _outbox(store))


def test_a_progress_note_counts_as_an_update_for_the_stale_actions_rule(
    store: db.Store, rules: Any, world: Any
) -> None:
    ids = world(a=("Police", D(2024, 12, 31), "open"), b=("Police", D(2024, 12, 31), "open"))
    with store.transaction() as s:
        actions.update(
            s, ids["a"], actions.ActionChange(note="Working group met"),
            today=D(2024, 3, 1), now=at(D(2024, 3, 1)), actor="lead@police.example.org",
        )  # fmt: skip
    ruleset, templates = rules
    ctx = engine.Context(at(D(2024, 4, 22)), LONDON, "england", templates)  # a Monday
    with store.reading() as s:
        result = engine.evaluate(s, ruleset, ctx, only=["stale-actions"])
    stale = {a for m in result.messages for a in m.action_ids}
    assert stale == {ids["b"]}  # 90 days without an update; a's note was 52 days ago


def test_the_partnership_report_carries_its_pdf_within_the_limit(
    store: db.Store, rules: Any, world: Any
) -> None:
    world(a=("Police", D(2023, 11, 15), "open"))
    ruleset, templates = rules

    def report(limit: float) -> tuple[Notification, EmailMessage]:
        ctx = engine.Context(
            at(D(2023, 12, 1)), LONDON, "england", templates, "Safer Example", "dhr@example.org",
            BASE, report_attach_mb=limit, report_marking="OFFICIAL-SENSITIVE",
        )  # fmt: skip
        with store.reading() as s:
            result = engine.evaluate(s, ruleset, ctx, only=["six-monthly-report"])
        with store.transaction() as s:
            engine.commit(s, result, ctx, actor="daemon")
        return next((n, m) for n, m in _outbox(store) if n.template == "partnership_report")

    note, message = report(5.0)
    [pdf] = [p for p in message.iter_attachments() if p.get_content_type() == "application/pdf"]
    content = pdf.get_content()
    assert content.startswith(b"%PDF")
    assert pdf.get_filename() == note.attachment_name
    assert "The full report is attached" in _text(message)
    family = [m for n, m in _outbox(store) if n.template == "family_update"]
    assert family and all(not list(m.iter_attachments()) for m in family)


def test_a_report_too_large_to_attach_says_where_to_get_it(
    store: db.Store, rules: Any, world: Any
) -> None:
    world(a=("Police", D(2023, 11, 15), "open"))
    ruleset, templates = rules
    ctx = engine.Context(
        at(D(2023, 12, 1)), LONDON, "england", templates, None, "dhr@example.org", BASE,
        report_attach_mb=0.001,
    )  # fmt: skip
    with store.transaction() as s:
        engine.commit(s, engine.evaluate(s, ruleset, ctx), ctx, actor="daemon")
    [message] = [m for n, m in _outbox(store) if n.template == "partnership_report"][:1]
    assert not [p for p in message.iter_attachments() if p.get_content_type() == "application/pdf"]
    assert "is larger than the 0.001 MB this partnership attaches" in _text(message)
