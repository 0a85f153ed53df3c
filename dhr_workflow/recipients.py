"""Who a role means for one action or review, from the contacts table (loaded once per tick).

    owner                  the action's owner contact, else the lead agency's lead
    agency.lead            the lead agency's lead contact(s)
    agency.manager         the lead agency's manager contact(s)
    coordinator            the review's coordinator, else the partnership's
    partnership.chair      the review's chair, else the partnership's
    review.family_liaison  the review's family liaison
    name@example.org       that address

A role that resolves to nobody is a gap: the caller records it, never skips it silently.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from dhr_workflow.models import Contact, ContactRole


@dataclass(frozen=True)
class Subject:
    """The facts about an action (or a review, with no action fields) that roles depend on."""

    review_id: int
    agency_id: int | None = None
    owner_contact_id: int | None = None


class Directory:
    def __init__(self, session: Session) -> None:
        self._by_id: dict[int, str] = {}
        self._names: dict[str, str] = {}
        self._agency: dict[tuple[str, int], list[str]] = defaultdict(list)
        self._review: dict[tuple[str, int], list[str]] = defaultdict(list)
        self._partnership: dict[str, list[str]] = defaultdict(list)
        # Deactivated contacts are kept for the audit log's sake but receive nothing. Plain
        # rows: a tick builds a directory for each transaction it commits in.
        columns = (Contact.id, Contact.email, Contact.name, Contact.role, Contact.agency_id,
                   Contact.review_id)  # fmt: skip
        for c in session.execute(select(*columns).where(Contact.active).order_by(Contact.id)):
            self._by_id[c.id] = c.email
            self._names.setdefault(c.email.lower(), c.name)
            if c.agency_id is not None:
                self._agency[(c.role, c.agency_id)].append(c.email)
            elif c.review_id is not None:
                self._review[(c.role, c.review_id)].append(c.email)
            else:
                self._partnership[c.role].append(c.email)

    def resolve(self, role: str, subject: Subject) -> list[str]:
        if "@" in role:
            return [role]
        if role == "owner":
            owner = self._by_id.get(subject.owner_contact_id or -1)
            return [owner] if owner else self._of_agency(ContactRole.LEAD, subject)
        if role == "agency.lead":
            return self._of_agency(ContactRole.LEAD, subject)
        if role == "agency.manager":
            return self._of_agency(ContactRole.MANAGER, subject)
        if role == "coordinator":
            return self._of_review(ContactRole.COORDINATOR, subject, fallback=True)
        if role == "partnership.chair":
            return self._of_review(ContactRole.CHAIR, subject, fallback=True)
        if role == "review.family_liaison":
            return self._of_review(ContactRole.FAMILY_LIAISON, subject, fallback=False)
        raise ValueError(f"unknown role {role!r}")  # the rule loader refuses these first

    def name(self, address: str) -> str | None:
        """The name of the contact with this address, if one is known."""
        return self._names.get(address.lower())

    def coordinator(self, review_id: int | None) -> tuple[str, str] | None:
        """(name, address) of the review's coordinator, else the partnership's: who people
        write to about a message (its Reply-To)."""
        found = self._of_review(ContactRole.COORDINATOR, Subject(review_id or -1), fallback=True)
        if not found:
            return None
        return self._names.get(found[0].lower(), found[0]), found[0]

    def _of_agency(self, role: ContactRole, subject: Subject) -> list[str]:
        if subject.agency_id is None:
            return []
        return list(self._agency.get((role.value, subject.agency_id), []))

    def _of_review(self, role: ContactRole, subject: Subject, *, fallback: bool) -> list[str]:
        own = self._review.get((role.value, subject.review_id), [])
        return list(own or (self._partnership.get(role.value, []) if fallback else []))
