"""Request and response bodies of holds."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import Field, model_validator

from ticketera.kit.schemas import ApiInput, ApiOutput, Count, DatabaseId, MoneyOut

if TYPE_CHECKING:
    from ticketera.holds.service import HeldUnit, HoldView

# Far above any maxTicketsPerUser: a bound on the request, not the business rule.
MAX_UNITS_PER_HOLD = 100


class HoldRequest(ApiInput):
    """Reserved seats by id (`seatIds`), or general-admission places by quantity (`sectionId`, `quantity`)."""

    seat_ids: list[DatabaseId] | None = Field(default=None, min_length=1, max_length=MAX_UNITS_PER_HOLD)
    section_id: DatabaseId | None = None
    quantity: Count | None = Field(default=None, ge=1, le=MAX_UNITS_PER_HOLD)

    @model_validator(mode="after")
    def _one_form(self) -> HoldRequest:
        by_seat = self.seat_ids is not None
        by_quantity = self.section_id is not None or self.quantity is not None
        if by_seat == by_quantity:
            raise ValueError("send either seatIds, or sectionId with quantity")
        if by_quantity and (self.section_id is None or self.quantity is None):
            raise ValueError("sectionId and quantity go together")
        if self.seat_ids is not None and len(set(self.seat_ids)) != len(self.seat_ids):
            raise ValueError("seatIds must not repeat")
        return self


class HeldUnitOut(ApiOutput):
    id: int
    section: int
    section_name: str
    row: str | None
    number: int | None
    label: str | None
    price: MoneyOut

    @classmethod
    def of(cls, unit: HeldUnit) -> HeldUnitOut:
        return cls(
            id=unit.id,
            section=unit.section_id,
            section_name=unit.section_name,
            row=unit.row,
            number=unit.number,
            label=unit.label,
            price=unit.price,
        )


class HoldOut(ApiOutput):
    hold_id: str
    event_id: int
    status: str
    expires_at: datetime
    seats: list[HeldUnitOut]
    quantity: int
    total: MoneyOut
    currency: str

    @classmethod
    def of(cls, view: HoldView) -> HoldOut:
        return cls(
            hold_id=view.public_id,
            event_id=view.event_id,
            status=view.status,
            expires_at=view.expires_at,
            seats=[HeldUnitOut.of(unit) for unit in view.units],
            quantity=view.quantity,
            total=view.total,
            currency=view.currency,
        )
