"""Throwaway benchmark stores: a SQLite file in a temporary directory, or a PostgreSQL database
created for the run and dropped afterwards (never the database the tests use).

    with fresh("postgresql", "tick-1000000", tmp) as url: ...

Also the bulk writer the benchmarks populate with: the values go through each column's own
SQLAlchemy bind processor (so they are stored exactly as the product would store them), then
into SQLite with one prepared executemany, or into PostgreSQL with COPY. PostgreSQL checks
foreign keys row by row and keeps every index up to date during a COPY, which makes a million
rows take minutes: for a bulk load the plain indexes are dropped and rebuilt afterwards, and
(as a superuser) the foreign-key triggers are skipped — the generated rows are consistent.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Table, create_engine, text
from sqlalchemy.engine import make_url

from dhr_workflow import db

PG_ADMIN_URL = os.environ.get(
    "DHR_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
STARTED = time.perf_counter()


def say(message: str) -> None:
    """Progress on stderr, so a long run shows where it is without mixing into the table."""
    print(f"[{time.perf_counter() - STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


@contextmanager
def fresh(backend: str, name: str, tmp: str) -> Iterator[str]:
    """The URL of a new, migrated, empty store; a PostgreSQL database is dropped at the end."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp}/{name}.db"
        db.migrate(url)
        yield url
        return
    dbname = f"dhr_bench_{name}_{os.getpid()}".replace("-", "_").lower()
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{dbname}"'))
            conn.execute(text(f'CREATE DATABASE "{dbname}"'))
        url = make_url(PG_ADMIN_URL).set(database=dbname).render_as_string(hide_password=False)
        db.migrate(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))
        admin.dispose()


def analyze(store: db.Store) -> None:
    """Fresh planner statistics, as autovacuum would gather them shortly after a bulk load
    (PostgreSQL only: the product never runs ANALYZE on SQLite, so neither do we)."""
    if store.engine.dialect.name != "postgresql":
        return
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))


def bulk_insert(
    conn: Connection, table: Table, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """Insert plain tuples (in ``columns`` order) fast, stored exactly as the ORM stores them."""
    dialect = conn.dialect
    procs = [_processor(table, c, dialect) for c in columns]
    processed = (tuple(p(v) for p, v in zip(procs, row, strict=True)) for row in rows)
    names = ", ".join(columns)
    if dialect.name == "postgresql":
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur, cur.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
            for row in processed:
                copy.write_row(row)
        return
    marks = ", ".join("?" * len(columns))
    sql = f"INSERT INTO {table.name} ({names}) VALUES ({marks})"  # noqa: S608 - our own names
    conn.exec_driver_sql(sql, list(processed))


@contextmanager
def bulk_load(conn: Connection, table: Table) -> Iterator[None]:
    """On PostgreSQL, drop ``table``'s plain indexes for the load and rebuild them after (in
    the same transaction), and skip foreign-key triggers if we may. SQLite: nothing to do."""
    if conn.dialect.name != "postgresql":
        yield
        return
    if conn.scalar(text("SELECT current_setting('is_superuser')")) == "on":
        conn.execute(text("SET LOCAL session_replication_role = replica"))
    found = conn.execute(
        text(
            "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x"
            " JOIN pg_class i ON i.oid = x.indexrelid"
            " LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid"
            " WHERE x.indrelid = CAST(:t AS regclass) AND c.oid IS NULL"
        ),
        {"t": table.name},
    ).all()
    for name, _ in found:
        conn.execute(text(f'DROP INDEX "{name}"'))
    yield
    for _, definition in found:
        conn.execute(text(definition))
    conn.execute(text("SET LOCAL session_replication_role = DEFAULT"))


def _processor(table: Table, column: str, dialect: Any) -> Callable[[Any], Any]:
    proc = table.c[column].type.dialect_impl(dialect).bind_processor(dialect)
    if proc is None:
        return lambda value: value
    cache: dict[Any, Any] = {}

    def process(value: Any) -> Any:
        # Many rows share a date or a timestamp: convert each distinct value once.
        key = tuple(value) if isinstance(value, list) else value
        if key not in cache:
            cache[key] = proc(value)
        return cache[key]

    return process
