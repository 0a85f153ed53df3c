"""The store on SQLite and PostgreSQL: schema, migrations, constraints, the audit chain."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, inspect, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from dhr_workflow import agencies, audit, db, reviews
from dhr_workflow.errors import SchemaOutOfDate
from dhr_workflow.models import Base, Firing, Review
from tests.conftest import ACTOR, NOW

DESIGN_TABLES = {
    "review",
    "agency",
    "contact",
    "recommendation",
    "action",
    "firing",
    "notification",
    "audit_event",
    "feed_token",
}


def test_migration_creates_every_design_table_with_indexes(store: db.Store) -> None:
    insp = inspect(store.engine)
    assert set(insp.get_table_names()) >= DESIGN_TABLES
    action_indexes = {tuple(ix["column_names"]) for ix in insp.get_indexes("action")}
    for cols in [
        ("status",),
        ("due_date",),
        ("review_id",),
        ("lead_agency_id",),
        ("status", "due_date"),
    ]:
        assert cols in action_indexes, f"action needs an index on {cols}"


def test_models_match_migrations(store: db.Store) -> None:
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_schema_check(store: db.Store) -> None:
    db.check_schema(store.engine)  # current: passes
    try:
        with store.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
        with pytest.raises(
            SchemaOutOfDate, match=r"out of date \(0001, need .*\); run `dhr-workflow init`"
        ):
            db.check_schema(store.engine)
        with store.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = 'ffff'"))
        with pytest.raises(SchemaOutOfDate, match="newer than this version"):
            db.check_schema(store.engine)
    finally:
        # The PostgreSQL database is shared by the whole session: a later test that starts
        # the daemon on it must find the real revision, whatever order the tests run in.
        with store.engine.begin() as conn:
            conn.execute(
                text("UPDATE alembic_version SET version_num = :v"), {"v": db.head_revision()}
            )


def test_empty_database_is_refused(tmp_path: Any) -> None:
    with pytest.raises(SchemaOutOfDate, match=r"no database at .*empty.db; run `dhr-workflow"):
        db.make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    assert not (tmp_path / "empty.db").exists()
    engine = db.make_engine(f"sqlite:///{tmp_path / 'empty.db'}", create=True)
    with pytest.raises(SchemaOutOfDate, match="run `dhr-workflow init`"):
        db.check_schema(engine)
    db.upgrade(engine)
    db.check_schema(engine)
    assert db.upgrade(engine) == (db.head_revision(), db.head_revision())  # idempotent
    engine.dispose()


def test_datetimes_are_utc_on_both_backends(store: db.Store) -> None:
    london = dt.datetime(2024, 7, 1, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    with store.transaction() as s:
        reviews.add(s, "R1", "Title", now=london, actor=ACTOR)
    with store.transaction() as s:
        created = s.scalar(select(Review.created_at))
    assert created == london
    assert created is not None and created.utcoffset() == dt.timedelta(0)


def _firing(**kw: Any) -> dict[str, Any]:
    return {
        "rule_id": "deadline",
        "subject_type": "action",
        "subject_id": 1,
        "period_key": "2024-01-31",
        "step": "-7d",
        "outcome": "fired",
        "fired_at": NOW,
        **kw,
    }


def test_firing_ledger_is_unique_and_conflicts_can_be_skipped(store: db.Store) -> None:
    with store.transaction() as s:
        s.execute(insert(Firing).values(**_firing()))
    with pytest.raises(IntegrityError), store.transaction() as s:
        s.execute(insert(Firing).values(**_firing(step="+1d")))
    dialect = postgresql if store.engine.dialect.name == "postgresql" else sqlite
    with store.transaction() as s:
        stmt = dialect.insert(Firing).values([_firing(), _firing(period_key="2024-02-29")])
        inserted = s.scalars(
            stmt.on_conflict_do_nothing(
                index_elements=["rule_id", "subject_type", "subject_id", "period_key"]
            ).returning(Firing.period_key)
        ).all()
        assert inserted == ["2024-02-29"]
    with store.transaction() as s:
        assert len(s.scalars(select(Firing)).all()) == 2


def test_audit_rows_cannot_be_updated_or_deleted(store: db.Store) -> None:
    with store.transaction() as s:
        reviews.add(s, "R1", "Title", now=NOW, actor=ACTOR)
    for statement in ["UPDATE audit_event SET actor = 'mallory'", "DELETE FROM audit_event"]:
        with pytest.raises(Exception, match="append-only"), store.transaction() as s:
            s.execute(text(statement))
    with store.transaction() as s:
        assert audit.verify(s).ok


def test_failed_transaction_writes_nothing(store: db.Store) -> None:
    with pytest.raises(RuntimeError), store.transaction() as s:
        reviews.add(s, "R1", "Title", now=NOW, actor=ACTOR)
        raise RuntimeError("boom")
    with store.transaction() as s:
        assert s.scalar(select(Review)) is None
        assert audit.verify(s).count == 0


def test_agency_aliases_match_spellings(store: db.Store) -> None:
    with store.transaction() as s:
        a = agencies.find_or_create(s, "HM Prison & Probation Service", now=NOW, actor=ACTOR)
        b = agencies.find_or_create(s, "hm prison and probation service.", now=NOW, actor=ACTOR)
        c = agencies.find_or_create(s, "The HM Prison and Probation Service", now=NOW, actor=ACTOR)
        assert a.id == b.id == c.id
        assert len(agencies.list_all(s)) == 1


def test_concurrent_audit_appends_keep_one_chain(db_url: str) -> None:
    """Writers in parallel (separate connections) must queue, never fork the chain."""
    writers, per_writer = 4, 15
    errors: list[BaseException] = []

    def write(n: int) -> None:
        store = db.Store(db_url)
        try:
            for i in range(per_writer):
                with store.transaction() as s:
                    audit.record(s, now=NOW, actor=f"w{n}", kind="test", subject=f"x:{i}")
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            store.dispose()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    store = db.Store(db_url)
    with store.transaction() as s:
        result = audit.verify(s)
    store.dispose()
    assert result.ok, result.problem
    assert result.count == writers * per_writer


def test_the_ladder_selection_turns_jit_off_for_its_transaction_only(pg_server_url: str) -> None:
    """JIT compiling costs the ladder's selection 45-60 ms for nothing (its estimate is far
    above its work); the deployer's setting holds everywhere else."""
    from dhr_workflow.engine.selection import _owed

    store = db.Store(pg_server_url)
    try:
        with store.reading() as s:
            default = s.execute(text("SHOW jit")).scalar()
        with store.reading() as s:
            _owed(s, "deadline", [], {dt.date(2024, 1, 1): ("2024-01-01|+1d", 0, ())})
            assert s.execute(text("SHOW jit")).scalar() == "off"
        with store.reading() as s:
            assert s.execute(text("SHOW jit")).scalar() == default
    finally:
        store.dispose()
