"""Agencies and the aliases that let one agency be spelled many ways across plans."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata

from sqlalchemy import select
from sqlalchemy.orm import Session

from dhr_workflow import audit
from dhr_workflow.errors import InvalidInput
from dhr_workflow.models import Agency, AgencyAlias

_NON_WORD = re.compile(r"[\W_]+")
_PARENTHESES = re.compile(r"\([^)]*\)?")
# Abbreviations plans use for the same bodies; both spellings get the same key.
ABBREVIATIONS = {
    "hmpps": "hm prison and probation",
    "nps": "national probation",
    "crc": "community rehabilitation company",
    "ccg": "clinical commissioning group",
    "lscb": "local safeguarding children board",
    "wmp": "west mercia police",
    "vawg": "violence against women and girls",
    "csp": "community safety partnership",
    "wcc": "westminster city council",
}
NAME_LIMIT = 300  # the column's width
# Words that add nothing to an agency's identity at the end of its name.
_GENERIC_TAIL = {"service", "services"}


def alias_key(name: str) -> str:
    """A spelling-insensitive key: case, accents, punctuation, "&"/"and", a leading "the",
    known abbreviations and a trailing "service"."""
    decomposed = unicodedata.normalize("NFKD", name)
    # Accents go (Societe = Société); letters of any script stay.
    folded = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    folded = folded.replace("&", " and ")
    words = " ".join(ABBREVIATIONS.get(w, w) for w in _NON_WORD.sub(" ", folded).split()).split()
    if words and words[0] == "the":
        words = words[1:]
    while len(words) > 1 and words[-1] in _GENERIC_TAIL:
        words.pop()
    return " ".join(words)[:300]  # the alias column's width


def _by_key(session: Session, key: str) -> Agency | None:
    if not key:
        return None
    return session.scalar(select(Agency).join(AgencyAlias).where(AgencyAlias.alias_key == key))


def find(session: Session, name: str) -> Agency | None:
    """The agency a name refers to: by any alias, else by the name without a bracketed part
    ("Bi Borough VAWG Strategic Board (Risk & Review Group)" is the Board)."""
    return _by_key(session, alias_key(name)) or _by_key(
        session, alias_key(_PARENTHESES.sub(" ", name))
    )


def find_or_create(session: Session, name: str, *, now: dt.datetime, actor: str) -> Agency:
    """The agency this name refers to, created (and audited) if no alias matches."""
    existing = find(session, name)
    if existing is not None:
        key = alias_key(name)
        if key and _by_key(session, key) is None:  # remember this spelling
            existing.aliases.append(AgencyAlias(alias_key=key))
            session.flush()
        return existing
    clean = " ".join(name.split())
    if not alias_key(clean):
        raise InvalidInput(f"agency name {name!r} has no letters or digits")
    if len(clean) > NAME_LIMIT:
        raise InvalidInput(f"agency name {clean[:40]!r}... is longer than {NAME_LIMIT} characters")
    agency = Agency(name=clean, created_at=now)
    agency.aliases.append(AgencyAlias(alias_key=alias_key(clean)))
    session.add(agency)
    session.flush()
    audit.record(
        session,
        now=now,
        actor=actor,
        kind="agency.create",
        subject=f"agency:{agency.id}",
        data={"name": clean},
    )
    return agency


def list_all(session: Session) -> list[Agency]:
    return list(session.scalars(select(Agency).order_by(Agency.name)))
