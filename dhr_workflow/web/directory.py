"""Contacts (add, correct, deactivate; the gaps the engine would report) and agencies (rename,
merge, add a spelling). Coordinators change them; chairs read them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dhr_workflow import agencies, contacts
from dhr_workflow.errors import NotFound, UserError
from dhr_workflow.models import Review
from dhr_workflow.signin import Principal
from dhr_workflow.web.app import Hidden, Web, redirect
from dhr_workflow.web.filters import role_name
from dhr_workflow.web.forms import ROLES, Errors, Reader, number


def routes(web: Web) -> list[Route]:
    async def contacts_page(request: Request) -> Response:
        person = await _reader(web, request)
        errors, form = None, None
        if request.method == "POST":
            await web.require(request, edit=True)
            form = await web.form(request)
            errors = await _add_contact(web, person, form)
            if not errors:
                request.session["banner"] = {"success": True, "text": "Contact added."}
                return redirect("/contacts")
        data = await web.run(_contacts, web)
        banner = request.session.pop("banner", None)
        return web.page(
            request, "contacts/index.html", 400 if errors else 200, errors=errors, form=form,
            banner=banner, **data,
        )  # fmt: skip

    async def contact_page(request: Request) -> Response:
        await _reader(web, request)
        contact_id = request.path_params["contact_id"]
        errors, form = None, None
        if request.method == "POST":
            person = await web.require(request, edit=True)
            form = await web.form(request)
            errors, text = await _change_contact(web, person, contact_id, form)
            if not errors:
                request.session["banner"] = {"success": True, "text": text}
                return redirect(f"/contacts/{contact_id}")
        data = await web.run(_contact, web, contact_id)
        banner = request.session.pop("banner", None)
        return web.page(
            request, "contacts/edit.html", 400 if errors else 200, errors=errors, form=form,
            banner=banner, **data,
        )  # fmt: skip

    async def agencies_page(request: Request) -> Response:
        await _reader(web, request)
        data = await web.run(_agencies, web)
        banner = request.session.pop("banner", None)
        return web.page(request, "agencies/index.html", banner=banner, **data)

    async def agency_page(request: Request) -> Response:
        await _reader(web, request)
        agency_id = request.path_params["agency_id"]
        errors, form = None, None
        if request.method == "POST":
            person = await web.require(request, edit=True)
            form = await web.form(request)
            errors, text, target = await _change_agency(web, person, agency_id, form)
            if not errors:
                request.session["banner"] = {"success": True, "text": text}
                return redirect(target)
        data = await web.run(_agency, web, agency_id)
        banner = request.session.pop("banner", None)
        return web.page(
            request, "agencies/edit.html", 400 if errors else 200, errors=errors, form=form,
            banner=banner, **data,
        )  # fmt: skip

    return [
        Route("/contacts", contacts_page, methods=["GET", "POST"]),
        Route("/contacts/{contact_id:int}", contact_page, methods=["GET", "POST"]),
        Route("/agencies", agencies_page),
        Route("/agencies/{agency_id:int}", agency_page, methods=["GET", "POST"]),
    ]


async def _reader(web: Web, request: Request) -> Principal:
    """Coordinators and chairs; everybody else sees a 404."""
    person = await web.require(request)
    if not person.reads_all:
        raise Hidden
    return person


# --- contacts ----------------------------------------------------------------------------


def _choices(session: Any) -> dict[str, Any]:
    """The options of a contact's role, agency and review selects, as (value, text) pairs."""
    refs = session.scalars(select(Review.ref).order_by(Review.ref))
    return {
        "choices": {
            "roles": [(r, role_name(r)) for r in sorted(ROLES)],
            "agencies": [(a.name, a.name) for a in agencies.list_all(session)],
            "reviews": [(r, r) for r in refs],
        }
    }


def _contacts(web: Web) -> dict[str, Any]:
    with web.store.reading() as s:
        return {
            "title": "Contacts",
            "contacts": contacts.list_all(s, include_inactive=True),
            "gaps": contacts.gaps(s),
            **_choices(s),
        }


def _contact(web: Web, contact_id: int) -> dict[str, Any]:
    with web.store.reading() as s:
        try:
            contact = contacts.get(s, contact_id)
        except NotFound:
            raise Hidden from None
        _ = (contact.agency, contact.review)  # rendered after the session closes
        return {"title": f"Contact: {contact.name}", "contact": contact, **_choices(s)}


def _contact_fields(reader: Reader) -> dict[str, str]:
    return {
        "name": reader.text("name", "the contact's full name", required=True, limit=200),
        "email": reader.email("email"),
        "role": reader.choice("role", "a role", ROLES),
        "agency": reader.raw("agency"),
        "review": reader.raw("review"),
    }


async def _add_contact(web: Web, person: Principal, form: FormData) -> Errors | None:
    reader = Reader(form)
    fields = _contact_fields(reader)
    if reader.errors:
        return reader.errors
    data = contacts.ContactInput(
        fields["name"], fields["email"], fields["role"], fields["agency"] or None,
        fields["review"] or None,
    )  # fmt: skip
    try:
        await web.run(_in_transaction, web, contacts.add, data, actor=person.email)
    except UserError as exc:
        reader.errors.add(_field_of(str(exc)), _sentence(exc))
    return reader.errors or None


async def _change_contact(
    web: Web, person: Principal, contact_id: int, form: FormData
) -> tuple[Errors | None, str]:
    reader = Reader(form)
    which = form.get("form")
    try:
        if which == "active":
            active = form.get("active") == "yes"
            fn = contacts.reactivate if active else contacts.deactivate
            await web.run(_in_transaction, web, fn, contact_id, actor=person.email)
            return None, "Contact reactivated." if active else (
                "Contact deactivated: they receive nothing and cannot sign in. The audit log "
                "keeps their history."
            )
        fields = _contact_fields(reader)
        if reader.errors:
            return reader.errors, ""
        change = contacts.ContactChange(**fields)
        await web.run(_in_transaction, web, contacts.update, contact_id, change, actor=person.email)
    except NotFound:
        raise Hidden from None
    except UserError as exc:
        reader.errors.add(_field_of(str(exc)), _sentence(exc))
        return reader.errors, ""
    return None, "Contact saved."


def _field_of(message: str) -> str:
    """The form field a service message is about (it names the field first)."""
    for name in ("email", "role", "agency", "review", "name"):
        if message.lower().startswith(name) or f" {name}" in message.lower()[:40]:
            return name
    return "name"


def _sentence(exc: UserError) -> str:
    """A service message for a person: without the field name it starts with."""
    text = str(exc)
    head, _, rest = text.partition(": ")
    if rest and head in ("name", "email", "role", "agency", "review"):
        text = rest
    return text[:1].upper() + text[1:]


def _in_transaction(web: Web, fn: Any, *args: Any, actor: str) -> Any:
    with web.store.transaction() as s:
        return fn(s, *args, now=web.now(), actor=actor)


# --- agencies ----------------------------------------------------------------------------


def _agencies(web: Web) -> dict[str, Any]:
    with web.store.reading() as s:
        return {"title": "Agencies", "agencies": agencies.list_with_counts(s)}


def _agency(web: Web, agency_id: int) -> dict[str, Any]:
    with web.store.reading() as s:
        summaries = agencies.list_with_counts(s)
        found = [a for a in summaries if a.id == agency_id]
        if not found:
            raise Hidden
        return {
            "title": f"Agency: {found[0].name}",
            "agency": found[0],
            "merge_options": [(str(a.id), a.name) for a in summaries if a.id != agency_id],
        }


async def _change_agency(
    web: Web, person: Principal, agency_id: int, form: FormData
) -> tuple[Errors | None, str, str]:
    reader = Reader(form)
    which = form.get("form")
    field = {"rename": "name", "alias": "alias", "merge": "into"}.get(str(which))
    if field is None:
        raise Hidden
    value = (
        reader.text(field, "the new name", required=True, limit=300)
        if which == "rename"
        else reader.text(field, "another spelling", required=True, limit=300)
        if which == "alias"
        else reader.choice(field, "the agency to merge into", _digits(reader.raw(field)))
    )
    if reader.errors:
        return reader.errors, "", ""
    try:
        text, target = await web.run(_agency_change, web, person, agency_id, str(which), value)
    except NotFound:
        raise Hidden from None
    except UserError as exc:
        reader.errors.add(field, _sentence(exc))
        return reader.errors, "", ""
    return None, text, target


def _digits(value: str) -> set[str]:
    return {value} if number(value) else set()


def _agency_change(
    web: Web, person: Principal, agency_id: int, which: str, value: str
) -> tuple[str, str]:
    now, actor = web.now(), person.email
    with web.store.transaction() as s:
        agency = agencies.get(s, agency_id)
        if which == "rename":
            agencies.rename(s, agency, value, now=now, actor=actor)
            return "Agency renamed. The old name is still recognised in plans.", (
                f"/agencies/{agency_id}"
            )
        if which == "alias":
            agencies.add_alias(s, agency, value, now=now, actor=actor)
            return f"Plans that say “{value}” now mean {agency.name}.", f"/agencies/{agency_id}"
        into = agencies.get(s, int(value))
        moved = agencies.merge(s, agency, into, now=now, actor=actor)
        return (
            f"Merged into {into.name}: {moved.actions} action(s), {moved.contacts} contact(s) "
            "moved; the old name is now another spelling of it.",
            f"/agencies/{into.id}",
        )
