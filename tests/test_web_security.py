"""Sign-in, sessions, CSRF and who sees what, over HTTP on both backends."""

from __future__ import annotations

import re
from collections.abc import Iterator
from http.cookies import SimpleCookie

from sqlalchemy import select

from dhr_workflow import actions, contacts, reviews
from dhr_workflow.models import AuditEvent, SigninToken
from tests.conftest import CliFn
from tests.web_support import HEALTH_SECRET, Site, csrf, session_csrf, site_fixture  # noqa: F401


def _events(site: Site, kind: str | None = None) -> list[AuditEvent]:
    with site.store.reading() as s:
        query = select(AuditEvent).order_by(AuditEvent.seq)
        if kind:
            query = query.where(AuditEvent.kind == kind)
        return list(s.scalars(query))


def test_a_page_asks_for_sign_in_and_returns_there_afterwards(site: Site) -> None:
    client = site.client()
    asked = client.get(f"/actions/{site.ids['police']}?x=1")
    assert asked.status_code == 303
    assert asked.headers["location"] == "/signin"
    site.ask_link(client, "cat@csp.example.org")
    [link] = site.links_for("cat@csp.example.org")
    landed = site.use_link(client, link)
    assert landed.status_code == 303
    assert landed.headers["location"] == f"/actions/{site.ids['police']}?x=1"
    page = client.get(landed.headers["location"])
    assert page.status_code == 200
    assert "Train response officers" in page.text


def test_the_answer_is_the_same_for_known_and_unknown_addresses(site: Site) -> None:
    client = site.client()
    known = site.ask_link(client, "cat@csp.example.org")
    unknown = site.ask_link(client, "nobody@csp.example.org")
    family = site.ask_link(client, "fay@csp.example.org")  # family liaisons do not sign in
    pages = {
        _neutral(answer.text, address)
        for answer, address in (
            (known, "cat@csp.example.org"),
            (unknown, "nobody@csp.example.org"),
            (family, "fay@csp.example.org"),
        )
    }
    assert len(pages) == 1
    assert {known.status_code, unknown.status_code, family.status_code} == {200}
    assert len(site.links_for("cat@csp.example.org")) == 1
    assert site.links_for("nobody@csp.example.org") == []
    assert site.links_for("fay@csp.example.org") == []


def _neutral(html: str, address: str | None = None) -> str:
    """A page with what differs by design (the address typed, the CSP nonce) blanked."""
    if address:
        html = html.replace(address, "ADDRESS")
    return re.sub(r'nonce="[^"]+"', "", html)


def test_a_link_works_once_for_fifteen_minutes(site: Site) -> None:
    client = site.client()
    site.ask_link(client, "Cat@CSP.example.org")  # any case
    site.ask_link(client, "cat@csp.example.org")
    first, second = site.links_for("cat@csp.example.org")
    assert site.use_link(client, first).status_code == 303
    # Used: refused, on the GET and on the POST, from any browser.
    again = site.client()
    path = "/" + first.split("://", 1)[1].split("/", 1)[1]
    assert again.get(path).status_code == 400
    page = again.get("/signin")
    refused = again.post(path, data={"csrf_token": csrf(page.text)})
    assert refused.status_code == 400
    assert "expired or has been used" in refused.text
    assert again.get("/").status_code == 303  # still not signed in
    # The second link, 15 minutes and a second later: expired.
    site.clock.advance(minutes=15, seconds=1)
    late = site.client()
    assert late.get("/" + second.split("://", 1)[1].split("/", 1)[1]).status_code == 400
    # Only hashes are stored.
    with site.store.reading() as s:
        hashes = list(s.scalars(select(SigninToken.token_hash)))
    assert all(link.rsplit("/", 1)[1] not in hashes for link in (first, second))


def test_links_are_limited_per_address_and_per_client(site: Site) -> None:
    client = site.client()
    for _ in range(4):
        assert site.ask_link(client, "lee@police.example.org").status_code == 200
    assert len(site.links_for("lee@police.example.org")) == 3  # the fourth is not sent
    assert [e.actor for e in _events(site, "signin.limited")] == ["lee@police.example.org"]
    for n in range(6):
        assert site.ask_link(client, f"guess{n}@police.example.org").status_code == 200
    blocked = site.ask_link(client, "hal@health.example.org")
    assert blocked.status_code == 429
    assert site.links_for("hal@health.example.org") == []
    # Fifteen minutes later the same client may ask again.
    site.clock.advance(minutes=16)
    assert site.ask_link(client, "hal@health.example.org").status_code == 200
    assert len(site.links_for("hal@health.example.org")) == 1


def _session_cookie(header: str) -> dict[str, str | bool]:
    parsed: SimpleCookie = SimpleCookie()
    parsed.load(header)
    morsel = parsed["dhr_session"]
    return {k: morsel[k] for k in ("httponly", "samesite", "secure", "max-age")}


def test_session_cookie_flags(site: Site) -> None:
    client = site.client()
    site.sign_in(client, "cat@csp.example.org")
    flags = _session_cookie(client.get("/").headers["set-cookie"])
    assert flags == {"httponly": True, "samesite": "lax", "secure": "", "max-age": "28800"}
    https = site.client(address="https://dhr.example.org", base_url="https://dhr.example.org")
    assert _session_cookie(https.get("/signin").headers["set-cookie"])["secure"] is True


def test_sessions_end_after_eight_idle_hours_or_a_day(site: Site) -> None:
    client = site.client()
    site.sign_in(client, "cat@csp.example.org")
    for _ in range(5):  # busy all day: 5 x 2 h apart
        site.clock.advance(hours=2)
        assert client.get("/").status_code == 200
    site.clock.advance(hours=8, minutes=1)
    assert client.get("/").status_code == 303
    busy = site.client()  # and however busy, a day at most
    site.sign_in(busy, "cat@csp.example.org")
    for _ in range(12):
        site.clock.advance(hours=2)
        assert busy.get("/").status_code == 200
    site.clock.advance(minutes=1)
    assert busy.get("/").status_code == 303


def test_signing_out_makes_the_old_cookie_worthless(site: Site) -> None:
    client = site.client()
    site.sign_in(client, "cat@csp.example.org")
    stolen = dict(client.cookies)
    asked = client.get("/signout")  # a link from anywhere only asks
    assert "Sign out" in asked.text
    assert client.get("/").status_code == 200
    assert client.post("/signout", data={"csrf_token": csrf(asked.text)}).status_code == 200
    assert client.get("/").status_code == 303
    thief = site.client()
    thief.cookies.update(stolen)
    assert thief.get("/").status_code == 303
    assert [e.kind for e in _events(site)][-1] == "signout"


def test_deactivating_a_contact_ends_their_access(site: Site) -> None:
    client = site.client()
    site.sign_in(client, "lee@police.example.org")
    assert client.get(f"/actions/{site.ids['police']}").status_code == 200
    with site.store.transaction() as s:
        lee = next(c for c in contacts.list_all(s) if c.email == "lee@police.example.org")
        contacts.deactivate(s, lee.id, now=site.clock(), actor="test")
    assert client.get(f"/actions/{site.ids['police']}").status_code == 303


def test_every_post_needs_the_sessions_csrf_token(site: Site) -> None:
    client = site.client()
    site.sign_in(client, "cat@csp.example.org")
    action = f"/actions/{site.ids['police']}"
    token = csrf(client.get(action).text)
    other = site.client()  # the same person in another browser: another session's token
    site.sign_in(other, "cat@csp.example.org")
    before = len(_events(site))
    form = {"form": "settle", "settle": "ongoing"}
    missing = client.post(action, data=form)
    wrong = client.post(action, data={**form, "csrf_token": token[:-2] + "xx"})
    foreign = client.post(action, data={**form, "csrf_token": csrf(other.get(action).text)})
    for refused in (missing, wrong, foreign):
        assert refused.status_code == 400
        assert "The form has expired" in refused.text
    assert len(_events(site)) == before
    for path in ("/contacts", "/import", "/reviews/R1", "/signin"):
        assert client.post(path, data={"x": "1"}).status_code in (400, 303)
    assert len(_events(site)) == before


def test_an_agency_lead_sees_only_their_agencys_actions(site: Site) -> None:
    client = site.client()
    site.sign_in(client, "lee@police.example.org")
    dashboard = client.get("/")
    assert dashboard.status_code == 200
    assert "You can see the actions your agency leads" in dashboard.text
    assert HEALTH_SECRET not in dashboard.text
    assert "Health" not in dashboard.text  # not even the other agency's name
    assert client.get(f"/actions/{site.ids['police']}").status_code == 200
    review = client.get("/reviews/R1")
    assert review.status_code == 200
    assert "Train response officers" in review.text
    assert HEALTH_SECRET not in review.text
    guessed = client.get(f"/actions/{site.ids['health']}")
    nonexistent = client.get("/actions/999999")
    assert guessed.status_code == nonexistent.status_code == 404
    # A 404 is a 404: nothing says the action exists.
    assert _neutral(guessed.text) == _neutral(nonexistent.text)
    assert HEALTH_SECRET not in guessed.text
    for page in ("/contacts", "/agencies", "/import", "/upcoming", "/contacts/1", "/agencies/1"):
        assert client.get(page).status_code == 404, page
    # and no edit: the forms are not shown, and a POST is refused like a missing page
    page = client.get(f"/actions/{site.ids['police']}")
    assert "Save progress" not in page.text
    posted = client.post(
        f"/actions/{site.ids['police']}",
        data={"form": "settle", "settle": "x", "csrf_token": session_csrf(client)},
    )
    assert posted.status_code == 404


def test_the_chair_reads_everything_and_changes_nothing(site: Site) -> None:
    client = site.client()
    site.sign_in(client, "chris@csp.example.org")
    assert HEALTH_SECRET in client.get(f"/actions/{site.ids['health']}").text
    for page in ("/", "/reviews/R1", "/contacts", "/agencies", "/upcoming"):
        assert client.get(page).status_code == 200, page
    assert client.get("/import").status_code == 404
    page = client.get("/contacts")
    assert "Add a contact" not in page.text
    posted = client.post("/contacts", data={"csrf_token": session_csrf(client), "name": "X"})
    assert posted.status_code == 404


def test_sign_ins_and_changes_are_audited_with_the_person_as_actor(site: Site) -> None:
    client = site.client()
    site.sign_in(client, "cat@csp.example.org")
    action = f"/actions/{site.ids['undated']}"
    token = csrf(client.get(action).text)
    saved = client.post(
        action, data={"form": "settle", "settle": "ongoing work", "csrf_token": token}
    )
    assert saved.status_code == 303
    assert [(e.kind, e.actor, e.subject) for e in _events(site)][-3:] == [
        ("signin.link", "cat@csp.example.org", "signin"),
        ("signin", "cat@csp.example.org", "signin"),
        ("action.settle", "cat@csp.example.org", f"action:{site.ids['undated']}"),
    ]


def test_pages_carry_security_headers_and_no_cache(site: Site) -> None:
    client = site.client()
    page = client.get("/signin")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "'unsafe-inline'" not in csp
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
    nonce = csp.split("'nonce-", 1)[1].split("'", 1)[0]
    assert f'nonce="{nonce}"' in page.text  # GOV.UK's one inline script runs, nothing else


def test_html_in_plan_text_is_escaped(site: Site) -> None:
    with site.store.transaction() as s:
        actions.create(
            s, "R1", now=site.clock(), actor="test", recommendation="9", lead_agency="Police",
            text="<script>alert(1)</script><img src=x onerror=alert(2)>",
        )  # fmt: skip
    client = site.client()
    site.sign_in(client, "cat@csp.example.org")
    page = client.get("/reviews/R1")
    assert "<script>alert(1)" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


def test_signin_link_from_the_command_line(site: Site, cli: CliFn) -> None:
    refused = cli("signin-link", "fay@csp.example.org")  # a family liaison
    assert refused.exit_code == 2
    assert refused.stderr.startswith("error: fay@csp.example.org may not sign in")
    assert len(refused.stderr.strip().splitlines()) == 1
    assert cli("signin-link", "nobody@example.org").exit_code == 2
    printed = cli("signin-link", "Chris@CSP.example.org")
    assert printed.exit_code == 0, printed.stderr
    link = printed.stdout.strip().splitlines()[-1]  # the last line is the link, for scripts
    assert link.startswith("http://127.0.0.1:8080/signin/")
    client = site.client()
    assert site.use_link(client, link).status_code == 303
    assert client.get("/").status_code == 200


def test_a_reviews_own_chair_and_coordinator_see_that_review_only(site: Site) -> None:
    with site.store.transaction() as s:
        reviews.add(s, "R2", "Case two", now=site.clock(), actor="test")
        other = actions.create(
            s, "R2", now=site.clock(), actor="test", recommendation="1", lead_agency="Police",
            text="Audit the second case files",
        )  # fmt: skip
        for name, role, email in (
            ("Ivy Chair", "chair", "ivy@csp.example.org"),
            ("Col Coordinator", "coordinator", "col@csp.example.org"),
        ):
            contacts.add(
                s, contacts.ContactInput(name, email, role, review="R2"), now=site.clock(),
                actor="test",
            )  # fmt: skip
    r1_health = f"/actions/{site.ids['health']}"
    r2_action = f"/actions/{other.id}"
    chair = site.client()
    site.sign_in(chair, "ivy@csp.example.org")
    assert "Audit the second case files" in chair.get(r2_action).text
    assert "Update this action" not in chair.get(r2_action).text
    assert chair.get(r1_health).status_code == 404
    assert chair.get("/reviews/R1").status_code == 404
    assert HEALTH_SECRET not in chair.get("/").text
    for page in ("/contacts", "/agencies", "/import", "/upcoming"):
        assert chair.get(page).status_code == 404, page
    coordinator = site.client()
    site.sign_in(coordinator, "col@csp.example.org")
    assert "Update this action" in coordinator.get(r2_action).text
    settle = {"form": "progress", "status": "withdrawn", "csrf_token": session_csrf(coordinator)}
    assert coordinator.post(r1_health, data=settle).status_code == 404
    assert coordinator.post(r2_action, data=settle).status_code == 303
    for page in ("/contacts", "/agencies", "/import", "/upcoming"):
        assert coordinator.get(page).status_code == 404, page


def test_bodies_over_the_limit_are_refused_unread(site: Site) -> None:
    client = site.client()
    token = csrf(client.get("/signin").text)
    huge = {"email": "x" * 200_000, "csrf_token": token}
    assert client.post("/signin", data=huge).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield f"csrf_token={token}&email=".encode()
        for _ in range(100):
            yield b"x" * 10_000

    chunked = client.post(
        "/signin", content=chunks(), headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert chunked.status_code == 413
    assert "That was too much to send" in chunked.text
    assert site.links_for("x" * 10) == []


def test_a_long_progress_note_under_the_limit_is_accepted(site: Site) -> None:
    client = site.client()
    site.sign_in(client, "cat@csp.example.org")
    path = f"/actions/{site.ids['police']}"
    # Under each field's 5,000 characters and, url-encoded (6 bytes an "é"), ~59 KB in all:
    # under the 64 KB a form may send, counted once.
    form = {"form": "progress", "status": "open", "note": "é" * 4_900, "outcome": "é" * 4_900}
    saved = client.post(path, data={**form, "csrf_token": csrf(client.get(path).text)})
    assert saved.status_code == 303, saved.text[:500]


def test_the_sign_in_email_names_people_as_written(site: Site) -> None:
    with site.store.transaction() as s:
        contacts.add(
            s, contacts.ContactInput("Siobhán O'Brien & Co", "sob@csp.example.org", "chair"),
            now=site.clock(), actor="test",
        )  # fmt: skip
    site.ask_link(site.client(), "sob@csp.example.org")
    [(message, _)] = [m for m in site.mail.sent if "sob@csp.example.org" in m[1]]
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    assert "Hello Siobhán O'Brien & Co," in text.get_content()
    assert "Siobhán O&#39;Brien &amp; Co" in html.get_content()


def test_signing_in_returns_to_an_encoded_address(site: Site) -> None:
    with site.store.transaction() as s:
        reviews.add(s, "BDHR2012/13-04", "Case B", now=site.clock(), actor="test")
    client = site.client()
    asked = client.get("/reviews/BDHR2012%2F13-04?status=overdue")
    assert asked.headers["location"] == "/signin"
    site.ask_link(client, "cat@csp.example.org")
    landed = site.use_link(client, site.links_for("cat@csp.example.org")[-1])
    assert landed.headers["location"] == "/reviews/BDHR2012%2F13-04?status=overdue"
    assert client.get(landed.headers["location"]).status_code == 200
