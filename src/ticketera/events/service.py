"""The rules of events and inventory: creating venues, editing, publishing, availability.

Services flush but never commit: the request or job that calls them owns the transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from ticketera.events import repository
from ticketera.events.models import Event, EventStatus, SeatStatus, Section, SectionKind, seat_label
from ticketera.events.schemas import (
    MAX_SECTIONS_PER_EVENT,
    MAX_UNITS_PER_CALL,
    EventCreate,
    EventPatch,
    QueueSettingsIn,
    SectionIn,
    same_name,
)
from ticketera.kit.clock import Clock, utc_now
from ticketera.kit.errors import Conflict, InvalidInput, NotFound

log = structlog.get_logger(__name__)

# Which status an event may move to from each status. Cancelling is final.
STATUS_TRANSITIONS: dict[EventStatus, frozenset[EventStatus]] = {
    EventStatus.DRAFT: frozenset({EventStatus.PUBLISHED, EventStatus.CANCELLED}),
    EventStatus.PUBLISHED: frozenset({EventStatus.PAUSED, EventStatus.CANCELLED}),
    EventStatus.PAUSED: frozenset({EventStatus.PUBLISHED, EventStatus.CANCELLED}),
    EventStatus.CANCELLED: frozenset(),
}

SEAT_MAP_MAX_LIMIT = 100_000


class EventNotFound(NotFound):
    code = "event_not_found"


class SectionNotFound(NotFound):
    code = "section_not_found"


class EventCancelled(Conflict):
    code = "event_cancelled"


class InvalidStatusTransition(Conflict):
    code = "invalid_status_transition"


class DuplicateSection(Conflict):
    code = "duplicate_section"


@dataclass(frozen=True)
class SectionView:
    section: Section
    currency: str
    held: int = 0
    sold: int = 0

    @property
    def available(self) -> int:
        return max(self.section.capacity - self.held - self.sold, 0)


@dataclass(frozen=True)
class EventView:
    """An event with live availability, as of the moment it was read."""

    event: Event
    sections: list[SectionView]

    @property
    def capacity(self) -> int:
        return sum(view.section.capacity for view in self.sections)

    @property
    def available(self) -> int:
        return sum(view.available for view in self.sections)


# Drafts are the organizer's work in progress: only admins see them.
PUBLIC_STATUSES = frozenset({EventStatus.PUBLISHED, EventStatus.PAUSED, EventStatus.CANCELLED})


def is_publicly_visible(event: Event) -> bool:
    return EventStatus(event.status) in PUBLIC_STATUSES


async def create_event(session: AsyncSession, data: EventCreate, *, clock: Clock = utc_now) -> EventView:
    _check_dates(data.starts_at, data.starts_at, data.on_sale_at, now=clock())
    _check_sections(data.sections, field="sections")
    queue = data.queue or QueueSettingsIn()
    event = Event(
        name=data.name,
        venue=data.venue,
        starts_at=data.starts_at,
        on_sale_at=data.on_sale_at,
        status=data.status,
        currency=data.currency,
        max_tickets_per_user=data.max_tickets_per_user,
    )
    _apply_queue_settings(event, queue, defaults=True)
    await repository.add_event(session, event)
    sections = [
        await _create_section(session, event, section_in, position)
        for position, section_in in enumerate(data.sections, start=1)
    ]
    log.info(
        "event.created",
        event_id=event.id,
        sections=len(sections),
        units=sum(section.capacity for section in sections),
    )
    return EventView(event, [SectionView(section, event.currency) for section in sections])


async def add_section(session: AsyncSession, event_id: int, data: SectionIn) -> SectionView:
    event = await repository.lock_event(session, event_id)
    if event is None:
        raise EventNotFound(f"Event {event_id} does not exist.")
    _ensure_editable(event)
    existing = await repository.section_names(session, event_id)
    if len(existing) >= MAX_SECTIONS_PER_EVENT:
        raise InvalidInput("sections", f"an event has at most {MAX_SECTIONS_PER_EVENT} sections")
    if any(same_name(data.name, name) for name in existing):
        raise DuplicateSection(f"Event {event_id} already has a section named {data.name!r}.", field="name")
    _check_sections([data], field="rows")
    position = await repository.max_section_position(session, event_id) + 1
    section = await _create_section(session, event, data, position)
    log.info("event.section_added", event_id=event_id, section_id=section.id, units=section.capacity)
    return SectionView(section, event.currency)


async def get_event_view(
    session: AsyncSession, event_id: int, *, include_drafts: bool, clock: Clock = utc_now
) -> EventView:
    event = await repository.get_event(session, event_id)
    if event is None or (not include_drafts and not is_publicly_visible(event)):
        raise EventNotFound(f"Event {event_id} does not exist.")
    return (await _with_availability(session, [event], clock()))[0]


async def find_event(session: AsyncSession, event_id: int) -> Event | None:
    """The event row alone (any status), for other domains: a checkout's title, a ticket's event."""
    return await repository.find_event(session, event_id)


async def require_event(session: AsyncSession, event_id: int) -> Event:
    """The event row alone, or 404."""
    event = await repository.find_event(session, event_id)
    if event is None:
        raise EventNotFound(f"Event {event_id} does not exist.")
    return event


async def events_with_open_queues(session: AsyncSession, *, started_before: datetime) -> list[Event]:
    """Published or paused events with the waiting room on that started after `started_before`."""
    return await repository.events_with_open_queues(session, started_before=started_before)


async def list_event_views(
    session: AsyncSession,
    *,
    include_drafts: bool,
    status: EventStatus | None,
    limit: int,
    offset: int,
    clock: Clock = utc_now,
) -> tuple[list[EventView], int]:
    visible = set(EventStatus) if include_drafts else PUBLIC_STATUSES
    wanted = {status} if status is not None else visible
    statuses = sorted(value.value for value in wanted & visible)
    events, total = await repository.list_events(session, statuses=statuses, limit=limit, offset=offset)
    return await _with_availability(session, events, clock()), total


async def update_event(
    session: AsyncSession, event_id: int, patch: EventPatch, *, clock: Clock = utc_now
) -> EventView:
    event = await repository.lock_event(session, event_id)
    if event is None:
        raise EventNotFound(f"Event {event_id} does not exist.")
    changes = patch.model_fields_set
    if changes - {"status"}:
        _ensure_editable(event)
    if patch.name is not None:
        event.name = patch.name
    if "venue" in changes:
        event.venue = patch.venue
    if patch.starts_at is not None:
        event.starts_at = patch.starts_at
    if "on_sale_at" in changes:
        event.on_sale_at = patch.on_sale_at
    if patch.max_tickets_per_user is not None:
        event.max_tickets_per_user = patch.max_tickets_per_user
    _check_dates(patch.starts_at, event.starts_at, event.on_sale_at, now=clock())
    if patch.queue is not None:
        _apply_queue_settings(event, patch.queue, defaults=False)
    if patch.status is not None:
        _change_status(event, EventStatus(patch.status))
    await session.flush()
    log.info("event.updated", event_id=event_id, fields=sorted(changes), status=event.status)
    return (await _with_availability(session, [event], clock()))[0]


async def seat_map(
    session: AsyncSession,
    event_id: int,
    *,
    include_drafts: bool,
    section_id: int | None,
    status: SeatStatus | None,
    after_id: int | None,
    limit: int,
    clock: Clock = utc_now,
) -> tuple[list[dict[str, Any]], int | None]:
    """One page of the reserved-seat map with live statuses, and the cursor of the next page."""
    event = await repository.get_event(session, event_id)
    if event is None or (not include_drafts and not is_publicly_visible(event)):
        raise EventNotFound(f"Event {event_id} does not exist.")
    if section_id is not None and section_id not in {section.id for section in event.sections}:
        raise SectionNotFound(f"Event {event_id} has no section {section_id}.")
    # General-admission places are units, not seats: the map shows reserved sections only.
    reserved = [
        section.id
        for section in event.sections
        if section.kind == SectionKind.RESERVED and section_id in (None, section.id)
    ]
    rows = await repository.seat_map_rows(
        session,
        section_ids=reserved,
        now=clock(),
        status=status,
        after_id=after_id,
        limit=limit + 1,
    )
    names = {section.id: section.name for section in event.sections}
    seats = [
        {
            "id": seat_id,
            "section": section,
            "sectionName": names[section],
            "row": row_label,
            "number": number,
            "label": seat_label(row_label, number),
            "status": live_status,
        }
        for seat_id, section, row_label, number, live_status in rows[:limit]
    ]
    next_after = seats[-1]["id"] if len(rows) > limit else None
    return seats, next_after


def _change_status(event: Event, target: EventStatus) -> None:
    current = EventStatus(event.status)
    if target == current:
        return
    if target not in STATUS_TRANSITIONS[current]:
        raise InvalidStatusTransition(
            f"An event that is {current.value} cannot become {target.value}.",
            status=current.value,
            requested=target.value,
        )
    event.status = target
    log.info("event.status_changed", event_id=event.id, previous=current.value, status=target.value)


def _ensure_editable(event: Event) -> None:
    if event.status == EventStatus.CANCELLED:
        raise EventCancelled(f"Event {event.id} is cancelled and can no longer be changed.")


def _apply_queue_settings(event: Event, queue: QueueSettingsIn, *, defaults: bool) -> None:
    fields = {
        "enabled": "queue_enabled",
        "admit_per_minute": "queue_admit_per_minute",
        "max_active_shoppers": "queue_max_active_shoppers",
        "access_minutes": "queue_access_minutes",
        "paused": "queue_paused",
    }
    for source, target in fields.items():
        value = getattr(queue, source)
        if value is not None:
            setattr(event, target, value)
        elif defaults:
            default = Event.__table__.c[target].default
            setattr(event, target, default.arg if default is not None else None)


def _check_dates(
    new_start: datetime | None, starts_at: datetime, on_sale_at: datetime | None, *, now: datetime
) -> None:
    """An event is created or moved into the future, and goes on sale before it starts."""
    if new_start is not None and new_start <= now:
        raise InvalidInput("startsAt", "must be in the future")
    if on_sale_at is not None and on_sale_at > starts_at:
        raise InvalidInput("onSaleAt", "must not be after startsAt")


def _check_sections(sections: list[SectionIn], *, field: str) -> None:
    for index, section in enumerate(sections):
        if any(same_name(section.name, earlier.name) for earlier in sections[:index]):
            raise InvalidInput(f"{field}[{index}].name", "section names must be unique within an event")
    total = sum(section.unit_count for section in sections)
    if total > MAX_UNITS_PER_CALL:
        raise InvalidInput(field, f"at most {MAX_UNITS_PER_CALL} seats and places per call, got {total}")


async def _create_section(session: AsyncSession, event: Event, data: SectionIn, position: int) -> Section:
    kind = SectionKind.RESERVED if data.rows is not None else SectionKind.GENERAL_ADMISSION
    section = Section(
        event_id=event.id,
        name=data.name,
        kind=kind.value,
        price=data.price,
        capacity=data.unit_count,
        position=position,
    )
    await repository.add_section(session, section)
    await repository.insert_units(session, _units_of(event.id, section.id, data))
    return section


def _units_of(event_id: int, section_id: int, data: SectionIn) -> Iterator[dict[str, Any]]:
    available = SeatStatus.AVAILABLE
    if data.rows is not None:
        for row in data.rows:
            for number in range(1, row.seats + 1):
                yield {
                    "event_id": event_id,
                    "section_id": section_id,
                    "row_label": row.label,
                    "number": number,
                    "status": available,
                }
    else:
        for _ in range(data.unit_count):
            yield {"event_id": event_id, "section_id": section_id, "status": available}


async def _with_availability(session: AsyncSession, events: list[Event], now: datetime) -> list[EventView]:
    section_ids = [section.id for event in events for section in event.sections]
    counts = await repository.count_units_by_section(session, section_ids, now)
    empty = repository.SectionCounts()
    return [
        EventView(
            event,
            [
                SectionView(
                    section,
                    event.currency,
                    held=counts.get(section.id, empty).held,
                    sold=counts.get(section.id, empty).sold,
                )
                for section in event.sections
            ],
        )
        for event in events
    ]
