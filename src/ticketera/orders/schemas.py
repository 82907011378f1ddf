"""Request and response bodies of orders."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    BeforeValidator,
    Discriminator,
    EmailStr,
    Field,
    RootModel,
    StringConstraints,
    Tag,
    model_validator,
)

from ticketera.holds.schemas import HeldUnitOut, HoldRequest, QuantityHold, SeatHold
from ticketera.kit.schemas import PRINTABLE_TEXT, ApiInput, ApiOutput, MoneyOut, form_tag
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
    """An order of a hold taken before (the seat picker's path)."""

    hold_id: Annotated[str, StringConstraints(min_length=3, max_length=32, pattern=r"^h_[A-Za-z0-9_-]+$")]
    buyer: BuyerIn


class ExpressSeats(SeatHold):
    """Express purchase of reserved seats by id: held and ordered in one request (X-Access-Token)."""

    buyer: BuyerIn


class ExpressPlaces(QuantityHold):
    """Express purchase of general-admission places: held and ordered in one request (X-Access-Token)."""

    buyer: BuyerIn


ExpressForm = ExpressSeats | ExpressPlaces
HOLD_ORDER, EXPRESS_SEATS, EXPRESS_PLACES = (
    form_tag("hold"),
    form_tag("express-seats"),
    form_tag("express-places"),
)


def _order_form(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    if "holdId" in body:
        return HOLD_ORDER
    return EXPRESS_SEATS if body.get("seatIds") is not None else EXPRESS_PLACES


OrderForm = Annotated[
    Annotated[OrderRequest, Tag(HOLD_ORDER)]
    | Annotated[ExpressSeats, Tag(EXPRESS_SEATS)]
    | Annotated[ExpressPlaces, Tag(EXPRESS_PLACES)],
    Discriminator(_order_form),
]


class PlaceOrderRequest(RootModel[OrderForm]):
    """A hold's order (`holdId`), or an express purchase: the items of a hold (`seatIds`, or
    `sectionId` with `quantity`) with the waiting room's X-Access-Token, held and ordered at once."""

    @model_validator(mode="before")
    @classmethod
    def _one_form(cls, body: Any) -> Any:
        if isinstance(body, dict) and "holdId" not in body:
            # The items follow a hold's rules, told the same way.
            HoldRequest.model_validate({key: value for key, value in body.items() if key != "buyer"})
        return body


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
