"""All SQL of orders."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ticketera.events.models import Seat, SeatStatus
from ticketera.orders.models import Order, OrderStatus


async def find_by_idempotency_key(session: AsyncSession, key: str) -> Order | None:
    return (await session.execute(select(Order).where(Order.idempotency_key == key))).scalar_one_or_none()


async def find_order(session: AsyncSession, order_id: int, *, lock: bool = False) -> Order | None:
    statement = select(Order).where(Order.id == order_id)
    if lock:
        statement = statement.with_for_update()
    return (await session.execute(statement)).scalar_one_or_none()


async def add_order(session: AsyncSession, order: Order) -> Order:
    session.add(order)
    await session.flush()
    return order


async def extend_hold_units(session: AsyncSession, hold_id: int, *, now: datetime, until: datetime) -> int:
    """Keep the hold's live units for the order until it must be paid; returns how many were live."""
    result = await session.execute(
        update(Seat)
        .where(Seat.hold_id == hold_id, Seat.status == SeatStatus.HELD.value, Seat.held_until > now)
        .values(held_until=until, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


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
