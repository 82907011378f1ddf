"""All SQL of payments and of the notification inbox."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from ticketera.kit.db import insert_unless_present
from ticketera.orders.models import Order
from ticketera.payments.models import NotificationState, Payment, PaymentNotification, Settlement


async def find_payment(session: AsyncSession, provider_payment_id: str) -> Payment | None:
    statement = select(Payment).where(Payment.provider_payment_id == provider_payment_id)
    return (await session.execute(statement)).scalar_one_or_none()


async def paying_payment(session: AsyncSession, order_id: int) -> Payment | None:
    """The payment that paid this order, if one did."""
    statement = select(Payment).where(Payment.order_id == order_id, Payment.settlement == Settlement.SOLD)
    return (await session.execute(statement.limit(1))).scalar_one_or_none()


async def payments_of_order(session: AsyncSession, order_id: int) -> list[Payment]:
    statement = select(Payment).where(Payment.order_id == order_id).order_by(Payment.id)
    return list((await session.execute(statement)).scalars())


async def refunds_due(session: AsyncSession, now: datetime, *, limit: int) -> list[str]:
    statement = (
        select(Payment.provider_payment_id)
        .where(
            Payment.settlement == Settlement.REFUND_DUE,
            or_(Payment.refund_next_at.is_(None), Payment.refund_next_at <= now),
        )
        .order_by(Payment.refund_next_at, Payment.id)
        .limit(limit)
    )
    return list((await session.execute(statement)).scalars())


# -- the inbox ----------------------------------------------------------------------------------


async def store_notification(session: AsyncSession, values: dict[str, object]) -> int:
    """Insert a notification unless one with its dedup key is already stored; return its id.

    Two copies of a delivery racing each other both get the same row instead of an error.
    """
    await insert_unless_present(session, PaymentNotification, values, "dedup_key")
    found = select(PaymentNotification.id).where(PaymentNotification.dedup_key == values["dedup_key"])
    return int((await session.execute(found)).scalar_one())


@dataclass(frozen=True)
class ClaimedNotification:
    id: int
    source: str
    topic: str
    resource_id: str
    attempts: int


async def claimed_notification(session: AsyncSession, notification_id: int) -> ClaimedNotification:
    """What processing a notification just claimed (see `service.INBOX`) needs to know of it."""
    row = (
        await session.execute(
            select(
                PaymentNotification.source,
                PaymentNotification.topic,
                PaymentNotification.resource_id,
                PaymentNotification.attempts,
            ).where(PaymentNotification.id == notification_id)
        )
    ).one()
    return ClaimedNotification(notification_id, row.source, row.topic, row.resource_id, row.attempts)


def _processed_before(before: datetime, up_to_id: int | None) -> ColumnElement[bool]:
    condition = (PaymentNotification.state == NotificationState.DONE) & (
        PaymentNotification.processed_at < before
    )
    return condition if up_to_id is None else condition & (PaymentNotification.id <= up_to_id)


async def newest_processed_before(session: AsyncSession, before: datetime) -> tuple[int, int | None]:
    """How many notifications were processed before `before`, and the largest id among them."""
    count, newest = (
        await session.execute(
            select(func.count(), func.max(PaymentNotification.id)).where(_processed_before(before, None))
        )
    ).one()
    return int(count), None if newest is None else int(newest)


def processed_before_rows(before: datetime, up_to_id: int) -> Select[Any]:
    """Every column of the notifications processed before `before`, up to id `up_to_id`, by id."""
    table = PaymentNotification.__table__
    return select(*table.columns).where(_processed_before(before, up_to_id)).order_by(PaymentNotification.id)


async def delete_processed_before(
    session: AsyncSession, before: datetime, *, after_id: int, up_to_id: int, limit: int
) -> tuple[int, int] | None:
    """Delete the next `limit` notifications processed before `before` with ids past `after_id` and
    up to `up_to_id`; the last id of the batch and how many were deleted, or None when none was left."""
    ids = list(
        (
            await session.execute(
                select(PaymentNotification.id)
                .where(_processed_before(before, up_to_id), PaymentNotification.id > after_id)
                .order_by(PaymentNotification.id)
                .limit(limit)
            )
        ).scalars()
    )
    if not ids:
        return None
    result = await session.execute(
        delete(PaymentNotification).where(
            PaymentNotification.id.in_(ids), _processed_before(before, up_to_id)
        )
    )
    return int(ids[-1]), int(result.rowcount)  # type: ignore[attr-defined]


async def payment_counts_of_event(session: AsyncSession, event_id: int) -> dict[str, int]:
    """An event's payments per MercadoPago status (approved, rejected, refunded, ...)."""
    statement = (
        select(Payment.status, func.count())
        .join(Order, Order.id == Payment.order_id)
        .where(Order.event_id == event_id)
        .group_by(Payment.status)
    )
    return {str(status): int(count) for status, count in (await session.execute(statement)).all()}
