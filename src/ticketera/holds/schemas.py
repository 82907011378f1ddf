"""Request and response bodies of holds."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Discriminator, Field, RootModel, Strict, Tag, model_validator
from pydantic_core import PydanticCustomError

from ticketera.kit.schemas import WHOLE_NUMBER, ApiInput, ApiOutput, DatabaseId, MoneyOut, form_tag

if TYPE_CHECKING:
    from ticketera.holds.service import HeldUnit, HoldView

# Far above any maxTicketsPerUser: a bound on the request, not the business rule.
MAX_UNITS_PER_HOLD = 100


class SeatHold(ApiInput):
    """Reserved seats by id, all or nothing."""

    # `uniqueItems`: `_distinct`'s rule, for the document.
    seat_ids: list[DatabaseId] = Field(
        min_length=1, max_length=MAX_UNITS_PER_HOLD, json_schema_extra={"uniqueItems": True}
    )
    # The other form's keys, only as null (the same as leaving them out).
    section_id: None = None
    quantity: None = None

    @model_validator(mode="after")
    def _distinct(self) -> SeatHold:
        if len(set(self.seat_ids)) != len(self.seat_ids):
            raise ValueError("seatIds must not repeat")
        return self


class QuantityHold(ApiInput):
    """General-admission places: how many, of which section."""

    section_id: DatabaseId
    quantity: Annotated[int, Strict(), Field(ge=1, le=MAX_UNITS_PER_HOLD), WHOLE_NUMBER]
    seat_ids: None = None


SEATS, PLACES = form_tag("seats"), form_tag("places")


def _form_of(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    return SEATS if body.get("seatIds") is not None else PLACES


HoldForm = Annotated[
    Annotated[SeatHold, Tag(SEATS)] | Annotated[QuantityHold, Tag(PLACES)], Discriminator(_form_of)
]


class HoldRequest(RootModel[HoldForm]):
    """Reserved seats by id (`seatIds`), or general-admission places by quantity (`sectionId`, `quantity`)."""

    @model_validator(mode="before")
    @classmethod
    def _one_form(cls, body: Any) -> Any:
        # Said before either form is tried, so a body that mixes them (or has neither) is told
        # which forms there are, not what one of them lacks.
        if not isinstance(body, dict):
            raise PydanticCustomError("model_type", "Input should be an object")
        by_seat = body.get("seatIds") is not None
        by_quantity = body.get("sectionId") is not None or body.get("quantity") is not None
        if by_seat == by_quantity:
            raise ValueError("send either seatIds, or sectionId with quantity")
        if by_quantity and (body.get("sectionId") is None or body.get("quantity") is None):
            raise ValueError("sectionId and quantity go together")
        return body


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
