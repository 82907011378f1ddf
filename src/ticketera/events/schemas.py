"""Request and response bodies of the events API, as the public contract spells them."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field, Strict, StringConstraints, model_validator

from ticketera.kit.schemas import (
    PRINTABLE_TEXT,
    WHOLE_NUMBER,
    ApiInput,
    ApiOutput,
    Given,
    IsoMoment,
    MoneyIn,
    MoneyOut,
    Switch,
)

if TYPE_CHECKING:
    from ticketera.events.service import EventView, SectionView

# One call may create at most this many seats and general-admission places in total.
MAX_UNITS_PER_CALL = 100_000
MAX_SECTIONS_PER_EVENT = 200

# Printable text only: control characters (NUL, newlines, ...) have no place in a name on a ticket.
_PRINTABLE = PRINTABLE_TEXT
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=_PRINTABLE)]
SectionName = Annotated[str, StringConstraints(min_length=1, max_length=120, pattern=_PRINTABLE)]
RowLabel = Annotated[str, StringConstraints(min_length=1, max_length=16, pattern=r"^[A-Za-z0-9]+$")]
UnitCount = Annotated[int, Strict(), Field(ge=1, le=MAX_UNITS_PER_CALL), WHOLE_NUMBER]
TicketLimit = Annotated[int, Strict(), Field(ge=1, le=100), WHOLE_NUMBER]
# The currencies MercadoPago charges in, by the ISO 4217 code it uses (one per country it serves).
Currency = Literal["ARS", "BRL", "CLP", "COP", "MXN", "PEN", "UYU", "USD"]
LATEST_YEAR = 9000


def _plausible_year(value: datetime) -> datetime:
    # Far-future dates would overflow when converted to UTC for storage.
    if value.year > LATEST_YEAR:
        raise ValueError(f"must be before the year {LATEST_YEAR}")
    return value


Moment = Annotated[IsoMoment, AfterValidator(_plausible_year)]


def same_name(first: str, second: str) -> bool:
    """Names that differ only in letter case are the same section or row to a buyer."""
    return first.casefold() == second.casefold()


class RowIn(ApiInput):
    label: RowLabel
    seats: UnitCount


class SectionIn(ApiInput):
    """A reserved section (`rows`) or a general-admission one (`capacity`), never both."""

    # `_one_layout`'s rule, for the document (a null layout is the same as none).
    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"required": ["rows"], "properties": {"rows": {"type": "array"}}},
                {"required": ["capacity"], "properties": {"capacity": {"type": "integer"}}},
            ]
        }
    )

    name: SectionName
    price: MoneyIn
    rows: list[RowIn] | None = Field(default=None, min_length=1, max_length=1000)
    capacity: UnitCount | None = None

    @model_validator(mode="after")
    def _one_layout(self) -> SectionIn:
        if (self.rows is None) == (self.capacity is None):
            raise ValueError("a section needs either rows (reserved seating) or capacity (general admission)")
        if self.rows is not None:
            labels = [row.label.casefold() for row in self.rows]
            if len(set(labels)) != len(labels):
                raise ValueError("row labels must be unique within a section (letter case aside)")
        return self

    @property
    def unit_count(self) -> int:
        if self.rows is not None:
            return sum(row.seats for row in self.rows)
        return self.capacity or 0


class QueueSettingsIn(ApiInput):
    enabled: Switch | None = None
    admit_per_minute: Annotated[int, Strict(), Field(ge=1, le=1_000_000), WHOLE_NUMBER] | None = None
    max_active_shoppers: Annotated[int, Strict(), Field(ge=1, le=10_000_000), WHOLE_NUMBER] | None = None
    access_minutes: Annotated[int, Strict(), Field(ge=1, le=120), WHOLE_NUMBER] | None = None
    paused: Switch | None = None


class EventCreate(ApiInput):
    name: Name
    starts_at: Moment
    venue: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=_PRINTABLE)] | None = None
    on_sale_at: Moment | None = None
    max_tickets_per_user: TicketLimit = 10
    currency: Currency = "ARS"
    status: Literal["draft", "published"] = "published"
    queue: QueueSettingsIn | None = None
    sections: list[SectionIn] = Field(default_factory=list, max_length=MAX_SECTIONS_PER_EVENT)


class EventPatch(ApiInput):
    """Only the keys sent are changed; `null` clears `venue` and `onSaleAt` (and is refused for the rest)."""

    name: Given[Name] = None
    starts_at: Given[Moment] = None
    venue: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=_PRINTABLE)] | None = None
    on_sale_at: Moment | None = None
    max_tickets_per_user: Given[TicketLimit] = None
    status: Given[Literal["draft", "published", "paused", "cancelled"]] = None
    queue: Given[QueueSettingsIn] = None


class QueueSettingsOut(ApiOutput):
    enabled: bool
    admit_per_minute: int
    max_active_shoppers: int
    access_minutes: int
    paused: bool


class SectionOut(ApiOutput):
    id: int
    name: str
    kind: str
    price: MoneyOut
    currency: str
    capacity: int
    available: int
    held: int
    sold: int

    @classmethod
    def of(cls, view: SectionView) -> SectionOut:
        section = view.section
        return cls(
            id=section.id,
            name=section.name,
            kind=section.kind,
            price=section.price,
            currency=view.currency,
            capacity=section.capacity,
            available=view.available,
            held=view.held,
            sold=view.sold,
        )


class EventOut(ApiOutput):
    id: int
    name: str
    venue: str | None
    starts_at: datetime
    on_sale_at: datetime | None
    status: str
    currency: str
    max_tickets_per_user: int
    queue: QueueSettingsOut
    capacity: int
    available: int
    sections: list[SectionOut]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, view: EventView) -> EventOut:
        event = view.event
        return cls(
            id=event.id,
            name=event.name,
            venue=event.venue,
            starts_at=event.starts_at,
            on_sale_at=event.on_sale_at,
            status=event.status,
            currency=event.currency,
            max_tickets_per_user=event.max_tickets_per_user,
            queue=QueueSettingsOut(
                enabled=event.queue_enabled,
                admit_per_minute=event.queue_admit_per_minute,
                max_active_shoppers=event.queue_max_active_shoppers,
                access_minutes=event.queue_access_minutes,
                paused=event.queue_paused,
            ),
            capacity=view.capacity,
            available=view.available,
            sections=[SectionOut.of(section) for section in view.sections],
            created_at=event.created_at,
            updated_at=event.updated_at,
        )


class EventPage(ApiOutput):
    items: list[EventOut]
    total: int
    limit: int
    offset: int


class SeatOut(ApiOutput):
    id: int
    section: int
    section_name: str
    row: str
    number: int
    label: str
    status: str


class SeatMap(ApiOutput):
    event_id: int
    seats: list[SeatOut]
    next_after: int | None
