"""SQL of maintenance: checking the performance indexes and refreshing planner statistics."""

from __future__ import annotations

from sqlalchemy import Index, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from ticketera.models import metadata


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
