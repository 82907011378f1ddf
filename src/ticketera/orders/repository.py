"""All SQL of orders."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import cast

from sqlalchemy import Table, bindparam, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ticketera.events.models import Seat, SeatStatus
from ticketera.holds.models import Hold, HoldStatus
from ticketera.holds.repository import NOW, UNTIL
from ticketera.kit.db import execute_core, inserted_id
from ticketera.orders.models import Order, OrderStatus

ORDERS = cast(Table, Order.__table__)


async def find_by_idempotency_key(session: AsyncSession, key: str) -> Order | None:
    return (await session.execute(select(Order).where(Order.idempotency_key == key))).scalar_one_or_none()


async def find_order(session: AsyncSession, order_id: int, *, lock: bool = False) -> Order | None:
    statement = select(Order).where(Order.id == order_id)
    if lock:
        statement = statement.with_for_update()
    return (await session.execute(statement)).scalar_one_or_none()


@dataclass(frozen=True)
class LockedHold:
    id: int
    status: str
    expires_at: datetime
    event_id: int
    user_id: str
    quantity: int
    total: Decimal
    currency: str


_LOCK_HOLD = (
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
    row = (await execute_core(session, _LOCK_HOLD, {"public_id": public_id})).one_or_none()
    return LockedHold(*row) if row is not None else None


_ORDER_COLUMNS = (
    "event_id",
    "hold_id",
    "user_id",
    "buyer_email",
    "buyer_name",
    "status",
    "status_reason",
    "total",
    "currency",
    "quantity",
    "expires_at",
    "paid_at",
    "reconcile_at",
    "idempotency_key",
    "request_digest",
    "created_at",
    "updated_at",
)


_INSERT_ORDER = insert(ORDERS)


async def insert_order(session: AsyncSession, order: Order) -> int:
    """Insert with Core (no unit of work for one row on the hot path); returns the new id."""
    values = {column: getattr(order, column) for column in _ORDER_COLUMNS}
    return inserted_id(await execute_core(session, _INSERT_ORDER, values))


_MARK_HOLD_ORDERED = (
    update(Hold)
    .where(Hold.id == bindparam("ordered_hold"))
    .values(status=HoldStatus.ORDERED.value, updated_at=NOW)
    .execution_options(synchronize_session=False)
)


async def mark_hold_ordered(session: AsyncSession, hold_id: int, now: datetime) -> None:
    await execute_core(session, _MARK_HOLD_ORDERED, {"ordered_hold": hold_id, "now": now})


_EXTEND_HOLD_UNITS = (
    update(Seat)
    .where(
        Seat.hold_id == bindparam("extended_hold"),
        Seat.status == SeatStatus.HELD.value,
        Seat.held_until > NOW,
    )
    .values(held_until=UNTIL, updated_at=NOW)
    .execution_options(synchronize_session=False)
)


async def extend_hold_units(session: AsyncSession, hold_id: int, *, now: datetime, until: datetime) -> int:
    """Keep the hold's live units for the order until it must be paid; returns how many were live."""
    result = await execute_core(
        session, _EXTEND_HOLD_UNITS, {"extended_hold": hold_id, "now": now, "until": until}
    )
    return int(result.rowcount)


async def sell_units(session: AsyncSession, *, hold_id: int, order_id: int, now: datetime) -> int:
    """Mark sold every unit that still names this order's hold and nobody else has taken since.

    A unit names the last hold that took it, so one retaken by another buyer no longer matches.
    """
    result = await session.execute(
        update(Seat)
        .where(
            Seat.hold_id == hold_id,
            or_(Seat.status == SeatStatus.HELD.value, Seat.status == SeatStatus.AVAILABLE.value),
        )
        .values(status=SeatStatus.SOLD.value, order_id=order_id, held_until=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def release_units(session: AsyncSession, *, hold_id: int, order_id: int, now: datetime) -> int:
    """Put an order's units back on sale (unpaid: still held by its hold; refunded: sold to it)."""
    result = await session.execute(
        update(Seat)
        .where(
            or_(
                (Seat.hold_id == hold_id) & (Seat.status == SeatStatus.HELD.value),
                (Seat.order_id == order_id) & (Seat.status == SeatStatus.SOLD.value),
            )
        )
        .values(
            status=SeatStatus.AVAILABLE.value, hold_id=None, held_until=None, order_id=None, updated_at=now
        )
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def overdue_order_ids(session: AsyncSession, now: datetime, *, limit: int) -> list[int]:
    statement = (
        select(Order.id)
        .where(Order.status == OrderStatus.PENDING_PAYMENT.value, Order.expires_at <= now)
        .order_by(Order.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list((await session.execute(statement)).scalars())


async def mark_orders(
    session: AsyncSession, order_ids: Sequence[int], *, from_status: str, to_status: str, now: datetime
) -> None:
    await session.execute(
        update(Order)
        .where(Order.id.in_(order_ids), Order.status == from_status)
        .values(status=to_status, updated_at=now)
        .execution_options(synchronize_session=False)
    )


# Once per order bought: built once, and on the table (Core), so no ORM bulk-update step runs.
_SET_CHECKOUT = (
    update(ORDERS)
    .where(ORDERS.c.id == bindparam("checkout_order"))
    .values(preference_id=bindparam("new_preference"), checkout_url=bindparam("new_checkout_url"))
)


async def set_checkout(
    session: AsyncSession, order_id: int, *, preference_id: str, checkout_url: str
) -> None:
    params = {"checkout_order": order_id, "new_preference": preference_id, "new_checkout_url": checkout_url}
    await execute_core(session, _SET_CHECKOUT, params)


async def claim_orders_to_reconcile(
    session: AsyncSession, now: datetime, *, lease_until: datetime, limit: int
) -> list[int]:
    """Unpaid orders due for a look at MercadoPago, pushed to `lease_until` so no other worker
    takes them meanwhile (SKIP LOCKED: concurrent workers take different orders)."""
    statement = (
        select(Order.id)
        .where(Order.reconcile_at <= now)
        .order_by(Order.reconcile_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    order_ids = list((await session.execute(statement)).scalars())
    if order_ids:
        await session.execute(
            update(Order)
            .where(Order.id.in_(order_ids))
            .values(reconcile_at=lease_until)
            .execution_options(synchronize_session=False)
        )
    return order_ids


async def schedule_reconcile(session: AsyncSession, order_id: int, at: datetime | None) -> None:
    await session.execute(
        update(Order)
        .where(Order.id == order_id)
        .values(reconcile_at=at)
        .execution_options(synchronize_session=False)
    )


async def orders_of_event(
    session: AsyncSession,
    event_id: int,
    *,
    now: datetime,
    status: OrderStatus | None,
    reason: str | None,
    after: int,
    limit: int,
) -> list[Order]:
    """An event's orders by id, filtered by the status the API shows (an unpaid order past its
    deadline is expired whatever is stored) and by reason; keyset pages after `after`."""
    statement = select(Order).where(Order.event_id == event_id, Order.id > after)
    pending = Order.status == OrderStatus.PENDING_PAYMENT.value
    if status is OrderStatus.PENDING_PAYMENT:
        statement = statement.where(pending, Order.expires_at > now)
    elif status is OrderStatus.EXPIRED:
        statement = statement.where(
            or_(Order.status == OrderStatus.EXPIRED.value, pending & (Order.expires_at <= now))
        )
    elif status is not None:
        statement = statement.where(Order.status == status.value)
    if reason is not None:
        statement = statement.where(Order.status_reason == reason)
    return list((await session.execute(statement.order_by(Order.id).limit(limit))).scalars())
