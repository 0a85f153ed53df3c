"""Confidentiality: secrets never leave through the daemon's logs, /healthz, /metrics, the
audit log or the outbox; family updates carry counts, never internal names or plan text."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from dhr_workflow import db
from dhr_workflow.models import Notification
from tests.smtp_server import Handler, SmtpServer
from tests.test_daemon import Daemon, _create_feed, environment, seed, wait_for

LONDON = ZoneInfo("Europe/London")
DB_PASSWORD = "pg-Secret-7d1e9a"
SMTP_PASSWORD = "smtp-Secret-3b8f41"


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
    assert "not delivered: SMTP login refused" in exposed["log"]
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


LEAKY_FAMILY = "{% for a in overdue %}{{ a.lead_agency }} {{ a.owner }} {{ a.text }}{% endfor %}\n"


def test_a_family_template_cannot_list_actions(tmp_path: Path) -> None:
    """A deployment rewrites family_update to list the overdue actions: `rules check` refuses
    it, because a family update's context has counts, not actions."""
    import shutil

    from dhr_workflow import engine
    from dhr_workflow.errors import InvalidInput

    root = Path(__file__).resolve().parent.parent
    templates = tmp_path / "templates"
    shutil.copytree(root / "templates" / "email", templates)
    (templates / "family_update.txt").write_text(LEAKY_FAMILY)
    with pytest.raises(InvalidInput) as refused:
        engine.load_rules(root / "rules", templates, LONDON)
    assert "family_update" in str(refused.value)
    assert "\n" not in str(refused.value)
    # The default family update renders from counts alone.
    engine.load_rules(root / "rules", root / "templates" / "email", LONDON)


def test_family_update_names_no_agency_worker_or_plan_text(store: db.Store, tmp_path: Path) -> None:
    import datetime as dt

    from dhr_workflow import actions, contacts, engine, reviews
    from tests.conftest import ACTOR, NOW

    root = Path(__file__).resolve().parent.parent
    (tmp_path / "contacts.csv").write_text(
        "agency,role,name,email,review\n"
        "Northshire Constabulary,lead,Lee Lead,lead@police.example.org,\n"
        ",chair,Chris Chair,chair@csp.example.org,\n"
        ",family_liaison,Fay Liaison,fay@advocacy.example.org,R1\n"
    )
    with store.transaction() as s:
        reviews.add(s, "R1", "Review one", now=NOW, actor=ACTOR, plan_agreed_on=dt.date(2023, 6, 1))
        contacts.import_rows(
            s, contacts.read_csv(tmp_path / "contacts.csv"), now=NOW, actor=ACTOR, source="c"
        )
        for n, (due, status) in enumerate(
            [(dt.date(2023, 9, 30), "open"), (dt.date(2023, 10, 1), "completed"),
             (dt.date(2024, 3, 31), "open"), (None, "open")], start=1,
        ):  # fmt: skip
            actions.create(
                s, "R1", now=NOW, actor=ACTOR, recommendation=str(n),
                recommendation_text="Confidential recommendation wording",
                lead_agency="Northshire Constabulary", owner_text="DS Private Name",
                text=f"Confidential action wording {n}", due_date=due,
                due_basis="fixed" if due else "none", status=status,
                review_reasons=[] if due else ["due: no target date"],
            )  # fmt: skip
    ruleset, templates = engine.load_rules(root / "rules", root / "templates" / "email", LONDON)
    ctx = engine.Context(dt.datetime(2024, 1, 15, 10, tzinfo=LONDON), LONDON, "england", templates)
    with store.reading() as s:
        result = engine.evaluate(s, ruleset, ctx, only=["six-monthly-report"])
    [family] = [m for m in result.messages if m.template == "family_update"]
    [report] = [m for m in result.messages if m.template == "partnership_report"]
    assert report.rendered is not None and "Northshire Constabulary" in report.rendered.text
    assert family.rendered is not None
    shown = family.rendered.subject + family.rendered.text + (family.rendered.html or "")
    assert "1 action has taken longer than planned" in family.rendered.text
    for internal in ("Northshire", "Constabulary", "DS Private Name", "Lee Lead",
                     "lead@police", "Confidential", "Chris Chair"):  # fmt: skip
        assert internal not in shown, internal
