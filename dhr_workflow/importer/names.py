"""Names in plan cells: organisations told apart from people and roles, PDF debris mended,
garbled cells recognised, and short section prefixes. Pure functions on strings.

A lead cell often holds more than the organisation: "Principal Social Worker, Bi- Borough
Adult Social Care", "DI Phil Jones (Avon and Somerset Police)". The organisation is the part
with an organisation word (Police, Council, Trust, Care...) and no role word (Manager, Officer,
Worker...); the rest is the owner. A cell with no such part, or with two, is left as written:
guessing which of two bodies leads is the coordinator's call, not the importer's.
"""

from __future__ import annotations

import re

# Words that make a phrase an organisation's name ("Team" and "Unit" are too weak: an
# "Operational Safeguarding Team" is a part of an agency, the owner of the action).


def _word_set(words: str) -> frozenset[str]:
    return frozenset(words.split())


ORGANISATION_WORDS = _word_set(
    """police constabulary council councils trust nhs service services care board boards
    partnership partnerships probation ccg icb foundation hospital hospitals authority housing
    association prison prisons commissioning agency health ambulance fire rescue charity
    refuge aid surgery practice practices school schools college university company ltd
    limited cic project network commission ministry office hmpps crc nps lscb lsab csp
    group"""
)
ROLE_WORDS = _word_set(
    """officer officers manager managers lead leads head director worker workers nurse
    inspector sergeant superintendent constable chair coordinator co-ordinator matron
    consultant adviser advisor practitioner commissioner supervisor di ds dci dc pc dr mr mrs
    ms miss detective chief deputy assistant principal senior specialist administrator
    analyst champion designated named gp midwife therapist psychologist leader leaders
    executive secretary"""
)
_WORD = re.compile(r"[A-Za-z][A-Za-z'’&.-]*")
_ACRONYM = re.compile(r"^[A-Z][A-Z&]{1,7}$")
_SEPARATORS = re.compile(r"\s*[,;]\s*|\s+[–—-]\s+|\s*[–—]\s*")
_ROLE_OF = re.compile(r"^(?P<role>.+)\s+(?:of|for|at|in|within)\s+(?:the\s+)?(?P<body>[A-Z].+)$")
_BRACKETED = re.compile(r"^(?P<outer>.+?)\s*\((?P<inner>[^()]+)\)\s*$")
# "Bi- Borough", "Pre- Tenancy": a line break inside a hyphenated word, as PDF text keeps it.
_BROKEN_HYPHEN = re.compile(
    r"\b(?P<head>[A-Z][a-z]{0,4}|(?i:bi|pre|post|non|co|anti|multi|inter|cross|sub|self|"
    r"tri|ex))- (?P<tail>[A-Za-z])"
)
DATE = re.compile(
    r"\b\d{1,2}\s*[/.]\s*\d{1,2}\s*[/.]\s*\d{2,4}\b|"
    r"\b(jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?\s*[-']?\s*\d{4}\b",
    re.I,
)
_SMALL = {"of", "and", "the", "for", "to", "in", "on", "at", "by", "with", "&", "a", "an"}


def mend(text: str) -> str:
    """A name with the PDF's broken hyphens closed ("Bi- Borough" -> "Bi-Borough"). Words
    are never respelled: "enagaging" stays as the plan wrote it."""
    return _BROKEN_HYPHEN.sub(lambda m: f"{m['head']}-{m['tail']}", text)


def _words(text: str) -> list[str]:
    return [w.strip(".'’").lower() for w in _WORD.findall(text)]


def is_organisation(part: str) -> bool:
    """A phrase that names a body: an organisation word, no role word, no address or date."""
    part = part.strip()
    if not part or "@" in part or DATE.search(part) or not part[0].isupper():
        return False
    words = _words(part)
    if any(w in ROLE_WORDS for w in words):
        return False
    return any(w in ORGANISATION_WORDS for w in words) or bool(_ACRONYM.match(part))


def split_holder(cell: str) -> tuple[str, str | None]:
    """(the owner: person, role or address; the organisation, if the cell names exactly one
    beside them). "DI Phil Jones (Avon and Somerset Police)" -> ("DI Phil Jones", "Avon and
    Somerset Police"); a cell that is only an organisation, or names none, gives (cell, None)."""
    text = " ".join(mend(cell).split())
    bracketed = _BRACKETED.match(text)
    if bracketed and is_organisation(bracketed["inner"]):
        if not is_organisation(bracketed["outer"]):
            return bracketed["outer"].strip(" ,–-"), bracketed["inner"].strip()
        return text, None  # "Adult Social Care (Somerset County Council)": one body
    parts = [p for p in _SEPARATORS.split(text) if p.strip()]
    bodies = [p for p in parts if is_organisation(p)]
    if len(parts) < 2 or len(bodies) != 1:
        return text, _role_of_body(text)
    rest = [p for p in parts if p is not bodies[0]]
    return ", ".join(rest), bodies[0]


def _role_of_body(text: str) -> str | None:
    # "Head of Safeguarding for Northshire NHS Trust": a role's title ending in its body. The
    # title stays the owner's words; the body, of two words at least, is the agency.
    found = _ROLE_OF.match(text)
    if not found or not any(w in ROLE_WORDS for w in _words(found["role"])):
        return None
    body = found["body"]
    return body if len(body.split()) >= 2 and is_organisation(body) else None


def agency_problem(name: str) -> str | None:
    """Why a cell's text cannot be an agency's name (a PDF that ran two columns together),
    or None if it can."""
    text = name.strip()
    words = text.split()
    if DATE.search(text) or re.fullmatch(r"[\d\s/.\-]+", text):
        return "holds a date"
    if text[:1].islower():
        return "starts in the middle of a word or sentence"
    if _mixed_scripts(text):
        return "mixes letters of two alphabets"
    if len(words) == 1 and not _plausible_single_word(text):
        return "is a single word, not an organisation's name"
    return None


def _plausible_single_word(word: str) -> bool:
    # "NHS", "Police", "SafeLives", "Barnardo's", "Catch22": an acronym, an organisation word
    # or a brand written as one; "Leaders" is the tail of a wrapped "Team Leaders".
    return bool(
        (len(word) > 1 and word.isupper())
        or word.lower().strip(".") in ORGANISATION_WORDS
        or re.search(r"[a-z][A-Z]|\d|['’]", word)
    )


def _mixed_scripts(text: str) -> bool:
    latin = any("a" <= c.lower() <= "z" for c in text)
    other = any(c.isalpha() and not c.isascii() and not _latin_accented(c) for c in text)
    return latin and other


def _latin_accented(char: str) -> bool:
    return "\u00c0" <= char <= "\u024f"  # é, ö, ł...: names written with accents


def owner_problem(owner: str) -> str | None:
    """A date inside an owner cell: the target date column ran into it."""
    without_addresses = re.sub(r"\S+@\S+", "", owner)
    return "holds a date" if DATE.search(without_addresses) else None


def initials(name: str) -> str:
    """A short prefix for a section's refs, from the first letters of the name's significant
    words, bracketed parts left out: "Northshire Constabulary" -> "NC", "West Mercia police"
    -> "WMP", "Adult Social Care (Somerset County Council)" -> "ASC"."""
    words = re.findall(r"[A-Za-z0-9][\w'’-]*", re.sub(r"\([^)]*\)?", " ", name))
    letters = [w[0].upper() for w in words if w.lower() not in _SMALL]
    return "".join(letters)[:6] or "S"


def unique_prefixes(sections: list[str]) -> dict[str, str]:
    """Each section's prefix, in order of appearance; a clash gets a number ("NC", "NC2")."""
    taken: dict[str, str] = {}
    used: set[str] = set()
    for section in sections:
        base = initials(section)
        prefix, n = base, 1
        while prefix in used:
            n += 1
            prefix = f"{base}{n}"
        used.add(prefix)
        taken[section] = prefix
    return taken
