"""Agencies and the aliases that let one agency be spelled many ways across plans."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata

from sqlalchemy import select
from sqlalchemy.orm import Session

from dhr_workflow import audit
from dhr_workflow.models import Agency, AgencyAlias

_NON_WORD = re.compile(r"[^a-z0-9]+")


def alias_key(name: str) -> str:
    """A spelling-insensitive key: case, accents, punctuation, "&"/"and" and a leading "the"."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    folded = folded.replace("&", " and ")
    words = _NON_WORD.sub(" ", folded).split()
    if words and words[0] == "the":
        words = words[1:]
    return " ".join(words)


def find(session: Session, name: str) -> Agency | None:
    key = alias_key(name)
    if not key:
        return None
    return session.scalar(select(Agency).join(AgencyAlias).where(AgencyAlias.alias_key == key))


def find_or_create(session: Session, name: str, *, now: dt.datetime, actor: str) -> Agency:
    """The agency this name refers to, created (and audited) if no alias matches."""
    existing = find(session, name)
    if existing is not None:
        return existing
    clean = " ".join(name.split())
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
