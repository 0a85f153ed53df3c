"""Agencies and the aliases that let one agency be spelled many ways across plans.

A coordinator keeps them right: rename (the old name stays an alias), merge two agencies that
are one body, add a spelling. Agencies are found by any alias; a name that matches none gets
the nearest known names as a hint.

Once a directory exists (any agency imported with `agencies import`, see agency_directory),
an import resolves each name by its exact name, then an alias, then a close spelling
(:func:`similarity`); a name that resolves to none is flagged, never created. Without a
directory an unknown name creates an agency, as plans always did.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Literal

from rapidfuzz import fuzz, process, utils
from rapidfuzz.distance import OSA
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dhr_workflow import audit
from dhr_workflow.errors import InvalidInput, NotFound
from dhr_workflow.importer.names import split_holder
from dhr_workflow.models import CLOSED_STATUSES, Action, Agency, AgencyAlias, Contact

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
    return (
        _by_key(session, alias_key(name))
        or _by_key(session, alias_key(_PARENTHESES.sub(" ", name)))
        or _by_organisation(session, name)
    )


def _by_organisation(session: Session, name: str) -> Agency | None:
    # "Principal Social Worker, Bi- Borough Adult Social Care": a plan or a contacts file that
    # names a role beside the body means the body, which the importer keeps as the agency.
    _, body = split_holder(name)
    return _by_key(session, alias_key(body)) if body else None


def find_or_create(session: Session, name: str, *, now: dt.datetime, actor: str) -> Agency:
    """The agency this name refers to, created (and audited) if no alias matches."""
    existing = find(session, name)
    if existing is not None:
        key = alias_key(name)
        if key and _by_key(session, key) is None:  # remember this spelling
            existing.aliases.append(AgencyAlias(alias_key=key))
            session.flush()
        return existing
    clean = _clean_name(name)
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


NEAREST_CUTOFF = 70  # token_sort_ratio: "Metropolitan Polce" scores 97 against its agency
ID_LIMIT = 2**31 - 1  # the id column's range: a larger number is no agency, not a DB error


def nearest(session: Session, name: str, limit: int = 3) -> list[str]:
    """Up to ``limit`` agency names closest to ``name`` (by name or alias), best first."""
    owners: dict[str, str] = {}
    for agency_name, key in session.execute(
        select(Agency.name, AgencyAlias.alias_key).join(AgencyAlias)
    ):
        owners.setdefault(agency_name, agency_name)
        owners.setdefault(key, agency_name)
    return _nearest(owners, name, limit)


def _nearest(owners: dict[str, str], name: str, limit: int = 3) -> list[str]:
    """``owners`` maps each spelling (a name or an alias key) to its agency's name."""
    matches = process.extract(
        alias_key(name) or name,
        list(owners),
        scorer=fuzz.token_sort_ratio,
        processor=utils.default_process,
        limit=None,
        score_cutoff=NEAREST_CUTOFF,
    )
    found: list[str] = []
    for choice, _score, _index in matches:
        if owners[choice] not in found:
            found.append(owners[choice])
    return found[:limit]


def unknown_hint(session: Session, name: str) -> str:
    """ "(nearest: A, B)" for a name that matches no agency, or where to look if none is near."""
    near = nearest(session, name)
    if near:
        return f"(nearest: {', '.join(near)})"
    return "(see `dhr-workflow agencies list`)"


# --- resolving a plan's names ----------------------------------------------------------------

# A close spelling counts once every word agrees (see _words_agree) and the two keys score at
# least this by token_sort_ratio, which keeps one added word to longer names: "Northshire
# Constabulary" scores 87 against "Northshire Constabulary Police", "Police" 52 against
# "Northshire Police". The table in tests/test_agency_directory.py sets both.
FUZZY_CUTOFF = 80
# A word may differ from its partner by one slip (a letter missed, added, changed or two
# swapped) if it has at least this many letters: "Hull" and "Hall" are two places.
SLIP_LENGTH = 5
MatchKind = Literal["exact", "alias", "fuzzy", "new", "unknown"]
MATCH_KINDS: tuple[MatchKind, ...] = ("exact", "alias", "fuzzy", "new", "unknown")


def similarity(a: str, b: str, **_: Any) -> float:
    """How alike two alias keys are (0-100), a scorer for rapidfuzz.process: 0 unless their
    words agree, else their token_sort_ratio. Character ratios alone rate "northshire county
    council" 92 against "southshire county council"; the word test tells the two apart."""
    words_a, words_b = a.split(), b.split()
    short, long = sorted((words_a, words_b), key=len)
    # Words run together or split ("Biborough", "Bi Borough") are the same words.
    if _words_agree(short, long) or "".join(words_a) == "".join(words_b):
        return float(fuzz.token_sort_ratio(a, b))
    return 0.0


def _words_agree(short: list[str], long: list[str]) -> bool:
    """Each word of the shorter name is a word of the longer or one slip from one, each used
    once; the longer may have one word more, if the shorter has two or more."""
    extra = len(long) - len(short)
    if not short or extra > 1 or (extra == 1 and len(short) < 2):
        return False
    rest = list(long)
    unmatched = []
    for word in short:  # identical words first, so a slip cannot take another's partner
        if word in rest:
            rest.remove(word)
        else:
            unmatched.append(word)
    for word in unmatched:
        partner = next((w for w in rest if _one_slip(word, w)), None)
        if partner is None:
            return False
        rest.remove(partner)
    return True


def _one_slip(a: str, b: str) -> bool:
    if a == b:
        return True
    return min(len(a), len(b)) >= SLIP_LENGTH and OSA.distance(a, b, score_cutoff=1) <= 1


@dataclass(frozen=True)
class Match:
    """How an import understood one agency name."""

    written: str  # as the plan has it
    kind: MatchKind  # new: created (no directory); unknown: flagged (a directory exists)
    agency: str | None = None  # the agency's name, for exact, alias and fuzzy
    agency_id: int | None = None
    score: int | None = None  # fuzzy only
    nearest: tuple[str, ...] = ()  # unknown only

    def describe(self) -> str:
        if self.kind == "fuzzy":
            return f"fuzzy: {self.written!r} → {self.agency} ({self.score})"
        if self.kind == "unknown":
            near = f" (nearest: {', '.join(self.nearest)})" if self.nearest else ""
            return f"unknown: {self.written!r}{near}"
        return f"{self.kind}: {self.written!r}" + (
            f" → {self.agency}" if self.agency and self.agency != self.written else ""
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "written": self.written, "match": self.kind, "agency": self.agency,
            "score": self.score, "nearest": list(self.nearest),
        }  # fmt: skip


def unknown_reason(match: Match) -> str:
    """The review reason of an action whose agency is not in the directory."""
    near = f" (nearest: {', '.join(match.nearest)})" if match.nearest else ""
    return (
        f"agency: {match.written!r} is not in the agency directory{near}; choose the agency "
        "on the action's page or with `actions update ID --agency`, or add the name to the "
        "directory (`agencies alias`)"
    )


def directory_exists(session: Session) -> bool:
    """Whether any agency came from `agencies import`: then plans cannot create agencies."""
    return session.scalar(select(Agency.id).where(Agency.listed).limit(1)) is not None


class Resolver:
    """The agency names of one import, resolved against the store once each: the store is
    read in one query (a plan names a few agencies on thousands of rows)."""

    def __init__(self, session: Session) -> None:
        self.names: dict[int, str] = {}
        self.by_key: dict[str, int] = {}
        self.directory = False
        rows = session.execute(
            select(Agency.id, Agency.name, Agency.listed, AgencyAlias.alias_key).join(
                AgencyAlias, isouter=True
            )
        )
        for agency_id, name, listed, key in rows:
            self.names[agency_id] = name
            self.directory = self.directory or listed
            if key:
                self.by_key[key] = agency_id
        self._known: dict[str, Match] = {}

    def match(self, name: str) -> Match:
        if name not in self._known:
            self._known[name] = self._match(name)
        return self._known[name]

    def _match(self, name: str) -> Match:
        key = alias_key(name)
        found = self.by_key.get(key) or self.by_key.get(alias_key(_PARENTHESES.sub(" ", name)))
        if found is not None:
            agency = self.names[found]
            kind: MatchKind = "exact" if alias_key(agency) == key else "alias"
            return Match(name, kind, agency, found)
        if not self.directory:
            return Match(name, "new")
        fuzzy = self._fuzzy(key)
        if fuzzy is not None:
            agency_id, score = fuzzy
            return Match(name, "fuzzy", self.names[agency_id], agency_id, score)
        owners = {k: self.names[i] for k, i in self.by_key.items()}
        owners.update({n: n for n in self.names.values()})
        return Match(name, "unknown", nearest=tuple(_nearest(owners, name)))

    def _fuzzy(self, key: str) -> tuple[int, int] | None:
        """The one agency a key is a close spelling of, with its score; None if there is
        none, or two agencies are equally close (a guess between them is no match)."""
        scored = process.extract(
            key, list(self.by_key), scorer=similarity, limit=None, score_cutoff=FUZZY_CUTOFF
        )
        best: dict[int, float] = {}
        for choice, score, _index in scored:
            agency_id = self.by_key[choice]
            best[agency_id] = max(score, best.get(agency_id, 0.0))
        ranked = sorted(best.items(), key=lambda item: -item[1])
        if not ranked or (len(ranked) > 1 and ranked[1][1] == ranked[0][1]):
            return None
        return ranked[0][0], round(ranked[0][1])


def get(session: Session, agency_id: int) -> Agency:
    agency = session.get(Agency, agency_id) if 0 < agency_id <= ID_LIMIT else None
    if agency is None:
        raise NotFound(f"no agency with id {agency_id} (see `dhr-workflow agencies list`)")
    return agency


def resolve(session: Session, name_or_id: str) -> Agency:
    """The agency an id (all digits) or any known spelling refers to."""
    text = name_or_id.strip()
    if text.isdigit():
        return get(session, int(text))
    agency = find(session, text)
    if agency is None:
        raise NotFound(f"no agency called {text!r} {unknown_hint(session, text)}")
    return agency


def _clean_name(name: str) -> str:
    clean = " ".join(name.split())
    if not alias_key(clean):
        raise InvalidInput(f"agency name {name!r} has no letters or digits")
    if len(clean) > NAME_LIMIT:
        raise InvalidInput(f"agency name {clean[:40]!r}... is longer than {NAME_LIMIT} characters")
    return clean


def _refuse_others_alias(session: Session, agency: Agency, spelling: str) -> str:
    """The spelling's key, unless it already names another agency."""
    key = alias_key(spelling)
    owner = _by_key(session, key)
    if owner is not None and owner.id != agency.id:
        raise InvalidInput(
            f"{spelling!r} is already an alias of {owner.name}; merge them instead "
            f"(`dhr-workflow agencies merge {agency.id} {owner.id}`)"
        )
    return key


def rename(
    session: Session, agency: Agency, new_name: str, *, now: dt.datetime, actor: str
) -> Agency:
    """Give an agency a new name; the old one stays an alias, so plans and feeds that use
    it still find the agency."""
    clean = _clean_name(new_name)
    if clean == agency.name:
        raise InvalidInput(f"agency {agency.id} is already called {clean!r}")
    key = _refuse_others_alias(session, agency, clean)
    if key not in {a.alias_key for a in agency.aliases}:
        agency.aliases.append(AgencyAlias(alias_key=key))
    before, agency.name = agency.name, clean
    _touch_actions(session, agency, now)  # feeds show the lead agency's name
    session.flush()
    audit.record(
        session,
        now=now,
        actor=actor,
        kind="agency.rename",
        subject=f"agency:{agency.id}",
        data={"before": {"name": before}, "after": {"name": clean}},
    )
    return agency


def add_alias(session: Session, agency: Agency, alias: str, *, now: dt.datetime, actor: str) -> str:
    """Teach the store another spelling of an agency; returns its normalised key."""
    clean = " ".join(alias.split())
    if not alias_key(clean):
        raise InvalidInput(f"alias {alias!r} has no letters or digits")
    key = _refuse_others_alias(session, agency, clean)
    if key in {a.alias_key for a in agency.aliases}:
        raise InvalidInput(f"{clean!r} is already an alias of {agency.name} (as {key!r})")
    agency.aliases.append(AgencyAlias(alias_key=key))
    session.flush()
    audit.record(
        session,
        now=now,
        actor=actor,
        kind="agency.alias",
        subject=f"agency:{agency.id}",
        data={"alias": clean, "key": key},
    )
    return key


@dataclass(frozen=True)
class MergeResult:
    actions: int
    contacts: int  # every contact moved, including those deactivated as duplicates
    aliases: int
    deactivated: int = 0  # contacts ``into`` already had (same email and role)


def merge(
    session: Session, source: Agency, into: Agency, *, now: dt.datetime, actor: str
) -> MergeResult:
    """Make two agencies one: ``source``'s actions, contacts and aliases move to ``into`` and
    ``source`` is deleted. Its names stay aliases, so anything naming it still finds ``into``.
    A contact ``into`` already has is moved deactivated (never deleted: the log names it)."""
    if source.id == into.id:
        raise InvalidInput(f"cannot merge {source.name} into itself")
    moved_actions = _touch_actions(session, source, now)
    for action in moved_actions:
        action.lead_agency = into
    contacts, deactivated = _move_contacts(session, source, into, now)
    aliases = list(source.aliases)
    for alias in aliases:
        alias.agency = into
    _merge_directory(session, source, into)
    events = [
        ("contact.deactivate", f"contact:{c.id}", _deactivated_by_merge(source, into))
        for c in deactivated
    ]
    data = {
        "source": {"id": source.id, "name": source.name},
        "into": {"id": into.id, "name": into.name},
        "actions": len(moved_actions),
        "contacts": len(contacts),
        "deactivated": len(deactivated),
        "aliases": len(aliases),
    }
    events.append(("agency.merge", f"agency:{into.id}", data))
    session.flush()  # nothing may refer to source when its row goes
    session.delete(source)
    session.flush()
    audit.record_many(session, now=now, actor=actor, events=events)
    return MergeResult(len(moved_actions), len(contacts), len(aliases), len(deactivated))


def _merge_directory(session: Session, source: Agency, into: Agency) -> None:
    """``into`` is listed if either was; ``source``'s parts become ``into``'s, and ``into``
    takes ``source``'s parent if it was one of its parts."""
    into.listed = into.listed or source.listed
    if into.parent_id == source.id:
        into.parent_id = source.parent_id if source.parent_id != into.id else None
    for part in session.scalars(select(Agency).where(Agency.parent_id == source.id)):
        if part.id != into.id:
            part.parent_id = into.id


def _touch_actions(session: Session, agency: Agency, now: dt.datetime) -> list[Action]:
    """The agency's actions, marked changed: a feed's version stamp follows updated_at."""
    led = list(session.scalars(select(Action).where(Action.lead_agency_id == agency.id)))
    for action in led:
        action.updated_at = now
    return led


def _move_contacts(
    session: Session, source: Agency, into: Agency, now: dt.datetime
) -> tuple[list[Contact], list[Contact]]:
    present = {
        (email, role)
        for email, role in session.execute(
            select(Contact.email, Contact.role).where(Contact.agency_id == into.id, Contact.active)
        )
    }
    moving = list(session.scalars(select(Contact).where(Contact.agency_id == source.id)))
    deactivated = []
    for contact in moving:
        contact.agency = into
        contact.updated_at = now
        if contact.active and (contact.email, contact.role) in present:
            contact.active = False
            deactivated.append(contact)
    return moving, deactivated


def _deactivated_by_merge(source: Agency, into: Agency) -> dict[str, object]:
    return {
        "before": {"active": True, "agency": source.name},
        "after": {"active": False, "agency": into.name},
        "reason": f"{into.name} already has this contact ({source.name} merged into it)",
    }


@dataclass(frozen=True)
class AgencySummary:
    id: int
    name: str
    aliases: tuple[str, ...]  # normalised keys (see alias_key), as stored
    open_actions: int
    contacts: int  # active ones
    parent: str | None = None  # the name of the body it is part of
    listed: bool = False  # in the agency directory


def list_with_counts(session: Session) -> list[AgencySummary]:
    """Every agency with its spellings, the open actions it leads and its active contacts."""
    keys: dict[int, list[str]] = {}
    for agency_id, key in session.execute(
        select(AgencyAlias.agency_id, AgencyAlias.alias_key).order_by(AgencyAlias.alias_key)
    ):
        keys.setdefault(agency_id, []).append(key)
    open_actions = _counts(
        session,
        select(Action.lead_agency_id, func.count()).where(
            Action.status.not_in([s.value for s in CLOSED_STATUSES])
        ),
        Action.lead_agency_id,
    )
    contacts = _counts(
        session,
        select(Contact.agency_id, func.count()).where(Contact.active),
        Contact.agency_id,
    )
    agencies = list_all(session)
    names = {a.id: a.name for a in agencies}
    return [
        AgencySummary(
            a.id,
            a.name,
            tuple(keys.get(a.id, [])),
            open_actions.get(a.id, 0),
            contacts.get(a.id, 0),
            names.get(a.parent_id) if a.parent_id else None,
            a.listed,
        )
        for a in agencies
    ]


def _counts(session: Session, query: Any, column: Any) -> dict[int, int]:
    return {k: n for k, n in session.execute(query.group_by(column)) if k is not None}
