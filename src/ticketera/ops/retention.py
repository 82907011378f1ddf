"""The webhook inbox's old rows: archived to a file, then deleted (`ticketera db partitions`).

`payment_notifications` grows with every payment (a few notifications each) and cannot be partitioned
(kit.partitions says why: its unique `dedup_key`). What keeps it small instead: a notification that
was processed (`done`) more than PAYMENT_NOTIFICATION_RETENTION_MONTHS ago has done its work; its
payment and order hold the outcome. Deleting it is safe for money too: MercadoPago stops redelivering
within days, and a very late redelivery would be stored as new and processed again, which is a no-op
on a payment whose state already says so (processing reads the payment from MercadoPago and applies
it idempotently). Pending and failed notifications are never touched: they are work, or an
operator's to look at.

Rows leave in primary-key batches, each its own short transaction, after the file holding them is
written (the backup format, so `ticketera db unarchive` can bring them back).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import structlog
from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncEngine

from ticketera.kit.backup import ARCHIVE_FORMAT, write_rows_file
from ticketera.kit.partitions import add_months, month_of, partition_name
from ticketera.ops import repository
from ticketera.payments.models import NotificationState, PaymentNotification

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
    processed_before = (table.c.state == NotificationState.DONE) & (table.c.processed_at < kept_from)
    async with engine.connect() as connection:
        ids = [tuple(row) for row in await connection.execute(select(table.c.id).where(processed_before))]
    if not ids:
        return [f"{name}: nothing processed before {kept_from:%Y-%m}"]
    if dry_run:
        return [f"{name}: would archive and delete {len(ids)} processed before {kept_from:%Y-%m}"]
    where = ""
    if archive_dir is not None:
        path = archive_dir / f"{name}-before-{partition_name(kept_from)}-{now:%Y%m%dT%H%M%SZ}.jsonl.gz"
        # The rows deleted are exactly the rows the file holds (a notification processed between
        # the count above and this snapshot is in both).
        _, keys = await write_rows_file(
            engine,
            path,
            [(table, select(*table.columns).where(processed_before).order_by(table.c.id))],
            file_format=ARCHIVE_FORMAT,
            schema_revision=schema_revision,
            scope={"table": name, "processedBefore": kept_from.isoformat()},
        )
        ids = keys.get(name, [])
        where = f" (archived to {path})"
    await repository.delete_rows(engine, table, ids, batch=DELETE_BATCH)
    log.info("retention.notifications_deleted", rows=len(ids), before=kept_from.isoformat())
    return [f"{name}: deleted {len(ids)} processed before {kept_from:%Y-%m}{where}"]
