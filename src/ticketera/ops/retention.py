"""The webhook inbox's old rows: archived to a file, then deleted (`ticketera db partitions`).

`payment_notifications` grows with every payment (a few notifications each) and cannot be partitioned
(kit.partitions says why: its unique `dedup_key`). What keeps it small instead: a notification that
was processed (`done`) more than PAYMENT_NOTIFICATION_RETENTION_MONTHS ago has done its work; its
payment and order hold the outcome. Deleting it is safe for money too: MercadoPago stops redelivering
within days, and a very late redelivery would be stored as new and processed again, which is a no-op
on a payment whose state already says so (processing reads the payment from MercadoPago and applies
it idempotently). Pending and failed notifications are never touched: they are work, or an
operator's to look at.

The rows and their SQL are the payments domain's (`payments.service.prune_processed_notifications`);
this is the orchestration: the bound (the newest id processed before the retained months), the
archive file of the rows up to it (the backup format, so `ticketera db unarchive` can bring them
back), then their deletion in bounded primary-key batches, each its own short transaction. Nothing
holds every id in memory: the file is streamed, and the deletes read one batch of ids at a time. The
file and the deletes select the same rows (processed before that month, id up to the bound), and a
notification processed later can never join them, so what is deleted is what the file holds.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import structlog
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from ticketera.kit.backup import ARCHIVE_FORMAT, write_rows_file
from ticketera.kit.partitions import add_months, month_of, partition_name
from ticketera.payments import service as payments_service
from ticketera.payments.models import PaymentNotification

log = structlog.get_logger(__name__)

DELETE_BATCH = 500


async def prune_notifications(
    engine: AsyncEngine,
    now: datetime,
    *,
    retention_months: int,
    archive_dir: Path | None,
    schema_revision: str | None = None,
    dry_run: bool = False,
) -> list[str]:
    """Archive (to `archive_dir`; None: just delete) and delete the notifications processed before
    the first of the retained months (this month counts as one). One line per thing done."""
    table: Table = PaymentNotification.__table__  # type: ignore[assignment]
    name = table.name
    kept_from = add_months(month_of(now), -(retention_months - 1))
    async with AsyncSession(engine) as session:
        count, up_to_id = await payments_service.processed_notifications(session, kept_from)
    if up_to_id is None:
        return [f"{name}: nothing processed before {kept_from:%Y-%m}"]
    if dry_run:
        return [f"{name}: would archive and delete {count} processed before {kept_from:%Y-%m}"]
    where = ""
    if archive_dir is not None:
        path = archive_dir / f"{name}-before-{partition_name(kept_from)}-{now:%Y%m%dT%H%M%SZ}.jsonl.gz"
        await write_rows_file(
            engine,
            path,
            [(table, payments_service.processed_notification_rows(kept_from, up_to_id))],
            file_format=ARCHIVE_FORMAT,
            schema_revision=schema_revision,
            scope={"table": name, "processedBefore": kept_from.isoformat()},
            collect_keys=False,
        )
        where = f" (archived to {path})"
    deleted = 0
    after_id = 0
    while True:
        async with AsyncSession(engine) as session, session.begin():
            batch = await payments_service.prune_processed_notifications(
                session, kept_from, after_id=after_id, up_to_id=up_to_id, limit=DELETE_BATCH
            )
        if batch is None:
            break
        after_id, count = batch
        deleted += count
    log.info("retention.notifications_deleted", rows=deleted, before=kept_from.isoformat())
    return [f"{name}: deleted {deleted} processed before {kept_from:%Y-%m}{where}"]
