"""The agency directory: the partnership's agencies, their other spellings and the body each is
part of, imported from a CSV (`dhr-workflow agencies import agencies.csv`).

    name,aliases,parent
    Northshire Police,Northshire Constabulary; NP,
    Operational Safeguarding Team,OST,Bi-Borough Adult Social Care

All or nothing, like contacts: every bad row is found first, the first is named with its
file:line and field, and nothing is written. Re-importing the same file changes nothing.
A row adopts the agency its name or one of its aliases already finds (a plan may have brought
it in), renaming it to the directory's spelling; aliases are added, never taken away (plans
and feeds use them). Once any agency is listed, imports match names against the store and
flag unknown ones instead of creating them (see agencies.Resolver).

The parent is recorded and listed; escalation and reports do not use it yet.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dhr_workflow import agencies, audit, csvfile
from dhr_workflow.errors import InvalidInput
from dhr_workflow.importer.text import strip_controls
from dhr_workflow.models import Agency, AgencyAlias

REQUIRED_COLUMNS = ("name",)
COLUMNS = ("name", "aliases", "parent")
_ALIAS_SEPARATORS = re.compile(r"[;|]")


@dataclass(frozen=True)
class DirectoryRow:
    line: int
    name: str
    aliases: tuple[str, ...]
    parent: str | None


@dataclass(frozen=True)
class DirectoryResult:
    created: int
    updated: int
    unchanged: int


def read_csv(path: Path) -> list[DirectoryRow]:
    """Parse and check the whole file (its rows against each other; the store is checked by
    :func:`import_rows`); any problem raises before anything is written."""
    rows, errors = csvfile.read_rows(path, lambda header: _check_header(path, header), _row)
    errors += _clashes(path, rows)
    csvfile.refuse(errors)
    if not rows:
        raise InvalidInput(f"{path}: no agencies found under the header")
    return rows


def _check_header(path: Path, header: list[str]) -> None:
    unknown = [h for h in header if h and h not in COLUMNS]
    if "name" not in header or unknown:
        what = f"unknown column(s) {', '.join(map(repr, unknown))}" if unknown else "no name column"
        raise InvalidInput(
            f"{path}:1: {what} (the header is name, and optionally aliases and parent)"
        )


def _row(line: int, cells: dict[str, str]) -> DirectoryRow:
    name = _name("name", cells["name"])
    aliases = tuple(
        _name("aliases", part)
        for part in _ALIAS_SEPARATORS.split(cells.get("aliases", ""))
        if part.strip()
    )
    parent = _name("parent", cells["parent"]) if cells.get("parent", "").strip() else None
    if parent is not None and agencies.alias_key(parent) == agencies.alias_key(name):
        raise InvalidInput(f"parent: {parent!r} is the agency itself")
    return DirectoryRow(line, name, aliases, parent)


def _name(field: str, text: str) -> str:
    clean = " ".join(strip_controls(text).split())
    if not clean:
        raise InvalidInput(f"{field}: empty")
    if not agencies.alias_key(clean):
        raise InvalidInput(f"{field}: {clean!r} has no letters or digits")
    if len(clean) > agencies.NAME_LIMIT:
        raise InvalidInput(f"{field}: {clean[:40]!r}... is longer than {agencies.NAME_LIMIT}")
    return clean


def _clashes(path: Path, rows: list[DirectoryRow]) -> list[str]:
    """Refused: one spelling (a name or an alias) on two rows, and a chain of parents within
    the file that comes back to where it started. Parents the file does not list are looked
    up in the store by import_rows."""
    owner: dict[str, DirectoryRow] = {}
    errors = []
    for row in rows:
        for field, spelling in [("name", row.name), *(("aliases", a) for a in row.aliases)]:
            first = owner.setdefault(agencies.alias_key(spelling), row)
            if first is not row:
                errors.append(
                    f"{path}:{row.line}: {field}: {spelling!r} is already on line {first.line} "
                    f"({first.name}); one spelling can name one agency"
                )
    errors += _cycles(path, rows, owner)
    return errors


def _cycles(path: Path, rows: list[DirectoryRow], owner: dict[str, DirectoryRow]) -> list[str]:
    errors = []
    for row in rows:
        seen, step = {row.line}, row
        while step.parent is not None:
            up = owner.get(agencies.alias_key(step.parent))
            if up is None:
                break
            if up.line in seen:
                errors.append(
                    f"{path}:{row.line}: parent: {row.parent!r} leads back to {row.name} "
                    "(an agency cannot be part of itself)"
                )
                break
            seen.add(up.line)
            step = up
    return errors


def import_rows(
    session: Session, rows: list[DirectoryRow], *, now: dt.datetime, actor: str, source: str
) -> DirectoryResult:
    """List each row's agency (found by its name or an alias, else created) with its aliases
    and parent. The rows are checked against the store before anything is written."""
    found = _existing(session, rows, source)
    kinds, written = {}, {}
    for row in rows:
        written[row.line], kinds[row.line] = _write_row(
            session, row, found.get(row.line), now=now, actor=actor
        )
    for row in rows:  # parents last: a row may name one further down the file
        moved = _set_parent(session, row, written[row.line], source, now=now, actor=actor)
        if moved and kinds[row.line] == "unchanged":
            kinds[row.line] = "updated"
    counts = {k: sum(1 for v in kinds.values() if v == k) for k in ("created", "updated")}
    counts["unchanged"] = len(rows) - counts["created"] - counts["updated"]
    audit.record(
        session, now=now, actor=actor, kind="agencies.import", subject=f"file:{source}",
        data=counts,
    )  # fmt: skip
    return DirectoryResult(**counts)


def _existing(session: Session, rows: list[DirectoryRow], source: str) -> dict[int, Agency]:
    """The stored agency each row is (by its name or an alias), if any. Refused: a row whose
    spellings find two agencies (merge them first), two rows that find one, and a parent
    named neither in the file nor in the store."""
    found: dict[int, Agency] = {}
    taken: dict[int, DirectoryRow] = {}
    in_file = {agencies.alias_key(s) for row in rows for s in (row.name, *row.aliases)}
    errors = []
    for row in rows:
        try:
            agency = _stored(session, row)
            _check_parent(session, row, in_file)
        except InvalidInput as exc:
            errors.append(f"{source}:{row.line}: {exc}")
            continue
        if agency is None:
            continue
        first = taken.setdefault(agency.id, row)
        if first is not row:
            errors.append(
                f"{source}:{row.line}: name: {row.name!r} is {agency.name}, as is line "
                f"{first.line} ({first.name}); list each agency once"
            )
        found[row.line] = agency
    csvfile.refuse(errors)
    return found


def _stored(session: Session, row: DirectoryRow) -> Agency | None:
    hits: dict[int, tuple[str, Agency]] = {}
    for spelling in (row.name, *row.aliases):
        agency = agencies.find(session, spelling)
        if agency is not None:
            hits.setdefault(agency.id, (spelling, agency))
    if len(hits) > 1:
        (s1, a1), (s2, a2) = list(hits.values())[:2]
        raise InvalidInput(
            f"aliases: {s1!r} is {a1.name} but {s2!r} is {a2.name}; merge them first "
            f"(`dhr-workflow agencies merge {a2.id} {a1.id}`)"
        )
    return next(iter(hits.values()))[1] if hits else None


def _check_parent(session: Session, row: DirectoryRow, in_file: set[str]) -> None:
    if row.parent is None or agencies.alias_key(row.parent) in in_file:
        return
    if agencies.find(session, row.parent) is None:
        raise InvalidInput(
            f"parent: {row.parent!r} is neither in this file nor a known agency "
            f"{agencies.unknown_hint(session, row.parent)}"
        )


def _write_row(
    session: Session, row: DirectoryRow, agency: Agency | None, *, now: dt.datetime, actor: str
) -> tuple[Agency, str]:
    if agency is None:
        return _create(session, row, now=now, actor=actor), "created"
    before = {"name": agency.name, "listed": agency.listed, "aliases": _keys(agency)}
    if agency.name != row.name:
        agencies.rename(session, agency, row.name, now=now, actor=actor)
    agency.listed = True
    _add_aliases(agency, (row.name, *row.aliases))
    session.flush()
    after = {"name": agency.name, "listed": True, "aliases": _keys(agency)}
    if after == before:
        return agency, "unchanged"
    _record(session, agency, before, after, now, actor)
    return agency, "updated"


def _create(session: Session, row: DirectoryRow, *, now: dt.datetime, actor: str) -> Agency:
    agency = Agency(name=row.name, listed=True, created_at=now)
    _add_aliases(agency, (row.name, *row.aliases))
    session.add(agency)
    session.flush()
    audit.record(
        session, now=now, actor=actor, kind="agency.create", subject=f"agency:{agency.id}",
        data={"name": agency.name, "listed": True, "aliases": _keys(agency)},
    )  # fmt: skip
    return agency


def _keys(agency: Agency) -> list[str]:
    return sorted(a.alias_key for a in agency.aliases)


def _add_aliases(agency: Agency, spellings: tuple[str, ...]) -> None:
    have = {a.alias_key for a in agency.aliases}
    for spelling in spellings:
        key = agencies.alias_key(spelling)
        if key not in have:
            agency.aliases.append(AgencyAlias(alias_key=key))
            have.add(key)


def _set_parent(
    session: Session,
    row: DirectoryRow,
    agency: Agency,
    source: str,
    *,
    now: dt.datetime,
    actor: str,
) -> bool:
    """Give the row's agency the parent the file names (none if it names none); True if
    that changed it."""
    parent = agencies.find(session, row.parent) if row.parent else None
    new_id = parent.id if parent else None
    if agency.parent_id == new_id:
        return False
    _check_no_loop(session, agency, parent, row, source)
    before = {"parent": _parent_name(session, agency.parent_id)}
    agency.parent_id = new_id
    session.flush()
    _record(session, agency, before, {"parent": parent.name if parent else None}, now, actor)
    return True


def _check_no_loop(
    session: Session, agency: Agency, parent: Agency | None, row: DirectoryRow, source: str
) -> None:
    """A parent already in the store may lead back to this agency (an earlier file)."""
    step = parent
    while step is not None:
        if step.id == agency.id:
            raise InvalidInput(
                f"{source}:{row.line}: parent: {row.parent!r} leads back to {agency.name} "
                "(an agency cannot be part of itself); nothing from this file was imported"
            )
        step = session.get(Agency, step.parent_id) if step.parent_id else None


def _parent_name(session: Session, parent_id: int | None) -> str | None:
    return session.scalar(select(Agency.name).where(Agency.id == parent_id)) if parent_id else None


def _record(
    session: Session,
    agency: Agency,
    before: dict[str, Any],
    after: dict[str, Any],
    now: dt.datetime,
    actor: str,
) -> None:
    audit.record(
        session, now=now, actor=actor, kind="agency.directory", subject=f"agency:{agency.id}",
        data={"before": before, "after": after},
    )  # fmt: skip
