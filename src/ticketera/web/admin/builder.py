"""The event form and its section builder: from the form's fields to the API's request bodies
(`EventCreate`, `EventPatch`, `SectionIn`), and the API's validation errors back to the fields.

The form is validated by the very schemas and services the API uses, so the rules and the messages
are the API's, each shown next to the field it is about. The builder works without JavaScript:
"Add a section" and "Remove" are submit buttons that send the form back with one section more or
less, so nothing typed is lost and a keyboard reaches everything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from pydantic import ValidationError

from ticketera.events.models import Event, SectionKind
from ticketera.kit.errors import InvalidInput

RESERVED = SectionKind.RESERVED.value
GENERAL = SectionKind.GENERAL_ADMISSION.value
MAX_BUILDER_SECTIONS = 50
# More rows than the API takes (1000) still become a list, so the API's own message says so;
# far more would only cost memory.
MAX_ROWS_TYPED = 100_000
# The API's camelCase names of the event's fields, and the form's names for them.
EVENT_FIELDS = {
    "name": "name",
    "venue": "venue",
    "startsAt": "starts_at",
    "onSaleAt": "on_sale_at",
    "maxTicketsPerUser": "max_tickets",
    "admitPerMinute": "admit_per_minute",
    "maxActiveShoppers": "max_active",
    "accessMinutes": "access_minutes",
    "enabled": "queue_enabled",
}
MOMENT_FORMAT = "%Y-%m-%dT%H:%M"


@dataclass
class SectionDraft:
    """One section of the builder as typed: text, not yet numbers."""

    name: str = ""
    kind: str = RESERVED
    price: str = ""
    rows: str = ""
    seats: str = ""
    capacity: str = ""

    def body(self) -> dict[str, Any]:
        """The section as the API takes it; rows x seats become rows A, B, C... of `seats` each."""
        section: dict[str, Any] = {"name": self.name, "price": self.price}
        if self.kind == GENERAL:
            section["capacity"] = _number(self.capacity)
        else:
            rows, seats = _number(self.rows), _number(self.seats)
            section["rows"] = (
                [{"label": row_label(index), "seats": seats} for index in range(rows)]
                if isinstance(rows, int) and rows <= MAX_ROWS_TYPED
                else rows
            )
        return section


def _number(text: str) -> Any:
    """A whole number typed in a field, or the text itself, for the schema to refuse in its words."""
    text = text.strip()
    return int(text) if re.fullmatch(r"\d{1,9}", text) else text


def row_label(index: int) -> str:
    """A, B, ... Z, AA, AB, ...: rows as venues letter them."""
    label = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        label = chr(ord("A") + rest) + label
    return label


@dataclass
class EventDraft:
    """The event form as typed, with the errors found, by field name."""

    name: str = ""
    venue: str = ""
    starts_at: str = ""
    on_sale_at: str = ""
    max_tickets: str = "10"
    queue_enabled: bool = True
    admit_per_minute: str = "100"
    max_active: str = "500"
    access_minutes: str = "10"
    sections: list[SectionDraft] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of_event(cls, event: Event, zone: tzinfo) -> EventDraft:
        return cls(
            name=event.name,
            venue=event.venue or "",
            starts_at=local_moment(event.starts_at, zone),
            on_sale_at=local_moment(event.on_sale_at, zone) if event.on_sale_at else "",
            max_tickets=str(event.max_tickets_per_user),
            queue_enabled=event.queue_enabled,
            admit_per_minute=str(event.queue_admit_per_minute),
            max_active=str(event.queue_max_active_shoppers),
            access_minutes=str(event.queue_access_minutes),
        )

    @classmethod
    def of_form(cls, values: dict[str, str]) -> EventDraft:
        count = _number(values.get("section_count", "0"))
        count = min(count, MAX_BUILDER_SECTIONS) if isinstance(count, int) else 0
        sections = [
            SectionDraft(
                name=values.get(f"s{index}-name", ""),
                kind=GENERAL if values.get(f"s{index}-kind") == GENERAL else RESERVED,
                price=values.get(f"s{index}-price", "").strip(),
                rows=values.get(f"s{index}-rows", ""),
                seats=values.get(f"s{index}-seats", ""),
                capacity=values.get(f"s{index}-capacity", ""),
            )
            for index in range(count)
        ]
        return cls(
            name=values.get("name", ""),
            venue=values.get("venue", ""),
            starts_at=values.get("starts_at", ""),
            on_sale_at=values.get("on_sale_at", ""),
            max_tickets=values.get("max_tickets", ""),
            queue_enabled=values.get("queue_enabled") == "on",
            admit_per_minute=values.get("admit_per_minute", ""),
            max_active=values.get("max_active", ""),
            access_minutes=values.get("access_minutes", ""),
            sections=sections,
        )

    def event_body(self, zone: tzinfo) -> dict[str, Any]:
        """The event's fields (without sections) as the API takes them; a date the browser's field
        could not have sent is marked on its field here."""
        body: dict[str, Any] = {
            "name": self.name,
            "venue": self.venue.strip() or None,
            "startsAt": self._moment("starts_at", self.starts_at, zone, required=True),
            "onSaleAt": self._moment("on_sale_at", self.on_sale_at, zone, required=False),
            "maxTicketsPerUser": _number(self.max_tickets),
            "queue": {
                "enabled": self.queue_enabled,
                "admitPerMinute": _number(self.admit_per_minute),
                "maxActiveShoppers": _number(self.max_active),
                "accessMinutes": _number(self.access_minutes),
            },
        }
        return body

    def _moment(self, name: str, text: str, zone: tzinfo, *, required: bool) -> str | None:
        text = text.strip()
        if not text:
            if required:
                self.errors[name] = "Field required"
            return None
        try:
            moment = datetime.strptime(text[:16], MOMENT_FORMAT).replace(tzinfo=zone)
        except ValueError:
            self.errors[name] = "must be a date and time"
            return None
        return moment.isoformat()

    def add_validation_errors(self, error: ValidationError, *, prefix: tuple[Any, ...] = ()) -> None:
        for item in error.errors():
            location = prefix + tuple(part for part in item.get("loc", ()) if _is_location(part))
            message = str(item.get("msg", "invalid value")).removeprefix("Value error, ")
            self.errors.setdefault(form_field(location), message)

    def add_invalid_input(self, error: InvalidInput, *, prefix: tuple[Any, ...] = ()) -> None:
        for item in error.details.get("fields", []):
            self.errors.setdefault(form_field(prefix + parse_field(item["field"])), item["message"])

    def section_error(self, index: int, message: str) -> None:
        self.errors.setdefault(f"s{index}", message)


def _is_location(part: Any) -> bool:
    # Pydantic's own steps inside a field (a function validator, a tagged union) are not fields.
    return isinstance(part, int) or (
        isinstance(part, str) and not part.startswith(("function-", "json-or-python", "constrained-"))
    )


def parse_field(text: str) -> tuple[Any, ...]:
    """`sections[0].rows[2].seats` -> ("sections", 0, "rows", 2, "seats"), as pydantic locates it."""
    parts: list[Any] = []
    for name, index in re.findall(r"([A-Za-z_]+)|\[(\d+)\]", text):
        parts.append(name if name else int(index))
    return tuple(parts)


def form_field(location: tuple[Any, ...]) -> str:
    """The form field an error of the API's request body is about."""
    if len(location) >= 2 and location[0] == "sections" and isinstance(location[1], int):
        index = location[1]
        rest = location[2:]
        if not rest:
            return f"s{index}"
        if rest[0] == "rows":
            return f"s{index}-seats" if rest[-1] == "seats" else f"s{index}-rows"
        if rest[0] in ("name", "price", "capacity"):
            return f"s{index}-{rest[0]}"
        return f"s{index}"
    if location and location[0] == "sections":
        return "sections"
    for part in reversed(location):
        if isinstance(part, str) and part in EVENT_FIELDS:
            return EVENT_FIELDS[part]
    return "form"


def local_moment(moment: datetime, zone: tzinfo) -> str:
    """A moment as a datetime-local field shows it, in the venue's zone."""
    return moment.astimezone(zone).strftime(MOMENT_FORMAT)
