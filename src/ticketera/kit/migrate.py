"""Alembic, driven from code: the CLI, the app start-up and the tests all migrate the same way.

The migration scripts ship inside the package (`ticketera/migrations`), so an installed Ticketera
can migrate its database without a checkout beside it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from ticketera.config import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


# Replicas started together each migrate before they serve: on MariaDB one takes this lock and
# migrates while the others wait for it, then find nothing left to do. Without it, two ran the same
# CREATE TABLE and all but one replica died at start-up.
MIGRATION_LOCK = "ticketera.migrate"
MIGRATION_LOCK_WAIT_SECONDS = 300


class MigrationLockTimeout(RuntimeError):
    pass


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    async with engine.connect() as connection:
        locked = connection.dialect.name == "mysql"
        if locked:
            # A named lock belongs to the connection, not a transaction (MariaDB commits DDL as it
            # goes), and is freed if this process dies holding it.
            taken = await connection.scalar(
                text("SELECT GET_LOCK(:name, :wait)"),
                {"name": MIGRATION_LOCK, "wait": MIGRATION_LOCK_WAIT_SECONDS},
            )
            if taken != 1:
                raise MigrationLockTimeout(
                    f"another process held the migration lock for {MIGRATION_LOCK_WAIT_SECONDS} s"
                )
        try:
            await connection.run_sync(lambda sync: command.upgrade(alembic_config(sync), revision))
            await connection.commit()
        finally:
            if locked:
                await connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": MIGRATION_LOCK})


async def downgrade(engine: AsyncEngine, revision: str = "base") -> None:
    async with engine.begin() as connection:
        await connection.run_sync(lambda sync: command.downgrade(alembic_config(sync), revision))


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as connection:
        return await connection.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())


def upgrade_blocking(settings: Settings, revision: str = "head") -> None:
    """For synchronous callers: the CLI, before it starts uvicorn."""
    from ticketera.kit.db import engine_for

    async def run() -> None:
        engine = engine_for(settings, pool_size=1)
        try:
            await upgrade(engine, revision)
        finally:
            await engine.dispose()

    asyncio.run(run())
