"""A SQLite store's file: only `init` creates one (owner-only), and a file deleted, replaced or
made read-only under a running process is refused with the reason — never written on in a
deleted inode, never re-created empty by the next connection a pool opens, and said as
"read-only" rather than SQLite's "unable to open database file"."""

from __future__ import annotations

import ctypes
import os
import shutil
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from starlette.applications import Starlette
from starlette.testclient import TestClient

from dhr_workflow import db
from dhr_workflow.errors import SchemaOutOfDate
from dhr_workflow.web import Health, Metrics, ops

CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, PR_CAPBSET_DROP = 1, 2, 24


def without_file_override() -> None:
    """For a child process: drop root's power to write files whatever their permissions
    (CAP_DAC_OVERRIDE), so a read-only file is read-only to it as to any service user. A
    no-op for an ordinary user."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def make_read_only(path: Path) -> None:
    """The file and its directory without write permission (as a read-only mount would be)."""
    path.chmod(0o400)
    path.parent.chmod(0o500)


def make_writable(path: Path) -> None:
    path.parent.chmod(0o700)
    path.chmod(0o600)


def _store(tmp_path: Path) -> tuple[db.Store, Path]:
    path = tmp_path / "store.db"
    db.migrate(f"sqlite:///{path}")
    return db.Store(f"sqlite:///{path}"), path


def _read(store: db.Store) -> str:
    try:
        with store.reading() as s:
            s.execute(text("SELECT count(*) FROM audit_event"))
        return "ok"
    except db.StoreUnavailable as exc:
        return str(exc)


def test_only_init_creates_a_database(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    url = f"sqlite:///{path}"
    with pytest.raises(SchemaOutOfDate, match="run `dhr-workflow init` first"):
        db.Store(url)
    assert not path.exists()
    db.migrate(url)  # what init does
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    store = db.Store(url)
    try:
        assert _read(store) == "ok"
        path.unlink()  # deleted under the running process
        for engine in (store.engine, store.read_engine):
            engine.pool.dispose()  # the next connection is a new one, as a busy pool opens
            with pytest.raises(OperationalError, match="unable to open database file"):
                engine.connect().close()
        with ThreadPoolExecutor(8) as pool:  # concurrent health checks
            answers = set(pool.map(lambda _: _read(store), range(32)))
        with pytest.raises(db.StoreUnavailable, match="is missing"), store.transaction() as s:
            s.execute(text("SELECT 1"))
    finally:
        store.dispose()
    assert answers == {
        f"the database file {path} is missing (deleted or moved while in use); "
        "put it back and restart dhr-workflow"
    }
    assert not path.exists(), "a connection re-created the deleted database"


def test_a_replaced_file_is_refused(tmp_path: Path) -> None:
    store, path = _store(tmp_path)
    try:
        copy = tmp_path / "copy.db"
        shutil.copy(path, copy)
        os.replace(copy, path)  # e.g. a backup restored over it while running
        refused = pytest.raises(db.StoreUnavailable, match="was replaced while in use; restart")
        with refused, store.transaction() as s:
            s.execute(text("SELECT 1"))
        assert "was replaced" in _read(store)
    finally:
        store.dispose()


def test_health_says_why_without_the_path(tmp_path: Path) -> None:
    store, path = _store(tmp_path)
    app = Starlette(routes=ops.routes(store, Health(scheduler_running=True), Metrics()))
    try:
        with TestClient(app) as http:
            assert http.get("/healthz").json()["database"] == "ok"
            moved = tmp_path / "moved.db"
            path.rename(moved)
            missing = http.get("/healthz")
            moved.rename(path)
            shutil.copy(path, tmp_path / "copy.db")
            os.replace(tmp_path / "copy.db", path)
            replaced = http.get("/healthz")
    finally:
        store.dispose()
    assert missing.status_code == replaced.status_code == 503
    assert missing.json()["database"] == "file missing (deleted or moved while in use)"
    assert replaced.json()["database"] == "file replaced while in use"
    assert str(tmp_path) not in missing.text + replaced.text


def _cli(tmp_path: Path, path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DHR_")}
    env["DHR_DATABASE_URL"] = f"sqlite:///{path}"
    return subprocess.run(
        [sys.executable, "-m", "dhr_workflow", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        preexec_fn=without_file_override,
    )


def test_a_read_only_store_says_read_only(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    db.migrate(f"sqlite:///{path}")
    make_read_only(path)
    try:
        written = _cli(tmp_path, path, "reviews", "add", "R1", "--title", "Review one")
        read = _cli(tmp_path, path, "reviews", "list")
    finally:
        make_writable(path)
    for result in (written, read):  # WAL mode needs to write beside the file even to read
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip() == (
            f"error: the database file {path} is read-only (check the permissions of the file "
            "and its directory, the free space and the mount)"
        )
