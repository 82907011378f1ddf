"""All SQL of the events domain."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from sqlalchemy.sql.elements import BindParameter, ColumnElement

from ticketera.events.models import Event, Seat, SeatStatus, Section

# Rows per INSERT statement: large enough to be fast, small enough for MySQL's max_allowed_packet.
SEAT_INSERT_CHUNK = 5000


@dataclass(frozen=True)
class SectionCounts:
    held: int = 0
    sold: int = 0


Moment = datetime | BindParameter[datetime]


def live_hold(now: Moment) -> ColumnElement[bool]:
    """A unit held by a hold that has not expired: the one definition of "held" in SQL."""
    return and_(Seat.status == SeatStatus.HELD, Seat.held_until > now)


def free_unit(now: Moment) -> ColumnElement[bool]:
    """A unit nobody holds or bought: never held, or held by a hold that has expired."""
    return or_(
        Seat.status == SeatStatus.AVAILABLE,
        and_(Seat.status == SeatStatus.HELD, Seat.held_until <= now),
    )


async def add_event(session: AsyncSession, event: Event) -> Event:
    session.add(event)
    await session.flush()
    return event


async def add_section(session: AsyncSession, section: Section) -> Section:
    session.add(section)
    await session.flush()
    return section


async def insert_units(session: AsyncSession, units: Iterable[dict[str, Any]]) -> int:
    """Bulk insert of seats or general-admission places: multi-row INSERTs, not one per row."""
    table = cast(Table, Seat.__table__)
    batch: list[dict[str, Any]] = []
    count = 0
    for unit in units:
        batch.append(unit)
        if len(batch) == SEAT_INSERT_CHUNK:
            await session.execute(table.insert(), batch)
            count += len(batch)
            batch = []
    if batch:
        await session.execute(table.insert(), batch)
        count += len(batch)
    return count


async def get_event(session: AsyncSession, event_id: int) -> Event | None:
    statement = select(Event).where(Event.id == event_id).options(selectinload(Event.sections))
    return (await session.execute(statement)).scalar_one_or_none()


async def find_event(session: AsyncSession, event_id: int) -> Event | None:
    """The event row alone, without its sections."""
    return await session.get(Event, event_id)


async def events_with_open_queues(session: AsyncSession, *, started_before: datetime) -> list[Event]:
    """Published events with the waiting room on that have not long started: the ticker's work list."""
    statement = select(Event).where(
        Event.queue_enabled.is_(True),
        Event.status.in_(("published", "paused")),
        Event.starts_at > started_before,
    )
    return list((await session.execute(statement)).scalars())


async def lock_event(session: AsyncSession, event_id: int) -> Event | None:
    """The event row taken FOR UPDATE, so concurrent edits of one event apply one after another."""
    statement = (
        select(Event).where(Event.id == event_id).options(selectinload(Event.sections)).with_for_update()
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def list_events(
    session: AsyncSession, *, statuses: Sequence[str], limit: int, offset: int
) -> tuple[list[Event], int]:
    condition = Event.status.in_(statuses)
    total = (await session.execute(select(func.count()).select_from(Event).where(condition))).scalar_one()
    statement = (
        select(Event)
        .where(condition)
        .options(selectinload(Event.sections))
        .order_by(Event.starts_at, Event.id)
        .limit(limit)
        .offset(offset)
    )
    events = list((await session.execute(statement)).scalars())
    return events, total


async def find_event_id_by_name(session: AsyncSession, name: str) -> int | None:
    statement = select(Event.id).where(Event.name == name).order_by(Event.id).limit(1)
    return (await session.execute(statement)).scalar_one_or_none()


async def section_names(session: AsyncSession, event_id: int) -> set[str]:
    statement = select(Section.name).where(Section.event_id == event_id)
    return set((await session.execute(statement)).scalars())


async def max_section_position(session: AsyncSession, event_id: int) -> int:
    statement = select(func.max(Section.position)).where(Section.event_id == event_id)
    return (await session.execute(statement)).scalar_one() or 0


async def count_units_by_section(
    session: AsyncSession, section_ids: Sequence[int], now: datetime
) -> dict[int, SectionCounts]:
    """Held (live holds only) and sold units per section, in one grouped query."""
    if not section_ids:
        return {}
    statement = (
        select(
            Seat.section_id,
            func.sum(case((live_hold(now), 1), else_=0)),
            func.sum(case((Seat.status == SeatStatus.SOLD, 1), else_=0)),
        )
        .where(Seat.section_id.in_(section_ids), Seat.status != SeatStatus.AVAILABLE)
        .group_by(Seat.section_id)
    )
    rows = (await session.execute(statement)).all()
    return {
        section_id: SectionCounts(held=int(held or 0), sold=int(sold or 0)) for section_id, held, sold in rows
    }


async def seat_map_rows(
    session: AsyncSession,
    *,
    section_ids: Sequence[int],
    now: datetime,
    status: SeatStatus | None,
    after_id: int | None,
    limit: int,
) -> Sequence[Any]:
    """Seats of the given sections with their live status, in id order.

    Filtering on section ids alone (no event id, no subquery) keeps every engine on the
    section index, whatever its statistics say.
    """
    if not section_ids:
        return []
    live_status = case(
        (Seat.status == SeatStatus.SOLD, SeatStatus.SOLD),
        (live_hold(now), SeatStatus.HELD),
        else_=SeatStatus.AVAILABLE,
    )
    statement = (
        select(Seat.id, Seat.section_id, Seat.row_label, Seat.number, live_status)
        .where(Seat.section_id.in_(section_ids))
        .order_by(Seat.id)
        .limit(limit)
    )
    if after_id is not None:
        statement = statement.where(Seat.id > after_id)
    if status is SeatStatus.SOLD:
        statement = statement.where(Seat.status == SeatStatus.SOLD)
    elif status is SeatStatus.HELD:
        statement = statement.where(live_hold(now))
    elif status is SeatStatus.AVAILABLE:
        statement = statement.where(free_unit(now))
    return (await session.execute(statement)).all()
