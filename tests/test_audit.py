"""The audit chain detects an edited row and a deleted row; export and listing."""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select, text

from dhr_workflow import audit, db, engine
from dhr_workflow.models import AuditEvent, Notification
from tests.conftest import LONDON, CliFn, D


def _five_events(cli: CliFn) -> None:
    assert cli("reviews", "add", "R1", "--title", "One").exit_code == 0
    assert cli("reviews", "add", "R2", "--title", "Two").exit_code == 0
    assert cli("reviews", "set", "R1", "--published", "2024-02-01").exit_code == 0
    assert cli("reviews", "set", "R2", "--status", "closed").exit_code == 0
    assert cli("reviews", "set", "R1", "--title", "One, renamed").exit_code == 0


def test_verify_passes_on_an_untouched_log(cli: CliFn) -> None:
    _five_events(cli)
    result = cli("audit", "verify")
    assert result.exit_code == 0
    assert result.stdout.startswith("audit log intact: 5 events, head ")


def test_verify_catches_an_edited_row(cli: CliFn, unguarded: db.Store) -> None:
    _five_events(cli)
    with unguarded.transaction() as s:
        s.execute(
            text(
                "UPDATE audit_event SET data = replace(data, '2024-02-01', '2024-03-01') "
                "WHERE seq = 3"
            )
        )
    result = cli("audit", "verify")
    assert result.exit_code == 1
    assert "event #3" in result.stderr and "altered" in result.stderr
    assert "2 events verified before it" in result.stderr


def test_verify_catches_an_edited_row_with_recomputed_hash(cli: CliFn, unguarded: db.Store) -> None:
    """A forger who rewrites a row and recomputes its hash still breaks the next link."""
    _five_events(cli)
    with unguarded.transaction() as s:
        ev = s.scalars(select(AuditEvent).where(AuditEvent.seq == 2)).one()
        forged = audit._event_hash(
            ev.prev_hash, ev.seq, ev.at, "mallory", ev.kind, ev.subject, ev.data
        )
        s.execute(
            text("UPDATE audit_event SET actor = 'mallory', hash = :h WHERE seq = 2"), {"h": forged}
        )
    result = cli("audit", "verify")
    assert result.exit_code == 1
    assert "chain broken before event #3" in result.stderr
    assert "2 events verified before it" in result.stderr


def test_verify_catches_a_deleted_row(cli: CliFn, unguarded: db.Store) -> None:
    _five_events(cli)
    with unguarded.transaction() as s:
        s.execute(text("DELETE FROM audit_event WHERE seq = 4"))
    result = cli("audit", "verify")
    assert result.exit_code == 1
    assert "chain broken before event #5" in result.stderr
    assert "#4 was deleted" in result.stderr


def test_verify_catches_a_deleted_first_row(cli: CliFn, unguarded: db.Store) -> None:
    _five_events(cli)
    with unguarded.transaction() as s:
        s.execute(text("DELETE FROM audit_event WHERE seq = 1"))
    result = cli("audit", "verify")
    assert result.exit_code == 1
    assert "#1 was deleted" in result.stderr


def test_list_json_and_since(cli: CliFn) -> None:
    _five_events(cli)
    events = json.loads(cli("audit", "list", "--json").stdout)
    assert [e["kind"] for e in events] == ["review.create"] * 2 + ["review.update"] * 3
    assert events[2]["data"] == {
        "before": {"published_on": None},
        "after": {"published_on": "2024-02-01"},
    }
    assert {e["actor"] for e in events} == {"test"}
    assert all(e["prev_hash"] == p["hash"] for p, e in itertools.pairwise(events))
    assert json.loads(cli("audit", "list", "--json", "--since", "2999-01-01").stdout) == []
    bad = cli("audit", "list", "--since", "yesterday")
    assert bad.exit_code == 2 and "'yesterday' is not a date" in bad.stderr


def test_export_csv(cli: CliFn, tmp_path: Path) -> None:
    _five_events(cli)
    out = tmp_path / "audit.csv"
    result = cli("audit", "export", "--csv", str(out))
    assert result.exit_code == 0, result.stderr
    with out.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["seq"]) for r in rows] == [1, 2, 3, 4, 5]
    assert json.loads(rows[0]["data"])["after"]["ref"] == "R1"
    assert not list(tmp_path.glob(".*.tmp"))


def test_export_to_missing_directory_is_a_clear_error(cli: CliFn, tmp_path: Path) -> None:
    result = cli("audit", "export", "--csv", str(tmp_path / "no" / "such" / "audit.csv"))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert "cannot write the export (No such file or directory)" in result.stderr
    assert not list(tmp_path.rglob("*.tmp"))


def test_empty_log_on_an_empty_store_is_intact(cli: CliFn) -> None:
    result = cli("audit", "verify")
    assert result.exit_code == 0
    assert result.stdout.startswith("audit log intact: 0 events")


def test_emptied_log_with_data_left_is_broken(cli: CliFn, unguarded: db.Store) -> None:
    _five_events(cli)
    with unguarded.transaction() as s:
        s.execute(text("DELETE FROM audit_event"))
    result = cli("audit", "verify")
    assert result.exit_code == 1
    assert "the audit log is empty but the store holds reviews" in result.stderr


def test_truncate_and_replace_are_refused(cli: CliFn, store: db.Store) -> None:
    """The guards catch the quiet ways to rewrite history, not only UPDATE and DELETE."""
    _five_events(cli)
    if store.engine.dialect.name == "postgresql":
        statement = "TRUNCATE audit_event"
    else:
        statement = (
            "INSERT OR REPLACE INTO audit_event (id, seq, at, actor, kind, subject, data, "
            "prev_hash, hash) SELECT id, seq, at, 'mallory', kind, subject, data, "
            "prev_hash, hash FROM audit_event WHERE seq = 3"
        )
    with pytest.raises(Exception, match="append-only"), store.transaction() as s:
        s.execute(text(statement))
    assert cli("audit", "verify").stdout.startswith("audit log intact: 5 events")


def test_export_is_private(cli: CliFn, tmp_path: Path) -> None:
    _five_events(cli)
    out = tmp_path / "audit.csv"
    cli("audit", "export", "--csv", str(out))
    assert out.stat().st_mode & 0o077 == 0


# --- anchors: the head kept outside the database ---------------------------------------------


def test_an_anchor_shows_the_newest_events_were_removed(
    cli: CliFn, unguarded: db.Store, tmp_path: Path
) -> None:
    anchors = tmp_path / "elsewhere" / "anchors.jsonl"
    anchors.parent.mkdir()
    for ref in ("R1", "R2"):
        assert cli("reviews", "add", ref, "--title", "T").exit_code == 0
    made = cli("audit", "anchor", "--file", str(anchors))
    assert made.exit_code == 0, made.stderr
    assert anchors.stat().st_mode & 0o777 == 0o600
    assert cli("audit", "verify", "--anchors", str(anchors)).exit_code == 0
    # Deleting the newest event leaves a chain that checks out on its own ...
    with unguarded.transaction() as s:
        newest = s.scalar(select(func.max(AuditEvent.seq)))
        s.execute(delete(AuditEvent).where(AuditEvent.seq == newest))
    assert cli("audit", "verify").exit_code == 0
    # ... but not against the anchor.
    caught = cli("audit", "verify", "--anchors", str(anchors))
    assert caught.exit_code == 1
    assert f"event #{newest} anchored at" in caught.stderr
    assert "is gone" in caught.stderr


def test_an_anchor_catches_a_chain_rewritten_and_rehashed(
    cli: CliFn, unguarded: db.Store, tmp_path: Path
) -> None:
    """The attacker with DDL rights drops an event from the middle, renumbers the rest and
    recomputes every hash: the chain checks out on its own, the anchor taken before does not."""
    anchors = tmp_path / "anchors.jsonl"
    for ref in ("R1", "R2", "R3"):
        assert cli("reviews", "add", ref, "--title", "T").exit_code == 0
    assert cli("audit", "anchor", "--file", str(anchors)).exit_code == 0
    with unguarded.transaction() as s:
        doomed = s.scalars(select(AuditEvent).where(AuditEvent.subject == "review:R2")).one()
        s.delete(doomed)
        s.flush()
        prev = audit.GENESIS
        for seq, ev in enumerate(s.scalars(select(AuditEvent).order_by(AuditEvent.seq)), 1):
            ev.seq, ev.prev_hash = seq, prev
            ev.hash = audit._event_hash(prev, seq, ev.at, ev.actor, ev.kind, ev.subject, ev.data)
            prev = ev.hash
            s.flush()
    assert cli("audit", "verify").exit_code == 0  # the rewrite is self-consistent
    caught = cli("audit", "verify", "--anchors", str(anchors))
    assert caught.exit_code == 1
    assert "anchored at" in caught.stderr


def test_anchor_needs_a_file_and_reads_only_anchor_lines(cli: CliFn, tmp_path: Path) -> None:
    assert cli("reviews", "add", "R1", "--title", "T").exit_code == 0
    missing = cli("audit", "anchor")
    assert missing.exit_code == 2
    assert "pass --file FILE or set DHR_AUDIT_ANCHOR_FILE" in missing.stderr
    configured = tmp_path / "a.jsonl"
    assert cli("audit", "anchor", env={"DHR_AUDIT_ANCHOR_FILE": str(configured)}).exit_code == 0
    assert configured.read_text().count("\n") == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"seq": 1, "hash": "x", "at": "now"}\nnot json\n')
    refused = cli("audit", "verify", "--anchors", str(bad))
    assert refused.exit_code == 2
    assert refused.stderr.startswith(f"error: {bad}:2: not an anchor line")


def test_the_chairs_report_carries_the_head(store: db.Store, rules: Any, world: Any) -> None:
    world(a=("Police", D(2024, 3, 31), "open"))
    ruleset, templates = rules
    ctx = engine.Context(dt.datetime(2023, 12, 1, 9, tzinfo=LONDON), LONDON, "england", templates)
    with store.transaction() as s:
        result = engine.commit(s, engine.evaluate(s, ruleset, ctx), ctx, actor="daemon")
    with store.reading() as s:
        report = s.scalars(
            select(Notification).where(Notification.template == "partnership_report")
        ).first()
        seqs = set(s.scalars(select(AuditEvent.seq)))
    assert result.messages and report is not None
    seq = int(report.text_body.split("Audit log at this report: event #", 1)[1].split(",", 1)[0])
    assert seq in seqs
