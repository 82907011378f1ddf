"""The buyer's order page: where MercadoPago's checkout sends the buyer back, and the tickets email's link.

It shows what our database says (never the query MercadoPago appended, which the buyer controls,
except to choose which words to say while a payment is being confirmed), refreshes itself while
the payment is confirmed, and once paid shows each ticket's QR code and the PDF. The order token in
the URL only lets its holder read this one order.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse

from ticketera.kit.db import MAX_ID
from ticketera.kit.errors import DomainError
from ticketera.kit.http import CurrentClock, Db, Signer
from ticketera.kit.tokens import InvalidToken
from ticketera.orders import service
from ticketera.orders.models import OrderStatus
from ticketera.web.rendering import CurrentPage, problem_page

router = APIRouter(include_in_schema=False)

REFRESH_SECONDS = 3
# Tokens are about 100 characters; anything much longer is not one.
MAX_TOKEN_LENGTH = 400


@router.get("/orders/{order_id}", response_class=HTMLResponse)
async def order_page(
    order_id: str,
    page: CurrentPage,
    database: Db,
    clock: CurrentClock,
    signer: Signer,
    token: Annotated[str | None, Query()] = None,
    result: Annotated[str | None, Query()] = None,
) -> HTMLResponse:
    _ = page._
    # Every way of not opening an order reads the same to the buyer (and says nothing to a guesser).
    not_found = page.error(
        404, _("Order not found"), _("This link does not open any order. Check the link in your email.")
    )
    if not order_id.isdecimal() or not 1 <= int(order_id) <= MAX_ID:
        return not_found
    if token is None or len(token) > MAX_TOKEN_LENGTH:
        return not_found
    try:
        signer.verify_order_token(token, int(order_id))
    except InvalidToken:
        return not_found
    try:
        async with database.read_session() as session:
            view = await service.get_order(session, int(order_id), clock())
    except DomainError as error:
        return not_found if error.status_code == 404 else problem_page(page, error)
    status = view.status
    pending = status is OrderStatus.PENDING_PAYMENT
    confirming = pending and result in ("success", "pending")
    rejected = pending and result == "failure"
    return page.render(
        "order.html",
        title=_title(page, status, rejected=rejected),
        order=view.order,
        status=status.value,
        pending=pending,
        confirming=confirming,
        rejected=rejected,
        tickets=view.tickets,
        token=token,
        # Refreshed while MercadoPago confirms a payment, or while the payment link is being made.
        refresh_seconds=REFRESH_SECONDS if confirming or (pending and not view.order.checkout_url) else None,
    )


def _title(page: CurrentPage, status: OrderStatus, *, rejected: bool) -> str:
    _ = page._
    if rejected:
        return _("Your payment was not approved")
    return {
        OrderStatus.PENDING_PAYMENT: _("Waiting for your payment"),
        OrderStatus.PAID: _("Paid: here are your tickets"),
        OrderStatus.EXPIRED: _("This order expired before it was paid"),
        OrderStatus.CANCELLED: _("This order was cancelled"),
        OrderStatus.REFUNDED: _("This order was refunded"),
    }[status]
