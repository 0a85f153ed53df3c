"""A private, throwaway PostgreSQL cluster for tests that stop and start the server.

Stopping the machine's own server (``pg_ctlcluster ... stop``) takes everyone's database down
while the test runs — other test sessions, a newcomer's development database. A test that
restarts PostgreSQL gets its own cluster instead: initdb into a temporary directory, its own
port and socket directory, ``pg_ctl start``/``stop``, deleted afterwards.

initdb refuses to run as root: as root, the cluster belongs to the ``postgres`` user (Debian's
packages create it) and every command runs through ``runuser -u postgres``. Without initdb
(or, as root, without that user) the test is skipped with the reason — except under
``CI=true``, where it fails: CI must run it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.smtp_server import free_port

OWNER = "postgres"  # who runs the cluster when the tests run as root


def _binary(name: str) -> str | None:
    """``name`` on PATH, else the newest of Debian's /usr/lib/postgresql/*/bin."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return str(candidates[-1]) if candidates else None


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        pytest.fail(f"{reason} (CI=true: this test must run, not skip)")
    pytest.skip(reason)


@dataclass
class Cluster:
    directory: Path
    port: int
    pg_ctl: str
    prefix: list[str]  # runuser -u postgres --, as root

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/dhr"

    def _ctl(self, *args: str) -> None:
        data = str(self.directory / "data")
        subprocess.run(
            [*self.prefix, self.pg_ctl, "-D", data, "-w", "-t", "60", *args],
            check=True,
            capture_output=True,
            timeout=90,
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c max_connections=100"
        )
        self._ctl("-l", str(self.directory / "server.log"), "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-m", mode, "stop")

    def restart(self, down_for: float, during: Callable[[], None]) -> None:
        """Stop the server for a while and start it again, as an operator's restart would;
        ``during`` runs while it is down."""
        self.stop()
        time.sleep(down_for)
        during()
        self.start()


@contextmanager
def private_cluster() -> Iterator[Cluster]:
    """A running cluster with an empty database ``dhr`` (trust authentication on loopback)."""
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        _unavailable("no initdb/pg_ctl (PostgreSQL's server binaries) to start a private cluster")
    assert initdb is not None and pg_ctl is not None
    prefix: list[str] = []
    owner = None
    if os.geteuid() == 0:  # initdb refuses root
        try:
            owner = pwd.getpwnam(OWNER)
        except KeyError:
            _unavailable(f"running as root and there is no {OWNER!r} user to run initdb as")
        runuser = shutil.which("runuser")
        if runuser is None:
            _unavailable("running as root and there is no runuser to run initdb as postgres")
        prefix = [str(runuser), "-u", OWNER, "--"]
    directory = Path(tempfile.mkdtemp(prefix="dhr-pg-"))
    if owner is not None:
        os.chown(directory, owner.pw_uid, owner.pw_gid)
    cluster = Cluster(directory, free_port(), pg_ctl, prefix)
    try:
        subprocess.run(
            [*prefix, initdb, "-D", str(directory / "data"), "-U", "postgres", "--auth=trust",
             "-E", "UTF8", "--no-sync", "--no-instructions"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        cluster.start()
        admin = create_engine(cluster.url.replace("/dhr", "/postgres"), poolclass=NullPool,
                              isolation_level="AUTOCOMMIT")  # fmt: skip
        with admin.connect() as conn:
            conn.execute(text("CREATE DATABASE dhr"))
        admin.dispose()
        yield cluster
    finally:
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            cluster.stop("immediate")  # (never started, or already down: nothing to stop)
        shutil.rmtree(directory, ignore_errors=True)
