"""The store's tables (SQLAlchemy 2.x declarative models).

The schema itself is owned by the Alembic migrations in ``dhr_workflow/migrations``; these models
must match them (a test compares the two).
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.sql.expression import false, true
from sqlalchemy.sql.expression import text as sql_text


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware datetimes stored as UTC: SQLite drops offsets, so normalise on the way in and out."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; pass an aware datetime")
        return value.astimezone(dt.UTC)

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class ActionStatus(enum.StrEnum):
    OPEN = "open"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    BLOCKED = "blocked"
    WITHDRAWN = "withdrawn"


# Actions in these states are finished: no reminders, not counted as open.
CLOSED_STATUSES = (ActionStatus.COMPLETED, ActionStatus.WITHDRAWN)


class DueBasis(enum.StrEnum):
    FIXED = "fixed"
    MONTH_END = "month_end"
    SEASON = "season"
    RELATIVE = "relative"
    RECURRING = "recurring"
    NONE = "none"


class ReviewStatus(enum.StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class FiringOutcome(enum.StrEnum):
    """What the ledger recorded for a rule, subject and period."""

    FIRED = "fired"  # a message told of it
    SUPERSEDED = "superseded"  # a lower ladder step skipped for a higher one, no message
    GAP = "gap"  # a role that resolved to nobody, reported once


class NotificationState(enum.StrEnum):
    """Where a message is in the outbox (the diagram in dhr_workflow.outbox)."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    DEAD = "dead"


class ContactRole(enum.StrEnum):
    LEAD = "lead"
    MANAGER = "manager"
    COORDINATOR = "coordinator"
    CHAIR = "chair"
    FAMILY_LIAISON = "family_liaison"


# Stable constraint names so Alembic migrations can refer to them on both backends.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _now_column() -> Mapped[dt.datetime]:
    return mapped_column(UTCDateTime(), nullable=False)


class Review(Base):
    __tablename__ = "review"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ref: Mapped[str] = mapped_column(String(100), unique=True, nullable=False)
    title: Mapped[str] = mapped_column(Text, nullable=False)
    partnership: Mapped[str | None] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20), nullable=False, default="dhr")
    status: Mapped[str] = mapped_column(String(20), nullable=False, default=ReviewStatus.OPEN)
    plan_agreed_on: Mapped[dt.date | None] = mapped_column(Date)
    report_accepted_on: Mapped[dt.date | None] = mapped_column(Date)
    published_on: Mapped[dt.date | None] = mapped_column(Date)
    completed_on: Mapped[dt.date | None] = mapped_column(Date)
    created_at: Mapped[dt.datetime] = _now_column()
    updated_at: Mapped[dt.datetime] = _now_column()

    recommendations: Mapped[list[Recommendation]] = relationship(back_populates="review")
    actions: Mapped[list[Action]] = relationship(back_populates="review")


class Agency(Base):
    __tablename__ = "agency"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(300), unique=True, nullable=False)
    created_at: Mapped[dt.datetime] = _now_column()
    # In the agency directory (`agencies import`): once any agency is, plans may only name
    # known agencies, and an unknown name is flagged instead of created.
    listed: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )
    # The body it is part of ("Operational Safeguarding Team" of "Bi-Borough Adult Social
    # Care"): listed only; escalation and reports do not follow it.
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("agency.id"), index=True)

    aliases: Mapped[list[AgencyAlias]] = relationship(back_populates="agency")
    parent: Mapped[Agency | None] = relationship(remote_side=[id])


class AgencyAlias(Base):
    """A normalised spelling of an agency's name (see :func:`agencies.alias_key`)."""

    __tablename__ = "agency_alias"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agency_id: Mapped[int] = mapped_column(ForeignKey("agency.id"), nullable=False, index=True)
    alias_key: Mapped[str] = mapped_column(String(300), unique=True, nullable=False)

    agency: Mapped[Agency] = relationship(back_populates="aliases")


class Contact(Base):
    __tablename__ = "contact"
    __table_args__ = (
        Index("ix_contact_role_agency", "role", "agency_id"),
        Index("ix_contact_review_role", "review_id", "role"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    email: Mapped[str] = mapped_column(String(320), nullable=False)
    role: Mapped[str] = mapped_column(String(30), nullable=False)
    agency_id: Mapped[int | None] = mapped_column(ForeignKey("agency.id"))
    review_id: Mapped[int | None] = mapped_column(ForeignKey("review.id"))
    # Contacts are deactivated, never deleted: the audit log and past messages refer to them.
    active: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=True, server_default=true()
    )
    created_at: Mapped[dt.datetime] = _now_column()
    updated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    agency: Mapped[Agency | None] = relationship()
    review: Mapped[Review | None] = relationship()


class Recommendation(Base):
    __tablename__ = "recommendation"
    __table_args__ = (
        UniqueConstraint("review_id", "section", "ref", name="uq_recommendation_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    review_id: Mapped[int] = mapped_column(ForeignKey("review.id"), nullable=False, index=True)
    ref: Mapped[str] = mapped_column(String(50), nullable=False)
    text: Mapped[str] = mapped_column(Text, nullable=False, default="")
    scope: Mapped[str | None] = mapped_column(Text)
    # Where it came from: "overview", or the agency section heading it sat under.
    section: Mapped[str] = mapped_column(String(300), nullable=False, default="overview")
    created_at: Mapped[dt.datetime] = _now_column()

    review: Mapped[Review] = relationship(back_populates="recommendations")
    actions: Mapped[list[Action]] = relationship(back_populates="recommendation")


class Action(Base):
    __tablename__ = "action"
    __table_args__ = (
        Index("ix_action_status_due", "status", "due_date"),
        UniqueConstraint("review_id", "source_key", name="uq_action_source_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    review_id: Mapped[int] = mapped_column(ForeignKey("review.id"), nullable=False, index=True)
    recommendation_id: Mapped[int | None] = mapped_column(
        ForeignKey("recommendation.id"), index=True
    )
    ref: Mapped[str] = mapped_column(String(50), nullable=False, default="")
    text: Mapped[str] = mapped_column(Text, nullable=False, default="")
    lead_agency_id: Mapped[int | None] = mapped_column(ForeignKey("agency.id"), index=True)
    owner_text: Mapped[str | None] = mapped_column(Text)
    owner_contact_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id"))
    milestones: Mapped[str | None] = mapped_column(Text)
    target_text: Mapped[str | None] = mapped_column(Text)
    due_date: Mapped[dt.date | None] = mapped_column(Date, index=True)
    due_basis: Mapped[str] = mapped_column(String(20), nullable=False, default=DueBasis.NONE)
    # For relative and recurring targets: which review anchor and what offset/interval, e.g.
    # {"anchor": "published_on", "months": 3} or {"every_months": 6}.
    due_rule: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(
        String(20), nullable=False, default=ActionStatus.OPEN, index=True
    )
    completed_on: Mapped[dt.date | None] = mapped_column(Date)
    outcome: Mapped[str | None] = mapped_column(Text)
    needs_review: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    review_reasons: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    # Bumped on every change a calendar must see (date, status), for iCal SEQUENCE.
    sequence: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    source_file: Mapped[str | None] = mapped_column(Text)
    source_row: Mapped[int | None] = mapped_column(Integer)
    # "section|recommendation ref|n": the same action in a re-imported or revised plan.
    source_key: Mapped[str | None] = mapped_column(String(400))
    # Plan-owned fields a coordinator corrected, each with the plan's value at that moment:
    # re-importing the same plan keeps the correction; a revised plan's new value wins.
    overrides: Mapped[dict[str, Any]] = mapped_column(
        JSON, nullable=False, default=dict, server_default=sql_text("'{}'")
    )
    created_at: Mapped[dt.datetime] = _now_column()
    updated_at: Mapped[dt.datetime] = _now_column()

    review: Mapped[Review] = relationship(back_populates="actions")
    recommendation: Mapped[Recommendation | None] = relationship(back_populates="actions")
    lead_agency: Mapped[Agency | None] = relationship()
    owner_contact: Mapped[Contact | None] = relationship()


class Firing(Base):
    """The ledger: a rule fired for a subject in a period. Uniqueness makes ticks idempotent."""

    __tablename__ = "firing"
    __table_args__ = (
        UniqueConstraint(
            "rule_id", "subject_type", "subject_id", "period_key", name="uq_firing_key"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Key columns are NOT NULL: NULLs are distinct in unique constraints.
    rule_id: Mapped[str] = mapped_column(String(100), nullable=False)
    subject_type: Mapped[str] = mapped_column(String(20), nullable=False)
    subject_id: Mapped[int] = mapped_column(Integer, nullable=False)
    period_key: Mapped[str] = mapped_column(String(100), nullable=False)
    step: Mapped[str | None] = mapped_column(String(50))
    outcome: Mapped[str] = mapped_column(String(20), nullable=False)  # fired | superseded | gap
    fired_at: Mapped[dt.datetime] = _now_column()
    notification_id: Mapped[int | None] = mapped_column(ForeignKey("notification.id"), index=True)


class Notification(Base):
    """The outbox: a finished message and its delivery state."""

    __tablename__ = "notification"
    __table_args__ = (Index("ix_notification_state_next", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule_id: Mapped[str | None] = mapped_column(String(100))
    template: Mapped[str] = mapped_column(String(100), nullable=False)
    to_addrs: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    cc_addrs: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    subject: Mapped[str] = mapped_column(Text, nullable=False)
    text_body: Mapped[str] = mapped_column(Text, nullable=False)
    html_body: Mapped[str | None] = mapped_column(Text)
    calendar: Mapped[str | None] = mapped_column(Text)
    # A PDF the message carries (the partnership report's), kept with it like its bodies.
    attachment_name: Mapped[str | None] = mapped_column(String(200))
    attachment: Mapped[bytes | None] = mapped_column(LargeBinary)
    message_id: Mapped[str] = mapped_column(String(300), unique=True, nullable=False)
    # The review's coordinator: people answer a reminder by replying to it.
    reply_to: Mapped[str | None] = mapped_column(String(320))
    state: Mapped[str] = mapped_column(String(20), nullable=False, default="pending")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[dt.datetime] = _now_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[dt.datetime] = _now_column()
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class Invitation(Base):
    """A calendar invitation sent for an action to one address: what its calendar now shows,
    so a completed, withdrawn or moved action can send a CANCEL or an updated REQUEST."""

    __tablename__ = "invitation"
    __table_args__ = (UniqueConstraint("action_id", "address", name="uq_invitation_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    action_id: Mapped[int] = mapped_column(ForeignKey("action.id"), nullable=False, index=True)
    address: Mapped[str] = mapped_column(String(320), nullable=False)
    sequence: Mapped[int] = mapped_column(Integer, nullable=False)
    due_date: Mapped[dt.date | None] = mapped_column(Date)
    state: Mapped[str] = mapped_column(String(20), nullable=False)  # active | cancelled
    updated_at: Mapped[dt.datetime] = _now_column()


class AuditEvent(Base):
    """Append-only, hash-chained. ``data`` is stored as the exact canonical JSON that was hashed."""

    __tablename__ = "audit_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, unique=True, nullable=False)
    at: Mapped[dt.datetime] = _now_column()
    actor: Mapped[str] = mapped_column(String(200), nullable=False)
    kind: Mapped[str] = mapped_column(String(100), nullable=False, index=True)
    subject: Mapped[str] = mapped_column(String(200), nullable=False, index=True)
    data: Mapped[str] = mapped_column(Text, nullable=False)
    prev_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False)


class FeedToken(Base):
    __tablename__ = "feed_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    scope_kind: Mapped[str] = mapped_column(String(20), nullable=False)  # all|review|agency|owner
    scope_value: Mapped[str | None] = mapped_column(String(320))
    label: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = _now_column()
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class ActionUpdate(Base):
    """A dated progress note on an action (from the web app, a message link or the CLI)."""

    __tablename__ = "action_update"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    action_id: Mapped[int] = mapped_column(ForeignKey("action.id"), nullable=False, index=True)
    at: Mapped[dt.datetime] = _now_column()
    author: Mapped[str] = mapped_column(String(320), nullable=False)
    note: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str | None] = mapped_column(String(20))  # the status set with the note
    source: Mapped[str] = mapped_column(String(20), nullable=False)  # web | cli | link


class SigninToken(Base):
    """A single-use sign-in link: only its hash is kept."""

    __tablename__ = "signin_token"
    __table_args__ = (Index("ix_signin_token_email_created", "email", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    email: Mapped[str] = mapped_column(String(320), nullable=False)
    created_at: Mapped[dt.datetime] = _now_column()
    expires_at: Mapped[dt.datetime] = _now_column()
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    client: Mapped[str | None] = mapped_column(String(100))


class WebSession(Base):
    """A signed-in browser. The cookie carries a secret whose hash is kept here, so signing
    out or deactivating a contact ends the session at once."""

    __tablename__ = "web_session"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    email: Mapped[str] = mapped_column(String(320), nullable=False)
    created_at: Mapped[dt.datetime] = _now_column()
    last_seen_at: Mapped[dt.datetime] = _now_column()
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class PlanUpload(Base):
    """A plan uploaded in the web app, kept between its preview and the coordinator's
    confirmation (in the database, so any replica can confirm it)."""

    __tablename__ = "plan_upload"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    filename: Mapped[str] = mapped_column(String(300), nullable=False)
    review_ref: Mapped[str] = mapped_column(String(100), nullable=False)
    content: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    uploaded_by: Mapped[str] = mapped_column(String(320), nullable=False)
    created_at: Mapped[dt.datetime] = _now_column()


class AppSecret(Base):
    """Secrets the deployment did not configure, made once and shared by every replica
    (the session-cookie signing key when DHR_SECRET_KEY is not set)."""

    __tablename__ = "app_secret"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[str] = mapped_column(String(200), nullable=False)
    created_at: Mapped[dt.datetime] = _now_column()


class ActionLink(Base):
    """A link in a message that lets its recipient act on one action without signing in:
    report progress, mark it done, or ask for more time. Only the token's hash is kept."""

    __tablename__ = "action_link"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    action_id: Mapped[int] = mapped_column(ForeignKey("action.id"), nullable=False, index=True)
    recipient: Mapped[str] = mapped_column(String(320), nullable=False)
    purpose: Mapped[str] = mapped_column(String(20), nullable=False)  # progress | done | extend
    created_at: Mapped[dt.datetime] = _now_column()
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    action: Mapped[Action] = relationship()


class ExtensionRequest(Base):
    """More time asked for an action; the coordinator approves or declines it."""

    __tablename__ = "extension_request"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    action_id: Mapped[int] = mapped_column(ForeignKey("action.id"), nullable=False, index=True)
    requested_by: Mapped[str] = mapped_column(String(320), nullable=False)
    link_id: Mapped[int | None] = mapped_column(ForeignKey("action_link.id"))
    current_due: Mapped[dt.date | None] = mapped_column(Date)  # the due date when asked
    proposed_due: Mapped[dt.date] = mapped_column(Date, nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    state: Mapped[str] = mapped_column(String(20), nullable=False, index=True)
    created_at: Mapped[dt.datetime] = _now_column()
    decided_by: Mapped[str | None] = mapped_column(String(320))
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    decision_note: Mapped[str | None] = mapped_column(Text)

    action: Mapped[Action] = relationship()


class TickMark(Base):
    """The latest committed tick of a rule: a tick as of an earlier time commits nothing (a
    clock set back, or `tick --at` in the past, must not send again what was superseded)."""

    __tablename__ = "tick_mark"

    rule_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    at: Mapped[dt.datetime] = _now_column()
