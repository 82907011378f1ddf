"""All SQL of holds.

Taking units is one conditional write per hold: a unit is taken only if it is free at that moment
(never held, or held by a hold that has expired), so there is no read-then-write race and no
reliance on a sweeper. Rows are always locked in ascending id order, so two holds never deadlock
each other over the same units.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from ticketera.events.models import Seat, SeatStatus, Section
from ticketera.events.repository import free_unit, live_hold
from ticketera.holds.models import Hold, HoldStatus, Shopper


async def lock_shopper(session: AsyncSession, event_id: int, user_id: str) -> None:
    """Take the buyer's row lock for this event, creating the row on first use.

    Held until the transaction ends: a buyer's concurrent holds are counted one after another, so
    two of them can never both slip under maxTicketsPerUser.
    """
    values = {"event_id": event_id, "user_id": user_id}
    if session.get_bind().dialect.name == "sqlite":
        # SQLite has no row locks: BEGIN IMMEDIATE already serialises every writer.
        await session.execute(sqlite.insert(Shopper).values(**values).on_conflict_do_nothing())
        return
    await session.execute(mysql.insert(Shopper).values(**values).prefix_with("IGNORE"))
    await session.execute(
        select(Shopper.user_id)
        .where(Shopper.event_id == event_id, Shopper.user_id == user_id)
        .with_for_update()
    )


async def count_buyer_units(session: AsyncSession, event_id: int, user_id: str, now: datetime) -> int:
    """Units the buyer holds right now or has bought, in this event."""
    statement = (
        select(func.count())
        .select_from(Seat)
        .join(Hold, Hold.id == Seat.hold_id)
        .where(
            Hold.event_id == event_id,
            Hold.user_id == user_id,
            Hold.status.in_((HoldStatus.ACTIVE.value, HoldStatus.ORDERED.value)),
            (Seat.status == SeatStatus.SOLD.value) | live_hold(now),
        )
    )
    return int((await session.execute(statement)).scalar_one())


async def add_hold(session: AsyncSession, hold: Hold) -> Hold:
    session.add(hold)
    await session.flush()
    return hold


async def take_seats(
    session: AsyncSession,
    *,
    hold_id: int,
    event_id: int,
    seat_ids: Sequence[int],
    now: datetime,
    until: datetime,
) -> int:
    """Hold exactly these reserved seats if every one is free; returns how many were taken.

    The caller rolls back unless all were: all or nothing.
    """
    statement = (
        update(Seat)
        .where(
            Seat.id.in_(sorted(seat_ids)),
            Seat.event_id == event_id,
            Seat.row_label.is_not(None),
            free_unit(now),
        )
        .values(status=SeatStatus.HELD.value, hold_id=hold_id, held_until=until, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    result = await session.execute(statement)
    return int(result.rowcount)  # type: ignore[attr-defined]


async def take_places(
    session: AsyncSession, *, hold_id: int, section_id: int, quantity: int, now: datetime, until: datetime
) -> int:
    """Hold `quantity` free places of a general-admission section; returns how many were taken.

    On MariaDB the free places are picked with FOR UPDATE SKIP LOCKED: concurrent buyers of the
    same section take different places instead of queueing on the same rows.
    """
    free_ids = (
        (
            await session.execute(
                select(Seat.id)
                .where(Seat.section_id == section_id, free_unit(now))
                .limit(quantity)
                .with_for_update(skip_locked=True)
            )
        )
        .scalars()
        .all()
    )
    if len(free_ids) < quantity:
        return len(free_ids)
    statement = (
        update(Seat)
        .where(Seat.id.in_(sorted(free_ids)), free_unit(now))
        .values(status=SeatStatus.HELD.value, hold_id=hold_id, held_until=until, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int((await session.execute(statement)).rowcount)  # type: ignore[attr-defined]


async def seats_not_free(
    session: AsyncSession, *, event_id: int, seat_ids: Sequence[int], now: datetime
) -> list[int]:
    """Which of these reserved seats of the event are held or sold right now."""
    statement = (
        select(Seat.id)
        .where(Seat.id.in_(seat_ids), Seat.event_id == event_id, ~free_unit(now))
        .order_by(Seat.id)
    )
    return list((await session.execute(statement)).scalars())


async def reserved_seat_states(
    session: AsyncSession, *, event_id: int, seat_ids: Sequence[int], now: datetime
) -> dict[int, bool]:
    """For each of these ids that is a reserved seat of the event: whether it is free right now."""
    statement = select(Seat.id, free_unit(now)).where(
        Seat.id.in_(seat_ids), Seat.event_id == event_id, Seat.row_label.is_not(None)
    )
    return {seat_id: bool(free) for seat_id, free in (await session.execute(statement)).all()}


async def count_free_places(session: AsyncSession, *, section_id: int, now: datetime, enough: int) -> int:
    """Free places of a section, counted up to `enough` (no need to count a stadium to sell two)."""
    free = select(Seat.id).where(Seat.section_id == section_id, free_unit(now)).limit(enough).subquery()
    return int((await session.execute(select(func.count()).select_from(free))).scalar_one())


async def existing_reserved_seats(
    session: AsyncSession, *, event_id: int, seat_ids: Sequence[int]
) -> set[int]:
    statement = select(Seat.id).where(
        Seat.id.in_(seat_ids), Seat.event_id == event_id, Seat.row_label.is_not(None)
    )
    return set((await session.execute(statement)).scalars())


async def units_of_hold(
    session: AsyncSession, hold_id: int
) -> Sequence[tuple[int, int, str, str | None, int | None, Decimal]]:
    """The hold's units with their section and price: (id, section id, section name, row, number, price)."""
    statement = (
        select(Seat.id, Seat.section_id, Section.name, Seat.row_label, Seat.number, Section.price)
        .join(Section, Section.id == Seat.section_id)
        .where(Seat.hold_id == hold_id)
        .order_by(Seat.id)
    )
    return [tuple(row) for row in (await session.execute(statement)).all()]  # type: ignore[misc]


async def find_hold(session: AsyncSession, public_id: str, *, lock: bool = False) -> Hold | None:
    statement = select(Hold).where(Hold.public_id == public_id)
    if lock:
        statement = statement.with_for_update()
    return (await session.execute(statement)).scalar_one_or_none()


async def free_units_of_hold(session: AsyncSession, hold_id: int, now: datetime) -> int:
    """Give the hold's units back at once (those still held by it); returns how many."""
    statement = (
        update(Seat)
        .where(Seat.hold_id == hold_id, Seat.status == SeatStatus.HELD.value)
        .values(status=SeatStatus.AVAILABLE.value, hold_id=None, held_until=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int((await session.execute(statement)).rowcount)  # type: ignore[attr-defined]


async def overdue_hold_ids(session: AsyncSession, now: datetime, *, limit: int) -> list[int]:
    """Active holds past their deadline, locked (skipping rows another worker has) for expiry."""
    statement = (
        select(Hold.id)
        .where(Hold.status == HoldStatus.ACTIVE.value, Hold.expires_at <= now)
        .order_by(Hold.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list((await session.execute(statement)).scalars())


async def mark_holds(
    session: AsyncSession, hold_ids: Sequence[int], *, from_status: str, to_status: str, now: datetime
) -> None:
    await session.execute(
        update(Hold)
        .where(Hold.id.in_(hold_ids), Hold.status == from_status)
        .values(status=to_status, updated_at=now)
        .execution_options(synchronize_session=False)
    )


async def tidy_lapsed_units(session: AsyncSession, now: datetime, *, limit: int) -> int:
    """Write `available` on units whose hold lapsed. Cosmetic: such units are free by query already.

    `hold_id` stays, naming the last hold that took the unit: a payment that arrives for an expired
    order can still find and sell its units if nobody has taken them since.
    """
    lapsed = (
        (
            await session.execute(
                select(Seat.id)
                .where(Seat.status == SeatStatus.HELD.value, Seat.held_until <= now)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        )
        .scalars()
        .all()
    )
    if not lapsed:
        return 0
    result = await session.execute(
        update(Seat)
        .where(Seat.id.in_(sorted(lapsed)), Seat.status == SeatStatus.HELD.value, Seat.held_until <= now)
        .values(status=SeatStatus.AVAILABLE.value, held_until=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
