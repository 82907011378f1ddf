"""All SQL of orders."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import (
    Integer,
    Select,
    Table,
    bindparam,
    case,
    func,
    insert,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy import cast as cast_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql._typing import ColumnExpressionArgument
from sqlalchemy.sql.elements import ColumnElement

from ticketera.kit.clock import utc_now
from ticketera.kit.db import DriverStatement, UTCDateTime, execute_on_driver
from ticketera.orders.models import Order, OrderReason, OrderStatus, searchable_email
from ticketera.tickets.models import Ticket, TicketStatus

ORDERS = cast(Table, Order.__table__)
CENT = Decimal("0.01")


def lapsed(now: datetime) -> ColumnElement[bool]:
    """Stored as awaiting payment, but past its deadline: the API shows it expired (the SQL form of
    `service.effective_status`; the worker records the status later, correctness never waits)."""
    return (Order.status == OrderStatus.PENDING_PAYMENT) & (Order.expires_at <= now)


_ID_BY_IDEMPOTENCY_KEY = DriverStatement(
    select(ORDERS.c.id, ORDERS.c.request_digest).where(
        ORDERS.c.idempotency_key == bindparam("idempotency_key")
    )
)


async def find_id_by_idempotency_key(session: AsyncSession, key: str) -> tuple[int, str] | None:
    """The id and request digest of the order this Idempotency-Key made, if any (Core: asked by
    every purchase, where the ORM's entity loading cost more than the query)."""
    rows = (await execute_on_driver(session, _ID_BY_IDEMPOTENCY_KEY, {"idempotency_key": key})).rows
    return (int(rows[0][0]), str(rows[0][1])) if rows else None


async def find_order(session: AsyncSession, order_id: int, *, lock: bool = False) -> Order | None:
    statement = select(Order).where(Order.id == order_id)
    if lock:
        statement = statement.with_for_update()
    return (await session.execute(statement)).scalar_one_or_none()


_ORDER_COLUMNS = (
    "event_id",
    "hold_id",
    "user_id",
    "buyer_email",
    "buyer_email_lower",
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


# Every column named: a driver statement runs no Python-side column defaults.
_INSERT_ORDER = DriverStatement(insert(ORDERS).values({name: bindparam(name) for name in _ORDER_COLUMNS}))


async def insert_order(session: AsyncSession, order: Order) -> int:
    """Insert on the driver (no unit of work for one row on the hot path); returns the new id."""
    values = {column: getattr(order, column) for column in _ORDER_COLUMNS}
    # The column's default is Python-side, which a driver statement does not run.
    values["buyer_email_lower"] = searchable_email(order.buyer_email)
    return (await execute_on_driver(session, _INSERT_ORDER, values)).inserted_id()


async def overdue_order_ids(session: AsyncSession, now: datetime, *, limit: int) -> list[int]:
    statement = (
        select(Order.id)
        .where(Order.status == OrderStatus.PENDING_PAYMENT, Order.expires_at <= now)
        .order_by(Order.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list((await session.execute(statement)).scalars())


async def mark_orders(
    session: AsyncSession,
    order_ids: Sequence[int],
    *,
    from_status: OrderStatus,
    to_status: OrderStatus,
    now: datetime,
) -> None:
    await session.execute(
        update(Order)
        .where(Order.id.in_(order_ids), Order.status == from_status)
        .values(status=to_status, updated_at=now)
        .execution_options(synchronize_session=False)
    )


# Once per order bought: built once, run on the driver. `updated_at` is named, as the column's
# onupdate would have set it: a driver statement runs no Python-side column defaults.
_SET_CHECKOUT = DriverStatement(
    update(ORDERS)
    .where(ORDERS.c.id == bindparam("checkout_order"))
    .values(
        preference_id=bindparam("new_preference"),
        checkout_url=bindparam("new_checkout_url"),
        updated_at=bindparam("checkout_at"),
    )
)


async def set_checkout(
    session: AsyncSession, order_id: int, *, preference_id: str, checkout_url: str
) -> None:
    params = {
        "checkout_order": order_id,
        "new_preference": preference_id,
        "new_checkout_url": checkout_url,
        "checkout_at": utc_now(),
    }
    await execute_on_driver(session, _SET_CHECKOUT, params)


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
    reason: OrderReason | None,
    after: int,
    limit: int,
) -> list[Order]:
    """An event's orders by id, filtered by the status the API shows (an unpaid order past its
    deadline is expired whatever is stored) and by reason; keyset pages after `after`."""
    statement = select(Order).where(Order.event_id == event_id, Order.id > after)
    if status is OrderStatus.PENDING_PAYMENT:
        statement = statement.where(Order.status == OrderStatus.PENDING_PAYMENT, ~lapsed(now))
    elif status is OrderStatus.EXPIRED:
        statement = statement.where(or_(Order.status == OrderStatus.EXPIRED, lapsed(now)))
    elif status is not None:
        statement = statement.where(Order.status == status)
    if reason is not None:
        statement = statement.where(Order.status_reason == reason)
    return list((await session.execute(statement.order_by(Order.id).limit(limit))).scalars())


async def orders_without_checkout(session: AsyncSession, now: datetime, *, limit: int) -> list[int]:
    statement = (
        select(Order.id)
        .where(
            Order.status == OrderStatus.PENDING_PAYMENT,
            Order.expires_at > now,
            Order.checkout_url.is_(None),
        )
        .order_by(Order.id)
        .limit(limit)
    )
    return list((await session.execute(statement)).scalars())


async def count_by_status(session: AsyncSession, now: datetime) -> dict[OrderStatus, int]:
    """Orders per status as the API shows them (one GROUP BY, which the (status, expires_at) index
    covers): lapsed unpaid orders count as expired."""
    overdue = func.sum(case((lapsed(now), 1), else_=0))
    statement = select(Order.status, func.count(), overdue).group_by(Order.status)
    counts = dict.fromkeys(OrderStatus, 0)
    for stored, total, overdue_count in (await session.execute(statement)).all():
        status = OrderStatus(stored)
        counts[OrderStatus.EXPIRED] += int(overdue_count or 0)
        counts[status] += int(total) - int(overdue_count or 0)
    return counts


async def search_orders(
    session: AsyncSession,
    *,
    now: datetime,
    email: str | None,
    order_id: int | None,
    event_id: int | None,
    status: OrderStatus | None,
    limit: int,
) -> list[Order]:
    """The organizer's order search, newest first: each filter given narrows it; the email is matched
    whole, letter case aside (addresses are written both ways by the same person)."""
    statement = search_statement(now=now, email=email, order_id=order_id, event_id=event_id, status=status)
    return list((await session.execute(statement.limit(limit))).scalars())


def search_statement(
    *,
    now: datetime,
    email: str | None,
    order_id: int | None,
    event_id: int | None,
    status: OrderStatus | None,
) -> Select[Order]:
    statement = select(Order)
    if order_id is not None:
        statement = statement.where(Order.id == order_id)
    if event_id is not None:
        statement = statement.where(Order.event_id == event_id)
    if email:
        # The stored lowercase copy, compared as is: its index answers (ix_orders_buyer_email_lower).
        statement = statement.where(Order.buyer_email_lower == searchable_email(email))
    if status is OrderStatus.PENDING_PAYMENT:
        statement = statement.where(Order.status == OrderStatus.PENDING_PAYMENT, ~lapsed(now))
    elif status is OrderStatus.EXPIRED:
        statement = statement.where(or_(Order.status == OrderStatus.EXPIRED, lapsed(now)))
    elif status is not None:
        statement = statement.where(Order.status == status)
    return statement.order_by(Order.id.desc())


def _seconds_since(
    dialect: str, start: datetime, moment: ColumnExpressionArgument[Any]
) -> ColumnElement[Any]:
    """`moment - start` in seconds, in SQL. The engines share no function for it: SQLite keeps
    datetimes as text that julianday() reads (in days); MariaDB has TIMESTAMPDIFF, which works on the
    stored naive UTC values without the session's time zone (UNIX_TIMESTAMP would apply it)."""
    at = bindparam("chart_start", start, type_=UTCDateTime())
    if dialect == "sqlite":
        return (func.julianday(moment) - func.julianday(at)) * 86400.0
    return func.timestampdiff(literal_column("MICROSECOND"), at, moment) / 1_000_000.0


async def paid_sales_by_bucket(
    session: AsyncSession, event_id: int, *, start: datetime, step_seconds: float, buckets: int
) -> list[tuple[int, datetime, datetime, int, Decimal]]:
    """The event's paid orders grouped by when they were paid, in `buckets` stretches of
    `step_seconds` from `start` (those paid before `start` in bucket -1, after the last stretch in the
    last one): (bucket, first and last payment, tickets, total), oldest first. One query that answers
    at most `buckets + 1` rows however many orders were sold: the dashboard asks every few seconds."""
    dialect = session.get_bind().dialect.name
    seconds = _seconds_since(dialect, start, Order.paid_at)
    # SQLite's CAST truncates (and here the value is >= 0); MariaDB's CAST rounds, so FLOOR there.
    stretch = (
        cast_(seconds / step_seconds, Integer) if dialect == "sqlite" else func.floor(seconds / step_seconds)
    )
    bucket = case((seconds < 0, -1), (seconds >= step_seconds * buckets, buckets - 1), else_=stretch)
    paid = (
        select(bucket.label("bucket"), Order.paid_at, Order.quantity, Order.total)
        .where(Order.event_id == event_id, Order.status == OrderStatus.PAID, Order.paid_at.is_not(None))
        .subquery()
    )
    statement = (
        select(
            paid.c.bucket,
            func.min(paid.c.paid_at),
            func.max(paid.c.paid_at),
            func.sum(paid.c.quantity),
            func.sum(paid.c.total),
        )
        .group_by(paid.c.bucket)
        .order_by(paid.c.bucket)
    )
    return [
        (int(index), first, last, int(tickets), Decimal(str(total)).quantize(CENT))
        for index, first, last, tickets, total in (await session.execute(statement)).all()
    ]


async def event_counts_by_status(
    session: AsyncSession, event_id: int, now: datetime
) -> dict[OrderStatus, int]:
    """One event's orders per status as the API shows them (lapsed unpaid orders count as expired)."""
    overdue = func.sum(case((lapsed(now), 1), else_=0))
    statement = (
        select(Order.status, func.count(), overdue).where(Order.event_id == event_id).group_by(Order.status)
    )
    counts = dict.fromkeys(OrderStatus, 0)
    for stored, total, overdue_count in (await session.execute(statement)).all():
        counts[OrderStatus.EXPIRED] += int(overdue_count or 0)
        counts[OrderStatus(stored)] += int(total) - int(overdue_count or 0)
    return counts


async def attendees_of_event(
    session: AsyncSession, event_id: int, *, after: int, limit: int
) -> list[tuple[Ticket, Order]]:
    """An event's valid tickets with the order each came in, by ticket id; keyset pages after `after`."""
    statement = (
        select(Ticket, Order)
        .join(Order, Order.id == Ticket.order_id)
        .where(Ticket.event_id == event_id, Ticket.status == TicketStatus.VALID, Ticket.id > after)
        .order_by(Ticket.id)
        .limit(limit)
    )
    return [(ticket, order) for ticket, order in (await session.execute(statement)).all()]
