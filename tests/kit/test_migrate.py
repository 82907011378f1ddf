"""Migrations: upgrade to head and back to base on every backend, and models match them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import fresh_database
from ticketera.kit.db import create_engine
from ticketera.kit.migrate import current_revision, downgrade, head_revision, upgrade
from ticketera.models import metadata


@pytest.fixture(params=["sqlite", "mariadb"])
async def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """An engine on a brand-new, empty database."""
    async with fresh_database(request.param, tmp_path, "ticketera_migrations") as url:
        engine = create_engine(url, pool_size=2)
        try:
            yield engine
        finally:
            await engine.dispose()


def _table_names(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_upgrade_to_head_then_downgrade_to_base(empty_engine: AsyncEngine) -> None:
    await upgrade(empty_engine)
    async with empty_engine.connect() as connection:
        tables_at_head = await connection.run_sync(_table_names)
    assert await current_revision(empty_engine) == head_revision()
    assert {"events", "sections", "seats", "alembic_version"} <= tables_at_head

    await downgrade(empty_engine, "base")
    async with empty_engine.connect() as connection:
        tables_at_base = await connection.run_sync(_table_names)
    assert tables_at_base <= {"alembic_version"}
    assert await current_revision(empty_engine) is None

    await upgrade(empty_engine)  # and up again: downgrades leave nothing behind that blocks it
    assert await current_revision(empty_engine) == head_revision()


async def test_models_and_migrations_describe_the_same_schema(empty_engine: AsyncEngine) -> None:
    await upgrade(empty_engine)

    def differences(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    async with empty_engine.connect() as connection:
        diff = await connection.run_sync(differences)
    assert diff == []


async def test_the_performance_indexes_exist_after_migrating(empty_engine: AsyncEngine) -> None:
    await upgrade(empty_engine)

    def seat_indexes(connection: Connection) -> dict[str, list[str | None]]:
        return {
            str(index["name"]): list(index["column_names"])
            for index in inspect(connection).get_indexes("seats")
        }

    async with empty_engine.connect() as connection:
        indexes = await connection.run_sync(seat_indexes)
    assert indexes["ix_seats_section_id_status_held_until"] == ["section_id", "status", "held_until"]
    assert indexes["ix_seats_event_id_status_held_until"] == ["event_id", "status", "held_until"]


@pytest.mark.mariadb
async def test_replicas_starting_together_migrate_once_and_all_come_up(tmp_path: Path) -> None:
    """Three processes' migrations against one fresh MariaDB database at the same moment: one
    migrates under the lock, the others wait, then find the schema at head."""
    async with fresh_database("mariadb", tmp_path, "ticketera_replicas") as url:
        engines = [create_engine(url, pool_size=1) for _ in range(3)]
        try:
            await asyncio.gather(*(upgrade(engine) for engine in engines))
            assert await current_revision(engines[0]) == head_revision()
        finally:
            for engine in engines:
                await engine.dispose()


async def test_the_lowercase_email_copy_is_filled_as_python_lowercases_it(tmp_path: Path) -> None:
    """SQLite's SQL lower() folds ASCII only: an order from before 0007 with `Ñ` in its email must get
    the copy the app writes and searches for (str.lower())."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'orders.db'}"
    engine = create_engine(url, pool_size=1)
    try:
        await upgrade(engine, "0006")
        # Rows as they were at 0006, written without foreign keys: only the orders table matters here.
        plain = sa.create_engine(f"sqlite:///{tmp_path / 'orders.db'}")
        with plain.begin() as connection:
            orders = sa.Table("orders", sa.MetaData(), autoload_with=connection)
            for order_id, email in ((1, "ÑANDÚ.Pérez@Example.COM"), (2, "ana@example.com")):
                values: dict[str, object] = {
                    "id": order_id,
                    "hold_id": order_id,
                    "idempotency_key": f"key-{order_id}",
                    "buyer_email": email,
                }
                for column in orders.columns:
                    if column.name in values or column.nullable or column.server_default is not None:
                        continue
                    values[column.name] = _some_value(column.type)
                connection.execute(orders.insert().values(**values))
        plain.dispose()

        await upgrade(engine, "0007")

        async with engine.connect() as connection:
            rows = await connection.execute(sa.text("SELECT id, buyer_email_lower FROM orders ORDER BY id"))
            copies = {int(row[0]): str(row[1]) for row in rows}
        assert copies == {1: "ñandú.pérez@example.com", 2: "ana@example.com"}
    finally:
        await engine.dispose()


def _some_value(kind: sa.types.TypeEngine[object]) -> object:
    if isinstance(kind, sa.Integer):
        return 1
    if isinstance(kind, sa.Numeric):
        return 1
    if isinstance(kind, sa.DateTime):
        return datetime(2026, 1, 1)
    return "x"
