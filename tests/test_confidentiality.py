"""Confidentiality: secrets never leave through the daemon's logs, /healthz, /metrics, the
audit log or the outbox; family updates carry counts, never internal names or plan text."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from dhr_workflow import db
from dhr_workflow.models import Notification
from tests.smtp_server import Handler, SmtpServer
from tests.test_daemon import Daemon, _create_feed, environment, seed, wait_for

DB_PASSWORD = "pg-Secret-7d1e9a"
SMTP_PASSWORD = "smtp-Secret-3b8f41"


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    running: list[Daemon] = []
    yield running
    for d in running:
        d.close()


def _cli(env: dict[str, str], cwd: Path, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "dhr_workflow", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout + out.stderr


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_secrets_stay_out_of_logs_health_metrics_audit_and_outbox(
    tmp_path: Path, daemons: list[Daemon], pg_server_url: str
) -> None:
    from tests.conftest import _truncate_pg

    _truncate_pg(pg_server_url)
    # PostgreSQL here trusts loopback, so any password connects: a real secret in the URL.
    url = make_url(pg_server_url).set(password=DB_PASSWORD).render_as_string(hide_password=False)
    seed(url, tmp_path)
    handler = Handler()
    # The mail server refuses our login: the failure path, where a careless error message
    # would quote the credentials, is taken on every attempt.
    with SmtpServer(handler, users={"dhr": "the-real-password"}) as smtp:
        env = environment(
            url,
            smtp.port,
            DHR_SMTP_USERNAME="dhr",
            DHR_SMTP_PASSWORD=SMTP_PASSWORD,
            DHR_LOG_LEVEL="DEBUG",
        )
        feed_url = _create_feed(env, tmp_path)
        feed_secret = feed_url.rsplit("/", 1)[1].removesuffix(".ics")
        daemon = Daemon(env, tmp_path)
        daemons.append(daemon)
        daemon.wait_healthy(60)
        store = db.Store(url)

        def login_refused() -> bool:
            with store.reading() as s:
                return any(
                    "login refused" in (e or "") for e in s.scalars(select(Notification.last_error))
                )

        wait_for(login_refused, 30, "the refused SMTP login to be recorded")
        store.dispose()
        exposed: dict[str, str] = {}
        path = feed_url.split(str(daemon.port), 1)[1]
        assert httpx.get(daemon.url(path), timeout=5).status_code == 200
        for n in range(35):  # wrong tokens until rate-limited: 404s, then 429s
            httpx.get(daemon.url(f"/feeds/{feed_secret[:-3]}x{n:02d}.ics"), timeout=5)
        exposed["/healthz"] = httpx.get(daemon.url("/healthz"), timeout=5).text
        exposed["/metrics"] = httpx.get(daemon.url("/metrics"), timeout=5).text
        assert daemon.stop() == 0
    exposed["log"] = daemon.log.read_text()
    export = tmp_path / "audit.csv"
    exposed["audit export"] = _cli(env, tmp_path, "audit", "export", "--csv", str(export))
    exposed["audit"] = export.read_text()
    exposed["outbox"] = _cli(env, tmp_path, "outbox", "list", "--json")
    exposed["rules check"] = _cli(env, tmp_path, "rules", "check")
    # The places looked at are real: the failure was logged and audited.
    assert "retry" in exposed["log"]
    assert "login refused" in exposed["outbox"]
    assert "login refused" in exposed["audit"]
    assert "dhr_ticks_total" in exposed["/metrics"]
    for where, content in exposed.items():
        for name, secret in [
            ("database password", DB_PASSWORD),
            ("SMTP password", SMTP_PASSWORD),
            ("feed token", feed_secret),
        ]:
            assert secret not in content, f"the {name} appears in {where}"
