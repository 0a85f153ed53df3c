"""Engine, sessions and schema management (Alembic) for SQLite and PostgreSQL."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from dhr_workflow.errors import SchemaOutOfDate, UserError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class StoreUnavailable(UserError):
    """The SQLite file went missing, was replaced or turned read-only under a running process."""


def make_engine(url: str, *, create: bool = False, immediate: bool = True) -> Engine:
    """An engine configured for our use of each backend.

    A SQLite file is created (owner-only) only when ``create`` is set, by `init`: every other
    command on a missing file says to run `init` instead of leaving an empty file behind, and
    every connection opens the file with ``mode=rw``, so nothing but `init` can create one — a
    file deleted under a running daemon is not re-created empty (and world-readable) by the
    next connection the pool opens.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    path = _sqlite_file(url)
    if path is not None and create:
        _create_private(path)
    elif path is not None and not path.exists():
        raise SchemaOutOfDate(f"no database at {path}; run `dhr-workflow init` first")
    extra: dict[str, Any] = {"connect_args": {"timeout": BUSY_TIMEOUT}}
    if path is not None:
        extra = {"creator": _open_existing(path)}
    engine = create_engine(url, **extra)
    _configure_sqlite(engine, immediate=immediate)
    return engine


# How long a SQLite writer waits for the write lock before "database is locked". An import
# holds the lock from its first write to its commit: about 35 s for 100,000 rows on a 2-core
# machine (docs/benchmarks.md). The daemon's sender and tick wait in worker threads, so a long
# wait delays a send but never the HTTP server; failing instead would leave a sent message
# unrecorded, to be sent again.
BUSY_TIMEOUT = 120


def _open_existing(path: Path) -> Callable[[], sqlite3.Connection]:
    # An absolute file: URI (percent-encoded by as_uri, so any file name works) with mode=rw:
    # SQLite's default, mode=rwc, would create a missing file.
    uri = f"{path.absolute().as_uri()}?mode=rw"

    def connect() -> sqlite3.Connection:
        # The pool hands connections between threads; a connection is used by one at a time.
        return sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT, check_same_thread=False)

    return connect


# What can be wrong with a SQLite store's file: a short form (for /healthz, which must not
# show paths) and what to do about it (for the CLI and the log).
FILE_PROBLEMS = {
    "missing": (
        "file missing (deleted or moved while in use)",
        "the database file {path} is missing (deleted or moved while in use); "
        "put it back and restart dhr-workflow",
    ),
    "replaced": (
        "file replaced while in use",
        "the database file {path} was replaced while in use; "
        "restart dhr-workflow to open the new file",
    ),
    "unreadable": (
        "file unreadable",
        "the database file {path} cannot be read (check its permissions)",
    ),
    "read-only": (
        "read-only",
        "the database file {path} is read-only (check the permissions of the file and its "
        "directory, the free space and the mount)",
    ),
}


def sqlite_file_state(
    path: Path, identity: tuple[int, int] | None = None, *, write: bool = True
) -> str | None:
    """What is wrong with the SQLite file at ``path`` (a key of FILE_PROBLEMS), or None:
    missing, not the file the process opened (``identity``: its device and inode then), or
    (``write``) read-only."""
    try:
        found = path.stat()
    except FileNotFoundError:
        return "missing"
    except OSError:
        return "unreadable"
    if identity is not None and (found.st_dev, found.st_ino) != identity:
        return "replaced"
    if write and not _writable(path):
        return "read-only"
    return None


def sqlite_file_problem(
    path: Path, identity: tuple[int, int] | None = None, *, write: bool = True
) -> str | None:
    """:func:`sqlite_file_state` as a sentence that says what to do, or None."""
    state = sqlite_file_state(path, identity, write=write)
    return None if state is None else FILE_PROBLEMS[state][1].format(path=path)


def _writable(path: Path) -> bool:
    # WAL mode writes beside the file: the -wal and -shm files, made in the directory.
    for side in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        target = side if side.exists() else path.parent
        if not os.access(target, os.W_OK):
            return False
    return os.access(path, os.W_OK)


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
    """The database: an engine for writers, one for readers, and their sessions.

    On SQLite the file is the store: the device and inode it had when opened are kept, and
    every transaction first checks that the path still names that file and can be written
    (a few microseconds), so a deleted, replaced or read-only file is refused with the reason
    instead of writes going on into a deleted inode.
    """

    def __init__(self, url: str, *, create: bool = False) -> None:
        self.url = url
        self.engine = make_engine(url, create=create)
        sqlite = self.engine.dialect.name == "sqlite"
        self.path = _sqlite_file(url) if sqlite else None
        self.identity: tuple[int, int] | None = None
        if self.path is not None:
            found = self.path.stat()
            self.identity = (found.st_dev, found.st_ino)
        self.read_engine = make_engine(url, immediate=False) if sqlite else self.engine
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._readers = sessionmaker(self.read_engine, expire_on_commit=False)

    def file_state(self, *, write: bool = True) -> str | None:
        """What is wrong with this store's SQLite file now (a key of FILE_PROBLEMS), or None
        (nothing, or not SQLite)."""
        if self.path is None:
            return None
        return sqlite_file_state(self.path, self.identity, write=write)

    def problem(self, *, write: bool = True) -> str | None:
        """:meth:`file_state` as a sentence that says what to do, or None."""
        state = self.file_state(write=write)
        return None if state is None else FILE_PROBLEMS[state][1].format(path=self.path)

    def _check(self, *, write: bool) -> None:
        problem = self.problem(write=write)
        if problem is not None:
            raise StoreUnavailable(problem)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on any error."""
        self._check(write=True)
        try:
            with self._sessions() as session, session.begin():
                yield session
        except OperationalError as exc:
            self._explain(exc, write=True)
            raise

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A read-only view that never waits for writers; rolled back at the end."""
        self._check(write=False)
        try:
            with self._readers() as session:  # closing the session rolls its transaction back
                yield session
        except OperationalError as exc:
            self._explain(exc, write=False)
            raise

    def _explain(self, exc: OperationalError, *, write: bool) -> None:
        # SQLite says "unable to open database file" or "attempt to write a readonly
        # database"; the file itself usually tells which.
        problem = self.problem(write=write)
        if problem is not None:
            raise StoreUnavailable(problem) from exc

    def dispose(self) -> None:
        self.engine.dispose()
        self.read_engine.dispose()


def describe_database_error(exc: DBAPIError, display_url: str) -> UserError:
    """One line for a database problem a user can act on (unreachable, not a database, ...)."""
    path = _sqlite_file(display_url) if display_url.startswith("sqlite") else None
    problem = sqlite_file_problem(path) if path is not None else None
    if problem is not None:  # read-only or missing: say so, not "unable to open database file"
        return StoreUnavailable(problem)
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc).splitlines()[0]
    return UserError(f"cannot use the database {display_url}: {reason}")


def insert(session: Session, model: Any) -> postgresql.Insert | sqlite.Insert:
    """An INSERT in the session's own dialect, for its ``on_conflict_do_nothing`` and
    ``on_conflict_do_update`` (both databases we run on have them, with the same arguments)."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)
