"""Contacts: who receives what.

Kept by hand (add, update, deactivate) or imported from CSV, all-or-nothing; every contact passes
the same checks either way. Contacts are deactivated, never deleted: the audit log and past
messages name them, and a deactivated contact receives nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload

from dhr_workflow import agencies, audit, csvfile
from dhr_workflow.errors import InvalidInput, NotFound
from dhr_workflow.importer.text import strip_controls
from dhr_workflow.models import (
    CLOSED_STATUSES,
    Action,
    Agency,
    Contact,
    ContactRole,
    Review,
    ReviewStatus,
)

REQUIRED_COLUMNS = ("agency", "role", "name", "email")
OPTIONAL_COLUMNS = ("review",)
# Roles that belong to an agency; the others are partnership-wide or belong to one review.
AGENCY_ROLES = (ContactRole.LEAD, ContactRole.MANAGER)
NAME_LIMIT = 200  # the column's width
ID_LIMIT = 2**31 - 1  # the id column's range: a larger number is no contact, not a DB error
# What a person can correct on a contact, as describe() names it.
FIELDS = ("name", "email", "role", "agency", "review")


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
    inactive: int = 0  # listed again but deactivated: left deactivated


@dataclass(frozen=True)
class ContactInput:
    """One contact as a person types it (agency by any spelling, review by ref)."""

    name: str
    email: str
    role: str
    agency: str | None = None
    review: str | None = None


@dataclass(frozen=True)
class ContactChange:
    """Corrections to a contact: None leaves a field as it is, "" clears agency or review."""

    name: str | None = None
    email: str | None = None
    role: str | None = None
    agency: str | None = None
    review: str | None = None


@dataclass(frozen=True)
class ContactGap:
    """A role the engine would find nobody for: ``where`` is an agency name or a review ref."""

    role: str  # as rules name it: agency.lead, agency.manager, coordinator, partnership.chair
    where: str
    open_actions: int


def read_csv(path: Path) -> list[ContactRow]:
    """Parse and validate the whole file; any problem raises before anything is written."""

    def check_header(header: list[str]) -> None:
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise InvalidInput(
                f"{path}: missing column(s) {', '.join(missing)} "
                f"(the header must name {', '.join(REQUIRED_COLUMNS)}, and optionally review)"
            )

    rows, errors = csvfile.read_rows(path, check_header, _row)
    csvfile.refuse(errors)
    if not rows:
        raise InvalidInput(f"{path}: no contacts found under the header")
    return rows


def unsendable_warnings(rows: list[ContactRow], source: str) -> list[str]:
    """Rows whose address has non-ASCII letters (zoë@example.org): only a mail server that
    offers SMTPUTF8 takes it, and a message to it elsewhere fails at once."""
    return [
        f"{source}:{row.line}: {row.email} is not plain ASCII; it needs a mail server that "
        "offers SMTPUTF8 (without it, messages to it fail and the coordinator is told)"
        for row in rows
        if not row.email.isascii()
    ]


def _row(line: int, cells: dict[str, str]) -> ContactRow:
    typed = ContactInput(
        cells["name"], cells["email"], cells["role"], cells["agency"], cells.get("review", "")
    )
    clean = _validated(typed)
    return ContactRow(
        line,
        clean.agency or "",
        ContactRole(clean.role),
        clean.name,
        clean.email,
        clean.review or "",
    )


def _validated(data: ContactInput) -> ContactInput:
    """The checks every contact passes, typed, corrected or imported; returns it tidied.
    Messages start with the field, so a CSV row can put its line number in front."""
    try:
        role = ContactRole(data.role.strip().lower())
    except ValueError:
        roles = ", ".join(ContactRole)
        raise InvalidInput(f"role: {data.role!r} is not one of {roles}") from None
    name = " ".join(strip_controls(data.name).split())
    if not name:
        raise InvalidInput("name: empty")
    if len(name) > NAME_LIMIT:
        raise InvalidInput(f"name: longer than {NAME_LIMIT} characters")
    try:
        email = validate_email(data.email.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InvalidInput(f"email: {data.email!r} is not valid: {exc}") from None
    agency, review = (data.agency or "").strip(), (data.review or "").strip()
    _check_scope(role, agency, review)
    return ContactInput(name, email, role.value, agency or None, review or None)


def _check_scope(role: ContactRole, agency: str, review: str) -> None:
    """Leads and managers belong to an agency; coordinators and chairs to the partnership or
    one review; a family liaison to one review."""
    if role in AGENCY_ROLES:
        if not agency:
            raise InvalidInput(f"agency: a {role.value} contact needs an agency")
        if review:
            raise InvalidInput(
                f"review: a {role.value} contact belongs to an agency, not a review; "
                "leave review empty"
            )
    elif agency:
        raise InvalidInput(f"agency: a {role.value} is not an agency's contact; leave agency empty")
    if role == ContactRole.FAMILY_LIAISON and not review:
        raise InvalidInput("review: a family_liaison contact needs the review's ref")


def import_rows(
    session: Session,
    rows: list[ContactRow],
    *,
    now: dt.datetime,
    actor: str,
    source: str,
    allow_new_agencies: bool = False,
) -> ImportResult:
    """Create contacts not yet present (same email, role, agency and review); rename those
    whose name changed; leave deactivated ones deactivated. Re-importing the same file changes
    nothing. An agency the store does not know fails the whole file (a misspelling would
    otherwise become a new agency nobody leads actions of), unless the store has no agencies
    yet or ``allow_new_agencies`` is set."""
    reviews = _reviews_named(session, rows, source)
    if not allow_new_agencies:
        _refuse_unknown_agencies(session, rows, source)
    existing = _existing(session)
    counts = {"created": 0, "updated": 0, "unchanged": 0, "inactive": 0}
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
        elif not contact.active:
            counts["inactive"] += 1  # reactivating is a decision, not a side effect of a file
        elif contact.name != row.name:
            before = contact.name
            contact.name = row.name
            contact.updated_at = now
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


def _refuse_unknown_agencies(session: Session, rows: list[ContactRow], source: str) -> None:
    if session.scalar(select(Agency.id).limit(1)) is None:
        return  # the first file names the agencies
    known: dict[str, bool] = {}
    unknown = []
    for row in rows:
        if row.agency and row.agency not in known:
            known[row.agency] = agencies.find(session, row.agency) is not None
        if row.agency and not known[row.agency]:
            unknown.append(row)
    if not unknown:
        return
    first = unknown[0]
    near = agencies.nearest(session, first.agency)
    hint = f" (nearest: {', '.join(near)})" if near else ""
    more = f" ({len(unknown) - 1} more row(s) name unknown agencies)" if len(unknown) > 1 else ""
    raise InvalidInput(
        f"{source}:{first.line}: agency: {first.agency!r} is not a known agency{hint}; "
        f"correct it, or pass --new-agencies to create it{more}"
    )


def _audit(
    session: Session,
    contact: Contact,
    kind: str,
    data: Mapping[str, Any],
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
    # Active ones last, so they win: a merge can leave a deactivated twin of an active contact.
    ordered = select(Contact).order_by(Contact.active, Contact.id)
    return {(c.email, c.role, c.agency_id, c.review_id): c for c in session.scalars(ordered)}


def describe(contact: Contact) -> dict[str, Any]:
    return {
        "id": contact.id,
        "name": contact.name,
        "email": contact.email,
        "role": contact.role,
        "agency": contact.agency.name if contact.agency else None,
        "review": contact.review.ref if contact.review else None,
        "active": contact.active,
    }


def list_all(session: Session, include_inactive: bool = True) -> list[Contact]:
    query = (
        select(Contact)
        .options(joinedload(Contact.agency), joinedload(Contact.review))
        .order_by(Contact.role, Contact.email, Contact.id)
    )
    if not include_inactive:
        query = query.where(Contact.active)
    return list(session.scalars(query))


def get(session: Session, contact_id: int) -> Contact:
    contact = session.get(Contact, contact_id) if 0 < contact_id <= ID_LIMIT else None
    if contact is None:
        raise NotFound(f"no contact with id {contact_id} (see `dhr-workflow contacts list --all`)")
    return contact


def add(session: Session, data: ContactInput, *, now: dt.datetime, actor: str) -> Contact:
    """Add one contact after the checks an imported row passes. The agency must be known (by
    any spelling): a typo would otherwise give a new agency its only contact."""
    clean = _validated(data)
    agency = _known_agency(session, clean.agency)
    review = _review(session, clean.review)
    _refuse_duplicate(session, clean.email, clean.role, agency, review)
    contact = Contact(
        name=clean.name,
        email=clean.email,
        role=clean.role,
        agency=agency,
        review=review,
        created_at=now,
    )
    session.add(contact)
    session.flush()
    _audit(session, contact, "contact.create", {"after": describe(contact)}, now, actor)
    return contact


def update(
    session: Session, contact_id: int, change: ContactChange, *, now: dt.datetime, actor: str
) -> Contact:
    """Correct a contact; the result passes the same checks as a new one. Audited with the
    changed fields only; a change that changes nothing writes nothing."""
    contact = get(session, contact_id)
    before = describe(contact)
    clean = _validated(
        ContactInput(
            name=_either(change.name, before["name"]),
            email=_either(change.email, before["email"]),
            role=_either(change.role, before["role"]),
            agency=_either(change.agency, before["agency"]),
            review=_either(change.review, before["review"]),
        )
    )
    agency = contact.agency if change.agency is None else _known_agency(session, clean.agency)
    review = contact.review if change.review is None else _review(session, clean.review)
    _refuse_duplicate(session, clean.email, clean.role, agency, review, other_than=contact.id)
    contact.name, contact.email, contact.role = clean.name, clean.email, clean.role
    contact.agency, contact.review = agency, review
    after = describe(contact)
    changed = [f for f in FIELDS if before[f] != after[f]]
    if changed:
        contact.updated_at = now
        data = {
            "before": {f: before[f] for f in changed},
            "after": {f: after[f] for f in changed},
        }
        _audit(session, contact, "contact.update", data, now, actor)
    return contact


def _either(new: str | None, old: str | None) -> str:
    return (old or "") if new is None else new


def deactivate(session: Session, contact_id: int, *, now: dt.datetime, actor: str) -> Contact:
    """Stop sending to a contact; kept, because the audit log and past messages name it."""
    return _set_active(session, contact_id, False, now, actor)


def reactivate(session: Session, contact_id: int, *, now: dt.datetime, actor: str) -> Contact:
    return _set_active(session, contact_id, True, now, actor)


def _set_active(
    session: Session, contact_id: int, active: bool, now: dt.datetime, actor: str
) -> Contact:
    contact = get(session, contact_id)
    if contact.active == active:
        state = "active" if active else "deactivated"
        raise InvalidInput(f"contact {contact.id} ({contact.name}) is already {state}")
    if active:  # a merge may have deactivated it as the twin of one still active
        _refuse_duplicate(
            session,
            contact.email,
            contact.role,
            contact.agency,
            contact.review,
            other_than=contact.id,
            active_only=True,
        )
    contact.active = active
    contact.updated_at = now
    kind = "contact.reactivate" if active else "contact.deactivate"
    data = {"before": {"active": not active}, "after": {"active": active}}
    _audit(session, contact, kind, data, now, actor)
    return contact


def _known_agency(session: Session, name: str | None) -> Agency | None:
    if not name:
        return None
    agency = agencies.find(session, name)
    if agency is None:
        hint = agencies.unknown_hint(session, name)
        raise InvalidInput(f"agency: {name!r} is not a known agency {hint}")
    return agency


def _review(session: Session, ref: str | None) -> Review | None:
    if not ref:
        return None
    review = session.scalar(select(Review).where(Review.ref == ref))
    if review is None:
        raise InvalidInput(f"review: no review with ref {ref!r} (see `dhr-workflow reviews list`)")
    return review


def _refuse_duplicate(
    session: Session,
    email: str,
    role: str,
    agency: Agency | None,
    review: Review | None,
    *,
    other_than: int | None = None,
    active_only: bool = False,
) -> None:
    query = select(Contact).where(
        Contact.email == email,
        Contact.role == role,
        Contact.agency_id == (agency.id if agency else None),
        Contact.review_id == (review.id if review else None),
        Contact.id != (other_than or 0),
    )
    if active_only:
        query = query.where(Contact.active)
    twin = session.scalars(query.order_by(Contact.active.desc(), Contact.id).limit(1)).first()
    if twin is None:
        return
    where = agency.name if agency else (review.ref if review else "the partnership")
    hint = (
        ""
        if twin.active
        else f", deactivated (reactivate it: `dhr-workflow contacts reactivate {twin.id}`)"
    )
    raise InvalidInput(f"{email} is already a {role} contact for {where} (contact {twin.id}{hint})")


def gaps(session: Session) -> list[ContactGap]:
    """Where the engine would find nobody to write to: an agency leading open actions with no
    active lead or manager; an open review with no active coordinator or chair of its own or
    of the partnership (the resolution rules of recipients.py)."""
    return _agency_gaps(session) + _review_gaps(session)


def _open() -> Any:
    return Action.status.not_in([s.value for s in CLOSED_STATUSES])


def _agency_gaps(session: Session) -> list[ContactGap]:
    led = session.execute(
        select(Agency.id, Agency.name, func.count(Action.id))
        .join(Action, Action.lead_agency_id == Agency.id)
        .where(_open())
        .group_by(Agency.id, Agency.name)
        .order_by(Agency.name)
    )
    staffed = _pairs(
        session,
        select(Contact.agency_id, Contact.role).where(
            Contact.active, Contact.agency_id.is_not(None)
        ),
    )
    return [
        ContactGap(f"agency.{role.value}", name, count)
        for agency_id, name, count in led
        for role in AGENCY_ROLES
        if (agency_id, role.value) not in staffed
    ]


def _review_gaps(session: Session) -> list[ContactGap]:
    open_reviews = session.execute(
        select(Review.id, Review.ref).where(Review.status == ReviewStatus.OPEN).order_by(Review.ref)
    )
    counts = _counts_by_review(session)
    # review_id None: partnership-wide, the fallback for every review.
    covered = _pairs(
        session,
        select(Contact.review_id, Contact.role).where(Contact.active, Contact.agency_id.is_(None)),
    )
    roles = ((ContactRole.COORDINATOR, "coordinator"), (ContactRole.CHAIR, "partnership.chair"))
    return [
        ContactGap(name, ref, counts.get(review_id, 0))
        for review_id, ref in open_reviews
        for role, name in roles
        if (review_id, role.value) not in covered and (None, role.value) not in covered
    ]


def _counts_by_review(session: Session) -> dict[int, int]:
    query = select(Action.review_id, func.count()).where(_open()).group_by(Action.review_id)
    return {review_id: n for review_id, n in session.execute(query)}  # noqa: C416  # Rows, not pairs


def _pairs(session: Session, query: Any) -> set[tuple[Any, Any]]:
    return {(a, b) for a, b in session.execute(query)}
