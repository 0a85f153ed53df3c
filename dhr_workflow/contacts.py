"""Contacts: who receives what. Imported from CSV, all-or-nothing."""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from dhr_workflow import agencies, audit
from dhr_workflow.errors import InvalidInput
from dhr_workflow.importer.text import strip_controls
from dhr_workflow.models import Contact, ContactRole, Review

REQUIRED_COLUMNS = ("agency", "role", "name", "email")
OPTIONAL_COLUMNS = ("review",)
# Roles that belong to an agency; the others are partnership-wide or belong to one review.
AGENCY_ROLES = {ContactRole.LEAD, ContactRole.MANAGER}
NAME_LIMIT = 200  # the column's width


@dataclass(frozen=True)
class ContactRow:
    line: int
    agency: str
    role: ContactRole
    name: str
    email: str
    review: str


@dataclass(frozen=True)
class ImportResult:
    created: int
    updated: int
    unchanged: int


def read_csv(path: Path) -> list[ContactRow]:
    """Parse and validate the whole file; any problem raises before anything is written."""
    reader = csv.reader(io.StringIO(_read_text(path), newline=""))
    try:
        header = [h.strip().lower() for h in next(reader, [])]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise InvalidInput(
                f"{path}: missing column(s) {', '.join(missing)} "
                f"(the header must name {', '.join(REQUIRED_COLUMNS)}, and optionally review)"
            )
        rows, errors = _rows(path, header, reader)
    except csv.Error as exc:
        raise InvalidInput(f"{path}:{reader.line_num}: not readable as CSV ({exc})") from None
    if errors:
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise InvalidInput(f"{errors[0]}{more}; nothing from this file was imported")
    if not rows:
        raise InvalidInput(f"{path}: no contacts found under the header")
    return rows


def _rows(path: Path, header: list[str], reader: Any) -> tuple[list[ContactRow], list[str]]:
    rows, errors = [], []
    start = reader.line_num + 1
    for values in reader:
        cells = {
            name: (values[i] if i < len(values) else "").strip() for i, name in enumerate(header)
        }
        if any(cells.values()):
            try:
                rows.append(_row(start, cells))
            except InvalidInput as exc:
                errors.append(f"{path}:{exc}")
        start = reader.line_num + 1  # a quoted cell may span lines: report where a row starts
    return rows, errors


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read file ({exc.strerror})") from None
    if b"\x00" in data:
        raise InvalidInput(f"{path}: a binary file, not a CSV (save it as CSV UTF-8)")
    try:
        return data.decode("utf-8-sig")  # Excel writes a BOM
    except UnicodeDecodeError:
        raise InvalidInput(f"{path}: not a UTF-8 text CSV file (save it as CSV UTF-8)") from None


def _row(line: int, cells: dict[str, str]) -> ContactRow:
    try:
        role = ContactRole(cells["role"].lower())
    except ValueError:
        roles = ", ".join(ContactRole)
        raise InvalidInput(f"{line}: role: {cells['role']!r} is not one of {roles}") from None
    cells["name"] = " ".join(strip_controls(cells["name"]).split())
    if not cells["name"]:
        raise InvalidInput(f"{line}: name: empty")
    if len(cells["name"]) > NAME_LIMIT:
        raise InvalidInput(f"{line}: name: longer than {NAME_LIMIT} characters")
    try:
        email = validate_email(cells["email"], check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InvalidInput(f"{line}: email: {cells['email']!r} is not valid: {exc}") from None
    _check_scope(line, role, cells["agency"], cells.get("review", ""))
    return ContactRow(line, cells["agency"], role, cells["name"], email, cells.get("review", ""))


def _check_scope(line: int, role: ContactRole, agency: str, review: str) -> None:
    """Leads and managers belong to an agency; coordinators and chairs to the partnership or
    one review; a family liaison to one review."""
    if role in AGENCY_ROLES:
        if not agency:
            raise InvalidInput(f"{line}: agency: a {role.value} contact needs an agency")
        if review:
            raise InvalidInput(
                f"{line}: review: a {role.value} contact belongs to an agency, "
                "not a review; leave review empty"
            )
    elif agency:
        raise InvalidInput(
            f"{line}: agency: a {role.value} is not an agency's contact; leave agency empty"
        )
    if role == ContactRole.FAMILY_LIAISON and not review:
        raise InvalidInput(f"{line}: review: a family_liaison contact needs the review's ref")


def import_rows(
    session: Session, rows: list[ContactRow], *, now: dt.datetime, actor: str, source: str
) -> ImportResult:
    """Create contacts not yet present (same email, role, agency and review); rename those
    whose name changed. Re-importing the same file changes nothing."""
    reviews = _reviews_named(session, rows, source)
    existing = _existing(session)
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    for row in rows:
        agency = (
            agencies.find_or_create(session, row.agency, now=now, actor=actor)
            if row.agency
            else None
        )
        review = reviews.get(row.review)
        key = (
            row.email,
            row.role.value,
            agency.id if agency else None,
            review.id if review else None,
        )
        contact = existing.get(key)
        if contact is None:
            contact = Contact(
                name=row.name,
                email=row.email,
                role=row.role.value,
                agency=agency,
                review=review,
                created_at=now,
            )
            session.add(contact)
            session.flush()
            existing[key] = contact
            _audit(session, contact, "contact.create", {"after": describe(contact)}, now, actor)
            counts["created"] += 1
        elif contact.name != row.name:
            before = contact.name
            contact.name = row.name
            _audit(
                session,
                contact,
                "contact.update",
                {"before": {"name": before}, "after": {"name": row.name}},
                now,
                actor,
            )
            counts["updated"] += 1
        else:
            counts["unchanged"] += 1
    audit.record(
        session, now=now, actor=actor, kind="contacts.import", subject=f"file:{source}", data=counts
    )
    return ImportResult(**counts)


def _audit(
    session: Session,
    contact: Contact,
    kind: str,
    data: dict[str, object],
    now: dt.datetime,
    actor: str,
) -> None:
    audit.record(
        session, now=now, actor=actor, kind=kind, subject=f"contact:{contact.id}", data=data
    )


def _reviews_named(session: Session, rows: list[ContactRow], source: str) -> dict[str, Review]:
    wanted = {r.review for r in rows if r.review}
    found = {r.ref: r for r in session.scalars(select(Review).where(Review.ref.in_(wanted)))}
    for row in rows:
        if row.review and row.review not in found:
            raise InvalidInput(
                f"{source}:{row.line}: review: no review with ref {row.review!r}; "
                "nothing from this file was imported"
            )
    return found


def _existing(session: Session) -> dict[tuple[str, str, int | None, int | None], Contact]:
    return {
        (c.email, c.role, c.agency_id, c.review_id): c for c in session.scalars(select(Contact))
    }


def describe(contact: Contact) -> dict[str, str | None]:
    return {
        "name": contact.name,
        "email": contact.email,
        "role": contact.role,
        "agency": contact.agency.name if contact.agency else None,
        "review": contact.review.ref if contact.review else None,
    }


def list_all(session: Session) -> list[Contact]:
    return list(
        session.scalars(
            select(Contact)
            .options(joinedload(Contact.agency), joinedload(Contact.review))
            .order_by(Contact.role, Contact.email)
        )
    )
