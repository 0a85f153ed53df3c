"""The daemon's own jobs, in-process: the daily audit anchor, and ticks refused because time
went back (a replica a moment later, or a clock or `tick --at` ahead) — on both backends."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from pathlib import Path

import pytest

from dhr_workflow import audit, db, reviews
from dhr_workflow.config import load_settings
from dhr_workflow.daemon import REPLICA_SKEW, Daemon
from dhr_workflow.models import TickMark
from tests.conftest import ACTOR, NOW


def _daemon(db_url: str, tmp_path: Path) -> Daemon:
    settings = load_settings(
        database_url=db_url, audit_anchor_file=tmp_path / "anchors.jsonl", mail_dir=tmp_path
    )
    return Daemon(settings)


def test_the_daily_anchor_goes_to_the_file_and_the_log(
    store: db.Store, db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with store.transaction() as s:
        reviews.add(s, "R1", "Case one", now=NOW, actor=ACTOR)
    daemon = _daemon(db_url, tmp_path)
    with caplog.at_level(logging.INFO, logger="dhr_workflow.daemon"):
        daemon._anchor_sync()
    daemon.store.dispose()
    [line] = (tmp_path / "anchors.jsonl").read_text().splitlines()
    anchor = json.loads(line)
    with store.reading() as s:
        head = audit.head(s)
    assert head is not None and (anchor["seq"], anchor["hash"]) == (head.seq, head.hash)
    assert f"audit anchor: event #{head.seq}, hash {head.hash}" in caplog.text


@pytest.mark.parametrize(("ahead", "said"), [(60, False), (REPLICA_SKEW + 3600, True)])
def test_a_tick_behind_the_mark_is_skipped_and_said_only_when_far_behind(
    store: db.Store,
    db_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    ahead: int,
    said: bool,
) -> None:
    mark = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=ahead)
    with store.transaction() as s:
        s.add(TickMark(rule_id="deadline", at=mark))
    daemon = _daemon(db_url, tmp_path)
    with caplog.at_level(logging.INFO, logger="dhr_workflow.daemon"):
        asyncio.run(daemon._tick_once(["deadline"], "deadline"))
    daemon.store.dispose()
    assert daemon.health.job_errors == {}  # not a failure of the job
    assert ("earlier than the last committed tick" in caplog.text) is said
