"""The buyer's order page: where MercadoPago's checkout sends the buyer back.

Server-rendered (Jinja2, autoescaped), no JavaScript: it shows what our database says (never the
query MercadoPago appended, which the buyer controls), refreshes itself while the payment is being
confirmed, and once paid shows each ticket's QR code and the PDF. The order token in the URL only
lets its holder read this one order.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import HTMLResponse

from ticketera.kit.db import MAX_ID
from ticketera.kit.http import CurrentClock, CurrentSettings, ReadSession, Signer
from ticketera.kit.pages import render, template_environment
from ticketera.kit.tokens import InvalidToken
from ticketera.orders import service
from ticketera.orders.models import OrderStatus

router = APIRouter(include_in_schema=False)

PAGES = template_environment("ticketera.orders")
REFRESH_SECONDS = 3
STATUS_TEXT = {
    OrderStatus.PENDING_PAYMENT: "Waiting for your payment",
    OrderStatus.PAID: "Paid: here are your tickets",
    OrderStatus.EXPIRED: "This order expired before it was paid",
    OrderStatus.CANCELLED: "This order was cancelled",
    OrderStatus.REFUNDED: "This order was refunded",
}
NO_STORE = {"Cache-Control": "no-store"}


@router.get("/orders/{order_id}", response_class=HTMLResponse)
async def order_page(
    order_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    session: ReadSession,
    clock: CurrentClock,
    signer: Signer,
    settings: CurrentSettings,
    token: Annotated[str | None, Query(max_length=400)] = None,
    result: Annotated[str | None, Query(max_length=16)] = None,
) -> HTMLResponse:
    try:
        signer.verify_order_token(token, order_id)
    except InvalidToken:
        html = render(PAGES, "order.html", title="Order not found", order=None, refresh_seconds=None)
        return HTMLResponse(html, status_code=404, headers=NO_STORE)
    view = await service.get_order(session, order_id, clock())
    pending = view.status is OrderStatus.PENDING_PAYMENT
    html = render(
        PAGES,
        "order.html",
        title=STATUS_TEXT[view.status],
        order=view.order,
        pending=pending,
        result=result,
        deadline=view.order.expires_at.astimezone(settings.zone),
        tickets=view.tickets,
        token=token,
        # Refreshed while MercadoPago confirms a payment, or while the payment link is being made.
        refresh_seconds=REFRESH_SECONDS
        if pending and (result in ("success", "pending") or not view.order.checkout_url)
        else None,
    )
    return HTMLResponse(html, headers=NO_STORE)
