"""Keeping contacts and agencies right: add, correct, deactivate, rename, merge, add a spelling,
and the gaps the engine would find; services and CLI on both backends."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dhr_workflow import actions, agencies, audit, contacts, db, feeds, reviews
from dhr_workflow.calendar import action_uid
from dhr_workflow.contacts import ContactChange, ContactGap, ContactInput
from dhr_workflow.errors import InvalidInput, NotFound
from dhr_workflow.models import Action, Agency, AgencyAlias, AuditEvent, Contact
from tests.conftest import ACTOR, NOW, CliFn

LATER = NOW + dt.timedelta(days=1)
BOARD = "Bi Borough VAWG Strategic Board"  # leads two open actions in sample_review
PROBATION = "HM Prison & Probation Service"  # leads one completed action
BOARD_KEY = "bi borough violence against women and girls strategic board"  # VAWG spelled out
PEOPLE = f"""agency,role,name,email,review
{BOARD},lead,Sam Lead,sam@westminster.example.org,
{BOARD},manager,Mo Manager,mo@westminster.example.org,
,coordinator,Cat Coordinator,cat@csp.example.org,
"""


def _error_line(result: Any) -> str:
    """A user mistake: exit 2, and stderr is exactly one line starting "error: "."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def _ok(result: Any) -> Any:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


def _rows(store: db.Store) -> tuple[int, ...]:
    """Row counts that a refused change must leave as they were."""
    with store.reading() as s:
        return tuple(
            s.scalar(select(func.count()).select_from(t)) or 0
            for t in (Contact, Agency, AgencyAlias, AuditEvent)
        )


def _last_event(s: Session) -> AuditEvent:
    return s.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1)).one()


def _data(ev: AuditEvent) -> Any:
    return json.loads(ev.data)


def _add(s: Session, name: str, email: str, role: str, **where: str) -> Contact:
    return contacts.add(s, ContactInput(name, email, role, **where), now=NOW, actor=ACTOR)


@pytest.fixture
def board(store: db.Store, sample_review: Callable[..., Any]) -> dict[str, int]:
    """sample_review's WCA plus the board's lead and manager; returns their ids."""
    sample_review("WCA")
    with store.transaction() as s:
        lead = _add(s, "Sam Lead", "sam@westminster.example.org", "lead", agency=BOARD)
        manager = _add(s, "Mo Manager", "mo@westminster.example.org", "manager", agency=BOARD)
        return {"lead": lead.id, "manager": manager.id}


# --- contacts: add ---------------------------------------------------------------------------


def test_add_creates_an_audited_contact(store: db.Store, sample_review: Any) -> None:
    sample_review("WCA")
    with store.transaction() as s:
        # Any spelling of the agency; the address is normalised like an imported one.
        contact = _add(
            s,
            "  Sam   Lead ",
            "sam@Westminster.Example.ORG",
            "Lead",
            agency="bi-borough vawg strategic board",
        )
        liaison = _add(s, "Fay", "fay@advocacy.example.org", "family_liaison", review="WCA")
        assert contacts.describe(contact) == {
            "id": contact.id,
            "name": "Sam Lead",
            "email": "sam@westminster.example.org",
            "role": "lead",
            "agency": BOARD,
            "review": None,
            "active": True,
        }
        assert contacts.describe(liaison)["review"] == "WCA"
        events = s.scalars(select(AuditEvent).where(AuditEvent.kind == "contact.create")).all()
        assert [e.subject for e in events] == [f"contact:{contact.id}", f"contact:{liaison.id}"]
        assert _data(events[0])["after"]["agency"] == BOARD
        assert contacts.get(s, contact.id) is contact


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            ("Ann", "ann@x.example.org", "lead", "Bi Boro VAWG Strategic Bord", None),
            f"agency: 'Bi Boro VAWG Strategic Bord' is not a known agency (nearest: {BOARD})",
        ),
        (
            ("Ann", "ann@x.example.org", "lead", "Fire Brigade", None),
            "agency: 'Fire Brigade' is not a known agency (see `dhr-workflow agencies list`)",
        ),
        (
            ("Ann", "ann@x.example.org", "family_liaison", None, "NOPE"),
            "review: no review with ref 'NOPE'",
        ),
        (("Ann", "not-an-email", "chair", None, None), "email: 'not-an-email' is not valid"),
        (("  ", "ann@x.example.org", "chair", None, None), "name: empty"),
        (("Ann", "ann@x.example.org", "boss", None, None), "role: 'boss' is not one of lead"),
        (
            ("Ann", "ann@x.example.org", "chair", BOARD, None),
            "agency: a chair is not an agency's contact; leave agency empty",
        ),
        (("Ann", "ann@x.example.org", "manager", None, None), "agency: a manager contact needs"),
        (
            ("Sam", "sam@westminster.example.org", "lead", "bi-borough vawg strategic board", None),
            f"sam@westminster.example.org is already a lead contact for {BOARD} (contact 1)",
        ),
    ],
)
def test_add_refusals_write_nothing(
    store: db.Store, board: dict[str, int], fields: tuple[Any, ...], message: str
) -> None:
    before = _rows(store)
    with pytest.raises(InvalidInput) as raised, store.transaction() as s:
        contacts.add(s, ContactInput(*fields), now=LATER, actor=ACTOR)
    assert message in str(raised.value)
    assert _rows(store) == before


def test_add_refuses_the_twin_of_a_deactivated_contact(
    store: db.Store, board: dict[str, int]
) -> None:
    with store.transaction() as s:
        contacts.deactivate(s, board["lead"], now=LATER, actor=ACTOR)
    refused = pytest.raises(
        InvalidInput, match="reactivate it: `dhr-workflow contacts reactivate 1`"
    )
    with refused, store.transaction() as s:
        _add(s, "Sam", "sam@westminster.example.org", "lead", agency=BOARD)


# --- contacts: update ------------------------------------------------------------------------


def test_update_records_only_what_changed(store: db.Store, board: dict[str, int]) -> None:
    change = ContactChange(name="Samantha Lead", email="samantha@westminster.example.org")
    with store.transaction() as s:
        contact = contacts.update(s, board["lead"], change, now=LATER, actor=ACTOR)
        assert (contact.name, contact.email, contact.updated_at) == (
            "Samantha Lead",
            "samantha@westminster.example.org",
            LATER,
        )
        ev = _last_event(s)
        assert (ev.kind, ev.subject) == ("contact.update", f"contact:{board['lead']}")
        assert _data(ev) == {
            "before": {"name": "Sam Lead", "email": "sam@westminster.example.org"},
            "after": {"name": "Samantha Lead", "email": "samantha@westminster.example.org"},
        }


def test_update_that_changes_nothing_writes_nothing(store: db.Store, board: dict[str, int]) -> None:
    before = _rows(store)
    same = ContactChange(name="Sam  Lead", agency="bi-borough VAWG strategic board", role="LEAD")
    with store.transaction() as s:
        contact = contacts.update(s, board["lead"], same, now=LATER, actor=ACTOR)
        assert contact.updated_at is None
    assert _rows(store) == before


def test_update_moves_a_contact_between_scopes(store: db.Store, board: dict[str, int]) -> None:
    with store.transaction() as s:
        change = ContactChange(role="coordinator", agency="", review="WCA")
        contact = contacts.update(s, board["manager"], change, now=LATER, actor=ACTOR)
        assert (contact.role, contact.agency, contact.review.ref if contact.review else None) == (
            "coordinator",
            None,
            "WCA",
        )
        assert _data(_last_event(s)) == {
            "before": {"role": "manager", "agency": BOARD, "review": None},
            "after": {"role": "coordinator", "agency": None, "review": "WCA"},
        }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ContactChange(role="coordinator"),  # still the board's: must leave agency empty
            "agency: a coordinator is not an agency's contact",
        ),
        (
            ContactChange(email="mo@westminster.example.org", role="manager"),
            f"mo@westminster.example.org is already a manager contact for {BOARD} (contact 2)",
        ),
        (
            ContactChange(agency="Metropolitan Polce"),
            "agency: 'Metropolitan Polce' is not a known agency (nearest: Metropolitan Police)",
        ),
        (ContactChange(review="WCA"), "review: a lead contact belongs to an agency"),
        (ContactChange(email="sam@"), "email: 'sam@' is not valid"),
        (ContactChange(name="N" * 201), "name: longer than 200 characters"),
    ],
)
def test_update_refusals_write_nothing(
    store: db.Store, board: dict[str, int], change: ContactChange, message: str
) -> None:
    with store.transaction() as s:
        agencies.find_or_create(s, "Metropolitan Police", now=NOW, actor=ACTOR)
    before = _rows(store)
    with pytest.raises(InvalidInput) as raised, store.transaction() as s:
        contacts.update(s, board["lead"], change, now=LATER, actor=ACTOR)
    assert message in str(raised.value)
    assert _rows(store) == before
    with store.reading() as s:
        assert contacts.describe(contacts.get(s, board["lead"]))["email"] == (
            "sam@westminster.example.org"
        )


@pytest.mark.parametrize("contact_id", [999, 0, 2**40])
def test_unknown_contact_is_not_found(store: db.Store, contact_id: int) -> None:
    with pytest.raises(NotFound, match=f"no contact with id {contact_id}"), store.reading() as s:
        contacts.get(s, contact_id)


# --- contacts: deactivate, reactivate, list ---------------------------------------------------


def test_deactivate_and_reactivate(store: db.Store, board: dict[str, int]) -> None:
    lead = board["lead"]
    with store.transaction() as s:
        contact = contacts.deactivate(s, lead, now=LATER, actor=ACTOR)
        assert (contact.active, contact.updated_at) == (False, LATER)
        ev = _last_event(s)
        assert (ev.kind, _data(ev)) == (
            "contact.deactivate",
            {"before": {"active": True}, "after": {"active": False}},
        )
        assert [c.id for c in contacts.list_all(s, include_inactive=False)] == [board["manager"]]
        assert len(contacts.list_all(s)) == 2
    before = _rows(store)
    refused = pytest.raises(InvalidInput, match="contact 1 \\(Sam Lead\\) is already deactivated")
    with refused, store.transaction() as s:
        contacts.deactivate(s, lead, now=LATER, actor=ACTOR)
    assert _rows(store) == before
    with store.transaction() as s:
        assert contacts.reactivate(s, lead, now=LATER, actor=ACTOR).active
        assert _last_event(s).kind == "contact.reactivate"
    with pytest.raises(InvalidInput, match="is already active"), store.transaction() as s:
        contacts.reactivate(s, lead, now=LATER, actor=ACTOR)


# --- contacts: gaps --------------------------------------------------------------------------


def test_gaps_follow_the_engines_resolution(
    store: db.Store, sample_review: Callable[..., Any]
) -> None:
    sample_review("WCA")

    def gaps() -> list[tuple[str, str, int]]:
        with store.reading() as s:
            return [(g.role, g.where, g.open_actions) for g in contacts.gaps(s)]

    # The probation service leads only a completed action: no gap for it.
    assert gaps() == [
        ("agency.lead", BOARD, 2),
        ("agency.manager", BOARD, 2),
        ("coordinator", "WCA", 2),
        ("partnership.chair", "WCA", 2),
    ]
    with store.transaction() as s:
        lead = _add(s, "Sam", "sam@westminster.example.org", "lead", agency=BOARD)
        _add(s, "Cat", "cat@csp.example.org", "coordinator")  # partnership-wide
        _add(s, "Chris", "chris@csp.example.org", "chair", review="WCA")  # this review only
    assert gaps() == [("agency.manager", BOARD, 2)]
    sample_review("OTHER")
    assert gaps() == [("agency.manager", BOARD, 4), ("partnership.chair", "OTHER", 2)]
    with store.transaction() as s:
        contacts.deactivate(s, lead.id, now=LATER, actor=ACTOR)
        reviews.update(s, "OTHER", now=LATER, actor=ACTOR, status="closed")
    assert gaps() == [("agency.lead", BOARD, 4), ("agency.manager", BOARD, 4)]
    with store.reading() as s:
        assert all(isinstance(g, ContactGap) for g in contacts.gaps(s))


# --- contacts import -------------------------------------------------------------------------


def _write(tmp_path: Path, text: str, name: str = "contacts.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_misspelt_agency_fails_the_file_with_the_nearest_names(
    cli: CliFn, store: db.Store, tmp_path: Path, sample_review: Any
) -> None:
    sample_review("WCA")
    with store.transaction() as s:
        agencies.find_or_create(s, "Metropolitan Police Service", now=NOW, actor=ACTOR)
    before = _rows(store)
    text = PEOPLE + "Metropolitan Polce,lead,Pat Police,pat@met.example.org,\n"
    line = _error_line(cli("contacts", "import", str(_write(tmp_path, text))))
    assert line == (
        "error: contacts.csv:5: agency: 'Metropolitan Polce' is not a known agency "
        "(nearest: Metropolitan Police Service); correct it, or pass --new-agencies to create it"
    )
    assert _rows(store) == before
    result = _ok(cli("contacts", "import", str(_write(tmp_path, text)), "--new-agencies"))
    assert "4 contact(s) added" in result.stdout
    names = [a["name"] for a in json.loads(cli("agencies", "list", "--json").stdout)]
    assert "Metropolitan Polce" in names


def test_first_contacts_file_creates_its_agencies(cli: CliFn, tmp_path: Path) -> None:
    text = "agency,role,name,email\nPolice,lead,A,a@p.example.org\nFire,lead,B,b@f.example.org\n"
    _ok(cli("contacts", "import", str(_write(tmp_path, text))))
    assert len(json.loads(cli("agencies", "list", "--json").stdout)) == 2


def test_import_warns_of_addresses_that_need_smtputf8(cli: CliFn, tmp_path: Path) -> None:
    text = (
        "agency,role,name,email\nPolice,lead,A,a@p.example.org\nFire,lead,Zoë,zoë@f.example.org\n"
    )
    path = _write(tmp_path, text)
    result = _ok(cli("contacts", "import", str(path)))
    assert result.stdout.strip().splitlines() == [
        f"{path}: 2 contact(s) added, 0 renamed, 0 already present",
        f"warning: {path}:3: zoë@f.example.org is not plain ASCII; it needs a mail server "
        "that offers SMTPUTF8 (without it, messages to it fail and the coordinator is told)",
    ]


def test_unknown_agencies_beyond_the_first_are_counted(
    cli: CliFn, tmp_path: Path, sample_review: Any
) -> None:
    sample_review("WCA")
    text = "agency,role,name,email\nPolice,lead,A,a@p.example.org\nFire,lead,B,b@f.example.org\n"
    line = _error_line(cli("contacts", "import", str(_write(tmp_path, text))))
    assert "contacts.csv:2: agency: 'Police' is not a known agency; correct it" in line
    assert line.endswith("(1 more row(s) name unknown agencies)")


def test_reimport_leaves_a_deactivated_contact_deactivated(
    cli: CliFn, store: db.Store, tmp_path: Path
) -> None:
    path = _write(tmp_path, PEOPLE)
    _ok(cli("contacts", "import", str(path)))
    [sam] = [c for c in json.loads(cli("contacts", "list", "--json").stdout) if c["role"] == "lead"]
    _ok(cli("contacts", "deactivate", str(sam["id"])))
    again = _ok(cli("contacts", "import", str(path)))
    assert again.stdout.strip().endswith(
        "0 contact(s) added, 0 renamed, 2 already present, 1 inactive, not reactivated"
    )
    with store.reading() as s:
        assert s.scalar(select(func.count()).select_from(Contact)) == 3
        assert not contacts.get(s, sam["id"]).active
        ev = _last_event(s)
    assert (ev.kind, _data(ev)) == (
        "contacts.import",
        {"created": 0, "updated": 0, "unchanged": 2, "inactive": 1},
    )


# --- agencies: get, resolve, rename, alias ---------------------------------------------------


def test_resolve_by_id_or_spelling(store: db.Store, sample_review: Any) -> None:
    sample_review("WCA")
    with store.reading() as s:
        board = agencies.find(s, BOARD)
        assert board is not None
        assert agencies.resolve(s, str(board.id)) is board
        assert agencies.resolve(s, " bi-borough vawg strategic board ") is board
        assert agencies.get(s, board.id) is board
        with pytest.raises(
            NotFound,
            match=f"no agency called 'Bi Borugh VAWG Strategic Bord' \\(nearest: {BOARD}\\)",
        ):
            agencies.resolve(s, "Bi Borugh VAWG Strategic Bord")
        with pytest.raises(NotFound, match="no agency with id 99999999999"):
            agencies.resolve(s, "99999999999")


def test_rename_keeps_the_old_name_as_an_alias(store: db.Store, sample_review: Any) -> None:
    ids = sample_review("WCA")
    with store.transaction() as s:
        board = agencies.resolve(s, BOARD)
        agencies.rename(s, board, "  Westminster  VAWG Board ", now=LATER, actor=ACTOR)
        assert board.name == "Westminster VAWG Board"
        assert agencies.find(s, BOARD) is board  # plans and feeds naming it still find it
        ev = _last_event(s)
        assert (ev.kind, ev.subject, _data(ev)) == (
            "agency.rename",
            f"agency:{board.id}",
            {"before": {"name": BOARD}, "after": {"name": "Westminster VAWG Board"}},
        )
        # Feeds show the lead agency's name: their version stamp must move.
        assert s.get(Action, ids["training"]).updated_at == LATER  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("new_name", "message"),
    [
        (
            "HM Prison and Probation",
            f"'HM Prison and Probation' is already an alias of {PROBATION}; merge them instead",
        ),
        (BOARD, f"is already called '{BOARD}'"),
        ("---", "agency name '---' has no letters or digits"),
        ("N" * 301, "is longer than 300 characters"),
    ],
)
def test_rename_refusals_write_nothing(
    store: db.Store, sample_review: Any, new_name: str, message: str
) -> None:
    sample_review("WCA")
    before = _rows(store)
    with pytest.raises(InvalidInput) as raised, store.transaction() as s:
        agencies.rename(s, agencies.resolve(s, BOARD), new_name, now=LATER, actor=ACTOR)
    assert message in str(raised.value)
    assert _rows(store) == before


def test_add_alias(store: db.Store, sample_review: Any) -> None:
    sample_review("WCA")
    with store.transaction() as s:
        board = agencies.resolve(s, BOARD)
        key = agencies.add_alias(s, board, " Westminster  Board", now=LATER, actor=ACTOR)
        assert key == "westminster board"
        assert agencies.find(s, "westminster board.") is board
        ev = _last_event(s)
        assert (ev.kind, _data(ev)) == (
            "agency.alias",
            {"alias": "Westminster Board", "key": "westminster board"},
        )
    before = _rows(store)
    for alias, message in [
        (
            "The Westminster Board",
            f"'The Westminster Board' is already an alias of {BOARD} (as 'westminster board')",
        ),
        ("HMPPS", f"'HMPPS' is already an alias of {PROBATION}; merge them instead"),
        ("--", "alias '--' has no letters or digits"),
    ]:
        with pytest.raises(InvalidInput) as raised, store.transaction() as s:
            agencies.add_alias(s, agencies.resolve(s, BOARD), alias, now=LATER, actor=ACTOR)
        assert message in str(raised.value)
    assert _rows(store) == before


# --- agencies: merge -------------------------------------------------------------------------


def test_merge_moves_actions_contacts_and_aliases(store: db.Store, sample_review: Any) -> None:
    sample_review("WCA")
    with store.transaction() as s:
        north = actions.create(
            s, "WCA", now=NOW, actor=ACTOR, recommendation="9", lead_agency="Probation North",
            text="Audit supervision", due_date=dt.date(2024, 6, 30), due_basis="fixed",
        )  # fmt: skip
        agencies.add_alias(s, agencies.resolve(s, "Probation North"), "PN", now=NOW, actor=ACTOR)
        kept = _add(s, "Pat", "pat@probation.example.org", "lead", agency=PROBATION)
        twin = _add(s, "Pat", "pat@probation.example.org", "lead", agency="Probation North")
        moved = _add(s, "Max", "max@probation.example.org", "manager", agency="Probation North")
        feed = feeds.create(s, "agency", "probation north", None, now=NOW, actor=ACTOR).token
        source_id = agencies.resolve(s, "Probation North").id
    with store.transaction() as s:
        into = agencies.resolve(s, PROBATION)
        result = agencies.merge(
            s, agencies.resolve(s, "Probation North"), into, now=LATER, actor=ACTOR
        )
        assert result == agencies.MergeResult(actions=1, contacts=2, aliases=2, deactivated=1)
        assert s.get(Agency, source_id) is None
        assert agencies.find(s, "Probation North") is into
        assert agencies.find(s, "PN") is into
        assert s.get(Action, north.id).lead_agency is into  # type: ignore[union-attr]
        assert {c.id: (c.agency, c.active) for c in contacts.list_all(s)} == {
            kept.id: (into, True),
            twin.id: (into, False),  # into already had it: moved, but deactivated
            moved.id: (into, True),
        }
        merge, deactivate = s.scalars(
            select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(2)
        ).all()
        assert (merge.kind, merge.subject) == ("agency.merge", f"agency:{into.id}")
        assert _data(merge) == {
            "source": {"id": source_id, "name": "Probation North"},
            "into": {"id": into.id, "name": PROBATION},
            "actions": 1,
            "contacts": 2,
            "deactivated": 1,
            "aliases": 2,
        }
        assert (deactivate.kind, deactivate.subject) == ("contact.deactivate", f"contact:{twin.id}")
        # A feed made for the old name still selects its actions, through the alias.
        token = s.get(type(feed), feed.id)
        assert token is not None and token.scope_value == "Probation North"
        assert action_uid(north.id) in feeds.render(s, token).decode()
    refused = pytest.raises(InvalidInput, match="is already a lead contact for HM Prison")
    with refused, store.transaction() as s:
        contacts.reactivate(s, twin.id, now=LATER, actor=ACTOR)
    with store.reading() as s:
        assert audit.verify(s).ok


def test_merge_into_itself_is_refused(store: db.Store, sample_review: Any) -> None:
    sample_review("WCA")
    before = _rows(store)
    refused = pytest.raises(InvalidInput, match=f"cannot merge {BOARD} into itself")
    with refused, store.transaction() as s:
        board = agencies.resolve(s, BOARD)
        agencies.merge(
            s, board, agencies.resolve(s, "Bi-Borough VAWG Strategic Board"), now=LATER, actor=ACTOR
        )
    assert _rows(store) == before


def test_list_with_counts(store: db.Store, board: dict[str, int]) -> None:
    with store.transaction() as s:
        contacts.deactivate(s, board["manager"], now=LATER, actor=ACTOR)
        listed = {a.name: a for a in agencies.list_with_counts(s)}
    assert listed[BOARD].aliases == (BOARD_KEY,)
    assert (listed[BOARD].open_actions, listed[BOARD].contacts) == (2, 1)
    assert listed[PROBATION].aliases == ("hm prison and probation",)
    assert (listed[PROBATION].open_actions, listed[PROBATION].contacts) == (0, 0)


# --- the CLI ---------------------------------------------------------------------------------


def test_cli_contacts_add_update_deactivate_list(cli: CliFn, sample_review: Any) -> None:
    sample_review("WCA")
    added = _ok(
        cli("contacts", "add", "--name", "Sam Lead", "--email", "sam@westminster.example.org",
            "--role", "lead", "--agency", "bi-borough vawg strategic board")
    )  # fmt: skip
    assert added.stdout.strip() == (
        f"contact 1 added: Sam Lead <sam@westminster.example.org>, lead of {BOARD}"
    )
    _ok(
        cli(
            "contacts",
            "add",
            "--name",
            "Cat",
            "--email",
            "cat@csp.example.org",
            "--role",
            "coordinator",
        )
    )
    updated = _ok(cli("contacts", "update", "1", "--name", "Samantha Lead"))
    assert updated.stdout.startswith("contact 1: name changed: Samantha Lead <")
    assert _ok(cli("contacts", "update", "1", "--name", "Samantha Lead")).stdout.strip() == (
        "contact 1: nothing changed"
    )
    assert "deactivated, receives nothing" in _ok(cli("contacts", "deactivate", "1")).stdout
    assert [r["id"] for r in json.loads(cli("contacts", "list", "--json").stdout)] == [2]
    every = json.loads(cli("contacts", "list", "--json", "--all").stdout)
    assert [(r["id"], r["active"]) for r in every] == [(2, True), (1, False)]
    table = cli("contacts", "list", "--all").stdout
    assert "id" in table and "active" in table and "Samantha Lead" in table
    assert "Samantha" not in cli("contacts", "list").stdout
    assert "reactivated" in _ok(cli("contacts", "reactivate", "1")).stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["contacts", "update", "1"], "nothing to change"),
        (["contacts", "update", "7", "--name", "X"], "no contact with id 7"),
        (["contacts", "deactivate", "7"], "no contact with id 7"),
        (["contacts", "reactivate", "1"], "contact 1 (Sam Lead) is already active"),
        (["contacts", "deactivate", "x"], "'x' is not a valid integer"),
        (
            ["contacts", "add", "--name", "A", "--email", "a@x.example.org", "--role", "boss"],
            "'boss' is not one of",
        ),
        (
            ["contacts", "add", "--name", "A", "--email", "a@x.example.org", "--role", "lead",
             "--agency", "Bi Borugh VAWG Board"],
            f"agency: 'Bi Borugh VAWG Board' is not a known agency (nearest: {BOARD})",
        ),
        (["contacts", "add", "--name", "A", "--role", "chair"], "Missing option '--email'"),
        (["agencies", "rename", "Nobody", "X"], "no agency called 'Nobody'"),
        (["agencies", "rename", "99999999999", "X"], "no agency with id 99999999999"),
        (
            ["agencies", "rename", BOARD, "HMPPS"],
            f"'HMPPS' is already an alias of {PROBATION}; merge them instead",
        ),
        (["agencies", "merge", "1", BOARD], f"cannot merge {BOARD} into itself"),
        (["agencies", "merge", "Nobody", "1"], "no agency called 'Nobody'"),
        (["agencies", "alias", "1", "Bi-Borough VAWG Strategic Board"], "is already an alias of"),
    ],
)  # fmt: skip
def test_cli_mistakes_are_one_line_and_write_nothing(
    cli: CliFn, store: db.Store, board: dict[str, int], args: list[str], message: str
) -> None:
    before = _rows(store)
    assert message in _error_line(cli(*args))
    assert _rows(store) == before


def test_cli_agencies_rename_alias_merge(
    cli: CliFn, store: db.Store, tmp_path: Path, sample_review: Any
) -> None:
    ids = sample_review("WCA")
    _ok(cli("contacts", "import", str(_write(tmp_path, PEOPLE))))
    listed = cli("agencies", "list").stdout
    assert "open actions" in listed and BOARD_KEY in listed
    rows = json.loads(cli("agencies", "list", "--json").stdout)
    assert rows[0] == {
        "id": 1,
        "name": BOARD,
        "aliases": [BOARD_KEY],
        "open_actions": 2,
        "contacts": 2,
        "parent": None,
        "listed": False,
    }
    renamed = _ok(cli("agencies", "rename", "1", "Westminster VAWG Board"))
    assert renamed.stdout.strip() == (
        f"agency 1: '{BOARD}' is now 'Westminster VAWG Board' (the old name still finds it)"
    )
    led = json.loads(cli("actions", "list", "--json", "--agency", BOARD).stdout)
    assert {r["id"] for r in led} == {ids["training"], ids["dip"]}
    _ok(cli("agencies", "alias", "westminster vawg board", "WVB"))
    merged = _ok(cli("agencies", "merge", PROBATION, "wvb"))
    assert merged.stdout.strip() == (
        f"merged {PROBATION} into Westminster VAWG Board: 1 action(s), 0 contact(s) "
        "(0 deactivated as duplicates), 1 spelling(s) moved"
    )
    [agency] = json.loads(cli("agencies", "list", "--json").stdout)
    assert agency["aliases"] == [
        BOARD_KEY,
        "hm prison and probation",
        "westminster violence against women and girls board",
        "wvb",
    ]
    kinds = [e["kind"] for e in json.loads(cli("audit", "list", "--json").stdout)]
    assert kinds[-3:] == ["agency.rename", "agency.alias", "agency.merge"]
    assert _ok(cli("audit", "verify")).stdout.startswith("audit log intact")


def test_cli_gaps(cli: CliFn, tmp_path: Path, sample_review: Any) -> None:
    sample_review("WCA")
    _ok(cli("contacts", "import", str(_write(tmp_path, PEOPLE))))
    assert json.loads(cli("contacts", "gaps", "--json").stdout) == [
        {"role": "partnership.chair", "where": "WCA", "open_actions": 2}
    ]
    assert "partnership.chair" in cli("contacts", "gaps").stdout
    _ok(cli("contacts", "add", "--name", "C", "--email", "c@csp.example.org", "--role", "chair"))
    assert cli("contacts", "gaps").stdout.startswith("no gaps")


def test_deactivated_contact_is_no_longer_addressed(
    cli: CliFn, tmp_path: Path, sample_review: Any
) -> None:
    """The engine end to end: the board's overdue action goes to its lead until the lead is
    deactivated; then the lead is a gap, and the audit chain still verifies."""
    sample_review("WCA")
    _ok(cli("contacts", "import", str(_write(tmp_path, PEOPLE))))

    def addressed() -> tuple[set[str], set[str]]:
        tick = json.loads(
            _ok(cli("tick", "--at", "2024-01-02T08:00", "--dry-run", "--json")).stdout
        )
        to = {a for m in tick["messages"] for a in m["to"] + m["cc"]}
        return to, {g["role"] for g in tick["gaps"]}

    to, gaps = addressed()
    assert "sam@westminster.example.org" in to and "owner" not in gaps
    [sam] = [c for c in json.loads(cli("contacts", "list", "--json").stdout) if c["role"] == "lead"]
    _ok(cli("contacts", "deactivate", str(sam["id"])))
    to, gaps = addressed()
    assert "sam@westminster.example.org" not in to
    assert "owner" in gaps
    assert _ok(cli("audit", "verify")).stdout.startswith("audit log intact")
