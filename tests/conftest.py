"""Shared fixtures: every store test runs on SQLite and on a real PostgreSQL.

PostgreSQL comes from ``DHR_TEST_POSTGRES_URL`` (default: the loopback server with trust auth).
Where none is reachable the PostgreSQL cases skip with the reason, except under ``CI=true``,
where they fail: CI must prove both backends.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from dhr_workflow import actions, contacts, db, engine, reviews
from dhr_workflow.cli import main
from dhr_workflow.models import Base

PG_URL = os.environ.get(
    "DHR_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
NOW = dt.datetime(2024, 1, 15, 9, 30, tzinfo=dt.UTC)
ACTOR = "test"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No DHR_* variable from the developer's shell may leak into a test."""
    for name in list(os.environ):
        if name.startswith("DHR_") and name != "DHR_TEST_POSTGRES_URL":
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session, dropped at the end."""
    # No pool: a fault test restarts the server, and a pooled connection would be dead.
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        admin.dispose()
        reason = f"no PostgreSQL at {make_url(PG_URL).render_as_string()}: {exc.__class__.__name__}"
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run, not skip)")
        pytest.skip(reason)
    name = f"dhr_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    db.migrate(url)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _truncate_pg(url: str) -> None:
    engine = create_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        # The audit log refuses TRUNCATE (a trigger); replica mode lets the test harness reset it.
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database with the current schema, on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
        db.migrate(url)
        return url
    url: str = request.getfixturevalue("pg_server_url")
    _truncate_pg(url)
    return url


@pytest.fixture
def store(db_url: str) -> Iterator[db.Store]:
    s = db.Store(db_url)
    yield s
    s.dispose()


CliFn = Callable[..., Result]


@pytest.fixture
def cli(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliFn:
    """Run the real CLI in-process against the test database; returns click's Result."""
    monkeypatch.chdir(tmp_path)

    def run(*args: str, env: dict[str, str] | None = None) -> Result:
        runner = CliRunner()
        full_env = {"DHR_DATABASE_URL": db_url, **(env or {})}
        return runner.invoke(main, ["--actor", ACTOR, *args], env=full_env, catch_exceptions=False)

    return run


@pytest.fixture
def sample_review(store: db.Store) -> Callable[..., Any]:
    """Create a review with a few actions through the services; returns their ids."""

    def make(ref: str = "WCA", **review_fields: Any) -> dict[str, int]:
        with store.transaction() as s:
            reviews.add(s, ref, f"Case {ref}", now=NOW, actor=ACTOR, **review_fields)
            ids = {}
            for key, agency, due, status in [
                ("training", "Bi Borough VAWG Strategic Board", dt.date(2023, 12, 31), "open"),
                ("dip", "Bi-Borough VAWG Strategic Board", dt.date(2024, 5, 31), "open"),
                ("probation", "HM Prison & Probation Service", None, "completed"),
            ]:
                a = actions.create(
                    s,
                    ref,
                    now=NOW,
                    actor=ACTOR,
                    recommendation=str(len(ids) + 1),
                    recommendation_text="Review training",
                    scope="Local",
                    lead_agency=agency,
                    text=f"Action {key}",
                    target_text=due.strftime("%B %Y") if due else "Completed",
                    due_date=due,
                    due_basis="month_end" if due else "none",
                    status=status,
                    owner_text="Jo Bloggs",
                )
                ids[key] = a.id
            return ids

    return make


@pytest.fixture
def unguarded(store: db.Store) -> Iterator[db.Store]:
    """What an attacker with DDL rights would do first: remove the append-only triggers.

    The PostgreSQL test database is shared by the session, so the guard is put back afterwards.
    """
    postgres = store.engine.dialect.name == "postgresql"
    with store.transaction() as s:
        if postgres:
            s.execute(text("DROP TRIGGER audit_event_no_change ON audit_event"))
        else:
            s.execute(text("DROP TRIGGER audit_event_no_update"))
            s.execute(text("DROP TRIGGER audit_event_no_delete"))
    yield store
    if postgres:
        with store.transaction() as s:
            s.execute(text("SET LOCAL session_replication_role = replica"))
            s.execute(text("TRUNCATE audit_event"))
            s.execute(
                text(
                    "CREATE TRIGGER audit_event_no_change BEFORE UPDATE OR DELETE ON "
                    "audit_event FOR EACH ROW EXECUTE FUNCTION audit_event_append_only()"
                )
            )


@pytest.fixture
def daemons() -> Iterator[list[Any]]:
    """`dhr-workflow run` processes a test starts: killed at the end, whatever happened."""
    running: list[Any] = []
    yield running
    for d in running:
        d.close()


# --- the rule engine's world: one review, its people, actions made to order ---------------

ROOT = Path(__file__).resolve().parent.parent
LONDON = ZoneInfo("Europe/London")
D = dt.date


@pytest.fixture
def rules() -> tuple[Any, Any]:
    """The shipped rule set and templates."""
    return engine.load_rules(ROOT / "rules", ROOT / "templates" / "email", LONDON)


CONTACTS = """agency,role,name,email,review
Police,lead,Lee Lead,lead@police.example.org,
Police,manager,Max Manager,manager@police.example.org,
Health,lead,Hal Lead,lead@health.example.org,
,coordinator,Cat Coordinator,coordinator@csp.example.org,
,chair,Chris Chair,chair@csp.example.org,
,family_liaison,Fay Liaison,fay@advocacy.example.org,R1
"""


@pytest.fixture
def world(store: db.Store, tmp_path: Path) -> Callable[..., dict[str, int]]:
    """A review R1 with contacts; ``make(key=(agency, due, status), ...)`` adds actions."""
    with store.transaction() as s:
        reviews.add(s, "R1", "Review one", now=NOW, actor=ACTOR, plan_agreed_on=D(2023, 6, 1))
    path = tmp_path / "contacts.csv"
    path.write_text(CONTACTS)
    with store.transaction() as s:
        contacts.import_rows(s, contacts.read_csv(path), now=NOW, actor=ACTOR, source="c.csv")

    def make(**spec: tuple[str | None, dt.date | None, str]) -> dict[str, int]:
        ids = {}
        with store.transaction() as s:
            for n, (key, (agency, due, status)) in enumerate(spec.items(), start=1):
                a = actions.create(
                    s,
                    "R1",
                    now=NOW,
                    actor=ACTOR,
                    recommendation=str(n),
                    lead_agency=agency,
                    text=f"Action {key}",
                    due_date=due,
                    due_basis="fixed" if due else "none",
                    status=status,
                    review_reasons=[] if due else ["due: no target date"],
                )
                ids[key] = a.id
        return ids

    return make
