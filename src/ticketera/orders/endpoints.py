"""HTTP routes of orders and of an order's tickets; the rules live in `service`."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Response, status

from ticketera.holds.service import (
    HOLD_REFUSALS,
    HoldAlreadyOrdered,
    HoldExpired,
    HoldNotFound,
    admitted_shopper,
)
from ticketera.kit.db import MAX_ID
from ticketera.kit.http import (
    AdminOnly,
    AdminRequired,
    CurrentClock,
    CurrentSettings,
    Db,
    IsAdmin,
    ReadSession,
    Signer,
    WriteSession,
    component,
)
from ticketera.kit.openapi import Answers, answers
from ticketera.kit.security import bearer_token
from ticketera.kit.tokens import InvalidToken
from ticketera.orders import service
from ticketera.orders.models import OrderReason, OrderStatus
from ticketera.orders.schemas import (
    EventOrdersOut,
    IdempotencyKey,
    OrderOut,
    OrderRequest,
    OrderSummaryOut,
    PlaceOrderRequest,
)
from ticketera.orders.service import (
    CHECKOUT,
    Checkout,
    IdempotencyMismatch,
    OrderNotCancellable,
    OrderNotFound,
)
from ticketera.tickets.documents import order_pdf
from ticketera.tickets.schemas import OrderTicketsOut, TicketOut

router = APIRouter(prefix="/api/orders", tags=["orders"])
# An event's orders, for its organizer.
events_router = APIRouter(prefix="/api/events", tags=["orders"])

OrderId = Annotated[int, Path(ge=1, le=MAX_ID)]
CheckoutProvider = Annotated[Checkout, Depends(component(CHECKOUT))]


async def order_reader(
    order_id: OrderId,
    signer: Signer,
    is_admin: IsAdmin,
    authorization: Annotated[str | None, Header()] = None,
) -> None:
    """The admin, or the holder of the order's token as a bearer."""
    if not is_admin:
        signer.verify_order_token(bearer_token(authorization), order_id)


async def order_link_reader(
    order_id: OrderId,
    signer: Signer,
    is_admin: IsAdmin,
    authorization: Annotated[str | None, Header()] = None,
    token: Annotated[str | None, Query(max_length=400, description="the order token, for links")] = None,
) -> None:
    """As `order_reader`, also with the token in `?token=`, for links a browser follows (the order
    page's PDF link)."""
    if not is_admin:
        signer.verify_order_token(bearer_token(authorization) or token, order_id)


OrderReader = Depends(order_reader)
OrderLinkReader = Depends(order_link_reader)
# What reading an order can answer besides the order: a token that does not open it, or no order.
READER_ANSWERS = answers(InvalidToken, OrderNotFound)
PDF: Answers = {200: {"content": {"application/pdf": {}}, "description": "The tickets, one page each"}}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=OrderOut,
    responses=answers(
        HoldNotFound,
        HoldExpired,
        HoldAlreadyOrdered,
        IdempotencyMismatch,
        *HOLD_REFUSALS,  # an express purchase answers as a hold would
    ),
)
async def create_order(
    body: PlaceOrderRequest,
    response: Response,
    database: Db,
    checkout: CheckoutProvider,
    signer: Signer,
    clock: CurrentClock,
    settings: CurrentSettings,
    idempotency_key: Annotated[IdempotencyKey, Header(description="the client's key for this purchase")],
    x_access_token: Annotated[
        str | None, Header(description="an express purchase's: the waiting room's token for this buyer")
    ] = None,
) -> OrderOut:
    """The order of a hold (`holdId`), or an express purchase: the hold's items and the waiting room's
    X-Access-Token, held and ordered in one transaction (two requests on the hot path: join, order)."""
    form = body.root
    request: OrderRequest | service.ExpressPurchase
    if isinstance(form, OrderRequest):
        request = form
    else:
        shopper = admitted_shopper(signer, x_access_token, None, clock())
        request = service.ExpressPurchase(shopper.event_id, shopper.user_id, items=form)
    placed = await service.place_order(
        database,
        checkout,
        signer,
        key=idempotency_key,
        request=request,
        clock=clock,
        payment_minutes=settings.hold_minutes,
    )
    if placed.view.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return OrderOut.of(placed.view, token=placed.token)


@router.get("/{order_id}", response_model=OrderOut, dependencies=[OrderReader], responses=READER_ANSWERS)
async def get_order(order_id: OrderId, session: ReadSession, clock: CurrentClock) -> OrderOut:
    return OrderOut.of(await service.get_order(session, order_id, clock()))


@router.get(
    "/{order_id}/tickets",
    response_model=OrderTicketsOut,
    dependencies=[OrderLinkReader],
    responses=READER_ANSWERS,
)
async def order_tickets(order_id: OrderId, session: ReadSession, clock: CurrentClock) -> OrderTicketsOut:
    view = await service.get_order(session, order_id, clock())
    return OrderTicketsOut(
        order_id=order_id, status=view.status.value, tickets=[TicketOut.of(ticket) for ticket in view.tickets]
    )


@router.get(
    "/{order_id}/tickets.pdf",
    response_class=Response,
    dependencies=[OrderLinkReader],
    responses={**PDF, **READER_ANSWERS},
)
async def order_tickets_pdf(order_id: OrderId, session: ReadSession, settings: CurrentSettings) -> Response:
    printed = await service.printable_order(session, order_id, zone=settings.zone)
    if printed is None or not printed.tickets:
        raise OrderNotFound(f"Order {order_id} has no tickets (yet).")
    headers = {"Content-Disposition": f'inline; filename="tickets-{order_id}.pdf"'}
    # Rendering takes tens of milliseconds of CPU: off the event loop, which is serving others.
    pdf = await asyncio.to_thread(order_pdf, printed)
    return Response(pdf, media_type="application/pdf", headers=headers)


@events_router.get(
    "/{event_id}/orders",
    response_model=EventOrdersOut,
    dependencies=[AdminOnly],
    responses=answers(AdminRequired),
)
async def event_orders(
    event_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    session: ReadSession,
    clock: CurrentClock,
    status_filter: Annotated[OrderStatus | None, Query(alias="status")] = None,
    reason: Annotated[OrderReason | None, Query(description="e.g. charged_back, seats_lost")] = None,
    after: Annotated[
        int, Query(ge=0, le=MAX_ID, description="cursor: the nextAfter of the previous page")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> EventOrdersOut:
    """An event's orders for its organizer, e.g. `?status=refunded&reason=charged_back`."""
    page, next_after = await service.orders_of_event(
        session, event_id, now=clock(), status=status_filter, reason=reason, after=after, limit=limit
    )
    return EventOrdersOut(
        event_id=event_id,
        orders=[OrderSummaryOut.of(order, shown) for order, shown in page],
        next_after=next_after,
    )


@router.post(
    "/{order_id}/cancel",
    response_model=OrderOut,
    dependencies=[AdminOnly],
    responses=answers(AdminRequired, OrderNotFound, OrderNotCancellable),
)
async def cancel_order(order_id: OrderId, session: WriteSession, clock: CurrentClock) -> OrderOut:
    return OrderOut.of(
        await service.cancel_order(session, order_id, actor="admin", now=clock(), reason=OrderReason.ADMIN)
    )
