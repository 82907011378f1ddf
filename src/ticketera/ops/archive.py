"""Archiving a finished event: all its rows to a compressed, checksummed file, then out of the database
(`ticketera db archive --event N`); and back in from that file (`ticketera db unarchive FILE`).

What keeps `orders` and its neighbours small instead of partitions (README, "Why orders is not
partitioned by year"): an event's rows are only read while it sells and at its door, so once it is
long over they can leave, whole, and come back whole if an organizer asks.

The file is read from one snapshot, then exactly the rows it holds are deleted, children first, in
batches of `DELETE_BATCH`, each its own transaction, so another event's on-sale never waits long on
the archive's locks. A crash midway leaves the file whole and some rows still in the database; running
the command again archives those into a second file (keep both: unarchive the first, then the second).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from ticketera.events.models import EventStatus
from ticketera.kit.backup import (
    ARCHIVE_FORMAT,
    BackupSummary,
    read_backup_header,
    restore_rows,
    write_rows_file,
)
from ticketera.models import metadata
from ticketera.ops import repository
from ticketera.ops.repository import EventFacts

log = structlog.get_logger(__name__)
DELETE_BATCH = 500


class ArchiveRefused(Exception):
    """An event that must not be archived (yet), or an archive that must not be restored here."""


def why_not_finished(facts: EventFacts, now: datetime, *, after_days: int) -> str | None:
    """None when the event is over for long enough to archive, else why not (`--force` overrides)."""
    margin = timedelta(days=after_days)
    if facts.status == EventStatus.CANCELLED:
        if facts.updated_at > now - margin:
            return (
                f"event {facts.id} was cancelled on {facts.updated_at:%Y-%m-%d}: it can be archived"
                f" {after_days} days later (ARCHIVE_AFTER_DAYS), on {facts.updated_at + margin:%Y-%m-%d}"
            )
        return None
    if facts.starts_at > now - margin:
        return (
            f"event {facts.id} starts on {facts.starts_at:%Y-%m-%d}: it can be archived {after_days} days"
            f" later (ARCHIVE_AFTER_DAYS), on {facts.starts_at + margin:%Y-%m-%d}"
        )
    return None


@dataclass(frozen=True)
class ArchivedEvent:
    summary: BackupSummary
    name: str


async def archive_event(
    engine: AsyncEngine,
    event_id: int,
    path: Path,
    now: datetime,
    *,
    after_days: int,
    force: bool,
    schema_revision: str | None,
) -> ArchivedEvent:
    """Write every row of the event to `path`, then delete those rows. Refuses an event that is not
    finished (unless `force`), and always one with money still to send back."""
    async with engine.connect() as connection:
        facts = await repository.event_facts(connection, event_id)
    if facts is None:
        raise ArchiveRefused(f"there is no event {event_id}")
    refusal = why_not_finished(facts, now, after_days=after_days)
    if refusal is not None and not force:
        raise ArchiveRefused(refusal + "; --force archives it anyway")
    if facts.refunds_due:
        # The worker sends these refunds from the payments' rows: archived, the money would never go back.
        raise ArchiveRefused(
            f"event {event_id} has {facts.refunds_due} refunds still to send; archive it after"
        )
    if engine.dialect.name == "sqlite" and facts.newest_of_its_tables:
        # SQLite numbers a new row one past the largest id left: deleting the newest event or order
        # would hand its id to the next one, and an old buyer's order link would open a new order.
        raise ArchiveRefused(
            f"event {event_id} holds the newest event or order, whose ids SQLite would hand out again;"
            " archive it once a later event has sold"
        )
    summary, keys = await write_rows_file(
        engine,
        path,
        repository.event_row_selections(event_id),
        file_format=ARCHIVE_FORMAT,
        schema_revision=schema_revision,
        scope={"event": event_id, "name": facts.name},
    )
    log.info("archive.written", event_id=event_id, rows=summary.total_rows, path=str(path))
    for table in reversed(metadata.sorted_tables):
        if keys.get(table.name):
            await repository.delete_rows(engine, table, keys[table.name], batch=DELETE_BATCH)
    log.info("archive.deleted", event_id=event_id, rows=summary.total_rows)
    return ArchivedEvent(summary, facts.name)


async def unarchive(engine: AsyncEngine, path: Path, *, schema_revision: str | None) -> BackupSummary:
    """The rows of an archive back into the database: an event archived by `archive_event`, or a
    partition `ticketera db partitions` dropped. The database must be at the archive's schema revision
    (its columns are the file's); an event that is in the database already is refused."""
    summary = read_backup_header(path, file_format=ARCHIVE_FORMAT)
    if summary.schema_revision != schema_revision:
        raise ArchiveRefused(
            f"{path} was written at schema revision {summary.schema_revision}, the database is at"
            f" {schema_revision}: restore it into a database at its revision (ticketera db restore of a"
            " backup of that time), then migrate"
        )
    event_id = summary.header.get("scope", {}).get("event")
    if isinstance(event_id, int):
        async with engine.connect() as connection:
            if await repository.event_exists(connection, event_id):
                raise ArchiveRefused(f"event {event_id} is in the database already")
    await restore_rows(engine, metadata, path)
    log.info("archive.restored", path=str(path), rows=summary.total_rows, event_id=event_id)
    return summary
