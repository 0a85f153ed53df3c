"""Engine, sessions and schema management (Alembic) for SQLite and PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from dhr_workflow.errors import SchemaOutOfDate, UserError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def make_engine(url: str, *, create: bool = False, immediate: bool = True) -> Engine:
    """An engine configured for our use of each backend.

    A SQLite file is created (owner-only) only when ``create`` is set, by `init`: every other
    command on a missing file says to run `init` instead of leaving an empty file behind.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    path = _sqlite_file(url)
    if path is not None and create:
        _create_private(path)
    elif path is not None and not path.exists():
        raise SchemaOutOfDate(f"no database at {path}; run `dhr-workflow init` first")
    engine = create_engine(url, connect_args={"timeout": 30})
    _configure_sqlite(engine, immediate=immediate)
    return engine


def _sqlite_file(url: str) -> Path | None:
    parsed = make_url(url)
    if not parsed.database or parsed.database == ":memory:" or parsed.query.get("uri"):
        return None
    return Path(parsed.database)


def _create_private(path: Path) -> None:
    # Plan text can be confidential: a new database file is readable by its owner only.
    if path.exists():
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    except OSError as exc:
        raise UserError(f"cannot create the database file {path}: {exc.strerror}") from None


def _configure_sqlite(engine: Engine, *, immediate: bool) -> None:
    """Foreign keys, WAL, recursive triggers; writers start with BEGIN IMMEDIATE.

    A deferred transaction that reads the audit chain head and then writes would fail with
    SQLITE_BUSY_SNAPSHOT if another process committed in between; taking the write lock up front
    makes concurrent writers queue (up to the busy timeout) instead. Readers stay deferred so
    they never wait for a writer. Recursive triggers make INSERT OR REPLACE fire the audit
    log's delete guard.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # let SQLAlchemy's "begin" event issue BEGIN
        cursor = dbapi_conn.cursor()
        # synchronous=NORMAL is the documented safe pairing with WAL: no corruption, and an
        # application crash loses nothing; only a power cut may lose the last commits.
        pragmas = (
            "foreign_keys=ON",
            "journal_mode=WAL",
            "synchronous=NORMAL",
            "recursive_triggers=ON",
        )
        for pragma in pragmas:
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def alembic_config(engine: Engine) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> tuple[str | None, str | None]:
    """Create or upgrade the schema to the newest revision; returns (before, after)."""
    before = current_revision(engine)
    command.upgrade(alembic_config(engine), "head")
    return before, current_revision(engine)


def migrate(url: str) -> None:
    """Create the database if it is a new SQLite file, and bring its schema to the newest
    revision (tests, benchmarks and examples start from an empty store this way)."""
    engine = make_engine(url, create=True)
    try:
        upgrade(engine)
    finally:
        engine.dispose()


def check_schema(engine: Engine) -> None:
    """Refuse to work on a database whose schema is missing or older than this code."""
    current, head = current_revision(engine), head_revision()
    if current == head:
        return
    if current is None:
        raise SchemaOutOfDate("the database has no schema yet; run `dhr-workflow init` first")
    known = {s.revision for s in ScriptDirectory(str(MIGRATIONS)).walk_revisions()}
    if current not in known:
        raise SchemaOutOfDate(
            f"the database schema ({current}) is newer than this version of dhr-workflow; "
            "upgrade dhr-workflow"
        )
    raise SchemaOutOfDate(
        f"the database schema is out of date ({current}, need {head}); run `dhr-workflow init`"
    )


class Store:
    """The database: an engine for writers, one for readers, and their sessions."""

    def __init__(self, url: str, *, create: bool = False) -> None:
        self.url = url
        self.engine = make_engine(url, create=create)
        sqlite = self.engine.dialect.name == "sqlite"
        self.read_engine = make_engine(url, immediate=False) if sqlite else self.engine
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._readers = sessionmaker(self.read_engine, expire_on_commit=False)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on any error."""
        with self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A read-only view that never waits for writers; rolled back at the end."""
        with self._readers() as session:  # closing the session rolls its transaction back
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
        self.read_engine.dispose()


def describe_database_error(exc: DBAPIError, display_url: str) -> UserError:
    """One line for a database problem a user can act on (unreachable, not a database, ...)."""
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc).splitlines()[0]
    return UserError(f"cannot use the database {display_url}: {reason}")
