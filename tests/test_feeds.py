"""Feeds over HTTP (Starlette's test client on the real app and store, both backends)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import icalendar
import pytest
import vobject
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.testclient import TestClient

from dhr_workflow import actions, calendar, db, feeds, reviews
from dhr_workflow.config import Settings
from dhr_workflow.models import FeedToken
from dhr_workflow.web import Health, Metrics, create_app, ops
from dhr_workflow.web import feeds as feed_routes
from tests.conftest import ACTOR, NOW
from tests.test_delivery import Clock

# Noon in London on a day before every date in _plan: nothing overdue unless a test moves on.
BEFORE = dt.datetime(2024, 1, 20, 12, tzinfo=dt.UTC)


@pytest.fixture
def client(store: db.Store) -> Callable[..., TestClient]:
    """The feed routes on the real store, at a time the test sets (``clock``: a Clock)."""

    def make(clock: Callable[[], dt.datetime] = lambda: BEFORE, **settings: Any) -> TestClient:
        # Version stamps not reused unless a test asks: most tests change data and look.
        config = Settings(_env_file=None, **({"feed_cache_seconds": 0} | settings))  # type: ignore[call-arg]
        return TestClient(Starlette(routes=feed_routes.routes(store, config, clock=clock)))

    return make


def _plan(store: db.Store) -> dict[str, int]:
    ids = {}
    with store.transaction() as s:
        reviews.add(s, "R1", "Review one", now=NOW, actor=ACTOR)
        reviews.add(s, "R2", "Review two", now=NOW, actor=ACTOR)
        for key, review, due, status, basis, rule in [
            ("open", "R1", dt.date(2024, 3, 31), "open", "month_end", None),
            ("done", "R1", dt.date(2024, 2, 29), "completed", "month_end", None),
            (
                "recurring",
                "R1",
                dt.date(2024, 6, 1),
                "open",
                "recurring",
                {"anchor": "plan_agreed_on", "every_months": 6},
            ),
            ("other", "R2", dt.date(2024, 4, 30), "open", "fixed", None),
            ("undated", "R1", None, "open", "none", None),
        ]:
            a = actions.create(
                s,
                review,
                now=NOW,
                actor=ACTOR,
                recommendation=key,
                recommendation_text=f"Plan wording of recommendation {key}",
                lead_agency="Police",
                text=f"Secret detail of {key}",
                target_text="the plan's words",
                due_date=due,
                due_basis=basis,
                due_rule=rule,
                status=status,
            )
            ids[key] = a.id
    return ids


def _token(store: db.Store, kind: Any = "review", value: str | None = "R1") -> str:
    with store.transaction() as s:
        return feeds.create(s, kind, value, "test", now=NOW, actor=ACTOR).secret


def _events(response: Any) -> list[Any]:
    assert response.status_code == 200, response.text
    return list(icalendar.Calendar.from_ical(response.content).walk("VEVENT"))


def _by_uid(response: Any) -> dict[str, Any]:
    return {str(e["UID"]): e for e in _events(response)}


def test_feed_contents_minimal_by_default(store: db.Store, client: Any) -> None:
    ids = _plan(store)
    secret = _token(store)
    r = client().get(f"/feeds/{secret}.ics")
    assert r.status_code == 200
    cal = icalendar.Calendar.from_ical(r.content)
    assert str(cal["METHOD"]) == "PUBLISH"
    assert "REFRESH-INTERVAL;VALUE=DURATION:PT3H" in r.text
    assert "X-PUBLISHED-TTL:PT3H" in r.text
    events = {str(e["UID"]): e for e in cal.walk("VEVENT")}
    assert set(events) == {f"dhr-action-{ids[k]}@dhr-workflow" for k in ("open", "recurring")}
    assert "Secret detail" not in r.text  # plan text stays out unless asked for
    recurring = events[f"dhr-action-{ids['recurring']}@dhr-workflow"]
    assert recurring["RRULE"]["FREQ"] == ["MONTHLY"]
    assert recurring["RRULE"]["INTERVAL"] == [6]
    assert recurring.walk("VALARM")
    full = client(feed_detail="full").get(f"/feeds/{secret}.ics")
    [event] = [e for e in _events(full) if e["UID"] == calendar.action_uid(ids["open"])]
    assert str(event["DESCRIPTION"]).splitlines() == [
        "Status: open",
        "Recommendation open: Plan wording of recommendation open",
        "Action: Secret detail of open",
        "The plan says: the plan's words",
        f"http://127.0.0.1:8080/actions/{ids['open']}",
    ]
    completed = client().get(f"/feeds/{secret}.ics?include=completed")
    [done] = [e for e in _events(completed) if e["UID"] == calendar.action_uid(ids["done"])]
    assert str(done["SUMMARY"]) == f"Done: DHR R1 action {ids['done']}: Police"


def test_etag_304_and_changes(store: db.Store, client: Any) -> None:
    ids = _plan(store)
    secret = _token(store)
    http = client()
    first = http.get(f"/feeds/{secret}.ics")
    tag = first.headers["etag"]
    assert http.get(f"/feeds/{secret}.ics").content == first.content  # stable bytes
    assert http.get(f"/feeds/{secret}.ics", headers={"If-None-Match": tag}).status_code == 304
    with store.transaction() as s:
        actions.update(
            s,
            ids["open"],
            actions.ActionChange(due=dt.date(2024, 5, 31), reason="moved"),
            today=dt.date(2024, 1, 20),
            now=NOW + dt.timedelta(days=1),
            actor=ACTOR,
        )
    moved = http.get(f"/feeds/{secret}.ics", headers={"If-None-Match": tag})
    assert moved.status_code == 200
    assert moved.headers["etag"] != tag
    event = next(
        e
        for e in icalendar.Calendar.from_ical(moved.content).walk("VEVENT")
        if str(e["UID"]) == f"dhr-action-{ids['open']}@dhr-workflow"
    )
    assert (event["DTSTART"].dt, int(event["SEQUENCE"])) == (dt.date(2024, 5, 31), 1)


def test_unknown_and_revoked_tokens_are_404(store: db.Store, client: Any) -> None:
    _plan(store)
    secret = _token(store)
    http = client()
    assert http.get("/feeds/nonsense.ics").status_code == 404
    with store.transaction() as s:
        [token] = feeds.list_all(s)
        feeds.revoke(s, token.id, now=NOW, actor=ACTOR)
    revoked = http.get(f"/feeds/{secret}.ics")
    assert (revoked.status_code, revoked.text) == (404, "Not Found")


def test_secrets_are_stored_hashed(store: db.Store) -> None:
    secret = _token(store, "all", None)
    assert len(secret) >= 32  # 192 bits, URL-safe
    with store.reading() as s:
        stored = s.scalars(select(FeedToken.token_hash)).one()
    assert secret not in stored
    assert stored == __import__("hashlib").sha256(secret.encode()).hexdigest()


def test_a_label_with_line_breaks_names_the_calendar_on_one_line(
    store: db.Store, client: Any
) -> None:
    """A label pasted with line breaks is kept on one line; one stored so by an older version
    still renders (it made every request of that feed fail)."""
    _plan(store)
    with store.transaction() as s:
        made = feeds.create(s, "all", None, " Police\nNorth\r\n  team ", now=NOW, actor=ACTOR)
        old = feeds.create(s, "all", None, "kept", now=NOW, actor=ACTOR)
        assert made.token.label == "Police North team"
        s.get(FeedToken, old.token.id).label = "Older\nlabel"  # type: ignore[union-attr]
    http = client()
    for secret, title in [(made.secret, "Police North team"), (old.secret, "Older label")]:
        r = http.get(f"/feeds/{secret}.ics")
        assert r.status_code == 200, r.text
        cal = icalendar.Calendar.from_ical(r.content)
        assert str(cal["X-WR-CALNAME"]) == f"DHR actions ({title})"


def test_scopes(store: db.Store, client: Any) -> None:
    ids = _plan(store)
    http = client()
    everything = http.get(f"/feeds/{_token(store, 'all', None)}.ics").text
    assert f"dhr-action-{ids['other']}@" in everything
    police = http.get(f"/feeds/{_token(store, 'agency', 'police')}.ics").text
    assert f"dhr-action-{ids['other']}@" in police
    one = http.get(f"/feeds/{_token(store, 'review', 'R2')}.ics").text
    assert f"dhr-action-{ids['open']}@" not in one
    assert f"dhr-action-{ids['other']}@" in one


def test_health_and_metrics(store: db.Store) -> None:
    http = TestClient(
        create_app(store, Settings(_env_file=None), Health(scheduler_running=True), Metrics())  # type: ignore[call-arg]
    )
    health = http.get("/healthz")
    assert health.status_code == 200
    assert health.json()["database"] == "ok"
    assert "dhr_outbox_backlog" in http.get("/metrics").text
    app = create_app(
        store,
        Settings(_env_file=None),
        Health(scheduler_running=False),  # type: ignore[call-arg]
        Metrics(),
    )
    assert TestClient(app).get("/healthz").status_code == 503


def test_health_answer_agrees_with_its_body(
    store: db.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scheduler starting while /healthz checks the database: the answer is the state it
    reports, not 200 with "scheduler_running": false (seen in the daemon test on a slow run)."""
    health = Health(scheduler_running=False)  # type: ignore[call-arg]
    checked = ops._database_state

    def scheduler_starts_meanwhile(*args: Any) -> str:
        health.scheduler_running = True
        return checked(*args)

    monkeypatch.setattr(ops, "_database_state", scheduler_starts_meanwhile)
    http = TestClient(create_app(store, Settings(_env_file=None), health, Metrics()))  # type: ignore[call-arg]
    starting = http.get("/healthz")
    assert (starting.status_code, starting.json()["scheduler_running"]) == (503, False)
    started = http.get("/healthz")
    assert (started.status_code, started.json()["scheduler_running"]) == (200, True)


def test_feeds_commands(cli: Any) -> None:
    cli("reviews", "add", "R1", "--title", "One")
    created = cli("feeds", "create", "--review", "R1", "--label", "coordinator")
    assert created.exit_code == 0, created.stderr
    assert created.stdout.startswith("feed 1: http://127.0.0.1:8080/feeds/")
    assert "coordinator" in cli("feeds", "list").stdout
    both = cli("feeds", "create", "--all", "--review", "R1")
    assert "choose exactly one of" in both.stderr
    assert "no review with ref 'NOPE'" in cli("feeds", "create", "--review", "NOPE").stderr
    assert cli("feeds", "revoke", "1").stdout.strip() == "feed 1 revoked"
    assert "no feed with id 9" in cli("feeds", "revoke", "9").stderr


def test_if_none_match_lists_and_weak_tags(store: db.Store, client: Any) -> None:
    _plan(store)
    secret = _token(store)
    http = client()
    tag = http.get(f"/feeds/{secret}.ics").headers["etag"]
    for header in (f'"other", {tag}', f"W/{tag}", "*"):
        assert (
            http.get(f"/feeds/{secret}.ics", headers={"If-None-Match": header}).status_code == 304
        )
    assert http.get(f"/feeds/{secret}.ics", headers={"If-None-Match": '"x"'}).status_code == 200


def test_owner_feed_matches_any_case(store: db.Store, client: Any, tmp_path: Any) -> None:
    from dhr_workflow import contacts

    people = tmp_path / "c.csv"
    people.write_text("agency,role,name,email\nPolice,lead,Jane,Jane.Smith@police.example.org\n")
    with store.transaction() as s:
        reviews.add(s, "R1", "Review one", now=NOW, actor=ACTOR)
        contacts.import_rows(s, contacts.read_csv(people), now=NOW, actor=ACTOR, source="c")
        [jane] = contacts.list_all(s)
        a = actions.create(
            s,
            "R1",
            now=NOW,
            actor=ACTOR,
            recommendation="1",
            lead_agency="Police",
            text="x",
            due_date=dt.date(2024, 3, 1),
            due_basis="fixed",
        )
        a.owner_contact_id = jane.id
    secret = _token(store, "owner", "jane.smith@police.example.org")
    assert f"dhr-action-{a.id}@" in client().get(f"/feeds/{secret}.ics").text


def test_token_guessing_is_rate_limited(store: db.Store, client: Any) -> None:
    """Misses are limited per address; a valid token is always served. Everyone behind one
    council's NAT shares an address: one person's typos (or a guesser among them) must not
    lock the others out of their calendars."""
    _plan(store)
    secret = _token(store)
    with store.transaction() as s:
        revoked = feeds.create(s, "all", None, "old", now=NOW, actor=ACTOR)
        feeds.revoke(s, revoked.token.id, now=NOW, actor=ACTOR)
    http = client()
    codes = [http.get(f"/feeds/guess-{n}.ics").status_code for n in range(35)]
    assert codes[:30] == [404] * 30
    assert set(codes[31:]) == {429}
    served = http.get(f"/feeds/{secret}.ics")  # same address, valid token: served
    assert served.status_code == 200, served.text
    assert "BEGIN:VCALENDAR" in served.text
    assert http.get(f"/feeds/{secret}.ics").status_code == 200  # and again
    for miss in ("guess-again", revoked.secret, secret[:-1] + "x"):  # misses: still limited
        limited = http.get(f"/feeds/{miss}.ics")
        assert (limited.status_code, limited.text) == (429, "Too Many Requests")
        assert limited.headers["retry-after"] == "60"


def test_miss_limiter_forgets_after_the_window() -> None:
    from dhr_workflow.web.limits import MissLimiter

    limiter = MissLimiter(limit=2, window=10)
    for t in (0.0, 1.0, 2.0):
        limiter.record("a", t)
    assert limiter.blocked("a", 3.0)
    assert not limiter.blocked("b", 3.0)
    assert not limiter.blocked("a", 12.5)


def test_version_stamp_is_reused_for_a_few_seconds(store: db.Store, client: Any) -> None:
    """A burst of clients costs one query: within DHR_FEED_CACHE_SECONDS a change is not yet
    seen (and a 304 needs no database at all); after it, it is."""
    ids = _plan(store)
    secret = _token(store)
    http = client(feed_cache_seconds=3600)
    first = http.get(f"/feeds/{secret}.ics")
    with store.transaction() as s:
        actions.update(
            s, ids["open"], actions.ActionChange(due=dt.date(2024, 5, 31), reason="moved"),
            today=dt.date(2024, 1, 1), now=NOW, actor=ACTOR,
        )  # fmt: skip
    cached = http.get(f"/feeds/{secret}.ics", headers={"If-None-Match": first.headers["etag"]})
    assert cached.status_code == 304
    fresh = client(feed_cache_seconds=0).get(
        f"/feeds/{secret}.ics", headers={"If-None-Match": first.headers["etag"]}
    )
    assert fresh.status_code == 200
    assert fresh.headers["etag"] != first.headers["etag"]
    assert http.get("/feeds/not-a-token.ics").status_code == 404  # misses are never cached


def test_version_cache_expires_and_is_bounded() -> None:
    from dhr_workflow.web.feeds import VersionCache

    cache = VersionCache(ttl=5, size=2)
    cache.put(("a", False), '"1"', now=100.0)
    assert cache.get(("a", False), now=104.9) == '"1"'
    assert cache.get(("a", False), now=105.0) is None
    assert cache.get(("a", True), now=101.0) is None  # ?include=completed is its own feed
    cache.put(("b", False), '"2"', now=101.0)
    cache.put(("c", False), '"3"', now=101.0)
    assert cache.get(("a", False), now=102.0) is None  # the oldest went first
    assert len(cache.tags) == 2


# --- one title, links, overdue work (issue #12) ----------------------------------------------


def _invitation_summary(store: db.Store, action_id: int) -> str:
    """The SUMMARY of the email invitation for an action, its facts gathered as the engine
    does (the action's ref, or its id when the plan gave none)."""
    with store.reading() as s:
        a = actions.get(s, action_id)
        facts = calendar.EventFacts(
            a.id,
            a.sequence,
            a.due_date or dt.date(2024, 1, 1),
            a.review.ref,
            a.ref or str(a.id),
            a.lead_agency.name if a.lead_agency else None,
        )
    invite = calendar.invitation(
        facts, method="REQUEST", organizer="dhr@example.org", attendees=["x@example.org"],
        stamp=NOW,
    )  # fmt: skip
    [event] = icalendar.Calendar.from_ical(invite).walk("VEVENT")
    return str(event["SUMMARY"])


def test_feed_and_invitation_give_an_action_the_same_title(store: db.Store, client: Any) -> None:
    ids = _plan(store)
    with store.transaction() as s:
        named = actions.create(
            s, "R1", now=NOW, actor=ACTOR, recommendation="5", ref="5b", text="x",
            lead_agency="Bi Borough VAWG Strategic Board", due_date=dt.date(2024, 7, 1),
            due_basis="fixed",
        )  # fmt: skip
        nobody = actions.create(
            s, "R1", now=NOW, actor=ACTOR, recommendation="6", ref="6", text="x",
            due_date=dt.date(2024, 8, 1), due_basis="fixed",
        )  # fmt: skip
        ids |= {"named": named.id, "nobody": nobody.id}
    events = _by_uid(client().get(f"/feeds/{_token(store)}.ics"))
    summaries = {k: str(events[calendar.action_uid(ids[k])]["SUMMARY"]) for k in ids if k in
                 ("open", "recurring", "named", "nobody")}  # fmt: skip
    assert summaries == {k: _invitation_summary(store, ids[k]) for k in summaries}
    assert summaries["named"] == "DHR R1 action 5b: Bi Borough VAWG Strategic Board"
    assert summaries["nobody"] == "DHR R1 action 6"
    assert summaries["open"] == f"DHR R1 action {ids['open']}: Police"


def test_feed_events_link_to_the_action_page(store: db.Store, client: Any) -> None:
    ids = _plan(store)
    r = client(base_url="https://dhr.example.org/").get(f"/feeds/{_token(store)}.ics")
    for key in ("open", "recurring"):
        event = _by_uid(r)[calendar.action_uid(ids[key])]
        page = f"https://dhr.example.org/actions/{ids[key]}"
        assert str(event["URL"]) == page
        assert str(event["DESCRIPTION"]).splitlines() == ["Status: open", page]
    parsed = {e.uid.value: e for e in vobject.readOne(r.text).vevent_list}
    assert parsed[calendar.action_uid(ids["open"])].url.value.endswith(f"/actions/{ids['open']}")


def test_an_overdue_action_shows_on_today_as_well(store: db.Store, client: Any) -> None:
    """'open' was due on 31 March; on 10 April it is on both days, other actions once."""
    ids = _plan(store)
    secret = _token(store, "all", None)
    clock = Clock(dt.datetime(2024, 4, 10, 8, tzinfo=dt.UTC))
    r = client(clock).get(f"/feeds/{secret}.ics")
    events = _by_uid(r)
    due, again = events[calendar.action_uid(ids["open"])], events[calendar.overdue_uid(ids["open"])]
    assert calendar.overdue_uid(ids["open"]) == f"dhr-action-{ids['open']}-overdue@dhr-workflow"
    assert (due.decoded("DTSTART"), again.decoded("DTSTART")) == (
        dt.date(2024, 3, 31), dt.date(2024, 4, 10),
    )  # fmt: skip
    assert str(again["SUMMARY"]) == "OVERDUE: " + str(due["SUMMARY"])
    assert str(due["SUMMARY"]) == _invitation_summary(store, ids["open"])
    assert str(again["DESCRIPTION"]).startswith("Overdue: due 31 Mar 2024, 10 days ago\n")
    assert str(again["URL"]) == str(due["URL"])
    assert str(again["RELATED-TO"]) == calendar.action_uid(ids["open"])
    overdue = sorted(uid for uid in events if uid.endswith("-overdue@dhr-workflow"))
    assert overdue == [calendar.overdue_uid(ids["open"])]  # 'other' is due 30 April
    # The same UIDs the next day; vobject reads it too.
    clock.advance(days=1)
    later = client(clock).get(f"/feeds/{secret}.ics")
    assert set(_by_uid(later)) == set(events)
    assert _by_uid(later)[calendar.overdue_uid(ids["open"])].decoded("DTSTART") == dt.date(
        2024, 4, 11
    )
    assert len(vobject.readOne(later.text).vevent_list) == len(events)
    # Completed: on its due date only (and only when completed ones are asked for).
    with store.transaction() as s:
        actions.update(
            s, ids["open"], actions.ActionChange(status=actions.ActionStatus.COMPLETED),
            today=dt.date(2024, 4, 11), now=NOW + dt.timedelta(days=87), actor=ACTOR,
        )  # fmt: skip
    assert not [u for u in _by_uid(client(clock).get(f"/feeds/{secret}.ics")) if "open" in u]
    every = _by_uid(client(clock).get(f"/feeds/{secret}.ics?include=completed"))
    assert calendar.action_uid(ids["open"]) in every
    assert calendar.overdue_uid(ids["open"]) not in every
    assert str(every[calendar.action_uid(ids["open"])]["SUMMARY"]).startswith("Done: DHR R1")


def test_today_is_the_partnerships_date(store: db.Store, client: Any) -> None:
    """23:30 UTC on 30 April in summer is already 1 May in London: 'other' (due 30 April) is
    overdue there, and shows on 1 May."""
    ids = _plan(store)
    r = client(lambda: dt.datetime(2024, 4, 30, 23, 30, tzinfo=dt.UTC)).get(
        f"/feeds/{_token(store, 'review', 'R2')}.ics"
    )
    assert _by_uid(r)[calendar.overdue_uid(ids["other"])].decoded("DTSTART") == dt.date(2024, 5, 1)


def test_etag_of_a_feed_with_overdue_work_changes_at_midnight(store: db.Store, client: Any) -> None:
    _plan(store)
    overdue_feed, calm_feed = _token(store, "review", "R1"), _token(store, "review", "R2")
    clock = Clock(dt.datetime(2024, 4, 10, 7, tzinfo=dt.UTC))  # 08:00 in London
    # Stamps cached for an hour: a stamp from before midnight must still not outlive it.
    http = client(clock, feed_cache_seconds=3600)
    first = http.get(f"/feeds/{overdue_feed}.ics")
    calm = http.get(f"/feeds/{calm_feed}.ics")
    clock.advance(hours=15, minutes=59)  # 23:59 in London (22:59 UTC)
    fresh = client(clock)  # no cached stamps: the same day gives the same tag and bytes
    same_day = fresh.get(f"/feeds/{overdue_feed}.ics")
    assert same_day.headers["etag"] == first.headers["etag"]
    assert same_day.content == first.content
    tag = {"If-None-Match": first.headers["etag"]}
    assert http.get(f"/feeds/{overdue_feed}.ics", headers=tag).status_code == 304
    clock.advance(minutes=2)  # 00:01 the next day
    next_day = http.get(f"/feeds/{overdue_feed}.ics", headers=tag)
    assert next_day.status_code == 200
    assert next_day.headers["etag"] != first.headers["etag"]
    assert next_day.content != first.content
    # A feed with nothing overdue keeps its tag and its bytes from day to day.
    calm_later = http.get(
        f"/feeds/{calm_feed}.ics", headers={"If-None-Match": calm.headers["etag"]}
    )
    assert calm_later.status_code == 304
    assert fresh.get(f"/feeds/{calm_feed}.ics").content == calm.content


def test_fingerprint_and_render_take_the_day(store: db.Store) -> None:
    """The version stamp follows the day exactly when the body does."""
    _plan(store)
    secret = _token(store)
    with store.reading() as s:
        token = feeds.lookup(s, secret)
        assert token is not None

        def both(day: dt.date) -> tuple[str, bytes]:
            args: dict[str, Any] = {"include_completed": False, "detail": "minimal", "today": day}
            return feeds.fingerprint(s, token, **args), feeds.render(s, token, **args)

        before, before_next = both(dt.date(2024, 3, 30)), both(dt.date(2024, 3, 31))
        late, late_next = both(dt.date(2024, 4, 10)), both(dt.date(2024, 4, 11))
    assert before == before_next  # nothing overdue: the same stamp and bytes
    assert late[0] != late_next[0] and late[1] != late_next[1]
    assert before[0] != late[0]


# --- owner feeds: whatever the person is told about ------------------------------------------

PEOPLE = """agency,role,name,email
Police,lead,Lee Lead,Lee.Lead@police.example.org
Police,manager,Max Manager,max@police.example.org
Health,lead,Hal Lead,hal@health.example.org
Health,lead,Gone Lead,gone@health.example.org
"""


def _owners_plan(store: db.Store, tmp_path: Any) -> dict[str, int]:
    """Police actions with and without an owner contact, a Health one owned by Lee (a Police
    lead), and a Health one owned by a deactivated contact."""
    from dhr_workflow import contacts

    people = tmp_path / "people.csv"
    people.write_text(PEOPLE)
    ids = {}
    with store.transaction() as s:
        reviews.add(s, "R1", "Review one", now=NOW, actor=ACTOR)
        contacts.import_rows(s, contacts.read_csv(people), now=NOW, actor=ACTOR, source="c")
        who = {c.email.lower(): c for c in contacts.list_all(s)}
        for key, agency, owner in [
            ("police_unowned", "Police", None),
            ("police_owned_by_hal", "Police", "hal@health.example.org"),
            ("health_owned_by_lee", "Health", "lee.lead@police.example.org"),
            ("health_unowned", "Health", None),
            ("health_owned_by_gone", "Health", "gone@health.example.org"),
        ]:
            a = actions.create(
                s, "R1", now=NOW, actor=ACTOR, recommendation=key, lead_agency=agency, text="x",
                due_date=dt.date(2024, 6, 1), due_basis="fixed",
            )  # fmt: skip
            a.owner_contact_id = who[owner].id if owner else None
            ids[key] = a.id
        contacts.deactivate(s, who["gone@health.example.org"].id, now=NOW, actor=ACTOR)
    return ids


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        # A lead sees every action of their agency (they are who `owner` falls back to, and
        # agency.lead escalations reach them), and what they own elsewhere.
        ("LEE.LEAD@police.example.org", {"police_unowned", "police_owned_by_hal",
                                         "health_owned_by_lee"}),
        ("max@police.example.org", {"police_unowned", "police_owned_by_hal"}),
        ("hal@health.example.org", {"police_owned_by_hal", "health_owned_by_lee",
                                    "health_unowned", "health_owned_by_gone"}),
    ],
)  # fmt: skip
def test_owner_feed_covers_what_the_person_is_told_about(
    store: db.Store, client: Any, tmp_path: Any, address: str, expected: set[str]
) -> None:
    ids = _owners_plan(store, tmp_path)
    got = set(_by_uid(client().get(f"/feeds/{_token(store, 'owner', address)}.ics")))
    assert got == {calendar.action_uid(ids[k]) for k in expected}


def test_owner_feed_needs_an_active_contact(store: db.Store, client: Any, tmp_path: Any) -> None:
    from dhr_workflow import contacts
    from dhr_workflow.errors import NotFound

    _owners_plan(store, tmp_path)
    for address in ("gone@health.example.org", "nobody@example.org"):
        with pytest.raises(NotFound, match="no active contact with address"):
            _token(store, "owner", address)
    secret = _token(store, "owner", "max@police.example.org")
    with store.transaction() as s:
        [max_] = [c for c in contacts.list_all(s) if c.email == "max@police.example.org"]
        contacts.deactivate(s, max_.id, now=NOW, actor=ACTOR)
    assert _events(client().get(f"/feeds/{secret}.ics")) == []  # deactivated: told nothing
