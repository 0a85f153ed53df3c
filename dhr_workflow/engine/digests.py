"""Messages from hits: one per recipient and template (grouping), then their words
(rendering): action digests, and the partnership report and family update of a review."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.orm import Session, aliased

from dhr_workflow import audit, links
from dhr_workflow.batching import chunked
from dhr_workflow.engine.model import CALENDAR_TEMPLATE, Context, Gap, Hit, Message
from dhr_workflow.models import (
    CLOSED_STATUSES,
    Action,
    ActionStatus,
    ActionUpdate,
    Agency,
    Contact,
    Recommendation,
    Review,
)
from dhr_workflow.recipients import Directory, Subject
from dhr_workflow.ruleset import FAMILY_SAFE, Notify
from dhr_workflow.targets import add_months
from dhr_workflow.templates import Rendered, family_safe

TEXT_SHORT = 160  # characters of action text in a message


def group(hits: Iterable[Hit], directory: Directory) -> tuple[list[Message], list[Gap], list[Hit]]:
    """One message per recipient and template, listing every action it concerns for that
    recipient — and only those: a manager copied on one agency's escalation never sees
    another agency's actions."""
    messages: dict[tuple[Any, ...], Message] = {}
    gaps: dict[tuple[str, str], Gap] = {}
    unsent = []
    # Addresses depend only on the notify step and the subject's review/agency/owner, which
    # neighbouring actions often share (one plan's actions). Bounded: over a large store most
    # subjects are distinct and an unbounded cache would hold one entry per action.
    resolved: dict[tuple[int, int, int | None, int | None], Addresses] = {}
    for hit in hits:
        delivered = False
        # Who hears of this action for the first time: its owner and agency lead, if nobody
        # has told them before (escalation wording says so, and claims no earlier reminder).
        own = _own(hit, directory) if hit.first else ()
        for notify in hit.notify:
            cache_key = (id(notify), hit.review_id, hit.agency_id, hit.owner_contact_id)
            if cache_key not in resolved:
                if len(resolved) >= ADDRESS_CACHE:
                    resolved.clear()
                resolved[cache_key] = _addresses(notify, hit.subject, directory)
            to, cc, missing = resolved[cache_key]
            for role in missing:
                gaps.setdefault((hit.rule, role), Gap(hit.rule, role)).hits.append(hit)
            review_key = hit.subject_id if hit.subject_type == "review" else None
            for address in (*to, *cc):
                delivered = True
                key = (notify.template, address, review_key)
                msg = messages.setdefault(
                    key, Message(hit.rule, [], notify.template, [address], [], False, [])
                )
                if not msg.hits or msg.hits[-1] is not hit:  # twice only within one hit
                    msg.hits.append(hit)
                if address in own:
                    msg.first.add(hit.subject_id)
                # Invitations go to the addressees of a calendar step, not to copies.
                msg.calendar = msg.calendar or (notify.calendar == "invite" and address in to)
                if (hit.step or "") not in msg.steps:
                    msg.steps.append(hit.step or "")
        if not delivered:
            unsent.append(hit)
    return list(messages.values()), list(gaps.values()), unsent


def _own(hit: Hit, directory: Directory) -> tuple[str, ...]:
    subject = hit.subject
    return (*directory.resolve("owner", subject), *directory.resolve("agency.lead", subject))


ADDRESS_CACHE = 4096
Addresses = tuple[list[str], list[str], list[str]]  # to, cc, roles that resolved to nobody


def _addresses(notify: Notify, subject: Subject, directory: Directory) -> Addresses:
    missing: list[str] = []

    def each(roles: list[str]) -> list[str]:
        found: list[str] = []
        for role in roles:
            resolved = directory.resolve(role, subject)
            if not resolved:
                missing.append(role)
            found += [a for a in resolved if a not in found]
        return found

    to, cc = each(notify.to), each(notify.cc)
    if not to:  # nobody to address it to: the copies become the addressees
        to, cc = cc, []
    return sorted(to), sorted(a for a in cc if a not in to), missing


# --- rendering -------------------------------------------------------------------------------


def render(
    session: Session,
    messages: list[Message],
    ctx: Context,
    directory: Directory | None = None,
) -> None:
    directory = directory or Directory(session)
    for chunk in chunked(messages, RENDER_CHUNK):
        digests = [m for m in chunk if m.hits[0].subject_type != "review"]
        _render_digests(session, digests, ctx, directory)
        reports = [m for m in chunk if m.hits[0].subject_type == "review"]
        _render_reports(session, reports, ctx, directory)


def _set_rendered(msg: Message, rendered: Rendered) -> None:
    msg.rendered, msg.subject = rendered, rendered.subject


# Messages whose actions carry no "report progress / done / more time" links: the coordinator's
# checklist (it links the action pages) and calendar follow-ups.
NO_LINKS = {"needs_review", CALENDAR_TEMPLATE}


def _render_digests(
    session: Session, digests: list[Message], ctx: Context, directory: Directory
) -> None:
    # A digest lists at most LISTED actions ("and N more"): past that an email stops being
    # one clear reminder, and rendering stays cheap however large the backlog.
    wanted = {i for m in digests for i in m.action_ids[:LISTED]}
    rows = {r.id: r for r in action_rows(session, Action.id.in_(sorted(wanted)))} if wanted else {}
    for msg in digests:
        ids = msg.action_ids
        hits = {h.subject_id: h for h in msg.hits}
        listed = [
            _for_recipient(action_context(rows[i], ctx.today), hits[i], msg, ctx)
            for i in ids[:LISTED]
        ]
        refs = {a["review"] for a in listed}
        msg.review = refs.pop() if len(refs) == 1 and len(ids) <= LISTED else None
        context = {"actions": listed, "more": len(ids) - len(listed), "total": len(ids)}
        common = _base_context(msg, ctx, directory)
        _set_rendered(msg, ctx.templates.render(msg.template, common | context))


def _for_recipient(action: dict[str, Any], hit: Hit, msg: Message, ctx: Context) -> dict[str, Any]:
    """What one recipient's message says about one action: its page, their own links to act
    on it, whether this is the first they hear of it, and which reminders went before."""
    action["sent_steps"] = list(hit.sent)
    action["first_notice"] = hit.subject_id in msg.first
    action["page"] = f"{ctx.base_url}/actions/{hit.subject_id}" if ctx.base_url else None
    action["links"] = {}
    if ctx.base_url and msg.template not in NO_LINKS:
        for purpose in links.PURPOSES:
            made = links.make(hit.subject_id, msg.to[0], purpose)
            msg.links.append(made)
            action["links"][purpose] = ctx.base_url + links.path(made)
    return action


def _render_reports(
    session: Session, reports: list[Message], ctx: Context, directory: Directory
) -> None:
    # Review summaries a chunk of reviews at a time: a backlog of thousands of reports must
    # not hold every action of every review in memory at once.
    for chunk in chunked(reports, REVIEW_CHUNK):
        summaries = review_contexts(session, chunk, ctx)
        pdfs: dict[str, Any] = {}  # one PDF per review, however many get its report
        for msg in chunk:
            summary = summaries[id(msg)]
            msg.review = summary["review"]["ref"]
            if msg.template == REPORT_TEMPLATE and ctx.report_attach_mb > 0:
                attached = _report_pdf(session, msg, ctx, pdfs)
                msg.attachment = attached.attachment
                summary = summary | {"attachment_line": attached.line}
            if msg.template in FAMILY_SAFE:
                summary = family_safe(summary)
            common = _base_context(msg, ctx, directory)
            _set_rendered(msg, ctx.templates.render(msg.template, common | summary))


REPORT_TEMPLATE = "partnership_report"


def _report_pdf(session: Session, msg: Message, ctx: Context, made: dict[str, Any]) -> Any:
    """The review's PDF report (as `report --review REF --format pdf` writes it) for its
    report email, made once per review and tick; larger than allowed: a sentence instead."""
    from dhr_workflow.reports.attach import partnership_report_pdf  # WeasyPrint: load late

    ref = msg.review or ""
    if ref not in made:
        made[ref] = partnership_report_pdf(
            session, review=ref, as_of=ctx.today, since=since(msg, ctx.today), tz=ctx.tz,
            partnership=ctx.partnership, marking=ctx.report_marking,
            limit_mb=ctx.report_attach_mb,
        )  # fmt: skip
    return made[ref]


# Messages rendered (and, in commit, written and let go) at a time: the rows they list and
# their bodies are held for one chunk, not for a whole catch-up tick.
RENDER_CHUNK = 50
REVIEW_CHUNK = 100
LISTED = 50


def _base_context(msg: Message, ctx: Context, directory: Directory) -> dict[str, Any]:
    """What every message says: who it is for, and whom to answer (the review's coordinator,
    also its Reply-To; the partnership's when the message spans several reviews)."""
    reviews = {h.review_id for h in msg.hits}
    found = directory.coordinator(reviews.pop() if len(reviews) == 1 else None)
    coordinator = {"name": found[0], "email": found[1]} if found else None
    msg.reply_to = found[1] if found else None
    recipient = msg.to[0]
    return {
        "rule": msg.rule,
        "step": ",".join(msg.steps),
        "today": ctx.today,
        "partnership": ctx.partnership,
        "coordinator": coordinator,
        "recipient": {"name": directory.name(recipient), "email": recipient},
        "web": ctx.base_url,
        "more": 0,
    }


def action_rows(
    session: Session, *where: Any, order: Any = None, limit: int | None = None
) -> Sequence[Row[*tuple[Any, ...]]]:
    """The columns messages show, as plain rows (no ORM objects: digests can be large)."""
    rec = aliased(Recommendation)
    stmt = (
        select(
            Action.id,
            Review.ref.label("review"),
            rec.ref.label("recommendation"),
            rec.text.label("rec_text"),
            Action.ref,
            Action.text,
            Agency.name.label("agency"),
            Action.owner_text,
            Contact.name.label("owner_name"),
            Action.due_date,
            Action.target_text,
            Action.status,
            Action.completed_on,
            Action.review_reasons,
        )
        .join(Review, Review.id == Action.review_id)
        .outerjoin(rec, rec.id == Action.recommendation_id)
        .outerjoin(Agency, Agency.id == Action.lead_agency_id)
        .outerjoin(Contact, Contact.id == Action.owner_contact_id)
        .where(*where)
        .order_by(*(order if order is not None else (Action.id,)))
        .limit(limit)
    )
    return session.execute(stmt).all()


def action_context(row: Row[*tuple[Any, ...]], today: dt.date) -> dict[str, Any]:
    text = " ".join((row.text or row.rec_text or "").split())
    due = row.due_date
    return {
        "id": row.id, "review": row.review, "recommendation": row.recommendation,
        "ref": row.ref or row.recommendation or "", "text": text,
        "text_short": shorten(text, TEXT_SHORT),
        "rec_text": " ".join((row.rec_text or "").split()),
        "lead_agency": row.agency, "owner": row.owner_text or row.owner_name,
        "due_date": due, "days": (due - today).days if due else None,
        "target_text": row.target_text, "status": row.status,
        "completed_on": row.completed_on, "reasons": list(row.review_reasons or []),
        # set per recipient in digests (_for_recipient)
        "first_notice": False, "links": {}, "page": None,
    }  # fmt: skip


def shorten(text: str, width: int) -> str:
    """At most ``width`` characters, cut between words (never mid-word), with an ellipsis."""
    if len(text) <= width:
        return text
    cut = text[: width - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > width // 2 else cut).rstrip(" ,;:.-") + "…"


def review_contexts(
    session: Session, messages: list[Message], ctx: Context
) -> dict[int, dict[str, Any]]:
    """The partnership report's and family update's summary of each message's review: counts
    by status, and the overdue, recently completed, due-soon and needs-review lists (each
    capped at LISTED, with its full count). One query for all the reviews of a tick."""
    ids = sorted({m.hits[0].subject_id for m in messages})
    if not ids:
        return {}
    reviews = {r.id: r for r in session.scalars(select(Review).where(Review.id.in_(ids)))}
    by_review: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in action_rows(session, Action.review_id.in_(ids)):
        by_review[row.review].append(action_context(row, ctx.today))
    earliest = min(since(m, ctx.today) for m in messages)
    notes = _progress(session, ids, dt.datetime.combine(earliest, dt.time(), ctx.tz), ctx.at)
    # The audit log's head in the chair's report: a copy kept outside the database (an anchor).
    found = audit.head(session)
    head = {"seq": found.seq, "hash": found.hash} if found else None
    # A review's report goes to several people (the chair, the coordinator, the family's
    # liaison), each a message: they share one summary, read but never changed by rendering.
    made: dict[tuple[int, dt.date], dict[str, Any]] = {}
    summaries = {}
    for m in messages:
        review = reviews[m.hits[0].subject_id]
        start = since(m, ctx.today)
        if (review.id, start) not in made:
            summary = _summary(review, by_review, start, ctx.today)
            items = [
                n for n in notes.get(review.id, []) if n["at"].astimezone(ctx.tz).date() >= start
            ]
            summary["progress_since"], summary["progress_since_count"] = items[:LISTED], len(items)
            summary["audit_head"] = head
            made[(review.id, start)] = summary
        summaries[id(m)] = made[(review.id, start)]
    return summaries


def since(msg: Message, today: dt.date) -> dt.date:
    """The start of the period a report covers (its previous occurrence, else six months)."""
    return msg.hits[0].since or add_months(today, -6)


def _progress(
    session: Session, review_ids: list[int], since: dt.datetime, until: dt.datetime
) -> dict[int, list[dict[str, Any]]]:
    """Progress notes from ``since`` up to the report's own time, newest first, per review
    (for "Progress since the last report")."""
    found: dict[int, list[dict[str, Any]]] = defaultdict(list)
    rows = session.execute(
        select(
            Action.review_id,
            Action.id,
            Action.ref,
            ActionUpdate.at,
            ActionUpdate.note,
            ActionUpdate.author,
            Agency.name,
        )
        .join(Action, Action.id == ActionUpdate.action_id)
        .outerjoin(Agency, Agency.id == Action.lead_agency_id)
        .where(Action.review_id.in_(review_ids), ActionUpdate.at >= since, ActionUpdate.at <= until)
        .order_by(ActionUpdate.at.desc(), ActionUpdate.id.desc())
    )
    for review_id, action_id, ref, at, note, author, agency in rows:
        found[review_id].append(
            {"id": action_id, "ref": ref or str(action_id), "at": at, "note": note,
             "note_short": shorten(" ".join(note.split()), TEXT_SHORT), "author": author,
             "lead_agency": agency}
        )  # fmt: skip
    return found


def _summary(
    review: Review, by_review: dict[str, list[dict[str, Any]]], start: dt.date, today: dt.date
) -> dict[str, Any]:
    listed = by_review.get(review.ref, [])
    closed = {s.value for s in CLOSED_STATUSES}
    counts = {s.value: sum(1 for a in listed if a["status"] == s) for s in ActionStatus}
    counts["total"] = len(listed)
    counts["open"] = counts["open"] + counts["in_progress"]
    horizon = add_months(today, 6)
    active = [a for a in listed if a["status"] not in closed]
    groups = {
        "overdue": sorted(
            (a for a in active if a["due_date"] and a["due_date"] < today),
            key=lambda a: a["due_date"],
        ),
        "completed_since": sorted(
            (
                a
                for a in listed
                if a["status"] == ActionStatus.COMPLETED
                and a["completed_on"]
                and a["completed_on"] >= start
            ),
            key=lambda a: a["completed_on"],
        ),
        "due_soon": sorted(
            (a for a in active if a["due_date"] and today <= a["due_date"] <= horizon),
            key=lambda a: a["due_date"],
        ),
        "needs_review": [a for a in active if a["reasons"]],
    }
    context: dict[str, Any] = {
        "review": {"ref": review.ref, "title": review.title, "partnership": review.partnership},
        "counts": counts,
    }
    for name, items in groups.items():
        context[name], context[f"{name}_count"] = items[:LISTED], len(items)
    return context
