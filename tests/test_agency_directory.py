"""The agency directory: importing agencies.csv (all or nothing, idempotent), and how an import
resolves a plan's agency names through it — exact, alias, a close spelling, or flagged with the
nearest names — on both backends. Without a directory, plans create agencies as before."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from dhr_workflow import agencies, agency_directory, db
from dhr_workflow.agencies import alias_key, similarity
from dhr_workflow.models import Agency, AgencyAlias, AuditEvent
from tests.conftest import ACTOR, NOW, CliFn

DIRECTORY = """name,aliases,parent
Northshire Police,Northshire Constabulary Police; NP,
Bi-Borough Adult Social Care,BBASC | Bi Borough ASC,
Operational Safeguarding Team,OST,Bi-Borough Adult Social Care
Southshire County Council,,
Children's Services,,
Westminster City Council,WCC,
"""
# A plan naming agencies the directory knows by name, by alias, by a slip, and not at all.
PLAN = """Recommendation,Action,Lead Agency,Owner,Target Date
1,Train response officers,Northshre Police,DI Jones,30/09/2024
2,Audit case records,BBASC,Head of ASC,December 2024
3,Review the referral policy,Northshire County Council,Chief Executive,March 2025
4,Brief the board,Operational Safeguarding Team,Team Manager,Ongoing
"""


def _write(tmp_path: Path, text: str, name: str = "agencies.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _ok(result: Any) -> Any:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


def _error(result: Any) -> str:
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ")
    return line


def _listed(cli: CliFn) -> dict[str, dict[str, Any]]:
    return {a["name"]: a for a in json.loads(_ok(cli("agencies", "list", "--json")).stdout)}


def _counts(store: db.Store) -> tuple[int, ...]:
    with store.reading() as s:
        return tuple(
            s.scalar(select(func.count()).select_from(t)) or 0
            for t in (Agency, AgencyAlias, AuditEvent)
        )


def _actions(cli: CliFn, review: str) -> dict[str, dict[str, Any]]:
    rows = json.loads(_ok(cli("actions", "list", "--review", review, "--json")).stdout)
    return {r["ref"]: r for r in rows}


# --- importing the directory -----------------------------------------------------------------


def test_directory_import_lists_agencies_with_aliases_and_parents(
    cli: CliFn, tmp_path: Path
) -> None:
    path = _write(tmp_path, DIRECTORY)
    said = _ok(cli("agencies", "import", str(path))).stdout
    assert said.strip() == f"{path}: 6 agency(ies) added, 0 updated, 0 already listed"
    listed = _listed(cli)
    assert set(listed) == {
        "Northshire Police", "Bi-Borough Adult Social Care", "Operational Safeguarding Team",
        "Southshire County Council", "Children's Services", "Westminster City Council",
    }  # fmt: skip
    ost = listed["Operational Safeguarding Team"]
    assert (ost["parent"], ost["listed"]) == ("Bi-Borough Adult Social Care", True)
    assert ost["aliases"] == ["operational safeguarding team", "ost"]
    assert listed["Bi-Borough Adult Social Care"]["aliases"] == [
        "bbasc", "bi borough adult social care", "bi borough asc",
    ]  # fmt: skip
    assert listed["Northshire Police"]["parent"] is None
    table = _ok(cli("agencies", "list")).stdout
    assert "part of" in table and "Bi-Borough Adult Social Care" in table


def test_directory_reimport_changes_nothing(cli: CliFn, store: db.Store, tmp_path: Path) -> None:
    path = _write(tmp_path, DIRECTORY)
    _ok(cli("agencies", "import", str(path)))
    before, listed = _counts(store), _listed(cli)
    again = _ok(cli("agencies", "import", str(path))).stdout
    assert again.strip() == f"{path}: 0 agency(ies) added, 0 updated, 6 already listed"
    assert _listed(cli) == listed
    assert _counts(store)[:2] == before[:2]
    assert _counts(store)[2] == before[2] + 1  # the agencies.import event only
    with store.reading() as s:
        last = s.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1)).one()
    assert (last.kind, json.loads(last.data)) == (
        "agencies.import",
        {"created": 0, "updated": 0, "unchanged": 6},
    )


def test_directory_adopts_an_agency_a_plan_brought_in(
    cli: CliFn, store: db.Store, tmp_path: Path
) -> None:
    """A plan created "Northshire Constabulary Police"; the directory lists it as an alias of
    Northshire Police: the same agency, renamed, its actions kept, its old name an alias."""
    plan = _write(tmp_path, PLAN.replace("Northshre Police", "Northshire Constabulary Police"))
    _ok(cli("import", str(plan), "--review", "R1"))
    _ok(cli("agencies", "import", str(_write(tmp_path, DIRECTORY))))
    police = _listed(cli)["Northshire Police"]
    assert police["open_actions"] == 1
    assert "northshire constabulary police" in police["aliases"]
    assert "Northshire Constabulary Police" not in _listed(cli)
    assert _actions(cli, "R1")["1"]["lead_agency"] == "Northshire Police"
    # Changing a parent later is an update, audited with before and after.
    moved = DIRECTORY.replace(
        "Operational Safeguarding Team,OST,Bi-Borough Adult Social Care",
        "Operational Safeguarding Team,OST,Westminster City Council",
    )
    said = _ok(cli("agencies", "import", str(_write(tmp_path, moved)))).stdout
    assert "0 agency(ies) added, 1 updated, 5 already listed" in said
    with store.reading() as s:
        event = s.scalars(
            select(AuditEvent).where(AuditEvent.kind == "agency.directory")
            .order_by(AuditEvent.seq.desc()).limit(1)
        ).one()  # fmt: skip
    assert json.loads(event.data) == {
        "before": {"parent": "Bi-Borough Adult Social Care"},
        "after": {"parent": "Westminster City Council"},
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("agency,aliases\nPolice,\n", "agencies.csv:1: unknown column(s) 'agency'"),
        ("name,alias\nPolice,Cops\n", "agencies.csv:1: unknown column(s) 'alias'"),
        ("name,aliases\nPolice,\n,Cops\n", "agencies.csv:3: name: empty"),
        ("name,aliases\nPolice,\n---,\n", "agencies.csv:3: name: '---' has no letters or digits"),
        ("name\n" + "P" * 301 + "\n", "agencies.csv:2: name: 'PPPP"),
        (
            "name,aliases\nNorthshire Police,NP\nNational Probation,np\n",
            "agencies.csv:3: aliases: 'np' is already on line 2 (Northshire Police)",
        ),
        (
            "name,aliases\nNorthshire Police,\nnorthshire police service,\n",
            "agencies.csv:3: name: 'northshire police service' is already on line 2",
        ),
        (
            "name,parent\nOST,Adult Social Care\n",
            "agencies.csv:2: parent: 'Adult Social Care' is neither in this file nor a known",
        ),
        ("name,parent\nOST,Ost.\n", "agencies.csv:2: parent: 'Ost.' is the agency itself"),
        (
            "name,parent\nTeam A,Team B\nTeam B,Team C\nTeam C,Team A\n",
            "agencies.csv:2: parent: 'Team B' leads back to Team A",
        ),
        ("name,aliases\n", "agencies.csv: no agencies found under the header"),
    ],
)
def test_a_bad_directory_row_names_file_line_and_field_and_writes_nothing(
    cli: CliFn, store: db.Store, tmp_path: Path, text: str, message: str
) -> None:
    before = _counts(store)
    line = _error(cli("agencies", "import", str(_write(tmp_path, text))))
    assert message in line
    assert _counts(store) == before


def test_every_bad_row_is_counted_and_none_is_written(
    cli: CliFn, store: db.Store, tmp_path: Path
) -> None:
    text = "name,aliases,parent\nGood Agency,,\n,x,\nOther,***,\n"
    line = _error(cli("agencies", "import", str(_write(tmp_path, text))))
    assert "agencies.csv:3: name: empty (and 1 more problem(s)); nothing from this file" in line
    assert _counts(store) == (0, 0, 0)


def test_a_row_whose_spellings_are_two_stored_agencies_is_refused(
    cli: CliFn, store: db.Store, tmp_path: Path
) -> None:
    plan = "Recommendation,Action,Lead Agency\n1,Train,Northshire Police\n2,Audit,NP Force\n"
    _ok(cli("import", str(_write(tmp_path, plan, "plan.csv")), "--review", "R1"))
    before = _counts(store)
    refused = _error(
        cli(
            "agencies",
            "import",
            str(_write(tmp_path, "name,aliases\nNorthshire Police,NP Force\n")),
        )
    )
    assert "agencies.csv:2: aliases: 'Northshire Police' is Northshire Police but 'NP Force'" in (
        refused
    )
    assert "merge them first (`dhr-workflow agencies merge" in refused
    assert _counts(store) == before
    twice = (
        "name,aliases\nNorthshire Police,\nPolice of Northshire,NP Force\nNP Force Two,np force\n"
    )
    refused = _error(cli("agencies", "import", str(_write(tmp_path, twice))))
    assert "agencies.csv:4: aliases: 'np force' is already on line 3" in refused


def test_a_parent_already_in_the_store_may_not_lead_back(
    cli: CliFn, store: db.Store, tmp_path: Path
) -> None:
    _ok(cli("agencies", "import", str(_write(tmp_path, "name,parent\nTeam A,\nTeam B,Team A\n"))))
    before = _counts(store)
    refused = _error(
        cli("agencies", "import", str(_write(tmp_path, "name,parent\nTeam A,Team B\n", "b.csv")))
    )
    assert "b.csv:2: parent: 'Team B' leads back to Team A" in refused
    assert _counts(store) == before


# --- resolving names -------------------------------------------------------------------------

# (written in a plan, the directory's name it must match, or None: it must match nothing)
SIMILAR = [
    ("Northshire Constabulary", "Northshire Constabulary Police", True),
    ("Northshre Police", "Northshire Police", True),
    ("Northshire Constabluary", "Northshire Constabulary", True),
    ("Westminister City Council", "Westminster City Council", True),
    ("Biborough Adult Social Care", "Bi-Borough Adult Social Care", True),
    ("Adult Social Care Bi Borough", "Bi-Borough Adult Social Care", True),
    ("Northshire County Council", "Southshire County Council", False),
    ("Westshire Police", "Eastshire Police", False),
    ("Children's Services", "Adult Services", False),
    ("Children's Social Care", "Adult Social Care", False),
    ("Police", "Northshire Police", False),
    ("Hull City Council", "Hall City Council", False),
    ("Northshire Police", "Northshire Fire and Rescue", False),
    ("Northshire Police", "Northshire Police and Crime Commissioner", False),
    ("Northshire ICB", "Southshire ICB", False),
]


@pytest.mark.parametrize(("written", "known", "same"), SIMILAR)
def test_similarity_tells_slips_from_other_agencies(written: str, known: str, same: bool) -> None:
    score = similarity(alias_key(written), alias_key(known))
    assert (score >= agencies.FUZZY_CUTOFF) is same, score


RESOLVE = [
    ("Northshire Police", "exact", "Northshire Police"),
    ("NORTHSHIRE POLICE SERVICE", "exact", "Northshire Police"),
    ("Bi Borough Adult Social Care", "exact", "Bi-Borough Adult Social Care"),
    ("NP", "alias", "Northshire Police"),
    ("Bi Borough ASC", "alias", "Bi-Borough Adult Social Care"),
    ("OST (Westminster)", "alias", "Operational Safeguarding Team"),
    ("Northshre Police", "fuzzy", "Northshire Police"),
    ("Northshire Constabulary", "fuzzy", "Northshire Police"),
    ("Westminister City Council", "fuzzy", "Westminster City Council"),
    ("Northshire County Council", "unknown", None),
    ("Adult Services", "unknown", None),
    ("Gotham Health", "unknown", None),
]


@pytest.mark.parametrize(("written", "kind", "agency"), RESOLVE)
def test_names_resolve_exact_alias_fuzzy_or_not_at_all(
    store: db.Store, tmp_path: Path, written: str, kind: str, agency: str | None
) -> None:
    rows = agency_directory.read_csv(_write(tmp_path, DIRECTORY))
    with store.transaction() as s:
        agency_directory.import_rows(s, rows, now=NOW, actor=ACTOR, source="agencies.csv")
    with store.reading() as s:
        match = agencies.Resolver(s).match(written)
    assert (match.kind, match.agency) == (kind, agency)
    if kind == "fuzzy":
        assert match.score is not None and match.score >= agencies.FUZZY_CUTOFF
        assert match.describe() == f"fuzzy: {written!r} → {agency} ({match.score})"


def test_without_a_directory_an_unknown_name_is_new(store: db.Store) -> None:
    with store.transaction() as s:
        agencies.find_or_create(s, "Northshire Police", now=NOW, actor=ACTOR)
    with store.reading() as s:
        resolver = agencies.Resolver(s)
        assert resolver.match("Northshre Police").kind == "new"  # no guessing without one
        assert resolver.match("northshire police").kind == "exact"


def test_two_equally_close_agencies_are_no_match(store: db.Store, tmp_path: Path) -> None:
    directory = "name\nNorthshire Polices\nNorthshire Policed\n"
    rows = agency_directory.read_csv(_write(tmp_path, directory))
    with store.transaction() as s:
        agency_directory.import_rows(s, rows, now=NOW, actor=ACTOR, source="agencies.csv")
    with store.reading() as s:
        match = agencies.Resolver(s).match("Northshire Police")
    assert match.kind == "unknown"
    assert set(match.nearest) == {"Northshire Polices", "Northshire Policed"}


# --- importing plans through the directory ---------------------------------------------------


def test_with_a_directory_unknown_names_are_flagged_not_created(
    cli: CliFn, store: db.Store, tmp_path: Path
) -> None:
    _ok(cli("agencies", "import", str(_write(tmp_path, DIRECTORY))))
    agencies_before = _counts(store)[0]
    report = json.loads(
        _ok(cli("import", str(_write(tmp_path, PLAN, "plan.csv")), "--review", "R1", "--json"))
        .stdout
    )  # fmt: skip
    assert _counts(store)[0] == agencies_before  # nothing created
    rows = _actions(cli, "R1")
    assert rows["1"]["lead_agency"] == "Northshire Police"  # a slip, matched
    assert rows["2"]["lead_agency"] == "Bi-Borough Adult Social Care"  # an alias
    assert rows["4"]["lead_agency"] == "Operational Safeguarding Team"
    unknown = rows["3"]
    assert unknown["lead_agency"] is None and unknown["needs_review"] is True
    assert unknown["review_reasons"] == [
        "agency: 'Northshire County Council' is not in the agency directory (nearest: "
        "Southshire County Council); choose the agency on the action's page or with "
        "`actions update ID --agency`, or add the name to the directory (`agencies alias`)"
    ]
    assert not rows["1"]["needs_review"]  # a fuzzy match is reported, not flagged
    with store.reading() as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.kind == "plan.import")).one()
    data = json.loads(event.data)
    assert data["agencies_fuzzy"] == ["fuzzy: 'Northshre Police' → Northshire Police (97)"]
    assert data["agencies_unknown"] == [
        "unknown: 'Northshire County Council' (nearest: Southshire County Council)"
    ]
    assert report["understood"]["agencies"]["fuzzy"] == 1
    # The slip is not remembered as a spelling: the next import shows it again.
    assert "northshre police" not in _listed(cli)["Northshire Police"]["aliases"]
    again = json.loads(
        _ok(cli("import", str(tmp_path / "plan.csv"), "--review", "R1", "--json")).stdout
    )
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 4)
    assert again["understood"]["agencies"]["fuzzy"] == 1


def test_a_person_who_chooses_the_agency_keeps_it_on_reimport(cli: CliFn, tmp_path: Path) -> None:
    _ok(cli("agencies", "import", str(_write(tmp_path, DIRECTORY))))
    plan = _write(tmp_path, PLAN, "plan.csv")
    _ok(cli("import", str(plan), "--review", "R1"))
    action_id = str(_actions(cli, "R1")["3"]["id"])
    _ok(cli("actions", "update", action_id, "--agency", "Southshire County Council"))
    fixed = _actions(cli, "R1")["3"]
    assert (fixed["lead_agency"], fixed["needs_review"]) == ("Southshire County Council", False)
    again = json.loads(_ok(cli("import", str(plan), "--review", "R1", "--json")).stdout)
    assert again["updated"] == 0
    kept = _actions(cli, "R1")["3"]
    assert (kept["lead_agency"], kept["review_reasons"]) == ("Southshire County Council", [])


def test_an_alias_added_later_resolves_the_next_import(cli: CliFn, tmp_path: Path) -> None:
    _ok(cli("agencies", "import", str(_write(tmp_path, DIRECTORY))))
    plan = _write(tmp_path, PLAN, "plan.csv")
    _ok(cli("import", str(plan), "--review", "R1"))
    _ok(cli("agencies", "alias", "Southshire County Council", "Northshire County Council"))
    again = json.loads(_ok(cli("import", str(plan), "--review", "R1", "--json")).stdout)
    assert again["updated"] == 1
    row = _actions(cli, "R1")["3"]
    assert (row["lead_agency"], row["review_reasons"]) == ("Southshire County Council", [])


def test_without_a_directory_plans_create_agencies_as_before(
    cli: CliFn, store: db.Store, tmp_path: Path
) -> None:
    report = json.loads(
        _ok(cli("import", str(_write(tmp_path, PLAN, "plan.csv")), "--review", "R1", "--json"))
        .stdout
    )  # fmt: skip
    assert set(_listed(cli)) == {
        "Northshre Police", "BBASC", "Northshire County Council", "Operational Safeguarding Team",
    }  # fmt: skip
    assert not any(r["needs_review"] for r in _actions(cli, "R1").values() if r["ref"] != "4")
    assert report["understood"]["agencies"] == {
        "new": 4, "matched": 0, "fuzzy": 0, "unknown": 0,
        "names": {"new": [
            {"written": n, "match": "new", "agency": None, "score": None, "nearest": []}
            for n in ("Northshre Police", "BBASC", "Northshire County Council",
                      "Operational Safeguarding Team")
        ]},
    }  # fmt: skip
    with store.reading() as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.kind == "plan.import")).one()
    assert not {"agencies_fuzzy", "agencies_unknown"} & set(json.loads(event.data))


# --- rename, merge and alias with directory agencies -----------------------------------------


def test_merge_keeps_the_directory_listing_and_parents(
    cli: CliFn, store: db.Store, tmp_path: Path
) -> None:
    _ok(cli("import", str(_write(tmp_path, PLAN, "plan.csv")), "--review", "R1"))
    _ok(cli("agencies", "import", str(_write(tmp_path, DIRECTORY))))
    # A plan-made agency merged into a listed one: its actions follow, the listing stays.
    _ok(cli("agencies", "merge", "Northshre Police", "Northshire Police"))
    listed = _listed(cli)
    assert (
        listed["Northshire Police"]["listed"] and listed["Northshire Police"]["open_actions"] == 1
    )
    # A listed parent merged into another: its parts now belong to the one that remains.
    _ok(cli("agencies", "merge", "Bi-Borough Adult Social Care", "Westminster City Council"))
    listed = _listed(cli)
    assert listed["Operational Safeguarding Team"]["parent"] == "Westminster City Council"
    # A part merged into its own parent leaves no agency pointing at a deleted one.
    _ok(cli("agencies", "merge", "Westminster City Council", "OST"))
    ost = _listed(cli)["Operational Safeguarding Team"]
    assert (ost["parent"], ost["listed"]) == (None, True)
    _ok(cli("agencies", "rename", "OST", "Safeguarding Operations Team"))
    assert _listed(cli)["Safeguarding Operations Team"]["listed"] is True
    assert _ok(cli("audit", "verify")).stdout.startswith("audit log intact")
