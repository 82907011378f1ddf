"""Events in the console: the list (every state), creating and editing with the section builder,
and the status changes (publish, pause, resume, cancel after a confirmation)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from ticketera.events import service as events
from ticketera.events.models import EventStatus, SectionKind
from ticketera.events.schemas import EventCreate, EventPatch, SectionIn
from ticketera.kit.db import MAX_ID
from ticketera.kit.errors import DomainError, InvalidInput
from ticketera.kit.http import CurrentClock, CurrentSettings, Db
from ticketera.web.admin.builder import EventDraft, SectionDraft, local_moment
from ticketera.web.admin.session import AdminPage, CurrentAdmin, CurrentForm
from ticketera.web.rendering import problem_page

log = structlog.get_logger(__name__)

router = APIRouter(include_in_schema=False)

LIST_LIMIT = 200


def status_label(_: Callable[[str], str], status: str) -> str:
    return {
        EventStatus.DRAFT: _("Draft"),
        EventStatus.PUBLISHED: _("Published"),
        EventStatus.PAUSED: _("Sales paused"),
        EventStatus.CANCELLED: _("Cancelled"),
    }[EventStatus(status)]


@dataclass(frozen=True)
class StatusAction:
    status: str
    label: str
    confirm: bool  # asks first: cancelling is final


def status_actions(admin: AdminPage, status: str) -> list[StatusAction]:
    """The buttons an event in `status` offers, from the same transitions the API allows."""
    _ = admin._
    current = EventStatus(status)
    labels = {
        EventStatus.PUBLISHED: _("Resume sales") if current == EventStatus.PAUSED else _("Publish"),
        EventStatus.PAUSED: _("Pause sales"),
        EventStatus.CANCELLED: _("Cancel event"),
    }
    allowed = events.STATUS_TRANSITIONS[current]
    return [
        StatusAction(target.value, labels[target], target == EventStatus.CANCELLED)
        for target in (EventStatus.PUBLISHED, EventStatus.PAUSED, EventStatus.CANCELLED)
        if target in allowed
    ]


def notice_text(admin: AdminPage, notice: str | None) -> str:
    _ = admin._
    return {
        "created": _("The event was created as a draft. Publish it when it is ready."),
        "saved": _("Changes saved."),
        "published": _("The event is published."),
        "paused": _("Sales are paused."),
        "cancelled": _("The event was cancelled."),
        "queue": _("The line's settings were changed."),
        "refunded": _("The refund was sent."),
    }.get(notice or "", "")


def event_id_of(text: str) -> int | None:
    return int(text) if text.isdecimal() and 1 <= int(text) <= MAX_ID else None


@router.get("/admin", response_class=HTMLResponse)
async def event_list(admin: CurrentAdmin, database: Db, clock: CurrentClock) -> HTMLResponse:
    try:
        async with database.read_session() as session:
            views, total = await events.list_event_views(
                session, include_drafts=True, status=None, limit=LIST_LIMIT, offset=0, clock=clock
            )
    except DomainError as error:
        return problem_page(admin.page, error, back_url="/admin")
    rows = sorted(views, key=lambda view: view.event.starts_at, reverse=True)
    return admin.render(
        "admin/events.html",
        title=admin._("Events"),
        rows=[
            {
                "view": view,
                "status": view.event.status,
                "status_label": status_label(admin._, view.event.status),
                "sold": sum(section.sold for section in view.sections),
            }
            for view in rows
        ],
        total=total,
    )


def _form_page(
    admin: AdminPage,
    draft: EventDraft,
    *,
    action: str,
    title: str,
    existing: list[dict[str, Any]] | None = None,
    status_code: int = 200,
    event_id: int | None = None,
) -> HTMLResponse:
    return admin.render(
        "admin/event_form.html",
        status_code=status_code,
        title=title,
        draft=draft,
        action=action,
        existing=existing or [],
        event_id=event_id,
        RESERVED=SectionKind.RESERVED.value,
        GENERAL=SectionKind.GENERAL_ADMISSION.value,
    )


def _builder_step(draft: EventDraft, step: str) -> bool:
    """Apply a builder button (add or remove a section); True when the form is to be shown again."""
    if step == "add":
        draft.sections.append(SectionDraft())
        return True
    if step.startswith("remove-") and step[7:].isdecimal():
        index = int(step[7:])
        if index < len(draft.sections):
            del draft.sections[index]
        return True
    return False


@router.get("/admin/events/new", response_class=HTMLResponse)
async def new_event(admin: CurrentAdmin) -> HTMLResponse:
    draft = EventDraft(sections=[SectionDraft()])
    return _form_page(admin, draft, action="/admin/events/new", title=admin._("New event"))


@router.post("/admin/events/new", response_class=HTMLResponse)
async def create_event(
    form: CurrentForm, database: Db, clock: CurrentClock, settings: CurrentSettings
) -> Response:
    admin = form.admin
    title = admin._("New event")
    draft = EventDraft.of_form(form.values)
    if _builder_step(draft, form.get("step")):
        return _form_page(admin, draft, action="/admin/events/new", title=title)
    body = draft.event_body(settings.zone)
    body["status"] = EventStatus.DRAFT.value
    body["sections"] = [section.body() for section in draft.sections]
    try:
        data = EventCreate.model_validate(body)
    except ValidationError as error:
        draft.add_validation_errors(error)
        data = None
    if draft.errors or data is None:
        return _form_page(admin, draft, action="/admin/events/new", title=title, status_code=422)

    async def create(session: AsyncSession) -> events.EventView:
        return await events.create_event(session, data, clock=clock)

    try:
        view = await database.transaction(create)
    except InvalidInput as error:
        draft.add_invalid_input(error)
        return _form_page(admin, draft, action="/admin/events/new", title=title, status_code=422)
    except DomainError as error:
        return problem_page(admin.page, error, back_url="/admin")
    log.info("admin.event_created", event_id=view.event.id)
    return RedirectResponse(f"/admin/events/{view.event.id}?notice=created", status_code=303)


def _existing_sections(admin: AdminPage, view: events.EventView) -> list[dict[str, Any]]:
    _ = admin._
    return [
        {
            "name": section.section.name,
            "kind": _("numbered seats")
            if section.section.kind == SectionKind.RESERVED
            else _("general admission"),
            "price": admin.page.locale.money(section.section.price, view.event.currency),
            "capacity": section.section.capacity,
            "sold": section.sold,
        }
        for section in view.sections
    ]


async def _event_view(database: Db, event_id: int, clock: CurrentClock) -> events.EventView | None:
    async with database.read_session() as session:
        try:
            return await events.get_event_view(session, event_id, include_drafts=True, clock=clock)
        except events.EventNotFound:
            return None


def event_not_found(admin: AdminPage) -> HTMLResponse:
    return admin.error(404, admin._("Event not found"), admin._("There is no event with that number."))


@router.get("/admin/events/{event_id}/edit", response_class=HTMLResponse)
async def edit_event(
    event_id: str, admin: CurrentAdmin, database: Db, clock: CurrentClock, settings: CurrentSettings
) -> HTMLResponse:
    found = event_id_of(event_id)
    view = await _event_view(database, found, clock) if found else None
    if view is None:
        return event_not_found(admin)
    draft = EventDraft.of_event(view.event, settings.zone)
    return _form_page(
        admin,
        draft,
        action=f"/admin/events/{view.event.id}/edit",
        title=admin._("Edit %(event)s") % {"event": view.event.name},
        existing=_existing_sections(admin, view),
        event_id=view.event.id,
    )


@router.post("/admin/events/{event_id}/edit", response_class=HTMLResponse)
async def update_event(
    event_id: str, form: CurrentForm, database: Db, clock: CurrentClock, settings: CurrentSettings
) -> Response:
    admin = form.admin
    found = event_id_of(event_id)
    view = await _event_view(database, found, clock) if found else None
    if view is None:
        return event_not_found(admin)
    action = f"/admin/events/{view.event.id}/edit"
    title = admin._("Edit %(event)s") % {"event": view.event.name}
    draft = EventDraft.of_form(form.values)

    def again(status_code: int = 422) -> HTMLResponse:
        return _form_page(
            admin,
            draft,
            action=action,
            title=title,
            existing=_existing_sections(admin, view),
            status_code=status_code,
            event_id=view.event.id,
        )

    if _builder_step(draft, form.get("step")):
        return again(200)
    body = draft.event_body(settings.zone)
    # Dates are sent only when moved, as the field shows them (to the minute): an event that has
    # begun keeps its date without refusal, and one set to the second through the API keeps it.
    if draft.starts_at.strip() == local_moment(view.event.starts_at, settings.zone):
        body.pop("startsAt", None)
    if view.event.on_sale_at and draft.on_sale_at.strip() == local_moment(
        view.event.on_sale_at, settings.zone
    ):
        body.pop("onSaleAt", None)
    patch: EventPatch | None = None
    try:
        patch = EventPatch.model_validate(body)
    except ValidationError as error:
        draft.add_validation_errors(error)
    added: list[SectionIn] = []
    for index, section in enumerate(draft.sections):
        try:
            added.append(SectionIn.model_validate(section.body()))
        except ValidationError as error:
            draft.add_validation_errors(error, prefix=("sections", index))
    if draft.errors or patch is None:
        return again()

    async def save(session: AsyncSession) -> None:
        await events.update_event(session, view.event.id, patch, clock=clock)
        for index, section in enumerate(added):
            try:
                await events.add_section(session, view.event.id, section)
            except (InvalidInput, events.DuplicateSection) as error:
                raise SectionRefused(index, error) from error

    try:
        await database.transaction(save)
    except SectionRefused as refused:
        draft.section_error(refused.index, refused.error.message)
        return again()
    except InvalidInput as error:
        draft.add_invalid_input(error)
        return again()
    except events.EventCancelled:
        draft.errors["form"] = admin._("A cancelled event can no longer be changed.")
        return again(409)
    except DomainError as error:
        return problem_page(admin.page, error, back_url="/admin")
    return RedirectResponse(f"/admin/events/{view.event.id}?notice=saved", status_code=303)


class SectionRefused(Exception):
    def __init__(self, index: int, error: DomainError) -> None:
        super().__init__(error.message)
        self.index = index
        self.error = error


@router.get("/admin/events/{event_id}/cancel", response_class=HTMLResponse)
async def confirm_cancel(
    event_id: str, admin: CurrentAdmin, database: Db, clock: CurrentClock
) -> HTMLResponse:
    found = event_id_of(event_id)
    view = await _event_view(database, found, clock) if found else None
    if view is None:
        return event_not_found(admin)
    _ = admin._
    return admin.render(
        "admin/confirm.html",
        title=_("Cancel %(event)s?") % {"event": view.event.name},
        question=_("Cancel %(event)s?") % {"event": view.event.name},
        explanation=_(
            "Sales stop for good and the event shows as cancelled to everyone. This cannot be undone;"
            " refund paid orders from the orders page."
        ),
        action=f"/admin/events/{view.event.id}/status",
        fields={"status": EventStatus.CANCELLED.value, "confirmed": "yes"},
        confirm_label=_("Yes, cancel the event"),
        back_url=f"/admin/events/{view.event.id}",
        back_label=_("No, keep it"),
    )


@router.post("/admin/events/{event_id}/status", response_class=HTMLResponse)
async def change_status(event_id: str, form: CurrentForm, database: Db, clock: CurrentClock) -> Response:
    admin = form.admin
    found = event_id_of(event_id)
    target = form.get("status")
    if found is None or target not in {status.value for status in EventStatus}:
        return event_not_found(admin)
    if target == EventStatus.CANCELLED and form.get("confirmed") != "yes":
        return RedirectResponse(f"/admin/events/{found}/cancel", status_code=303)

    async def change(session: AsyncSession) -> events.EventView:
        return await events.update_event(
            session, found, EventPatch.model_validate({"status": target}), clock=clock
        )

    try:
        await database.transaction(change)
    except events.EventNotFound:
        return event_not_found(admin)
    except DomainError as error:
        _ = admin._
        return admin.error(error.status_code, _("That change is not possible"), error.message)
    log.info("admin.event_status_changed", event_id=found, status=target)
    return RedirectResponse(f"/admin/events/{found}?notice={target}", status_code=303)
