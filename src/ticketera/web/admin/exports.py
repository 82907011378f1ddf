"""CSV exports of an event's orders and attendees, streamed: each page of rows is read in a short
read session of its own and written out before the next, so an export of any size neither holds a
connection nor the whole file in memory. Cells go through `kit.csvexport` (quoting, and formulas
defused)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from functools import partial

from fastapi import APIRouter
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession

from ticketera.kit.csvexport import csv_stream
from ticketera.kit.http import CurrentClock, Db
from ticketera.orders import service as orders
from ticketera.orders.models import Order, OrderStatus
from ticketera.tickets.models import Ticket
from ticketera.web.admin.events import event_id_of, event_not_found
from ticketera.web.admin.session import CurrentAdmin

router = APIRouter(include_in_schema=False)

PAGE = 500
ORDER_COLUMNS = (
    "order_id", "status", "reason", "buyer_email", "buyer_name", "tickets", "total", "currency",
    "created_at", "paid_at",
)  # fmt: skip
ATTENDEE_COLUMNS = (
    "ticket_id", "section", "seat", "buyer_name", "buyer_email", "order_id", "checked_in_at",
)  # fmt: skip


def _moment(moment: datetime | None) -> str:
    return moment.isoformat() if moment else ""


async def _orders_page(
    session: AsyncSession, *, event_id: int, now: datetime, after: int
) -> tuple[list[tuple[Order, OrderStatus]], int | None]:
    return await orders.orders_of_event(session, event_id, now=now, after=after, limit=PAGE)


async def _attendees_page(session: AsyncSession, *, event_id: int, after: int) -> list[tuple[Ticket, Order]]:
    return await orders.attendees_of_event(session, event_id, after=after, limit=PAGE)


def _download(rows: AsyncIterator[Iterable[object]], header: Iterable[str], filename: str) -> Response:
    return StreamingResponse(
        csv_stream(header, rows),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.get("/admin/events/{event_id}/orders.csv")
async def orders_csv(event_id: str, admin: CurrentAdmin, database: Db, clock: CurrentClock) -> Response:
    found = event_id_of(event_id)
    if found is None:
        return event_not_found(admin)
    now = clock()

    async def rows() -> AsyncIterator[Iterable[object]]:
        after: int | None = 0
        while after is not None:
            found_orders, after = await database.read(
                partial(_orders_page, event_id=found, now=now, after=after)
            )
            for order, shown in found_orders:
                yield (
                    order.id, shown.value, order.status_reason or "", order.buyer_email, order.buyer_name,
                    order.quantity, f"{order.total:.2f}", order.currency, _moment(order.created_at),
                    _moment(order.paid_at),
                )  # fmt: skip

    return _download(rows(), ORDER_COLUMNS, f"event-{found}-orders.csv")


@router.get("/admin/events/{event_id}/attendees.csv")
async def attendees_csv(event_id: str, admin: CurrentAdmin, database: Db) -> Response:
    found = event_id_of(event_id)
    if found is None:
        return event_not_found(admin)

    async def rows() -> AsyncIterator[Iterable[object]]:
        after = 0
        while True:
            attendees = await database.read(partial(_attendees_page, event_id=found, after=after))
            for ticket, order in attendees:
                yield (
                    ticket.id, ticket.section_name, ticket.seat_label or "", order.buyer_name,
                    order.buyer_email, order.id, _moment(ticket.checked_in_at),
                )  # fmt: skip
            if len(attendees) < PAGE:
                return
            after = attendees[-1][0].id

    return _download(rows(), ATTENDEE_COLUMNS, f"event-{found}-attendees.csv")
