"""Monthly partitions: the audit log really is partitioned on MariaDB after migrating, rows past the
last month land in the catch-all, `maintain_partitions` adds months ahead and archives then drops the
months past the retention, and a second run changes nothing. SQLite has none and is left alone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import fresh_database
from ticketera.kit.audit import AUDIT_LOG, audit_row
from ticketera.kit.backup import ARCHIVE_FORMAT, read_backup_header
from ticketera.kit.db import create_engine
from ticketera.kit.migrate import current_revision, upgrade
from ticketera.kit.partitions import (
    AUDIT_LOG_MONTHLY,
    CATCH_ALL,
    add_months,
    maintain_partitions,
    month_of,
    partition_name,
    plan_partitions,
)
from ticketera.ops.archive import unarchive

NOW = datetime.now(UTC)
THIS_MONTH = month_of(NOW)


def test_the_plan_adds_the_months_ahead_and_expires_those_past_retention() -> None:
    names = [partition_name(add_months(THIS_MONTH, offset)) for offset in range(-30, 2)] + [CATCH_ALL]
    plan = plan_partitions(names, NOW, months_ahead=3, retention_months=24)
    assert plan.add == [add_months(THIS_MONTH, 2), add_months(THIS_MONTH, 3)]
    assert plan.expire == [add_months(THIS_MONTH, offset) for offset in range(-30, -23)]
    kept = [name for name in names if name not in {partition_name(m) for m in plan.expire}]
    done = kept[:-1] + [partition_name(month) for month in plan.add] + [CATCH_ALL]
    again = plan_partitions(done, NOW, months_ahead=3, retention_months=24)
    assert (again.add, again.expire) == ([], [])


def test_a_december_rolls_into_january() -> None:
    assert add_months(datetime(2026, 12, 1, tzinfo=UTC), 1) == datetime(2027, 1, 1, tzinfo=UTC)
    assert add_months(datetime(2027, 1, 1, tzinfo=UTC), -1) == datetime(2026, 12, 1, tzinfo=UTC)
    assert partition_name(datetime(2027, 1, 1, tzinfo=UTC)) == "p202701"


@pytest.fixture(params=["sqlite", "mariadb"])
async def migrated(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with fresh_database(request.param, tmp_path, "ticketera_partitions") as url:
        engine = create_engine(url, pool_size=2)
        await upgrade(engine)
        try:
            yield engine
        finally:
            await engine.dispose()


async def partitions(engine: AsyncEngine) -> dict[str, int]:
    """The audit log's partitions and how many rows each holds (counted, not estimated)."""
    async with engine.connect() as connection:
        names = [
            str(row[0])
            for row in await connection.execute(
                text(
                    "SELECT PARTITION_NAME FROM information_schema.PARTITIONS WHERE TABLE_SCHEMA = DATABASE()"
                    " AND TABLE_NAME = 'audit_log' ORDER BY PARTITION_ORDINAL_POSITION"
                )
            )
        ]
        return {
            name: int(
                await connection.scalar(text(f"SELECT COUNT(*) FROM audit_log PARTITION ({name})")) or 0
            )
            for name in names
            if name != "None"
        }


async def add_audit_rows(engine: AsyncEngine, *moments: datetime) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            AUDIT_LOG.insert(),
            [
                audit_row("order", 1, actor="test", at=at, from_status=None, to_status="paid")
                for at in moments
            ],
        )


async def audit_count(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(AUDIT_LOG)) or 0)


async def test_partitions_are_added_ahead_and_archived_past_retention(
    migrated: AsyncEngine, tmp_path: Path
) -> None:
    archive = tmp_path / "archive"
    if migrated.dialect.name == "sqlite":
        lines = await maintain_partitions(
            migrated, AUDIT_LOG_MONTHLY, NOW, months_ahead=3, archive_dir=archive
        )
        assert lines == ["audit_log: SQLite keeps no partitions; nothing to do"]
        return
    made = await partitions(migrated)
    assert list(made) == [partition_name(add_months(THIS_MONTH, n)) for n in range(4)] + [CATCH_ALL]

    # One row now, one ten months ahead (past the last named month: the catch-all takes it), and one
    # older than any partition (a restored backup's: the first partition takes it).
    old = datetime(2020, 5, 17, 12, 0, tzinfo=UTC)
    ahead = add_months(THIS_MONTH, 10).replace(day=15)
    await add_audit_rows(migrated, NOW, ahead, old)
    assert (await partitions(migrated))[CATCH_ALL] == 1
    assert (await partitions(migrated))[partition_name(THIS_MONTH)] == 2

    # Thirty months on, keeping 24: months up to 32 are added (the catch-all's row moves to its own
    # month), and those before month 7 are archived, then dropped.
    later = add_months(THIS_MONTH, 30)
    revision = await current_revision(migrated)
    dry = await maintain_partitions(
        migrated,
        AUDIT_LOG_MONTHLY,
        later,
        months_ahead=2,
        retention_months=24,
        archive_dir=archive,
        dry_run=True,
    )
    assert any("would drop" in line for line in dry)
    assert list(await partitions(migrated)) == list(made)

    lines = await maintain_partitions(
        migrated,
        AUDIT_LOG_MONTHLY,
        later,
        months_ahead=2,
        retention_months=24,
        archive_dir=archive,
        schema_revision=revision,
    )
    after = await partitions(migrated)
    assert list(after) == [partition_name(add_months(THIS_MONTH, n)) for n in range(7, 33)] + [CATCH_ALL]
    assert after[partition_name(add_months(THIS_MONTH, 10))] == 1
    assert after[CATCH_ALL] == 0
    assert await audit_count(migrated) == 1
    first = archive / f"audit_log-{partition_name(THIS_MONTH)}.jsonl.gz"
    assert read_backup_header(first, file_format=ARCHIVE_FORMAT).rows == {"audit_log": 2}
    assert any(line.endswith(f"drop {partition_name(add_months(THIS_MONTH, 6))}") for line in lines)

    again = await maintain_partitions(
        migrated, AUDIT_LOG_MONTHLY, later, months_ahead=2, retention_months=24, archive_dir=archive
    )
    assert again == ["audit_log: up to date (26 months, pmax)"]
    assert await partitions(migrated) == after

    # The archived month comes back: its old rows land in the first partition, which has no lower bound.
    await unarchive(migrated, first, schema_revision=revision)
    assert await audit_count(migrated) == 3
