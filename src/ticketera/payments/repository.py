"""All SQL of payments and of the notification inbox."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from ticketera.kit.db import insert_unless_present
from ticketera.orders.models import Order
from ticketera.payments.models import Payment, PaymentNotification, Settlement


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


async def payment_counts_of_event(session: AsyncSession, event_id: int) -> dict[str, int]:
    """An event's payments per MercadoPago status (approved, rejected, refunded, ...)."""
    statement = (
        select(Payment.status, func.count())
        .join(Order, Order.id == Payment.order_id)
        .where(Order.event_id == event_id)
        .group_by(Payment.status)
    )
    return {str(status): int(count) for status, count in (await session.execute(statement)).all()}
