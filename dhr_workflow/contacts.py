"""Contacts: who receives what. Imported from CSV, all-or-nothing."""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from dhr_workflow import agencies, audit
from dhr_workflow.errors import InvalidInput
from dhr_workflow.models import Contact, ContactRole, Review

REQUIRED_COLUMNS = ("agency", "role", "name", "email")
OPTIONAL_COLUMNS = ("review",)
# Roles that belong to an agency; the others are partnership-wide or belong to one review.
AGENCY_ROLES = {ContactRole.LEAD, ContactRole.MANAGER}


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
    unchanged: int


def read_csv(path: Path) -> list[ContactRow]:
    """Parse and validate the whole file; any problem raises before anything is written."""
    text = _read_text(path)
    reader = csv.DictReader(text.splitlines())
    header = [h.strip().lower() for h in reader.fieldnames or []]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise InvalidInput(
            f"{path}: missing column(s) {', '.join(missing)} "
            f"(the header must name {', '.join(REQUIRED_COLUMNS)}, and optionally review)"
        )
    reader.fieldnames = header
    rows, errors = [], []
    for line, raw in enumerate(reader, start=2):
        cells = {k: (v or "").strip() for k, v in raw.items() if k is not None}
        if not any(cells.values()):
            continue
        try:
            rows.append(_row(line, cells))
        except InvalidInput as exc:
            errors.append(f"{path}:{exc}")
    if errors:
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise InvalidInput(f"{errors[0]}{more}; nothing from this file was imported")
    if not rows:
        raise InvalidInput(f"{path}: no contacts found under the header")
    return rows


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read file ({exc.strerror})") from None
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
    if not cells["name"]:
        raise InvalidInput(f"{line}: name: empty")
    try:
        email = validate_email(cells["email"], check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InvalidInput(f"{line}: email: {cells['email']!r} is not valid: {exc}") from None
    if role in AGENCY_ROLES and not cells["agency"]:
        raise InvalidInput(f"{line}: agency: a {role.value} contact needs an agency")
    return ContactRow(line, cells["agency"], role, cells["name"], email, cells.get("review", ""))


def import_rows(
    session: Session, rows: list[ContactRow], *, now: dt.datetime, actor: str, source: str
) -> ImportResult:
    """Create the contacts not already present (same email, role, agency and review)."""
    reviews = _reviews_named(session, rows, source)
    existing = _existing_keys(session)
    created = unchanged = 0
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
        if key in existing:
            unchanged += 1
            continue
        existing.add(key)
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
        audit.record(
            session,
            now=now,
            actor=actor,
            kind="contact.create",
            subject=f"contact:{contact.id}",
            data={"after": describe(contact)},
        )
        created += 1
    audit.record(
        session,
        now=now,
        actor=actor,
        kind="contacts.import",
        subject=f"file:{source}",
        data={"created": created, "unchanged": unchanged},
    )
    return ImportResult(created, unchanged)


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


def _existing_keys(session: Session) -> set[tuple[str, str, int | None, int | None]]:
    rows = session.execute(
        select(Contact.email, Contact.role, Contact.agency_id, Contact.review_id)
    ).all()
    return {(e, r, a, v) for e, r, a, v in rows}


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
