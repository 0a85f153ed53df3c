"""Sign-in by email link, and who a signed-in person is.

There are no user accounts: access follows contacts. A person may sign in when their address
belongs to an active contact whose role signs in (coordinator, chair, agency lead or manager).

- A sign-in link is a random secret, valid 15 minutes, used once; only its SHA-256 is stored.
  Asking for links is limited per address (here, in the store, so every replica counts the same)
  and per client (in the web layer).
- A session is another random secret in a signed cookie; its hash is stored with the time it
  was last seen, so signing out, 8 idle hours, 24 hours in all or deactivating the contact
  ends it at once.
- Using a link is claim-then-act: a conditional UPDATE wins the link or does not.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dhr_workflow import audit
from dhr_workflow.models import AppSecret, Contact, ContactRole, SigninToken, WebSession

LINK_LIFETIME = dt.timedelta(minutes=15)
IDLE_TIMEOUT = dt.timedelta(hours=8)
LONGEST_SESSION = dt.timedelta(hours=24)  # however busy: sign in again at least daily
LINKS_PER_ADDRESS = 3  # per LINK_LIFETIME: enough for a lost email, too few to flood a mailbox
SIGNIN_ROLES = (ContactRole.COORDINATOR, ContactRole.CHAIR, ContactRole.LEAD, ContactRole.MANAGER)
_TOUCH_EVERY = dt.timedelta(minutes=1)  # last_seen is written at most this often


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """A signed-in person and what they may see and change.

    Partnership-wide coordinators see and change everything; partnership-wide chairs read
    everything. A coordinator or chair of one review (a contact with a review) sees that
    review's actions, and a coordinator of one review changes them. Agency leads and managers
    see their agencies' actions.
    """

    email: str
    name: str
    roles: frozenset[str]  # the partnership-wide roles
    agency_ids: frozenset[int] = frozenset()
    review_ids: frozenset[int] = frozenset()  # reviews they coordinate or chair
    coordinated_ids: frozenset[int] = frozenset()  # reviews they coordinate

    @property
    def coordinator(self) -> bool:
        """A partnership-wide coordinator: every page, every change."""
        return ContactRole.COORDINATOR in self.roles

    @property
    def reads_all(self) -> bool:
        return self.coordinator or ContactRole.CHAIR in self.roles

    @property
    def scope(self) -> Scope | None:
        """The actions they may see, for queries (None: all of them)."""
        return None if self.reads_all else Scope(self.agency_ids, self.review_ids)

    def sees(self, review_id: int, agency_id: int | None) -> bool:
        return (
            self.reads_all
            or review_id in self.review_ids
            or (agency_id is not None and agency_id in self.agency_ids)
        )

    def edits(self, review_id: int) -> bool:
        return self.coordinator or review_id in self.coordinated_ids

    @property
    def role_label(self) -> str:
        for role, label in (
            (ContactRole.COORDINATOR, "DHR coordinator"),
            (ContactRole.CHAIR, "Partnership chair"),
        ):
            if role in self.roles:
                return label
        if self.coordinated_ids:
            return "DHR coordinator for a review"
        if self.review_ids:
            return "Chair for a review"
        return "Agency contact"


@dataclass(frozen=True)
class Scope:
    """What a reader who does not see everything may see: the actions their agencies lead and
    every action of the reviews they belong to."""

    agency_ids: frozenset[int]
    review_ids: frozenset[int]


def principal(session: Session, email: str) -> Principal | None:
    """Who this address is, if it may sign in (active contacts with a sign-in role)."""
    rows = list(
        session.scalars(
            select(Contact)
            .where(
                func.lower(Contact.email) == email.strip().lower(),
                Contact.active,
                Contact.role.in_([r.value for r in SIGNIN_ROLES]),
            )
            .order_by(Contact.id)
        )
    )
    if not rows:
        return None
    wide = [c for c in rows if c.agency_id is None and c.review_id is None]
    scoped = [c for c in rows if c.review_id is not None]
    return Principal(
        email=rows[0].email,
        name=rows[0].name,
        roles=frozenset(c.role for c in wide),
        agency_ids=frozenset(c.agency_id for c in rows if c.agency_id is not None),
        review_ids=frozenset(c.review_id for c in scoped if c.review_id is not None),
        coordinated_ids=frozenset(
            c.review_id
            for c in scoped
            if c.review_id is not None and c.role == ContactRole.COORDINATOR
        ),
    )


@dataclass(frozen=True)
class LinkRequest:
    """The outcome of asking for a link: a secret to send, or why there is none (which the web
    page never tells: it gives the same answer whether or not the address is known)."""

    secret: str | None
    person: Principal | None
    limited: bool = False


def request_link(
    session: Session, email: str, *, now: dt.datetime, client: str | None
) -> LinkRequest:
    """A new sign-in secret for this address, unless it may not sign in or has asked for
    LINKS_PER_ADDRESS links in the last 15 minutes."""
    person = principal(session, email)
    if person is None:
        return LinkRequest(None, None)
    recent = session.scalar(
        select(func.count())
        .select_from(SigninToken)
        .where(SigninToken.email == person.email, SigninToken.created_at > now - LINK_LIFETIME)
    )
    if (recent or 0) >= LINKS_PER_ADDRESS:
        audit.record(
            session, now=now, actor=person.email, kind="signin.limited", subject="signin",
            data={"client": client},
        )  # fmt: skip
        return LinkRequest(None, person, limited=True)
    secret = secrets.token_urlsafe(32)
    session.add(
        SigninToken(
            token_hash=digest(secret), email=person.email, created_at=now,
            expires_at=now + LINK_LIFETIME, client=(client or "")[:100] or None,
        )
    )  # fmt: skip
    audit.record(
        session, now=now, actor=person.email, kind="signin.link", subject="signin",
        data={"client": client, "expires_at": now + LINK_LIFETIME},
    )  # fmt: skip
    return LinkRequest(secret, person)


def link_email(session: Session, secret: str, *, now: dt.datetime) -> str | None:
    """The address a live, unused link belongs to (for the confirmation page), or None."""
    return session.scalar(
        select(SigninToken.email).where(
            SigninToken.token_hash == digest(secret),
            SigninToken.used_at.is_(None),
            SigninToken.expires_at > now,
        )
    )


def use_link(session: Session, secret: str, *, now: dt.datetime) -> tuple[str, Principal] | None:
    """Spend a sign-in link: returns a new session secret and the person, or None when the
    link is unknown, used or expired, or the person may no longer sign in."""
    claimed = session.execute(
        update(SigninToken)
        .where(
            SigninToken.token_hash == digest(secret),
            SigninToken.used_at.is_(None),
            SigninToken.expires_at > now,
        )
        .values(used_at=now)
        .returning(SigninToken.email)
    ).scalar_one_or_none()
    if claimed is None:
        return None
    person = principal(session, claimed)
    if person is None:
        return None
    token = secrets.token_urlsafe(32)
    session.add(
        WebSession(token_hash=digest(token), email=person.email, created_at=now, last_seen_at=now)
    )
    audit.record(session, now=now, actor=person.email, kind="signin", subject="signin", data={})
    return token, person


def resume(session: Session, token: str, *, now: dt.datetime) -> tuple[Principal | None, bool]:
    """The person a session belongs to while it is live, and whether its idle clock is due a
    refresh (see :func:`touch`; most page views write nothing)."""
    row = session.scalar(
        select(WebSession).where(
            WebSession.token_hash == digest(token), WebSession.ended_at.is_(None)
        )
    )
    if row is None or now - row.last_seen_at > IDLE_TIMEOUT:
        return None, False
    if now - row.created_at > LONGEST_SESSION:
        return None, False
    return principal(session, row.email), now - row.last_seen_at > _TOUCH_EVERY


def touch(session: Session, token: str, *, now: dt.datetime) -> None:
    session.execute(
        update(WebSession).where(WebSession.token_hash == digest(token)).values(last_seen_at=now)
    )


def end(session: Session, token: str, *, now: dt.datetime) -> None:
    """Sign out: the session's cookie is worthless from now on."""
    email = session.execute(
        update(WebSession)
        .where(WebSession.token_hash == digest(token), WebSession.ended_at.is_(None))
        .values(ended_at=now)
        .returning(WebSession.email)
    ).scalar_one_or_none()
    if email is not None:
        audit.record(session, now=now, actor=email, kind="signout", subject="signin", data={})


def shared_secret(session: Session, name: str, *, now: dt.datetime) -> str:
    """A deployment-wide secret made on first use and kept in the store, so every replica
    signs cookies with the same key without anyone configuring one."""
    found = session.scalar(select(AppSecret.value).where(AppSecret.name == name))
    if found is not None:
        return found
    try:
        with session.begin_nested():
            session.execute(
                insert(AppSecret).values(name=name, value=secrets.token_hex(32), created_at=now)
            )
    except IntegrityError:
        pass  # another replica made it first; use theirs
    return session.scalars(select(AppSecret.value).where(AppSecret.name == name)).one()
