"""HTTP routes of orders; the rules live in `service`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from ticketera.holds.endpoints import held_unit_out
from ticketera.kit.db import MAX_ID, ConflictingChange
from ticketera.kit.http import (
    AdminOnly,
    CurrentClock,
    ReadSession,
    WriteSession,
    get_database,
    get_settings,
    is_admin,
)
from ticketera.kit.security import bearer_token
from ticketera.kit.tokens import TokenSigner
from ticketera.orders import service
from ticketera.orders.models import OrderStatus
from ticketera.orders.schemas import (
    BuyerOut,
    EventOrdersOut,
    IdempotencyKey,
    OrderOut,
    OrderRequest,
    OrderSummaryOut,
)
from ticketera.payments.tasks import PaymentProcessor
from ticketera.tickets.schemas import TicketOut

router = APIRouter(prefix="/api/orders", tags=["orders"])
# An event's orders, for its organizer.
events_router = APIRouter(prefix="/api/events", tags=["orders"])

OrderId = Annotated[int, Path(ge=1, le=MAX_ID)]


def signer_of(request: Request) -> TokenSigner:
    signer: TokenSigner = request.app.state.waiting_room.signer
    return signer


@router.post("", status_code=status.HTTP_201_CREATED, response_model=OrderOut)
async def create_order(
    body: OrderRequest,
    request: Request,
    response: Response,
    clock: CurrentClock,
    idempotency_key: Annotated[IdempotencyKey, Header(description="the client's key for this purchase")],
) -> OrderOut:
    database = get_database(request)
    payment_minutes = get_settings(request).hold_minutes
    payments: PaymentProcessor = request.app.state.payments
    # While MercadoPago is known to be down, say so at once and leave the hold as it is.
    payments.gateway.ensure_available()

    async def create(session: AsyncSession) -> service.OrderView:
        return await service.create_order(
            session, key=idempotency_key, request=body, now=clock(), payment_minutes=payment_minutes
        )

    async def replay(session: AsyncSession) -> service.OrderView | None:
        return await service.replay_of(session, idempotency_key, service.request_digest(body), clock())

    try:
        view = await database.transaction(create)
    except ConflictingChange:
        # Two requests with one key raced and the other inserted first: answer with its order.
        replayed = await database.transaction(replay)
        if replayed is None:
            raise
        view = replayed
    if view.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    # Signed once: the same token goes into the checkout's return URL and the answer.
    token = signer_of(request).order_token(view.order.id)
    if view.status is OrderStatus.PENDING_PAYMENT:
        # A failure here answers 503 with the order kept: the same request again (same key)
        # finds it and only creates the missing checkout.
        await payments.ensure_checkout(view, order_token=token)
    return order_out(view, token=token)


@router.get("/{order_id}", response_model=OrderOut)
async def get_order(
    order_id: OrderId, request: Request, session: ReadSession, clock: CurrentClock
) -> OrderOut:
    authorize_order_reader(request, order_id)
    return order_out(await service.get_order(session, order_id, clock()))


def authorize_order_reader(request: Request, order_id: int, *, link_token: bool = False) -> None:
    """The admin, or the holder of the order's token as a bearer; with `link_token`, also in
    `?token=`, for links a browser follows (the order page's PDF link)."""
    if is_admin(request):
        return
    token = bearer_token(request.headers.get("authorization"))
    if token is None and link_token:
        token = request.query_params.get("token")
    signer_of(request).verify_order_token(token, order_id)


@events_router.get("/{event_id}/orders", response_model=EventOrdersOut, dependencies=[AdminOnly])
async def event_orders(
    event_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    session: ReadSession,
    clock: CurrentClock,
    status_filter: Annotated[OrderStatus | None, Query(alias="status")] = None,
    reason: Annotated[str | None, Query(max_length=64, description="e.g. charged_back, seats_lost")] = None,
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
        orders=[
            OrderSummaryOut(
                id=order.id,
                status=shown.value,
                status_reason=order.status_reason,
                total=order.total,
                currency=order.currency,
                quantity=order.quantity,
                buyer=BuyerOut(email=order.buyer_email, name=order.buyer_name),
                user_id=order.user_id,
                created_at=order.created_at,
                expires_at=order.expires_at,
                paid_at=order.paid_at,
            )
            for order, shown in page
        ],
        next_after=next_after,
    )


@router.post("/{order_id}/cancel", response_model=OrderOut, dependencies=[AdminOnly])
async def cancel_order(order_id: OrderId, session: WriteSession, clock: CurrentClock) -> OrderOut:
    return order_out(
        await service.cancel_order(session, order_id, actor="admin", now=clock(), reason="admin")
    )


def order_out(view: service.OrderView, *, token: str | None = None) -> OrderOut:
    order = view.order
    return OrderOut(
        id=order.id,
        event_id=order.event_id,
        status=view.status.value,
        status_reason=order.status_reason,
        total=order.total,
        currency=order.currency,
        quantity=order.quantity,
        expires_at=order.expires_at,
        paid_at=order.paid_at,
        created_at=order.created_at,
        buyer=BuyerOut(email=order.buyer_email, name=order.buyer_name),
        seats=[held_unit_out(unit) for unit in view.units],
        checkout_url=order.checkout_url if view.status is OrderStatus.PENDING_PAYMENT else None,
        tickets=[TicketOut.of(ticket) for ticket in view.tickets],
        order_token=token,
    )
