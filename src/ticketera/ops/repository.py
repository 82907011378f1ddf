"""SQL of maintenance: checking the performance indexes, refreshing planner statistics, and the rows
of a finished event that `ticketera db archive` moves out of the database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Index,
    Select,
    Table,
    and_,
    delete,
    func,
    inspect,
    or_,
    select,
    text,
    tuple_,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ticketera.events.models import Event, EventStatus, Seat, Section
from ticketera.holds.models import Hold, Shopper
from ticketera.holds.service import AUDIT_ENTITY as HOLD_ENTITY
from ticketera.kit.audit import AuditEntry
from ticketera.models import metadata
from ticketera.orders.models import Order
from ticketera.orders.service import AUDIT_ENTITY as ORDER_ENTITY
from ticketera.payments.models import Payment, Settlement
from ticketera.tickets.models import EventKey, OutboxEmail, Ticket


def expected_indexes() -> list[Index]:
    """The performance indexes the schema declares (unique constraints are checked by migrations)."""
    return [
        index
        for table in metadata.sorted_tables
        for index in sorted(table.indexes, key=lambda i: str(i.name))
    ]


async def optimize_database(engine: AsyncEngine) -> list[str]:
    """Create any missing performance index, then ANALYZE; returns one line per action taken."""
    actions: list[str] = []
    async with engine.begin() as connection:
        existing = await connection.run_sync(_existing_index_names)
        for index in expected_indexes():
            table = index.table
            assert table is not None
            if index.name in existing.get(table.name, set()):
                actions.append(f"ok       index {index.name} on {table.name}")
                continue
            await connection.run_sync(_create_index, index)
            actions.append(f"created  index {index.name} on {table.name}")
    async with engine.begin() as connection:
        tables = [table.name for table in metadata.sorted_tables]
        if connection.dialect.name == "sqlite":
            await connection.execute(text("ANALYZE"))
            await connection.execute(text("PRAGMA optimize"))
        else:
            result = await connection.execute(text(f"ANALYZE TABLE {', '.join(tables)}"))
            result.fetchall()  # MySQL answers ANALYZE TABLE with a result set that must be read
        actions.append(f"analyzed tables {', '.join(tables)}")
    return actions


def _existing_index_names(connection: Connection) -> dict[str, set[str]]:
    inspector = inspect(connection)
    return {
        table.name: {str(index["name"]) for index in inspector.get_indexes(table.name)}
        for table in metadata.sorted_tables
        if inspector.has_table(table.name)
    }


def _create_index(connection: Connection, index: Index) -> None:
    index.create(connection)


# -- archiving a finished event ------------------------------------------------------------------


@dataclass(frozen=True)
class EventFacts:
    """What deciding whether an event may be archived needs to know of it."""

    id: int
    name: str
    status: EventStatus
    starts_at: datetime
    updated_at: datetime
    refunds_due: int  # approved payments whose money must still go back
    newest_of_its_tables: bool  # holds the newest event or order (ids SQLite would hand out again)


async def event_facts(connection: AsyncConnection, event_id: int) -> EventFacts | None:
    row = (
        await connection.execute(
            select(Event.name, Event.status, Event.starts_at, Event.updated_at).where(Event.id == event_id)
        )
    ).one_or_none()
    if row is None:
        return None
    refunds_due = await connection.scalar(
        select(func.count())
        .select_from(Payment)
        .where(Payment.order_id.in_(_order_ids(event_id)), Payment.settlement == Settlement.REFUND_DUE)
    )
    newest_event = await connection.scalar(select(func.max(Event.id)))
    newest_order = await connection.scalar(select(func.max(Order.id)))
    own_newest_order = await connection.scalar(select(func.max(Order.id)).where(Order.event_id == event_id))
    newest = newest_event == event_id or (own_newest_order is not None and own_newest_order == newest_order)
    return EventFacts(
        event_id, row.name, row.status, row.starts_at, row.updated_at, int(refunds_due or 0), newest
    )


def _order_ids(event_id: int) -> Select[int]:
    return select(Order.id).where(Order.event_id == event_id)


def _hold_ids(event_id: int) -> Select[int]:
    return select(Hold.id).where(Hold.event_id == event_id)


def event_row_selections(event_id: int) -> list[tuple[Table, Select[Any]]]:
    """Every row keyed to the event, table by table, parents before children (the order a restore
    inserts them in): the event, its sections, seats, holds, shoppers, orders, their payments,
    tickets and emails, the event's signing key, and the audit trail of its holds and orders.

    Payment notifications are not among them: they name a MercadoPago payment, not an event, and
    leave the inbox on their own."""
    conditions: dict[str, ColumnElement[bool]] = {
        "events": Event.id == event_id,
        "sections": Section.event_id == event_id,
        "seats": Seat.event_id == event_id,
        "holds": Hold.event_id == event_id,
        "shoppers": Shopper.event_id == event_id,
        "orders": Order.event_id == event_id,
        "payments": Payment.order_id.in_(_order_ids(event_id)),
        "tickets": Ticket.event_id == event_id,
        "event_keys": EventKey.event_id == event_id,
        "email_outbox": OutboxEmail.order_id.in_(_order_ids(event_id)),
        "audit_log": or_(
            and_(AuditEntry.entity == HOLD_ENTITY, AuditEntry.entity_id.in_(_hold_ids(event_id))),
            and_(AuditEntry.entity == ORDER_ENTITY, AuditEntry.entity_id.in_(_order_ids(event_id))),
        ),
    }
    return [
        (table, select(*table.columns).where(conditions[table.name]).order_by(*table.primary_key.columns))
        for table in metadata.sorted_tables
        if table.name in conditions
    ]


EVENT_TABLES = frozenset(table.name for table, _ in event_row_selections(0))


async def delete_rows(engine: AsyncEngine, table: Table, keys: list[tuple[Any, ...]], *, batch: int) -> None:
    """Delete these rows of `table` by primary key, `batch` at a time, each batch its own short
    transaction: the locks of an archive never hold up the on-sale of another event for longer."""
    key_columns = list(table.primary_key.columns)
    for start in range(0, len(keys), batch):
        chunk = keys[start : start + batch]
        if len(key_columns) == 1:
            condition = key_columns[0].in_([key[0] for key in chunk])
        else:
            condition = tuple_(*key_columns).in_(chunk)
        async with engine.begin() as connection:
            await connection.execute(delete(table).where(condition))


async def event_exists(connection: AsyncConnection, event_id: int) -> bool:
    return await connection.scalar(select(Event.id).where(Event.id == event_id)) is not None
