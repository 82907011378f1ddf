"""The webhook inbox is pruned by rows: processed notifications past the retention are archived, then
deleted; pending and failed ones, and recent ones, stay; the archive brings them back."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import DatabaseUnderTest
from ticketera.kit.backup import ARCHIVE_FORMAT, read_backup_header
from ticketera.kit.migrate import current_revision
from ticketera.ops import retention
from ticketera.ops.archive import unarchive
from ticketera.ops.retention import prune_notifications
from ticketera.payments.models import NotificationState, PaymentNotification

NOW = datetime(2027, 6, 15, 12, 0, tzinfo=UTC)
INBOX = PaymentNotification.__table__


@pytest.fixture
def migrated(db: DatabaseUnderTest) -> AsyncEngine:
    """The session's migrated database of each engine, emptied after the test."""
    return db.engine


async def add_notification(
    engine: AsyncEngine, key: str, state: NotificationState, processed: datetime | None
) -> None:
    received = processed or NOW - timedelta(days=400)
    async with engine.begin() as connection:
        await connection.execute(
            insert(PaymentNotification).values(
                dedup_key=key,
                source="webhook",
                topic="payment",
                resource_id=key,
                action="payment.updated",
                state=state,
                attempts=1,
                next_attempt_at=received,
                received_at=received,
                processed_at=processed,
            )
        )


async def keys_left(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        return {str(key) for key in (await connection.scalars(select(INBOX.c.dedup_key))).all()}


async def test_processed_notifications_past_the_retention_are_archived_then_deleted(
    migrated: AsyncEngine, tmp_path: Path
) -> None:
    # Keeping 12 months from June 2027 keeps July 2026 on.
    await add_notification(migrated, "old-done-1", NotificationState.DONE, datetime(2026, 3, 2, tzinfo=UTC))
    await add_notification(
        migrated, "old-done-2", NotificationState.DONE, datetime(2026, 6, 30, 23, tzinfo=UTC)
    )
    await add_notification(migrated, "kept-done", NotificationState.DONE, datetime(2026, 7, 1, tzinfo=UTC))
    await add_notification(migrated, "old-failed", NotificationState.FAILED, datetime(2025, 1, 1, tzinfo=UTC))
    await add_notification(migrated, "old-pending", NotificationState.PENDING, None)
    archive = tmp_path / "archive"
    revision = await current_revision(migrated)

    dry = await prune_notifications(migrated, NOW, retention_months=12, archive_dir=archive, dry_run=True)
    assert dry == ["payment_notifications: would archive and delete 2 processed before 2026-07"]
    assert len(await keys_left(migrated)) == 5

    lines = await prune_notifications(
        migrated, NOW, retention_months=12, archive_dir=archive, schema_revision=revision
    )

    assert await keys_left(migrated) == {"kept-done", "old-failed", "old-pending"}
    [path] = archive.glob("payment_notifications-before-p202607-*.jsonl.gz")
    assert lines == [f"payment_notifications: deleted 2 processed before 2026-07 (archived to {path})"]
    assert read_backup_header(path, file_format=ARCHIVE_FORMAT).rows == {"payment_notifications": 2}
    again = await prune_notifications(migrated, NOW, retention_months=12, archive_dir=archive)
    assert again == ["payment_notifications: nothing processed before 2026-07"]

    await unarchive(migrated, path, schema_revision=revision)
    assert len(await keys_left(migrated)) == 5


async def test_without_an_archive_folder_they_are_only_deleted(migrated: AsyncEngine, tmp_path: Path) -> None:
    await add_notification(migrated, "old-done", NotificationState.DONE, datetime(2020, 1, 1, tzinfo=UTC))

    lines = await prune_notifications(migrated, NOW, retention_months=1, archive_dir=None)

    assert lines == ["payment_notifications: deleted 1 processed before 2027-06"]
    assert await keys_left(migrated) == set()
    assert not await asyncio.to_thread(lambda: list(tmp_path.rglob("*.jsonl.gz")))


async def test_they_are_deleted_a_bounded_batch_at_a_time(
    migrated: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deletes read one batch of ids at a time (never every id at once) and go on until none is
    left; a processed notification kept by the retention is not among them."""
    for index in range(3):
        await add_notification(
            migrated, f"old-{index}", NotificationState.DONE, datetime(2020, 1, 1, tzinfo=UTC)
        )
    await add_notification(migrated, "kept", NotificationState.DONE, datetime(2027, 6, 1, tzinfo=UTC))
    monkeypatch.setattr(retention, "DELETE_BATCH", 2)

    lines = await prune_notifications(migrated, NOW, retention_months=1, archive_dir=tmp_path / "archive")

    assert lines[0].startswith("payment_notifications: deleted 3 processed before 2027-06")
    assert await keys_left(migrated) == {"kept"}
