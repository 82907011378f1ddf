"""SQL of maintenance: checking the performance indexes, refreshing planner statistics, and the rows
of a finished event that `ticketera db archive` moves out of the database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
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
from ticketera.holds.models import Hold, HoldStatus, Shopper
from ticketera.holds.service import AUDIT_ENTITY as HOLD_ENTITY
from ticketera.kit.audit import AuditEntry
from ticketera.kit.backup import WrittenKeys, row_fingerprint
from ticketera.models import metadata
from ticketera.orders.models import Order, OrderStatus
from ticketera.orders.service import AUDIT_ENTITY as ORDER_ENTITY
from ticketera.payments.models import FINAL_STATUSES, Payment, Settlement
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
    refunds_failed: int  # refunds MercadoPago kept refusing: money still owed, an operator's to send
    payments_moving: int  # payments whose MercadoPago status is not final (pending, in_process...)
    live_holds: int
    pending_orders: int
    newest_of_its_tables: bool  # holds the newest event or order (ids SQLite would hand out again)


async def event_facts(connection: AsyncConnection, event_id: int) -> EventFacts | None:
    row = (
        await connection.execute(
            select(Event.name, Event.status, Event.starts_at, Event.updated_at).where(Event.id == event_id)
        )
    ).one_or_none()
    if row is None:
        return None
    payments = Payment.order_id.in_(_order_ids(event_id))
    settlements = {
        Settlement(settlement): int(count)
        for settlement, count in await connection.execute(
            select(Payment.settlement, func.count()).where(payments).group_by(Payment.settlement)
        )
    }
    payments_moving = await connection.scalar(
        select(func.count()).select_from(Payment).where(payments, Payment.status.not_in(FINAL_STATUSES))
    )
    live_holds = await connection.scalar(
        select(func.count())
        .select_from(Hold)
        .where(Hold.event_id == event_id, Hold.status == HoldStatus.ACTIVE)
    )
    pending_orders = await connection.scalar(
        select(func.count())
        .select_from(Order)
        .where(Order.event_id == event_id, Order.status == OrderStatus.PENDING_PAYMENT)
    )
    newest_event = await connection.scalar(select(func.max(Event.id)))
    newest_order = await connection.scalar(select(func.max(Order.id)))
    own_newest_order = await connection.scalar(select(func.max(Order.id)).where(Order.event_id == event_id))
    newest = newest_event == event_id or (own_newest_order is not None and own_newest_order == newest_order)
    return EventFacts(
        event_id,
        row.name,
        row.status,
        row.starts_at,
        row.updated_at,
        refunds_due=settlements.get(Settlement.REFUND_DUE, 0),
        refunds_failed=settlements.get(Settlement.REFUND_FAILED, 0),
        payments_moving=int(payments_moving or 0),
        live_holds=int(live_holds or 0),
        pending_orders=int(pending_orders or 0),
        newest_of_its_tables=newest,
    )


def _order_ids(event_id: int) -> Select[int]:
    return select(Order.id).where(Order.event_id == event_id)


def _hold_ids(event_id: int) -> Select[int]:
    return select(Hold.id).where(Hold.event_id == event_id)


def _event_conditions(event_id: int) -> dict[str, ColumnElement[bool]]:
    return {
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


def event_row_selections(event_id: int) -> list[tuple[Table, Select[Any]]]:
    """Every row keyed to the event, table by table, parents before children (the order a restore
    inserts them in): the event, its sections, seats, holds, shoppers, orders, their payments,
    tickets and emails, the event's signing key, and the audit trail of its holds and orders.

    Payment notifications are not among them: they name a MercadoPago payment, not an event, and
    leave the inbox on their own."""
    conditions = _event_conditions(event_id)
    return [
        (table, select(*table.columns).where(conditions[table.name]).order_by(*table.primary_key.columns))
        for table in metadata.sorted_tables
        if table.name in conditions
    ]


EVENT_TABLES = frozenset(table.name for table, _ in event_row_selections(0))


def _key_condition(columns: list[Column[Any]], keys: list[tuple[Any, ...]]) -> ColumnElement[bool]:
    if len(columns) == 1:
        return columns[0].in_([key[0] for key in keys])
    return tuple_(*columns).in_(keys)


async def rows_added_since(
    connection: AsyncConnection, event_id: int, written: WrittenKeys
) -> tuple[str, tuple[Any, ...]] | None:
    """A row of the event that is not among `written` (the archive's), if one was written since."""
    for table, _ in event_row_selections(event_id):
        key_columns = list(table.primary_key.columns)
        known = written.get(table.name, {})
        statement = select(*key_columns).where(_event_conditions(event_id)[table.name])
        for row in await connection.execute(statement):
            if tuple(row) not in known:
                return table.name, tuple(row)
    return None


async def archived_rows_problem(
    connection: AsyncConnection,
    table: Table,
    batch: dict[tuple[Any, ...], int],
    written: WrittenKeys,
    *,
    lock: bool,
) -> str | None:
    """Why these archived rows of `table` (key: fingerprint as written) must not be deleted now, or
    None: a row differs from the archive's copy, or a row of another table refers to one of them and
    is not in the archive (`written`), so the foreign keys' ON DELETE CASCADE would take it along.

    With `lock` (just before deleting them, in the deleting transaction) the rows are read FOR
    UPDATE: on MariaDB, a child inserted or repointed from here on waits on that lock for its foreign
    key check, then fails once they are gone; on SQLite the writer's BEGIN IMMEDIATE already keeps
    every other writer out."""
    key_columns = list(table.primary_key.columns)
    names = [str(column.name) for column in table.columns]
    key_at = [names.index(str(column.name)) for column in key_columns]
    statement = select(*table.columns).where(_key_condition(key_columns, list(batch)))
    if lock:
        statement = statement.with_for_update()
    present = [row for row in await connection.execute(statement)]
    for row in present:
        key = tuple(row[index] for index in key_at)
        if row_fingerprint(row) != batch[key]:
            return f"{table.name} row {_describe(key_columns, key)} changed after the archive read it"
    for child in metadata.sorted_tables:
        for constraint in child.foreign_key_constraints:
            if constraint.referred_table is not table:
                continue
            referred_at = [names.index(str(element.column.name)) for element in constraint.elements]
            values = {tuple(row[index] for index in referred_at) for row in present}
            values.discard(tuple(None for _ in referred_at))
            if not values:
                continue
            child_keys = list(child.primary_key.columns)
            in_file = written.get(child.name, {})
            referring = select(*child_keys).where(_key_condition(list(constraint.columns), list(values)))
            for found in await connection.execute(referring):
                if tuple(found) not in in_file:
                    return (
                        f"{child.name} row {_describe(child_keys, tuple(found))} refers to an archived"
                        f" {table.name} row but was written after the archive read them"
                    )
    return None


async def delete_archived_rows(
    engine: AsyncEngine, table: Table, batch: dict[tuple[Any, ...], int]
) -> str | None:
    """Delete these archived rows of `table` in one short transaction, after checking under lock
    that nothing the archive lacks would go with them (`archived_rows_problem`, whose answer this
    returns instead of deleting). Runs children first: every table referring to `table` has had its
    archived rows deleted already, so any row still referring to these is one the archive lacks."""
    async with engine.begin() as connection:
        problem = await archived_rows_problem(connection, table, batch, {}, lock=True)
        if problem is None:
            await connection.execute(
                delete(table).where(_key_condition(list(table.primary_key.columns), list(batch)))
            )
        return problem


def _describe(columns: list[Column[Any]], key: tuple[Any, ...]) -> str:
    return ", ".join(f"{column.name}={value}" for column, value in zip(columns, key, strict=True))


async def event_exists(connection: AsyncConnection, event_id: int) -> bool:
    return await connection.scalar(select(Event.id).where(Event.id == event_id)) is not None
