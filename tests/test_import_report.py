"""What an import understood, shown before anything is written: `import --dry-run` (text and
JSON, through the real CLI) and the web preview list each recommendation's actions with agency,
owner, due date and flags, and count rows read and ignored, agencies new / matched /
fuzzy-matched / unknown, and due dates read / relative / recurring / missing."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from starlette.testclient import TestClient

from dhr_workflow import agency_directory
from dhr_workflow.models import Action, Agency, AuditEvent
from tests.conftest import ACTOR, CliFn
from tests.web_support import START, Site, csrf, site_fixture  # noqa: F401

DIRECTORY = """name,aliases,parent
Northshire Police,NP,
Southshire County Council,,
Northshire Health,,
"""
PLAN = """Recommendation,Action,Lead Agency,Owner,Target Date,Outcome
,A note above the first recommendation,,,,
1,Train response officers,Northshre Police,DI Jones,30/09/2024,
1,Brief call handlers,NP,Sgt Smith,Within 3 months of the completion of the DHR,
2,Audit case records,Northshire County Council,Head of Audit,Ongoing,
3,Report to the board,Northshire Health,Director of Nursing,Six monthly reports,
4,Review the policy,Northshire Health,Policy Lead,Completed,
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _ok(result: Any) -> Any:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


def _audit_count(cli: CliFn) -> int:
    return len(json.loads(_ok(cli("audit", "list", "--json")).stdout))


def test_dry_run_prints_actions_per_recommendation_and_what_was_understood(
    cli: CliFn, tmp_path: Path
) -> None:
    _ok(cli("agencies", "import", str(_write(tmp_path, "agencies.csv", DIRECTORY))))
    events = _audit_count(cli)
    plan = _write(tmp_path, "plan.csv", PLAN)
    out = _ok(cli("import", str(plan), "--review", "R1", "--dry-run")).stdout
    assert out.startswith("DRY RUN, nothing written: plan.csv (csv) -> review R1 (new): 5 actions")
    assert _audit_count(cli) == events  # written: nothing
    for header in ("line", "ref", "lead agency", "owner", "due", "status", "flags"):
        assert header in out
    cell = r" +│ (.*?)"
    row = r"│ (\d+) +│ overview +│ (\w+) +│ create" + cell * 5 + r" +│"
    rows = {m[0]: m for m in re.findall(row, out)}
    assert rows["3"][1:] == (
        "1", "Northshire Police (fuzzy: 'Northshre Police', 97)", "DI Jones", "2024-09-30",
        "open", "",
    )  # fmt: skip
    assert rows["4"][1:] == ("1b", "Northshire Police (as 'NP')", "Sgt Smith", "-", "open", "due")
    assert rows["5"][1:] == (
        "2", "? 'Northshire County Council'", "Head of Audit", "-", "open", "agency, due",
    )  # fmt: skip
    assert rows["7"][4:6] == ("-", "completed")
    assert (
        "read 5 action(s), ignored 1 line(s); agencies: 0 new, 2 matched, 1 fuzzy-matched, "
        "1 not in the directory; due dates: 1 read, 1 relative, 1 recurring, 1 missing, "
        "1 not needed (completed)"
    ) in out
    assert "  fuzzy: 'Northshre Police' → Northshire Police (97)\n" in out
    assert "  unknown: 'Northshire County Council' (nearest: Southshire County Council)\n" in out
    assert "  ignored line 2: a row with no recommendation to belong to" in out
    assert "line 5, overview rec 2: agency: 'Northshire County Council' is not in the agency" in out


def test_dry_run_json_adds_the_report_and_keeps_every_key(cli: CliFn, tmp_path: Path) -> None:
    _ok(cli("agencies", "import", str(_write(tmp_path, "agencies.csv", DIRECTORY))))
    plan = _write(tmp_path, "plan.csv", PLAN)
    report = json.loads(
        _ok(cli("import", str(plan), "--review", "R1", "--dry-run", "--json")).stdout
    )
    assert set(report) >= {
        "review", "review_created", "file", "created", "updated", "unchanged", "actions",
        "needs_review", "not_in_file", "ignored_lines", "dry_run", "format", "warnings",
        "understood",
    }  # fmt: skip
    seen = report["understood"]
    assert (seen["rows_read"], seen["rows_ignored"]) == (5, 1)
    assert report["ignored_lines"] == [
        {"line": 2, "why": "a row with no recommendation to belong to"}
    ]
    assert seen["dates"] == {
        "parsed": 1, "relative": 1, "recurring": 1, "missing": 1, "completed": 1,
    }  # fmt: skip
    agencies = seen["agencies"]
    assert {k: agencies[k] for k in ("new", "matched", "fuzzy", "unknown")} == {
        "new": 0, "matched": 2, "fuzzy": 1, "unknown": 1,
    }  # fmt: skip
    assert agencies["names"]["fuzzy"] == [
        {"written": "Northshre Police", "match": "fuzzy", "agency": "Northshire Police",
         "score": 97, "nearest": []},
    ]  # fmt: skip
    assert agencies["names"]["alias"][0]["written"] == "NP"
    assert seen["recommendations"] == [
        {"section": "overview", "ref": "1", "actions": ["1", "1b"]},
        {"section": "overview", "ref": "2", "actions": ["2"]},
        {"section": "overview", "ref": "3", "actions": ["3"]},
        {"section": "overview", "ref": "4", "actions": ["4"]},
    ]
    first = report["actions"][0]
    assert (first["owner"], first["lead_agency"]) == ("DI Jones", "Northshire Police")
    assert first["agency_match"]["match"] == "fuzzy"


def test_a_real_import_prints_the_same_summary(cli: CliFn, tmp_path: Path) -> None:
    plan = _write(tmp_path, "plan.csv", PLAN)
    out = _ok(cli("import", str(plan), "--review", "R1")).stdout
    assert "┃ flags" not in out  # the table is for the dry run
    assert (
        "read 5 action(s), ignored 1 line(s); agencies: 4 new, 0 matched, 0 fuzzy-matched; "
        "due dates: 1 read, 1 relative, 1 recurring, 1 missing, 1 not needed (completed)"
    ) in out
    assert "  new: 'Northshre Police'\n" in out


# --- the web preview -------------------------------------------------------------------------


def _text(page: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def _preview(site: Site, plan: str) -> tuple[TestClient, str, Any]:
    client = site.client()
    site.sign_in(client, "cat@csp.example.org")
    page = client.get("/import")
    uploaded = client.post(
        "/import",
        data={"csrf_token": csrf(page.text), "review": "R9"},
        files={"plan": ("plan.csv", plan.encode(), "text/csv")},
    )
    assert uploaded.status_code == 303, uploaded.text
    preview = client.get(uploaded.headers["location"])
    assert preview.status_code == 200
    return client, uploaded.headers["location"], preview


def _list_directory(site: Site) -> None:
    rows = agency_directory.read_csv(_write(site.tmp, "agencies.csv", DIRECTORY))
    with site.store.transaction() as s:
        agency_directory.import_rows(s, rows, now=START, actor=ACTOR, source="agencies.csv")


def _written(site: Site) -> tuple[int, ...]:
    with site.store.reading() as s:
        return tuple(
            s.scalar(select(func.count()).select_from(model).where(*where)) or 0
            for model, where in (
                (Action, ()),
                (Agency, ()),
                (AuditEvent, (~AuditEvent.kind.startswith("signin"),)),
            )
        )


def test_web_preview_shows_what_was_understood(site: Site) -> None:
    _list_directory(site)
    before = _written(site)
    _, _, preview = _preview(site, PLAN)
    text = _text(preview.text)
    assert "What the import understood" in text
    assert "Rows read 5 actions under 4 recommendations" in text
    assert "Lines ignored 1 line (see below why)" in text
    assert (
        "Agencies 0 new, 2 matched, 1 matched by a similar spelling, 1 not in the agency directory"
    ) in text
    assert (
        "Due dates 1 read from the plan, 1 relative to a review date, 1 recurring, 1 missing, "
        "1 not needed (completed)"
    ) in text
    assert "‘Northshre Police’ → Northshire Police (similarity 97)" in text
    assert "Not in the agency directory" in text
    assert "‘Northshire County Council’ (nearest: Southshire County Council" in text
    assert "New agency names" not in text  # a directory exists: nothing will be created
    assert "Recommendation 1 Line Ref Change Lead agency Owner" in text
    assert "Northshire Police similar spelling: ‘Northshre Police’ (97) DI Jones" in text
    assert "None (plan: ‘Northshire County Council’) Head of Audit" in text
    assert "Northshire Police as ‘NP’ Sgt Smith" in text
    assert "Line 2: a row with no recommendation to belong to" in text
    assert _written(site) == before  # a preview writes nothing (but the sign-in)


def test_web_preview_without_a_directory_lists_new_agencies(site: Site) -> None:
    _, _, preview = _preview(site, PLAN)
    text = _text(preview.text)
    assert "Agencies 4 new, 0 matched, 0 matched by a similar spelling" in text
    assert "New agency names" in text and "Northshre Police" in text
    assert "Not in the agency directory" not in text
