"""Feeds over HTTP (Starlette's test client on the real app and store, both backends)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import icalendar
import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from dhr_workflow import actions, db, feeds, reviews
from dhr_workflow.config import Settings
from dhr_workflow.models import FeedToken
from dhr_workflow.web import Health, Metrics, create_app
from tests.conftest import ACTOR, NOW


@pytest.fixture
def client(store: db.Store) -> Callable[..., TestClient]:
    def make(**settings: Any) -> TestClient:
        app = create_app(
            store,
            # Version stamps not reused unless a test asks: most tests change data and look.
            Settings(_env_file=None, **({"feed_cache_seconds": 0} | settings)),  # type: ignore[call-arg]
            Health(scheduler_running=True),
            Metrics(),
        )
        return TestClient(app)

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
    assert "Secret detail of open" in full.text
    completed = client().get(f"/feeds/{secret}.ics?include=completed")
    assert f"dhr-action-{ids['done']}@dhr-workflow" in completed.text


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


def test_health_and_metrics(store: db.Store, client: Any) -> None:
    http = client()
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
    _plan(store)
    secret = _token(store)
    http = client()
    codes = [http.get(f"/feeds/guess-{n}.ics").status_code for n in range(35)]
    assert codes[:30] == [404] * 30
    assert set(codes[31:]) == {429}
    limited = http.get(f"/feeds/{secret}.ics")  # the guesser's address waits, even with a
    assert limited.status_code == 429  # valid token: no timing or status oracle meanwhile
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
