"""All SQL of holds.

Taking units is one conditional write per hold: a unit is taken only if it is free at that moment
(never held, or held by a hold that has expired), so there is no read-then-write race and no
reliance on a sweeper. Rows are always locked in ascending id order, so two holds never deadlock
each other over the same units.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, insert, or_, select, update
from sqlalchemy.dialects import mysql
from sqlalchemy.ext.asyncio import AsyncSession

from ticketera.events.models import Event, EventStatus, Seat, SeatStatus, Section, SectionKind, seat_label
from ticketera.events.repository import free_unit, live_hold
from ticketera.holds.models import Hold, HoldStatus, Shopper
from ticketera.kit.db import (
    DriverStatement,
    DriverStatementsBySize,
    UTCDateTime,
    execute_core,
    execute_on_driver,
)

# The hot path of an on-sale runs the statements below thousands of times a minute: they are built
# once, with bound parameters, and the hottest are run on the driver (`kit.db.DriverStatement`), so
# a request pays neither their construction nor SQLAlchemy's execution layer.
NOW = bindparam("now", type_=UTCDateTime())
UNTIL = bindparam("until", type_=UTCDateTime())
HOLDS = cast(Table, Hold.__table__)


@dataclass(frozen=True)
class SaleSection:
    id: int
    kind: SectionKind
    name: str
    price: Decimal


@dataclass(frozen=True)
class Sale:
    """What taking a hold needs to know of an event, read in one query."""

    event_id: int
    status: EventStatus
    on_sale_at: datetime | None
    starts_at: datetime
    max_tickets_per_user: int
    currency: str
    sections: dict[int, SaleSection]


@dataclass(frozen=True)
class SeatState:
    id: int
    section_id: int
    row: str | None
    number: int | None
    free: bool


_SALE = DriverStatement(
    select(
        Event.id.label("event_id"),
        Event.status,
        Event.on_sale_at,
        Event.starts_at,
        Event.max_tickets_per_user,
        Event.currency,
        Section.id.label("section_id"),
        Section.kind,
        Section.name,
        Section.price,
    )
    .select_from(Event)
    .outerjoin(Section, Section.event_id == Event.id)
    .where(Event.id == bindparam("event_id"))
)


async def find_sale(session: AsyncSession, event_id: int) -> Sale | None:
    rows = (await execute_on_driver(session, _SALE, {"event_id": event_id})).rows
    if not rows:
        return None
    found_id, status, on_sale_at, starts_at, max_tickets_per_user, currency = rows[0][:6]
    sections = {
        section_id: SaleSection(section_id, kind, name, price)
        for *_, section_id, kind, name, price in rows
        if section_id is not None
    }
    return Sale(
        event_id=found_id,
        status=status,
        on_sale_at=on_sale_at,
        starts_at=starts_at,
        max_tickets_per_user=max_tickets_per_user,
        currency=currency,
        sections=sections,
    )


_SEAT_STATES = select(
    Seat.id, Seat.section_id, Seat.row_label, Seat.number, free_unit(NOW).label("free")
).where(
    Seat.id.in_(bindparam("seat_ids", expanding=True)),
    Seat.event_id == bindparam("event_id"),
    Seat.row_label.is_not(None),
)


async def reserved_seat_states(
    session: AsyncSession, *, event_id: int, seat_ids: Sequence[int], now: datetime
) -> dict[int, SeatState]:
    """Each of these ids that is a reserved seat of the event, with whether it is free right now."""
    rows = await execute_core(
        session, _SEAT_STATES, {"seat_ids": list(seat_ids), "event_id": event_id, "now": now}
    )
    return {
        row.id: SeatState(row.id, row.section_id, row.row_label, row.number, bool(row.free)) for row in rows
    }


_COUNT_FREE_PLACES = DriverStatement(
    select(func.count()).select_from(
        select(Seat.id)
        .where(Seat.section_id == bindparam("section_id"), free_unit(NOW))
        .limit(bindparam("enough"))
        .subquery()
    )
)


async def count_free_places(session: AsyncSession, *, section_id: int, now: datetime, enough: int) -> int:
    """Free places of a section, counted up to `enough` (no need to count a stadium to sell two)."""
    params = {"section_id": section_id, "now": now, "enough": enough}
    return int((await execute_on_driver(session, _COUNT_FREE_PLACES, params)).scalar_one())


_SHOPPER_UPSERT = mysql.insert(Shopper).values(
    event_id=bindparam("shopper_event"),
    user_id=bindparam("shopper"),
    created_at=bindparam("since", type_=UTCDateTime()),
)
_LOCK_SHOPPER = DriverStatement(
    # Changing the row it finds (never leaving it as it was) is what makes the affected-row count
    # tell an insert (1) from an update (2), whatever the client's FOUND_ROWS flag.
    _SHOPPER_UPSERT.on_duplicate_key_update(purchases=Shopper.purchases + 1)
)


async def lock_shopper(session: AsyncSession, event_id: int, user_id: str, now: datetime) -> bool | None:
    """Take the buyer's row lock for this event, creating the row on first use; whether it was
    created now, the buyer's first hold in the event (None: not known, on SQLite).

    Held until the transaction ends: a buyer's concurrent holds are counted one after another, so
    two of them can never both slip under maxTicketsPerUser. One statement: an upsert locks the row
    whether it inserts it or finds it. A second hold begun while the first is in flight waits for
    its lock, then finds the row (or makes it, if the first rolled back and left nothing).
    """
    if session.get_bind().dialect.name == "sqlite":
        # SQLite has no row locks: BEGIN IMMEDIATE already serialises every writer.
        return None
    params = {"shopper_event": event_id, "shopper": user_id, "since": now}
    return (await execute_on_driver(session, _LOCK_SHOPPER, params)).rowcount == 1


_WAIT_FOR_SHOPPER = DriverStatement(
    select(Shopper.user_id)
    .where(Shopper.event_id == bindparam("shopper_event"), Shopper.user_id == bindparam("shopper"))
    .with_for_update(read=True)
)


async def wait_for_shopper(session: AsyncSession, event_id: int, user_id: str) -> None:
    """Wait until no purchase of this buyer in this event is in flight: a shared lock on the row that
    `lock_shopper` locks for a purchase's whole transaction (none taken when there is no row: under
    READ COMMITTED a locking read of nothing locks no gap)."""
    if session.get_bind().dialect.name == "sqlite":
        return  # no row locks, and no purchase in flight beside ours: SQLite serialises writers
    params = {"shopper_event": event_id, "shopper": user_id}
    await execute_on_driver(session, _WAIT_FOR_SHOPPER, params)


_COUNT_BUYER_UNITS = DriverStatement(
    select(func.count())
    .select_from(Seat)
    .join(Hold, Hold.id == Seat.hold_id)
    .where(
        Hold.event_id == bindparam("event_id"),
        Hold.user_id == bindparam("user_id"),
        # Two comparisons, not IN: a driver statement is compiled once, and an IN list of
        # constants would be an expanding parameter, rendered per execution.
        (Hold.status == HoldStatus.ACTIVE) | (Hold.status == HoldStatus.ORDERED),
        (Seat.status == SeatStatus.SOLD) | live_hold(NOW),
    )
)


async def count_buyer_units(session: AsyncSession, event_id: int, user_id: str, now: datetime) -> int:
    """Units the buyer holds right now or has bought, in this event."""
    params = {"event_id": event_id, "user_id": user_id, "now": now}
    return int((await execute_on_driver(session, _COUNT_BUYER_UNITS, params)).scalar_one())


_HOLD_COLUMNS = (
    "public_id",
    "event_id",
    "user_id",
    "status",
    "quantity",
    "total",
    "currency",
    "expires_at",
    "created_at",
    "updated_at",
)
# Every column named: a driver statement runs no Python-side column defaults.
_INSERT_HOLD = DriverStatement(insert(HOLDS).values({name: bindparam(name) for name in _HOLD_COLUMNS}))


async def insert_hold(session: AsyncSession, values: dict[str, Any]) -> int:
    return (await execute_on_driver(session, _INSERT_HOLD, values)).inserted_id()


_TAKE_SEATS = (
    update(Seat)
    .where(
        Seat.id.in_(bindparam("seat_ids", expanding=True)),
        Seat.event_id == bindparam("of_event"),
        Seat.row_label.is_not(None),
        free_unit(NOW),
    )
    .values(status=SeatStatus.HELD, hold_id=bindparam("taker"), held_until=UNTIL, updated_at=NOW)
    .execution_options(synchronize_session=False)
)
_FREE_PLACE_IDS = DriverStatement(
    select(Seat.id)
    .where(Seat.section_id == bindparam("section_id"), free_unit(NOW))
    .limit(bindparam("quantity"))
    .with_for_update(skip_locked=True)
)
# One statement per number of places taken at once (a buyer takes a few).
_TAKE_UNITS = DriverStatementsBySize(
    lambda size: (
        update(Seat)
        .where(Seat.id.in_([bindparam(f"unit_{index}") for index in range(size)]), free_unit(NOW))
        .values(status=SeatStatus.HELD, hold_id=bindparam("taker"), held_until=UNTIL, updated_at=NOW)
    )
)


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
    params = {
        "seat_ids": sorted(seat_ids),
        "of_event": event_id,
        "taker": hold_id,
        "until": until,
        "now": now,
    }
    result = await execute_core(session, _TAKE_SEATS, params)
    return int(result.rowcount)


async def pick_places(session: AsyncSession, *, section_id: int, quantity: int, now: datetime) -> list[int]:
    """Up to `quantity` free places of a general-admission section, locked for this transaction (on
    MariaDB; SQLite's one writer needs no lock), in id order.

    On MariaDB they are picked with FOR UPDATE SKIP LOCKED: concurrent buyers of the same section
    take different places instead of queueing on the same rows, and a place another buyer has
    picked and not yet committed is not counted. Fewer than `quantity` means sold out.
    """
    params = {"section_id": section_id, "now": now, "quantity": quantity}
    return sorted((await execute_on_driver(session, _FREE_PLACE_IDS, params)).scalars())


async def take_units(
    session: AsyncSession, *, hold_id: int, unit_ids: Sequence[int], now: datetime, until: datetime
) -> int:
    """Hold these picked places for the hold if they are still free; returns how many were taken."""
    params: dict[str, Any] = {f"unit_{index}": unit_id for index, unit_id in enumerate(unit_ids)}
    params.update(taker=hold_id, until=until, now=now)
    return (await execute_on_driver(session, _TAKE_UNITS.of_size(len(unit_ids)), params)).rowcount


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


_UNITS_OF_HOLD = DriverStatement(
    select(
        Seat.id,
        Seat.section_id,
        Section.name.label("section_name"),
        Seat.row_label,
        Seat.number,
        Section.price,
    )
    .join(Section, Section.id == Seat.section_id)
    .where(Seat.hold_id == bindparam("hold_id"))
    .order_by(Seat.id)
)


@dataclass(frozen=True)
class HeldUnit:
    """A seat or a general-admission place as a hold (and the order it became) shows it."""

    id: int
    section_id: int
    section_name: str
    row: str | None
    number: int | None
    price: Decimal

    @property
    def label(self) -> str | None:
        return seat_label(self.row, self.number) if self.row is not None and self.number is not None else None


async def units_of_hold(session: AsyncSession, hold_id: int) -> list[HeldUnit]:
    """The units that name this hold, with their section and price."""
    rows = (await execute_on_driver(session, _UNITS_OF_HOLD, {"hold_id": hold_id})).rows
    return [HeldUnit(*row) for row in rows]


async def find_hold(session: AsyncSession, public_id: str, *, lock: bool = False) -> Hold | None:
    statement = select(Hold).where(Hold.public_id == public_id)
    if lock:
        statement = statement.with_for_update()
    return (await session.execute(statement)).scalar_one_or_none()


async def free_units_of_hold(session: AsyncSession, hold_id: int, now: datetime) -> int:
    """Give the hold's units back at once (those still held by it); returns how many."""
    statement = (
        update(Seat)
        .where(Seat.hold_id == hold_id, Seat.status == SeatStatus.HELD)
        .values(status=SeatStatus.AVAILABLE, hold_id=None, held_until=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int((await session.execute(statement)).rowcount)  # type: ignore[attr-defined]


async def overdue_hold_ids(session: AsyncSession, now: datetime, *, limit: int) -> list[int]:
    """Active holds past their deadline, locked (skipping rows another worker has) for expiry."""
    statement = (
        select(Hold.id)
        .where(Hold.status == HoldStatus.ACTIVE, Hold.expires_at <= now)
        .order_by(Hold.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list((await session.execute(statement)).scalars())


async def mark_holds(
    session: AsyncSession,
    hold_ids: Sequence[int],
    *,
    from_status: HoldStatus,
    to_status: HoldStatus,
    now: datetime,
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
                .where(Seat.status == SeatStatus.HELD, Seat.held_until <= now)
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
        .where(Seat.id.in_(sorted(lapsed)), Seat.status == SeatStatus.HELD, Seat.held_until <= now)
        .values(status=SeatStatus.AVAILABLE, held_until=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class LockedHold:
    id: int
    status: HoldStatus
    expires_at: datetime
    event_id: int
    user_id: str
    quantity: int
    total: Decimal
    currency: str


_LOCK_HOLD = DriverStatement(
    select(
        Hold.id,
        Hold.status,
        Hold.expires_at,
        Hold.event_id,
        Hold.user_id,
        Hold.quantity,
        Hold.total,
        Hold.currency,
    )
    .where(Hold.public_id == bindparam("public_id"))
    .with_for_update()
)


async def lock_hold(session: AsyncSession, public_id: str) -> LockedHold | None:
    """The hold row, locked: one order per hold, even when two requests race for it."""
    rows = (await execute_on_driver(session, _LOCK_HOLD, {"public_id": public_id})).rows
    return LockedHold(*rows[0]) if rows else None


_MARK_HOLD_ORDERED = DriverStatement(
    update(HOLDS)
    .where(HOLDS.c.id == bindparam("ordered_hold"))
    .values(status=HoldStatus.ORDERED, updated_at=NOW)
)


async def mark_hold_ordered(session: AsyncSession, hold_id: int, now: datetime) -> None:
    await execute_on_driver(session, _MARK_HOLD_ORDERED, {"ordered_hold": hold_id, "now": now})


_EXTEND_HOLD_UNITS = DriverStatement(
    update(Seat)
    .where(
        Seat.hold_id == bindparam("extended_hold"),
        Seat.status == SeatStatus.HELD,
        Seat.held_until > NOW,
    )
    .values(held_until=UNTIL, updated_at=NOW)
)


async def extend_hold_units(session: AsyncSession, hold_id: int, *, now: datetime, until: datetime) -> int:
    """Keep the hold's live units for the order until it must be paid; returns how many were live."""
    params = {"extended_hold": hold_id, "now": now, "until": until}
    return (await execute_on_driver(session, _EXTEND_HOLD_UNITS, params)).rowcount


async def sell_units(session: AsyncSession, *, hold_id: int, order_id: int, now: datetime) -> int:
    """Mark sold every unit that still names this order's hold and nobody else has taken since.

    A unit names the last hold that took it, so one retaken by another buyer no longer matches.
    """
    result = await session.execute(
        update(Seat)
        .where(
            Seat.hold_id == hold_id,
            or_(Seat.status == SeatStatus.HELD, Seat.status == SeatStatus.AVAILABLE),
        )
        .values(status=SeatStatus.SOLD, order_id=order_id, held_until=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def release_units(session: AsyncSession, *, hold_id: int, order_id: int, now: datetime) -> int:
    """Put an order's units back on sale (unpaid: still held by its hold; refunded: sold to it)."""
    result = await session.execute(
        update(Seat)
        .where(
            or_(
                (Seat.hold_id == hold_id) & (Seat.status == SeatStatus.HELD),
                (Seat.order_id == order_id) & (Seat.status == SeatStatus.SOLD),
            )
        )
        .values(status=SeatStatus.AVAILABLE, hold_id=None, held_until=None, order_id=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def count_live_holds(session: AsyncSession, now: datetime) -> tuple[int, int]:
    """Holds still holding (active, deadline not passed) and the units they hold."""
    statement = select(func.count(), func.coalesce(func.sum(Hold.quantity), 0)).where(
        Hold.status == HoldStatus.ACTIVE, Hold.expires_at > now
    )
    holds, units = (await session.execute(statement)).one()
    return int(holds), int(units)
