"""Request and response bodies of orders."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BeforeValidator, EmailStr, Field, StringConstraints

from ticketera.holds.schemas import HeldUnitOut
from ticketera.kit.schemas import PRINTABLE_TEXT, ApiInput, ApiOutput, MoneyOut
from ticketera.orders.models import Order, OrderStatus
from ticketera.tickets.schemas import TicketOut

if TYPE_CHECKING:
    from ticketera.orders.service import OrderView

IdempotencyKey = Annotated[
    str, StringConstraints(min_length=8, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
]


def _as_sent(value: Any) -> Any:
    # email-validator trims an address before reading it; the document's `email` format does not.
    if isinstance(value, str) and value != value.strip():
        raise ValueError("must not start or end with spaces")
    return value


class BuyerIn(ApiInput):
    email: Annotated[EmailStr, BeforeValidator(_as_sent)]
    name: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=PRINTABLE_TEXT)]


class OrderRequest(ApiInput):
    hold_id: Annotated[str, StringConstraints(min_length=3, max_length=32, pattern=r"^h_[A-Za-z0-9_-]+$")]
    buyer: BuyerIn


class BuyerOut(ApiOutput):
    email: str
    name: str


class OrderOut(ApiOutput):
    id: int
    event_id: int
    status: str
    status_reason: str | None
    total: MoneyOut
    currency: str
    quantity: int
    expires_at: datetime
    paid_at: datetime | None
    created_at: datetime
    buyer: BuyerOut
    seats: list[HeldUnitOut]
    checkout_url: str | None
    # Once paid: the tickets, with their signed codes (GET /api/orders/{id}/tickets has the same).
    tickets: list[TicketOut] = Field(default_factory=list)
    order_token: str | None = None

    @classmethod
    def of(cls, view: OrderView, *, token: str | None = None) -> OrderOut:
        order = view.order
        return cls(
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
            seats=[HeldUnitOut.of(unit) for unit in view.units],
            checkout_url=order.checkout_url if view.status is OrderStatus.PENDING_PAYMENT else None,
            tickets=[TicketOut.of(ticket) for ticket in view.tickets],
            order_token=token,
        )


class OrderSummaryOut(ApiOutput):
    id: int
    status: str
    status_reason: str | None
    total: MoneyOut
    currency: str
    quantity: int
    buyer: BuyerOut
    user_id: str
    created_at: datetime
    expires_at: datetime
    paid_at: datetime | None

    @classmethod
    def of(cls, order: Order, shown: OrderStatus) -> OrderSummaryOut:
        return cls(
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


class EventOrdersOut(ApiOutput):
    event_id: int
    orders: list[OrderSummaryOut]
    next_after: int | None
