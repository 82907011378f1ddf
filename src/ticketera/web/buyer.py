"""The buyer's pages: upcoming events, an event, the waiting room, choosing seats.

The first two are complete on the server (a fan on a slow phone sees prices and what is left in
the first answer); the waiting room and the seat map are live, so their scripts take over from
there, calling the public API like any client: the queue's join, status and stream, the seat map,
holds and orders. Each page hands its scripts what they need (ids, translated messages, the money
format) as page data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from ticketera.events import service as events
from ticketera.events.models import EventStatus, SectionKind
from ticketera.kit.db import MAX_ID
from ticketera.kit.errors import DomainError
from ticketera.kit.http import CurrentClock, Db
from ticketera.web.rendering import CurrentPage, Page, problem_page

router = APIRouter(include_in_schema=False)

# The home page lists this many upcoming events, soonest first.
UPCOMING_LIMIT = 100


class SaleState(StrEnum):
    NOT_YET = "not_yet"
    ON_SALE = "on_sale"
    PAUSED = "paused"
    # Nothing on sale, but places are held by buyers who have not paid: they may come back.
    SOLD_OUT_FOR_NOW = "sold_out_for_now"
    SOLD_OUT = "sold_out"
    CANCELLED = "cancelled"


def sale_state(view: events.EventView, now: datetime) -> SaleState:
    """What a fan can do now, in the order that matters to them: a cancelled event is cancelled even
    if seats are left, a paused one may come back, a sold-out one has nothing to sell."""
    event = view.event
    if event.status == EventStatus.CANCELLED:
        return SaleState.CANCELLED
    if event.status == EventStatus.PAUSED:
        return SaleState.PAUSED
    if view.available == 0:
        # A hold that runs out or an order left unpaid puts its places back on sale: only what is
        # sold is gone for good.
        held = sum(section.held for section in view.sections)
        return SaleState.SOLD_OUT_FOR_NOW if held else SaleState.SOLD_OUT
    if event.on_sale_at is not None and now < event.on_sale_at:
        return SaleState.NOT_YET
    return SaleState.ON_SALE


def state_label(page: Page, state: SaleState) -> str:
    _ = page._
    return {
        SaleState.NOT_YET: _("Not on sale yet"),
        SaleState.ON_SALE: _("On sale"),
        SaleState.PAUSED: _("Sales paused"),
        SaleState.SOLD_OUT_FOR_NOW: _("Sold out for now"),
        SaleState.SOLD_OUT: _("Sold out"),
        SaleState.CANCELLED: _("Cancelled"),
    }[state]


@dataclass(frozen=True)
class EventCard:
    view: events.EventView
    state: SaleState
    label: str


@router.get("/", response_class=HTMLResponse)
async def upcoming_events(page: CurrentPage, database: Db, clock: CurrentClock) -> HTMLResponse:
    now = clock()
    try:
        # Public reads that tolerate a second of lag: a read replica's when there is one.
        async with database.replica_session() as session:
            views, _total = await events.list_event_views(
                session, include_drafts=False, status=None, limit=UPCOMING_LIMIT, offset=0, clock=clock
            )
    except DomainError as error:
        return problem_page(page, error)
    upcoming = sorted((view for view in views if view.event.starts_at > now), key=lambda v: v.event.starts_at)
    cards = [EventCard(view, state := sale_state(view, now), state_label(page, state)) for view in upcoming]
    return page.render("index.html", title=page._("Upcoming events"), cards=cards)


async def _public_event(
    page: Page, database: Db, event_id: str, clock: CurrentClock
) -> events.EventView | HTMLResponse:
    """The event a page's address names, or the page to answer instead: 404 for an address that
    names no published event, the error's own page when it cannot be read now."""
    if not event_id.isdecimal() or not 1 <= int(event_id) <= MAX_ID:
        return _event_not_found(page)
    try:
        # As the API's event detail: lag-tolerant, a replica's when there is one.
        async with database.replica_session() as session:
            return await events.get_event_view(session, int(event_id), include_drafts=False, clock=clock)
    except events.EventNotFound:
        return _event_not_found(page)
    except DomainError as error:
        return problem_page(page, error)


def _event_not_found(page: Page) -> HTMLResponse:
    _ = page._
    return page.error(404, _("Event not found"), _("This event does not exist or is not published."))


def _stock_messages(page: Page, *, short: bool) -> dict[str, str]:
    """What a section has left, in words, as the pages' scripts write it when they read it again."""
    _ = page._
    return {
        "left": "%(count)s" if short else _("%(count)s left"),
        "soldOut": _("Sold out"),
        "soldOutForNow": _("Sold out for now, tickets may be released")
        if short
        else _("Sold out for now: tickets may be released (some are held by buyers who have not paid yet)."),
    }


def _sections(page: Page, view: events.EventView) -> list[dict[str, Any]]:
    return [
        {
            "id": section.section.id,
            "name": section.section.name,
            "kind": section.section.kind.value,
            "reserved": section.section.kind == SectionKind.RESERVED,
            "price": str(section.section.price),
            "priceText": page.locale.money(section.section.price, view.event.currency),
            "available": section.available,
            "held": section.held,
            "capacity": section.section.capacity,
        }
        for section in view.sections
    ]


@router.get("/events/{event_id}", response_class=HTMLResponse)
async def event_page(event_id: str, page: CurrentPage, database: Db, clock: CurrentClock) -> HTMLResponse:
    view = await _public_event(page, database, event_id, clock)
    if isinstance(view, HTMLResponse):
        return view
    now = clock()
    state = sale_state(view, now)
    return page.render(
        "event.html",
        title=view.event.name,
        event=view.event,
        state=state.value,
        state_label=state_label(page, state),
        sections=_sections(page, view),
        page_data={
            "eventId": view.event.id,
            "state": state.value,
            "onSaleAt": view.event.on_sale_at.isoformat() if view.event.on_sale_at else None,
            "now": now.isoformat(),
            "messages": _stock_messages(page, short=True),
        },
    )


@router.get("/events/{event_id}/queue", response_class=HTMLResponse)
async def waiting_room_page(
    event_id: str, page: CurrentPage, database: Db, clock: CurrentClock
) -> HTMLResponse:
    view = await _public_event(page, database, event_id, clock)
    if isinstance(view, HTMLResponse):
        return view
    _ = page._
    state = sale_state(view, clock())
    return page.render(
        "queue.html",
        title=_("Waiting room: %(event)s") % {"event": view.event.name},
        event=view.event,
        state=state.value,
        state_label=state_label(page, state),
        page_data={
            "eventId": view.event.id,
            "buyUrl": f"/events/{view.event.id}/buy",
            "eventUrl": f"/events/{view.event.id}",
            "messages": {
                "waiting": _(
                    "You are in line. Keep this page open: it moves on by itself when your turn comes."
                ),
                "preQueue": _(
                    "The sale has not opened yet. When it opens, everyone already here gets a place drawn"
                    " at random: arriving early gives no advantage, and you lose nothing by waiting here."
                ),
                "admitted": _("It is your turn! Taking you to choose your seats…"),
                "expired": _("Your turn passed without a purchase. You can join the line again."),
                "full": _("The line is full right now. We will try again by ourselves in a few seconds."),
                "soldOut": _("Sold out: there are no tickets left for this event."),
                "soldOutForNow": _(
                    "Sold out for now, but tickets may be released: some are held by buyers who have"
                    " not paid yet. You keep your place in line."
                ),
                "paused": _("Sales are paused. You keep your place in line."),
                "linePaused": _(
                    "The line is paused by the organizer. Nobody is let in for now; you keep your place"
                    " and it moves again as soon as it resumes."
                ),
                "etaPaused": _("paused"),
                "cancelled": _("This event was cancelled."),
                "offline": _("Connection lost. Retrying… you keep your place."),
                "error": _("Something went wrong. Retrying…"),
                "etaMinutes": _("about %(minutes)s min"),
                "etaSoon": _("under a minute"),
                "etaUnknown": _("calculating…"),
            },
        },
    )


@router.get("/events/{event_id}/buy", response_class=HTMLResponse)
async def buy_page(event_id: str, page: CurrentPage, database: Db, clock: CurrentClock) -> HTMLResponse:
    view = await _public_event(page, database, event_id, clock)
    if isinstance(view, HTMLResponse):
        return view
    _ = page._
    state = sale_state(view, clock())
    sections = _sections(page, view)
    return page.render(
        "buy.html",
        title=_("Choose your seats: %(event)s") % {"event": view.event.name},
        event=view.event,
        state=state.value,
        state_label=state_label(page, state),
        sections=sections,
        max_tickets=view.event.max_tickets_per_user,
        page_data={
            "eventId": view.event.id,
            "queueUrl": f"/events/{view.event.id}/queue",
            "maxTickets": view.event.max_tickets_per_user,
            "money": page.locale.money_format(view.event.currency),
            "sections": sections,
            "messages": {
                "seat": _("%(section)s, row %(row)s, seat %(number)s"),
                "available": _("available"),
                "held": _("held by someone else"),
                "sold": _("sold"),
                "selected": _("%(count)s selected"),
                "chosen": _("your choice"),
                "stage": _("Stage"),
                "seatMap": _("Seat map of %(section)s"),
                "row": _("Row %(row)s"),
                "nothingChosen": _("Choose seats or a quantity first."),
                "tooMany": _("You can buy up to %(max)s tickets."),
                "oneKind": _(
                    "Seats and general admission go in separate purchases: we kept your last choice."
                ),
                "taken": _("Someone else just took %(seats)s. Choose other seats."),
                "lostWhileChoosing": _("Seat %(seat)s was just taken by someone else."),
                "limit": _("That is more than the %(max)s tickets each person may buy."),
                "noAccess": _("Your turn in line is over or has not come yet."),
                "expired": _("Your hold expired and the seats went back on sale. Choose again."),
                "closed": _("Sales are closed for this event right now."),
                "busy": _("We are very busy. Try again in a few seconds."),
                "error": _("Something went wrong. Try again."),
                "released": _("We let those seats go. Choose again."),
                "invalidBuyer": _("Check your email and name."),
                **_stock_messages(page, short=False),
            },
        },
    )
