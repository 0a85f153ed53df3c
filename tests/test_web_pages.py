"""A coordinator's work in the web app over HTTP, on both backends: every change goes through
the same services as the CLI, is audited with the person as actor, and bad input gets an
error summary naming the field with nothing written."""

from __future__ import annotations

import datetime as dt
import html
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from dhr_workflow import actions, audit, engine
from dhr_workflow.config import load_settings
from dhr_workflow.models import Action, Agency, AuditEvent, Contact, Review
from tests.conftest import CliFn
from tests.web_support import Site, csrf, site_fixture  # noqa: F401

PLANS = Path(__file__).parent / "data" / "plans"
CAT = "cat@csp.example.org"


@pytest.fixture
def cat(site: Site) -> TestClient:
    client = site.client()
    site.sign_in(client, CAT)
    return client


def _post(client: TestClient, path: str, **fields: Any) -> Any:
    page = client.get(path)
    assert page.status_code == 200, page.text
    return client.post(path, data={"csrf_token": csrf(page.text), **fields})


def _count(site: Site, model: Any) -> int:
    with site.store.reading() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def _action(site: Site, key: str) -> Action:
    with site.store.reading() as s:
        action = actions.get(s, site.ids[key])
        _ = (action.lead_agency, action.owner_contact)
        return action


def _error_summary(page: str) -> list[str]:
    box = page.split('class="govuk-error-summary', 1)
    assert len(box) == 2, "no error summary on the page"
    return [
        html.unescape(re.sub(r"\s+", " ", m).strip())
        for m in re.findall(r'<a href="#[^"]+">(.*?)</a>', box[1].split("</ul>", 1)[0], re.S)
    ]


def _tick(site: Site, at: dt.datetime) -> engine.TickResult:
    settings = load_settings(database_url=site.url)
    ruleset, templates = engine.load_rules(settings.rules_dir, settings.templates_dir, settings.tz)
    ctx = engine.Context(at, settings.tz, "england", templates, None, settings.mail_from)
    with site.store.reading() as s:
        return engine.evaluate(s, ruleset, ctx)


# --- contacts --------------------------------------------------------------------------------


def test_correcting_a_contacts_address_redirects_their_reminders(
    site: Site, cat: TestClient
) -> None:
    before = _tick(site, site.clock())
    assert any("max@police.example.org" in m.to for m in before.messages)
    with site.store.reading() as s:
        max_id = s.scalar(select(Contact.id).where(Contact.email == "max@police.example.org"))
    saved = _post(
        cat, f"/contacts/{max_id}", form="details", name="Max Manager",
        email="max.manager@police.example.org", role="manager", agency="Police", review="",
    )  # fmt: skip
    assert saved.status_code == 303
    assert "Contact saved." in cat.get(saved.headers["location"]).text
    after = _tick(site, site.clock())
    addressed = {a for m in after.messages for a in (*m.to, *m.cc)}
    assert "max.manager@police.example.org" in addressed
    assert "max@police.example.org" not in addressed
    with site.store.reading() as s:
        event = s.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc())).first()
    assert event is not None
    assert (event.kind, event.actor) == ("contact.update", CAT)


def test_a_bad_contact_is_refused_field_by_field_and_nothing_is_written(
    site: Site, cat: TestClient
) -> None:
    before = _count(site, Contact), _count(site, AuditEvent)
    refused = _post(cat, "/contacts", name="", email="not-an-address", role="", agency="")
    assert refused.status_code == 400
    assert _error_summary(refused.text) == [
        "Enter the contact's full name",
        "Enter an email address in the correct format, like name@example.org",
        "Select a role",
    ]
    unknown = _post(
        cat, "/contacts", name="Pat", email="pat@police.example.org", role="lead",
        agency="Metropolitan Polce",
    )  # fmt: skip
    assert unknown.status_code == 400
    [message] = _error_summary(unknown.text)
    assert "'Metropolitan Polce' is not a known agency" in message
    duplicate = _post(
        cat, "/contacts", name="Lee", email="lee@police.example.org", role="lead", agency="Police"
    )
    assert duplicate.status_code == 400
    assert (_count(site, Contact), _count(site, AuditEvent)) == before


def test_deactivating_and_reactivating_a_contact(site: Site, cat: TestClient) -> None:
    with site.store.reading() as s:
        hal = s.scalar(select(Contact.id).where(Contact.email == "hal@health.example.org"))
    off = _post(cat, f"/contacts/{hal}", form="active", active="no")
    assert off.status_code == 303
    listing = cat.get("/contacts").text
    assert "Deactivated" in listing
    assert "Agency lead" in listing and "Health" in listing  # gap: Health has no lead now
    assert not any("hal@health.example.org" in m.to for m in _tick(site, site.clock()).messages)
    on = _post(cat, f"/contacts/{hal}", form="active", active="yes")
    assert on.status_code == 303


# --- agencies --------------------------------------------------------------------------------


def test_merging_two_agencies_moves_actions_contacts_and_spellings(
    site: Site, cat: TestClient
) -> None:
    with site.store.transaction() as s:
        actions.create(
            s, "R1", now=site.clock(), actor="test", recommendation="4",
            lead_agency="Polce", text="Action under a misspelt agency",
        )  # fmt: skip
        polce = s.scalar(select(Agency.id).where(Agency.name == "Polce"))
        police = s.scalar(select(Agency.id).where(Agency.name == "Police"))
    merged = _post(cat, f"/agencies/{polce}", form="merge", into=str(police))
    assert merged.status_code == 303
    assert merged.headers["location"] == f"/agencies/{police}"
    assert "Merged into Police: 1 action(s)" in cat.get(merged.headers["location"]).text
    assert cat.get(f"/agencies/{polce}").status_code == 404
    with site.store.reading() as s:
        led = s.scalars(select(Action.text).where(Action.lead_agency_id == police)).all()
        assert "Action under a misspelt agency" in led
        assert audit.verify(s).ok


def test_rename_and_spellings_refuse_clashes(site: Site, cat: TestClient) -> None:
    with site.store.reading() as s:
        police = s.scalar(select(Agency.id).where(Agency.name == "Police"))
    clash = _post(cat, f"/agencies/{police}", form="alias", alias="Health")
    assert clash.status_code == 400
    assert "already" in _error_summary(clash.text)[0]
    empty = _post(cat, f"/agencies/{police}", form="rename", name=" ")
    assert _error_summary(empty.text) == ["Enter the new name"]
    renamed = _post(cat, f"/agencies/{police}", form="rename", name="Metropolitan Police Service")
    assert renamed.status_code == 303
    spelled = _post(cat, f"/agencies/{police}", form="alias", alias="The Met")
    assert spelled.status_code == 303
    agency = _action(site, "police").lead_agency
    assert agency is not None and agency.name == "Metropolitan Police Service"


# --- actions ---------------------------------------------------------------------------------


def test_moving_a_due_date_needs_a_real_date_and_a_reason(site: Site, cat: TestClient) -> None:
    path = f"/actions/{site.ids['police']}"
    before = _count(site, AuditEvent)
    bad = _post(cat, path, form="due", **{"due-day": "31", "due-month": "2", "due-year": "2025"})
    assert bad.status_code == 400
    assert _error_summary(bad.text) == [
        "The new due date must be a real date, like 31 3 2025",
        "Enter why the date is changing",
    ]
    assert _count(site, AuditEvent) == before
    moved = _post(
        cat, path, form="due", reason="extension agreed at board",
        **{"due-day": "31", "due-month": "3", "due-year": "2025"},
    )  # fmt: skip
    assert moved.status_code == 303
    action = _action(site, "police")
    assert action.due_date == dt.date(2025, 3, 31)
    page = cat.get(path).text
    assert "Due date changed." in page
    assert "extension agreed at board" in page  # the history says why
    # The ladder starts again: no overdue for the old date, the new date's reminders later.
    result = _tick(site, site.clock())
    assert not any(site.ids["police"] in m.action_ids for m in result.messages)


def test_settling_assigning_and_reporting_progress(site: Site, cat: TestClient) -> None:
    path = f"/actions/{site.ids['undated']}"
    assert "Settle the needs-review flag" in cat.get(path).text
    empty = _post(cat, path, form="settle", settle="")
    assert _error_summary(empty.text) == ["Enter why no date or agency is needed"]
    assert _post(cat, path, form="settle", settle="no deadline: ongoing work").status_code == 303
    assert not _action(site, "undated").needs_review
    assigned = _post(
        cat, path, form="assign", agency="Health", owner="Dr Jo Bloggs",
        owner_email="hal@health.example.org",
    )  # fmt: skip
    assert assigned.status_code == 303
    action = _action(site, "undated")
    assert action.lead_agency is not None and action.lead_agency.name == "Health"
    assert (
        action.owner_contact is not None and action.owner_contact.email == "hal@health.example.org"
    )
    progress = _post(
        cat, path, form="progress", status="in_progress", note="Board briefed on 1 March",
        outcome="",
    )  # fmt: skip
    assert progress.status_code == 303
    page = cat.get(path).text
    assert "Board briefed on 1 March" in page
    assert "In progress" in page


def test_anchor_dates_move_relative_deadlines(site: Site, cat: TestClient) -> None:
    with site.store.transaction() as s:
        created = actions.create(
            s, "R1", now=site.clock(), actor="test", recommendation="5", lead_agency="Police",
            text="Publish a learning brief", target_text="3 months following publication",
            due_basis="relative", due_rule={"anchor": "published_on", "months": 3},
            review_reasons=["due: counts from the review's publication date, not set yet"],
        )  # fmt: skip
    fields = {"published_on-day": "15", "published_on-month": "1", "published_on-year": "2024"}
    saved = _post(cat, "/reviews/R1", form="anchors", **fields)
    assert saved.status_code == 303
    assert "1 due date(s) followed the new dates" in cat.get("/reviews/R1").text
    with site.store.reading() as s:
        assert actions.get(s, created.id).due_date == dt.date(2024, 4, 15)
        assert s.scalar(select(Review.published_on)) == dt.date(2024, 1, 15)
    bad = _post(cat, "/reviews/R1", form="anchors", **{"published_on-day": "40"})
    assert bad.status_code == 400
    assert _error_summary(bad.text) == ["The date the report was published must include a month"]


def test_a_review_calendar_link_is_shown_once_and_works(site: Site, cat: TestClient) -> None:
    created = _post(cat, "/reviews/R1", form="feed")
    assert created.status_code == 200
    [url] = re.findall(r"http://127\.0\.0\.1:8080(/feeds/[\w-]+\.ics)", created.text)
    feed = cat.get(url)
    assert feed.status_code == 200
    assert feed.headers["content-type"].startswith("text/calendar")
    assert "BEGIN:VCALENDAR" in feed.text
    assert url not in cat.get("/reviews/R1").text  # never shown again


# --- import ----------------------------------------------------------------------------------


def _upload(client: TestClient, ref: str, name: str, content: bytes) -> Any:
    page = client.get("/import")
    return client.post(
        "/import",
        data={"csrf_token": csrf(page.text), "review": ref},
        files={"plan": (name, content, "application/octet-stream")},
    )


def test_importing_a_plan_previews_then_imports_on_confirmation(
    site: Site, cat: TestClient
) -> None:
    plan = (PLANS / "westminster-case-a.txt").read_bytes()
    uploaded = _upload(cat, "WCA", "westminster-case-a.txt", plan)
    assert uploaded.status_code == 303
    preview = cat.get(uploaded.headers["location"])
    assert preview.status_code == 200
    assert "Nothing has been saved yet" in preview.text
    assert "29 new actions" in preview.text
    assert "New agency names" in preview.text
    with site.store.reading() as s:
        assert s.scalar(select(Review.id).where(Review.ref == "WCA")) is None
    confirmed = cat.post(
        uploaded.headers["location"],
        data={
            "csrf_token": csrf(preview.text), "form": "confirm", "title": "Case A",
            "published_on-day": "5", "published_on-month": "1", "published_on-year": "2024",
        },
    )  # fmt: skip
    assert confirmed.status_code == 303
    assert confirmed.headers["location"] == "/reviews/WCA"
    review = cat.get("/reviews/WCA").text
    assert "Plan imported: 29 actions created" in review
    with site.store.reading() as s:
        row = s.scalars(select(Review).where(Review.ref == "WCA")).one()
        assert (row.title, row.published_on) == ("Case A", dt.date(2024, 1, 5))
        kinds = {
            (e.kind, e.actor)
            for e in s.scalars(select(AuditEvent).where(AuditEvent.kind == "plan.import"))
        }
    assert kinds == {("plan.import", CAT)}
    assert cat.get(uploaded.headers["location"]).status_code == 404  # used up


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("notes.txt", b"Just some notes\nwith no table at all\n", "no table with a recognisable"),
        ("plan.pdf", b"%PDF-1.4 binary\x00\x01", "plan.pdf: not a readable PDF"),
        ("plan.xlsx", b"PK\x03\x04 not really a workbook", "plan.xlsx"),
        ("empty.csv", b"", "The selected file is empty"),
    ],
)
def test_an_upload_that_is_not_a_plan_gets_one_clear_message(
    site: Site, cat: TestClient, name: str, content: bytes, message: str
) -> None:
    before = _count(site, AuditEvent)
    refused = _upload(cat, "X1", name, content)
    assert refused.status_code == 400
    [error] = _error_summary(refused.text)
    assert message in error
    assert "/tmp/" not in refused.text  # the person's file name, not ours
    assert _count(site, AuditEvent) == before


def test_an_upload_over_the_limit_is_refused_before_it_is_read(site: Site) -> None:
    client = site.client(upload_limit_mb=0.01)
    site.sign_in(client, CAT)
    refused = _upload(client, "X1", "big.csv", b"Recommendation,Action\n" + b"x" * 200_000)
    assert refused.status_code == 413
    assert _error_summary(refused.text) == ["The file must be smaller than 0.01 MB"]


# --- what will be sent -------------------------------------------------------------------


def test_what_will_be_sent_lists_the_next_fortnight_per_recipient(
    site: Site, cat: TestClient
) -> None:
    before = _count(site, AuditEvent)
    page = cat.get("/upcoming")
    assert page.status_code == 200
    # The Health action is due in 10 days: its -7d reminder goes to Hal within the fortnight.
    assert "hal@health.example.org" in page.text
    assert f'href="/actions/{site.ids["health"]}"' in page.text
    assert _count(site, AuditEvent) == before  # a forecast writes nothing


def test_confirming_twice_imports_once(site: Site, cat: TestClient) -> None:
    uploaded = _upload(
        cat, "WCA", "westminster-case-a.txt", (PLANS / "westminster-case-a.txt").read_bytes()
    )
    preview = cat.get(uploaded.headers["location"])
    form = {"csrf_token": csrf(preview.text), "form": "confirm", "title": "Case A"}
    first = cat.post(uploaded.headers["location"], data=form)
    second = cat.post(uploaded.headers["location"], data=form)
    assert first.status_code == 303
    assert second.status_code == 200
    assert "This plan has already been imported" in second.text
    with site.store.reading() as s:
        assert s.scalar(select(func.count()).select_from(Action).where(Action.review_id.in_(
            select(Review.id).where(Review.ref == "WCA")
        ))) == 29  # fmt: skip


@pytest.mark.parametrize("name", ["..", "x" * 300 + ".csv", "../../etc/passwd.csv", "a\\b.csv"])
def test_odd_upload_names_are_harmless(site: Site, cat: TestClient, name: str) -> None:
    plan = b"Recommendation,Action,Lead Agency,Target date\n1,Train staff,Police,May 2024\n"
    uploaded = _upload(cat, "N1", name, plan)
    assert uploaded.status_code in (303, 400)
    if uploaded.status_code == 303:
        assert cat.get(uploaded.headers["location"]).status_code == 200
    else:
        assert _error_summary(uploaded.text)


# --- odd requests: clear answers, never a server error --------------------------------------


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/actions/99999999999999999999", 404),
        ("/contacts/99999999999999999999", 404),
        ("/agencies/99999999999999999999", 404),
        ("/reviews/R1?agency=99999999999999999999999", 200),
        ("/reviews/R1?agency=%C2%B2", 200),  # a superscript two is a digit to str.isdigit
        ("/reviews/R1?status=%00", 200),
        ("/import/" + "x" * 500, 404),
    ],
)
def test_odd_addresses_get_a_page_not_an_error(cat: TestClient, path: str, status: int) -> None:
    assert cat.get(path).status_code == status


def test_odd_form_values_get_a_message(site: Site, cat: TestClient) -> None:
    with site.store.reading() as s:
        police = s.scalar(select(Agency.id).where(Agency.name == "Police"))
    merged = _post(cat, f"/agencies/{police}", form="merge", into="²")
    assert merged.status_code == 400
    assert _error_summary(merged.text) == ["Select the agency to merge into from the list"]
    path = f"/actions/{site.ids['police']}"
    saved = _post(cat, path, form="progress", status="open", note="a\x00b\x1b[31m", outcome="")
    assert saved.status_code == 303
    with site.store.reading() as s:
        [note] = actions.progress_notes(s, site.ids["police"])
    assert note.note == "ab"  # NUL and the terminal colour code are gone


def test_a_form_sent_back_unchanged_changes_nothing(site: Site, cat: TestClient) -> None:
    with site.store.transaction() as s:
        action = actions.get(s, site.ids["police"])
        action.outcome, action.owner_text = "Line one\nLine two", "Dr Jo\nBloggs"
    before = _count(site, AuditEvent)
    path = f"/actions/{site.ids['police']}"
    progress = _post(
        cat, path, form="progress", status="open", note="", outcome="Line one\r\nLine two"
    )
    assign = _post(cat, path, form="assign", agency="Police", owner="Dr Jo Bloggs", owner_email="")
    assert (progress.status_code, assign.status_code) == (303, 303)
    assert _count(site, AuditEvent) == before
    with site.store.reading() as s:
        assert actions.get(s, site.ids["police"]).overrides == {}


def test_review_refs_that_are_not_addresses_are_refused(cli: CliFn, site: Site) -> None:
    for ref in ("a/../R1", "R1/", "x?y", "50%", "./R", "a\\b"):
        refused = cli("reviews", "add", ref, "--title", "T")
        assert refused.exit_code == 2, ref
        assert "a review ref cannot contain" in refused.stderr
    assert cli("reviews", "add", "BDHR2012/13-04", "--title", "T").exit_code == 0


def test_the_preview_shows_what_the_reader_warns_about(site: Site, cat: TestClient) -> None:
    plan = (
        b"Recommendation,Action,Lead Agency,Target date\n"
        + "1,Brief Zoë's team,Police,May 2024\n".encode()
        + "2,Fund £500 of training,Police,June 2024\n".encode("cp1252")
    )
    uploaded = _upload(cat, "M1", "mixed.csv", plan)
    assert uploaded.status_code == 303
    preview = cat.get(uploaded.headers["location"]).text
    assert "Check the file" in preview
    assert "read as Windows-1252" in html.unescape(preview)
