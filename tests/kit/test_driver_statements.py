"""Statements run on the driver (`kit.db.DriverStatement`): the same values and the same errors as
through SQLAlchemy's execution layer, on both engines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from tests.conftest import DatabaseUnderTest
from tests.kit.test_db import _kill, _pooled_mariadb
from ticketera.kit import db as db_kit
from ticketera.kit.db import (
    ConflictingChange,
    Database,
    DatabaseUnavailable,
    DriverStatement,
    DriverStatementsBySize,
    UTCDateTime,
    enum_column,
    execute_on_driver,
)


class Colour(StrEnum):
    RED = "red"
    BLUE = "blue"


PROBES = Table(
    "driver_probe",
    MetaData(),
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(20), unique=True),
    Column("colour", enum_column(Colour, 8)),
    Column("price", Numeric(12, 2)),
    Column("at", UTCDateTime()),
)
INSERT = DriverStatement(
    insert(PROBES).values(
        name=bindparam("name"), colour=bindparam("colour"), price=bindparam("price"), at=bindparam("at")
    )
)
BY_NAME = DriverStatement(
    select(PROBES.c.id, PROBES.c.colour, PROBES.c.price, PROBES.c.at).where(
        PROBES.c.name == bindparam("name")
    )
)
CONNECTION_ID = DriverStatement(select(func.connection_id()))
RECOLOUR = DriverStatementsBySize(
    lambda size: (
        update(PROBES)
        .where(PROBES.c.id.in_([bindparam(f"id_{index}") for index in range(size)]))
        .values(colour=Colour.BLUE)
    )
)


@pytest.fixture
async def probes(db: DatabaseUnderTest) -> Database:
    async with db.engine.begin() as connection:
        await connection.run_sync(PROBES.drop, checkfirst=True)
        await connection.run_sync(PROBES.create)
    return Database(db.engine)


async def test_values_go_in_and_come_out_as_through_sqlalchemy(probes: Database) -> None:
    moment = datetime(2030, 5, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=-3)))

    async def write(session: AsyncSession) -> tuple[int, int]:
        first = await execute_on_driver(
            session, INSERT, {"name": "a", "colour": Colour.RED, "price": Decimal("12.50"), "at": moment}
        )
        second = await execute_on_driver(
            session, INSERT, {"name": "b", "colour": Colour.RED, "price": Decimal("1.00"), "at": moment}
        )
        changed = await execute_on_driver(
            session,
            RECOLOUR.of_size(2),
            {"id_0": first.inserted_id(), "id_1": second.inserted_id()},
        )
        return first.inserted_id(), changed.rowcount

    probe_id, changed = await probes.transaction(write)

    async def read(session: AsyncSession) -> list[tuple[Any, ...]]:
        return (await execute_on_driver(session, BY_NAME, {"name": "a"})).rows

    assert changed == 2
    [(found_id, colour, price, at)] = await probes.read(read)
    assert (found_id, colour, price) == (probe_id, Colour.BLUE, Decimal("12.50"))
    assert isinstance(colour, Colour)
    assert at == moment
    assert at.tzinfo == UTC
    # And SQLAlchemy reads what the driver wrote the same way.
    async with probes.read_session() as session:
        through_core = (
            await session.execute(select(PROBES.c.at).where(PROBES.c.id == probe_id))
        ).scalar_one()
    assert through_core == moment


async def test_a_duplicate_key_is_a_conflicting_change_and_rolls_back(probes: Database) -> None:
    values = {"name": "same", "colour": Colour.RED, "price": Decimal(1), "at": datetime.now(UTC)}

    async def twice(session: AsyncSession) -> None:
        await execute_on_driver(session, INSERT, values)
        await execute_on_driver(session, INSERT, values)

    with pytest.raises(ConflictingChange):
        await probes.transaction(twice)

    async def count(session: AsyncSession) -> int:
        return len((await execute_on_driver(session, BY_NAME, {"name": "same"})).rows)

    assert await probes.read(count) == 0


def test_statements_a_driver_cannot_run_as_compiled_are_refused_when_compiled(db: DatabaseUnderTest) -> None:
    dialect = db.engine.dialect
    expanding = DriverStatement(select(PROBES.c.id).where(PROBES.c.id.in_(bindparam("ids", expanding=True))))
    with pytest.raises(TypeError, match="expanding"):
        expanding.compiled_for(dialect)
    defaults = Table(
        "with_default", MetaData(), Column("id", Integer, primary_key=True), Column("n", Integer, default=7)
    )
    with pytest.raises(TypeError, match="column defaults"):
        DriverStatement(insert(defaults).values(id=bindparam("id"))).compiled_for(dialect)


async def test_a_connection_dropped_under_a_driver_statement_fails_once_then_the_pool_heals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_kit, "PING_AFTER_IDLE_SECONDS", 3600.0)

    async def my_id(session: AsyncSession) -> int:
        return int((await execute_on_driver(session, CONNECTION_ID, {})).scalar_one())

    async with _pooled_mariadb(tmp_path, pool_size=1) as (url, database):
        first = await database.read(my_id)
        await _kill(url, first)
        # The statement that meets the dead connection is a driver statement: an outage (503),
        # and the connection is invalidated, as SQLAlchemy would have...
        with pytest.raises(DatabaseUnavailable):
            await database.read(my_id)
        # ...so the next request runs on a new one.
        assert await database.read(my_id) != first
