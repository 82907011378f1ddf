"""Request and response bodies of orders."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import EmailStr, Field, StringConstraints

from ticketera.holds.schemas import HeldUnitOut
from ticketera.kit.schemas import ApiInput, ApiOutput, MoneyOut
from ticketera.tickets.schemas import TicketOut

IdempotencyKey = Annotated[
    str, StringConstraints(min_length=8, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
]


class BuyerIn(ApiInput):
    email: EmailStr
    name: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]


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


class EventOrdersOut(ApiOutput):
    event_id: int
    orders: list[OrderSummaryOut]
    next_after: int | None
