"""The buyer's order page: where MercadoPago's checkout sends the buyer back.

Plain server-rendered HTML, no JavaScript: it shows what our database says (never the query
MercadoPago appended, which the buyer controls), refreshes itself while the payment is being
confirmed, and once paid shows each ticket's QR code and the PDF. The order token in the URL only
lets its holder read this one order.
"""

from __future__ import annotations

from html import escape
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse

from ticketera.kit.db import MAX_ID
from ticketera.kit.http import CurrentClock, ReadSession, get_settings
from ticketera.kit.tokens import InvalidToken
from ticketera.orders import service
from ticketera.orders.endpoints import signer_of
from ticketera.orders.models import OrderStatus

router = APIRouter(include_in_schema=False)

REFRESH_SECONDS = 3
STATUS_TEXT = {
    OrderStatus.PENDING_PAYMENT: "Waiting for your payment",
    OrderStatus.PAID: "Paid: here are your tickets",
    OrderStatus.EXPIRED: "This order expired before it was paid",
    OrderStatus.CANCELLED: "This order was cancelled",
    OrderStatus.REFUNDED: "This order was refunded",
}


@router.get("/orders/{order_id}", response_class=HTMLResponse)
async def order_page(
    order_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    request: Request,
    session: ReadSession,
    clock: CurrentClock,
    token: Annotated[str | None, Query(max_length=400)] = None,
    result: Annotated[str | None, Query(max_length=16)] = None,
) -> HTMLResponse:
    try:
        signer_of(request).verify_order_token(token, order_id)
    except InvalidToken:
        return _page("Order not found", "<p>This link is not valid for any order.</p>", status_code=404)
    view = await service.get_order(session, order_id, clock())
    order = view.order
    parts = [
        f"<p>Order {order.id} - {escape(str(order.total))} {escape(order.currency)} - "
        f"{escape(order.buyer_name)} &lt;{escape(order.buyer_email)}&gt;</p>"
    ]
    refresh = False
    if view.status is OrderStatus.PENDING_PAYMENT:
        if result in ("success", "pending"):
            parts.append("<p>MercadoPago is confirming your payment; this page updates by itself.</p>")
            refresh = True
        elif result == "failure":
            parts.append("<p>The payment did not go through. You can try again before the order expires.</p>")
        if order.checkout_url:
            parts.append(f'<p><a href="{escape(order.checkout_url)}">Pay with MercadoPago</a></p>')
        deadline = order.expires_at.astimezone(get_settings(request).zone)
        parts.append(f"<p>Pay before {deadline:%H:%M} ({escape(f'{deadline:%Z}')}).</p>")
    if view.tickets:
        pdf = f"/api/orders/{order.id}/tickets.pdf?token={escape(token or '')}"
        parts.append(f'<p><a href="{pdf}">Download your tickets (PDF)</a></p>')
        for ticket in view.tickets:
            seat = f"seat {escape(ticket.seat_label)}" if ticket.seat_label else "general admission"
            parts.append(
                f'<figure><img alt="QR code" width="240" height="240" '
                f'src="/api/tickets/{escape(ticket.code)}/qr.svg">'
                f"<figcaption>{escape(ticket.section_name)}, {seat} ({escape(ticket.status)})"
                "</figcaption></figure>"
            )
    return _page(STATUS_TEXT[view.status], "".join(parts), refresh=refresh)


def _page(title: str, body: str, *, status_code: int = 200, refresh: bool = False) -> HTMLResponse:
    meta = f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">' if refresh else ""
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">{meta}'
        f"<title>{escape(title)} - Ticketera</title></head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(html, status_code=status_code, headers={"Cache-Control": "no-store"})
