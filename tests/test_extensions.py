"""Extension requests on both backends: asked through a message's link, decided by the
coordinator on the action's page. Approving moves the due date with the reason, bumps the
calendar sequence and restarts the reminder ladder from the new date; declining keeps it; the
person who asked is emailed either way; only people who may change the action decide."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from dhr_workflow import actions, contacts, extensions, reviews
from dhr_workflow.errors import InvalidInput
from dhr_workflow.models import (
    Action,
    Contact,
    ExtensionRequest,
    Invitation,
    Notification,
)
from dhr_workflow.signin import Scope
from tests.test_links import error_summary, events, main_text, make_link, send, written
from tests.test_web_pages import _tick
from tests.web_support import START, Site, csrf, session_csrf, site_fixture  # noqa: F401

LEE, HAL, CAT, CHRIS = (
    "lee@police.example.org",
    "hal@health.example.org",
    "cat@csp.example.org",
    "chris@csp.example.org",
)
NEW_DUE = dt.date(2024, 4, 30)


def ask(site: Site, key: str = "police", who: str = LEE, due: dt.date = NEW_DUE) -> Any:
    """More time asked through the action's "extend" link, as its recipient would."""
    return send(
        site.client(), make_link(site, key, "extend", who), reason="Training budget in April",
        **{"proposed_due-day": str(due.day), "proposed_due-month": str(due.month),
           "proposed_due-year": str(due.year)},
    )  # fmt: skip


def signed_in(site: Site, email: str) -> TestClient:
    client = site.client()
    site.sign_in(client, email)
    return client


def decide(client: TestClient, site: Site, decision: str, note: str = "", **extra: Any) -> Any:
    path = f"/actions/{site.ids['police']}"
    client.get(path)
    token = session_csrf(client)  # a reader's page has no form; the session has the token
    with site.store.reading() as s:
        waiting = extensions.pending_for(s, site.ids["police"])
    fields = {"form": "extension", "request": str(waiting.id if waiting else 1)}
    return client.post(
        path,
        data={"csrf_token": token, **fields, "decision": decision, "decision_note": note, **extra},
    )


def police(site: Site) -> Action:
    with site.store.reading() as s:
        return actions.get(s, site.ids["police"])


def outbox(site: Site, template: str) -> list[Notification]:
    with site.store.reading() as s:
        return list(s.scalars(select(Notification).where(Notification.template == template)))


def test_approving_moves_the_date_restarts_the_ladder_and_tells_the_requester(
    site: Site,
) -> None:
    # An invitation went out for the old date: the calendar follow-up must update it.
    with site.store.transaction() as s:
        action = actions.get(s, site.ids["police"])
        s.add(
            Invitation(
                action_id=action.id, address=LEE, sequence=action.sequence,
                due_date=action.due_date, state="active", updated_at=START,
            )
        )  # fmt: skip
        sequence = action.sequence
    assert ask(site).status_code == 200
    cat = signed_in(site, CAT)
    dashboard = main_text(cat.get("/").text)
    assert "Extension requests waiting" in dashboard
    assert "R1 rec. 1" in dashboard and "30 Apr 2024" in dashboard and LEE in dashboard
    page = main_text(cat.get(f"/actions/{site.ids['police']}").text)
    assert "Training budget in April" in page and "Approve" in page
    approved = decide(cat, site, "approve", note="Agreed at the March board")
    assert approved.status_code == 303
    banner = main_text(cat.get(approved.headers["location"]).text)
    assert "Extension approved: the action is now due on 30 April 2024" in banner
    assert "Nobody is waiting for more time" in main_text(cat.get("/").text)
    moved = police(site)
    assert (moved.due_date, moved.sequence) == (NEW_DUE, sequence + 1)
    [change] = events(site, "action.due_change")
    assert change.actor == CAT
    assert '"reason":"extension agreed: Training budget in April"' in change.data
    [event] = events(site, "extension.approve")
    assert event.actor == CAT and '"note":"Agreed at the March board"' in event.data
    with site.store.reading() as s:
        [req] = s.scalars(select(ExtensionRequest))
        assert (req.state, req.decided_by, req.decision_note) == (
            "approved", CAT, "Agreed at the March board",
        )  # fmt: skip
    [told] = outbox(site, "extension_decision")
    assert (told.to_addrs, told.reply_to) == ([LEE], CAT)
    assert told.subject == "More time agreed: DHR R1 action 1"
    assert "now due on 30 April 2024" in told.text_body
    assert "Their note: Agreed at the March board" in told.text_body
    # The ladder counts from the new date: a month before it, the first reminder for it, and
    # nothing for the old date (it would be escalating by now).
    result = _tick(site, dt.datetime(2024, 4, 1, 9, 0, tzinfo=dt.UTC))
    about = [m for m in result.messages if site.ids["police"] in m.action_ids]
    ladder = [m for m in about if m.rule == "deadline"]
    assert [m.template for m in ladder] == ["due_soon"]
    keys = {h.period_key for m in ladder for h in m.hits if h.subject_id == moved.id}
    assert keys and all(k.startswith("2024-04-30") for k in keys), keys  # the new date's
    calendar = [m for m in about if m.template == "calendar_update"]
    assert [m.to for m in calendar] == [[LEE]]  # the invitation follows the new date
    before = _tick(site, dt.datetime(2024, 3, 25, 9, 0, tzinfo=dt.UTC))
    assert not any(
        m.rule == "deadline" and site.ids["police"] in m.action_ids for m in before.messages
    )  # nothing before the new date's first step


def test_declining_keeps_the_date_and_tells_the_requester(site: Site) -> None:
    ask(site)
    sequence = police(site).sequence
    declined = decide(signed_in(site, CAT), site, "decline")
    assert declined.status_code == 303
    assert (police(site).due_date, police(site).sequence) == (dt.date(2024, 2, 13), sequence)
    assert events(site, "action.due_change") == []
    [event] = events(site, "extension.decline")
    assert event.actor == CAT
    [told] = outbox(site, "extension_decision")
    assert (told.to_addrs, told.reply_to) == ([LEE], CAT)
    assert told.subject == "More time not agreed: DHR R1 action 1"
    assert "still due on 13 February 2024" in told.text_body
    page = main_text(signed_in(site, CAT).get(f"/actions/{site.ids['police']}").text)
    assert "Decided" in page and "Declined" in page


def test_a_request_is_decided_once(site: Site) -> None:
    ask(site)
    cat = signed_in(site, CAT)
    assert decide(cat, site, "approve").status_code == 303
    with site.store.reading() as s:
        [req] = s.scalars(select(ExtensionRequest))
    page = cat.get(f"/actions/{site.ids['police']}")
    again = cat.post(
        f"/actions/{site.ids['police']}",
        data={"csrf_token": csrf(page.text), "form": "extension", "request": str(req.id),
              "decision": "decline", "decision_note": ""},
    )  # fmt: skip
    assert again.status_code == 400
    [message] = error_summary(again.text)
    assert message.startswith(f"This request was already approved by {CAT} on 4 March 2024")
    assert police(site).due_date == NEW_DUE
    assert len(outbox(site, "extension_decision")) == 1


@pytest.mark.parametrize("who", [LEE, CHRIS])
def test_only_people_who_may_change_the_action_decide(site: Site, who: str) -> None:
    ask(site)
    reader = signed_in(site, who)  # the action's agency lead; the chair (reads everything)
    page = reader.get(f"/actions/{site.ids['police']}")
    assert page.status_code == 200
    assert "Training budget in April" in page.text  # they see the request
    assert 'value="approve"' not in page.text  # but no form to decide it
    assert "Extension requests waiting" not in reader.get("/").text
    before = written(site)
    assert decide(reader, site, "approve").status_code == 404
    assert written(site) == before
    assert police(site).due_date == dt.date(2024, 2, 13)


def test_a_request_of_another_action_is_not_decided_on_this_page(site: Site) -> None:
    ask(site, "health", HAL)
    cat = signed_in(site, CAT)
    with site.store.reading() as s:
        [req] = s.scalars(select(ExtensionRequest))
    page = cat.get(f"/actions/{site.ids['police']}")
    for request_id in (str(req.id), "999999", "99999999999999999999", "x"):
        refused = cat.post(
            f"/actions/{site.ids['police']}",
            data={"csrf_token": csrf(page.text), "form": "extension", "request": request_id,
                  "decision": "approve"},
        )  # fmt: skip
        assert refused.status_code == 404
    with site.store.reading() as s:
        assert s.get(ExtensionRequest, req.id).state == "pending"  # type: ignore[union-attr]


def test_refusals_say_why_and_write_nothing(site: Site) -> None:
    today, now = START.date(), START
    with site.store.transaction() as s:
        extensions.request(
            s, action_id=site.ids["police"], requested_by=LEE, proposed_due=NEW_DUE,
            reason="Budget", link_id=None, today=today, now=now,
        )  # fmt: skip
    before = written(site)
    cases: list[tuple[str, dt.date, str, str]] = [
        ("police", dt.date(2024, 5, 31), "Again",
         "more time was already asked for on 4 March 2024, until 30 April 2024"),
        ("health", dt.date(2024, 3, 1), "Late", "the new date must be after today, 4 March 2024"),
        ("health", dt.date(2024, 3, 14), "Late",
         "the new date must be after the current due date, 14 March 2024"),
        ("health", dt.date(2024, 4, 1), "  ", "say why more time is needed"),
    ]  # fmt: skip
    for key, due, reason, message in cases:
        with pytest.raises(InvalidInput) as refused, site.store.transaction() as s:
            extensions.request(
                s, action_id=site.ids[key], requested_by=HAL, proposed_due=due, reason=reason,
                link_id=None, today=today, now=now,
            )  # fmt: skip
        assert str(refused.value).startswith(message), str(refused.value)
    assert written(site) == before
    with site.store.transaction() as s:
        actions.update(
            s, site.ids["health"], actions.ActionChange(status=actions.ActionStatus.WITHDRAWN),
            today=today, now=now, actor=CAT,
        )  # fmt: skip
    before = written(site)
    with pytest.raises(InvalidInput, match="already withdrawn"), site.store.transaction() as s:
        extensions.request(
            s, action_id=site.ids["health"], requested_by=HAL, proposed_due=NEW_DUE,
            reason="More", link_id=None, today=today, now=now,
        )  # fmt: skip
    assert written(site) == before


def test_an_undated_action_may_ask_for_any_later_date(site: Site) -> None:
    assert ask(site, "undated", LEE, dt.date(2024, 3, 5)).status_code == 200
    with site.store.reading() as s:
        [req] = s.scalars(select(ExtensionRequest))
    assert (req.current_due, req.proposed_due) == (None, dt.date(2024, 3, 5))
    [note] = outbox(site, "extension_request")
    assert "Due now: no date" in note.text_body


def test_with_no_coordinator_the_request_is_kept_and_the_gap_audited(site: Site) -> None:
    with site.store.transaction() as s:
        cat = s.scalars(select(Contact).where(Contact.email == CAT)).one()
        contacts.deactivate(s, cat.id, now=START, actor="test")
    sent = ask(site)
    assert sent.status_code == 200
    assert "recorded for the DHR coordinator" in main_text(sent.text)
    assert outbox(site, "extension_request") == []
    [gap] = events(site, "rule.gap")
    assert gap.subject == "rule:extension" and '"role":"coordinator"' in gap.data
    with site.store.reading() as s:
        assert [r.requested_by for r in extensions.pending(s, None)] == [LEE]


def test_pending_follows_the_scope(site: Site) -> None:
    ask(site)
    ask(site, "health", HAL, dt.date(2024, 4, 2))
    police_action = police(site)
    agency = police_action.lead_agency_id
    assert agency is not None
    scopes: list[tuple[Scope | None, list[int]]] = [
        (None, [site.ids["police"], site.ids["health"]]),
        (Scope(frozenset(), frozenset({police_action.review_id})),
         [site.ids["police"], site.ids["health"]]),
        (Scope(frozenset({agency}), frozenset()), [site.ids["police"]]),
        (Scope(frozenset(), frozenset()), []),
    ]  # fmt: skip
    with site.store.reading() as s:
        for scope, expected in scopes:
            assert [r.action_id for r in extensions.pending(s, scope)] == expected


def test_a_reviews_own_coordinator_is_asked_and_decides_for_that_review_only(
    site: Site,
) -> None:
    col = "col@csp.example.org"
    with site.store.transaction() as s:
        reviews.add(s, "R2", "Case two", now=START, actor="test")
        other = actions.create(
            s, "R2", now=START, actor="test", recommendation="1", lead_agency="Police",
            text="Audit the second case files", due_date=dt.date(2024, 3, 20), due_basis="fixed",
        )  # fmt: skip
        contacts.add(
            s, contacts.ContactInput("Col Coordinator", col, "coordinator", review="R2"),
            now=START, actor="test",
        )  # fmt: skip
    site.ids["other"] = other.id
    ask(site)  # R1: the partnership's coordinator
    sent = ask(site, "other")
    assert "Col Coordinator, at col@csp.example.org" in main_text(sent.text)
    assert sorted(n.to_addrs[0] for n in outbox(site, "extension_request")) == [CAT, col]
    coordinator = signed_in(site, col)
    waiting = main_text(coordinator.get("/").text)
    assert "Audit the second case files" in waiting and "Train response officers" not in waiting
    with site.store.reading() as s:
        mine, theirs = (
            extensions.pending_for(s, other.id),
            extensions.pending_for(s, police(site).id),
        )
    assert mine is not None and theirs is not None
    for action_id, req, status in ((police(site).id, theirs, 404), (other.id, mine, 303)):
        decided = coordinator.post(
            f"/actions/{action_id}",
            data={"csrf_token": session_csrf(coordinator), "form": "extension",
                  "request": str(req.id), "decision": "approve"},
        )  # fmt: skip
        assert decided.status_code == status
    [told] = outbox(site, "extension_decision")
    assert (told.to_addrs, told.reply_to) == ([LEE], col)
    assert police(site).due_date == dt.date(2024, 2, 13)


def test_the_history_tells_the_request_and_the_decision(site: Site) -> None:
    ask(site)
    cat = signed_in(site, CAT)
    assert decide(cat, site, "approve", note="agreed at board").status_code == 303
    page = main_text(cat.get(f"/actions/{site.ids['police']}").text)
    assert "Lee Lead asked for more time, until 30 Apr 2024: Training budget in April" in page
    assert "More time until 30 Apr 2024 agreed by Cat Coordinator (asked by Lee Lead)" in page
    assert "Due date moved from" in page
