"""Archiving a finished event: all its rows to a compressed, checksummed file, then out of the database
(`ticketera db archive --event N`); and back in from that file (`ticketera db unarchive FILE`).

What keeps `orders` and its neighbours small instead of partitions (README, "Why orders is not
partitioned by year"): an event's rows are only read while it sells and at its door, so once it is
long over they can leave, whole, and come back whole if an organizer asks.

The file is read from one snapshot; then only rows exactly as the file holds them are deleted. Every
foreign key is ON DELETE CASCADE, so deleting a parent takes along whatever refers to it, also a row
written after the snapshot (a late payment, the tickets it issued, a new hold): such a row would be
in no file. Three things keep that from happening:
- an event still moving is refused, even with `--force` (which only skips ARCHIVE_AFTER_DAYS): one
  on sale (published, not started), or with live holds, pending orders, payments whose MercadoPago
  status is not final, or refunds due or failed (money still owed);
- before deleting anything, every archived row is read again: one that changed, or a row of the
  event the file lacks, stops the archive with nothing deleted (and the file removed);
- rows go children first, in batches of `DELETE_BATCH`, each its own short transaction (another
  event's on-sale never waits long on the archive's locks), and each batch is checked again under
  lock in that transaction: unchanged, and no row left that refers to it.

A write racing the deletes themselves stops the archive midway with a clear error: the rows deleted
by then are exactly what the file then holds (it is cut down to them, its scope marked `partial`),
the rest stay in the database. Running the command again archives the rest into a second file; to
bring the event back, unarchive the second file first (it holds the event), then the partial one.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from ticketera.events.models import EventStatus
from ticketera.kit.backup import (
    ARCHIVE_FORMAT,
    BackupError,
    BackupSummary,
    WrittenKeys,
    keep_first_rows,
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


class ArchiveStopped(ArchiveRefused):
    """Rows of the event changed or were added after the file was read: the archive stopped before
    deleting anything the file lacks (the message says what is where)."""


def why_still_moving(facts: EventFacts, now: datetime) -> str | None:
    """None when nothing about the event is still changing by itself, else what is (no `--force`
    skips this: a row changed or added after the archive's snapshot must not be lost)."""
    if facts.status == EventStatus.PUBLISHED and facts.starts_at > now:
        return (
            f"event {facts.id} is on sale (published, starts on {facts.starts_at:%Y-%m-%d}):"
            " pause or cancel it first"
        )
    if facts.refunds_due:
        # The worker sends these refunds from the payments' rows: archived, the money would never go back.
        return f"event {facts.id} has {facts.refunds_due} refunds still to send; archive it after"
    if facts.refunds_failed:
        return (
            f"event {facts.id} has {facts.refunds_failed} refunds MercadoPago refused (refund_failed):"
            " the money is still owed; refund them, then archive"
        )
    if facts.payments_moving:
        return (
            f"event {facts.id} has {facts.payments_moving} payments MercadoPago has not decided yet"
            " (pending, in process): archive it once they are"
        )
    if facts.live_holds or facts.pending_orders:
        return (
            f"event {facts.id} has {facts.live_holds} live holds and {facts.pending_orders} orders"
            " awaiting payment: archive it once they are paid or expired"
        )
    return None


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


@dataclass(frozen=True)
class WrittenArchive:
    """An event's file, written, and the keys and fingerprints of the rows it holds."""

    event_id: int
    name: str
    summary: BackupSummary
    keys: WrittenKeys


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
    finished (unless `force`), and always one still moving (`why_still_moving`)."""
    written = await write_archive(
        engine, event_id, path, now, after_days=after_days, force=force, schema_revision=schema_revision
    )
    await delete_archived(engine, written)
    return ArchivedEvent(written.summary, written.name)


async def write_archive(
    engine: AsyncEngine,
    event_id: int,
    path: Path,
    now: datetime,
    *,
    after_days: int,
    force: bool,
    schema_revision: str | None,
) -> WrittenArchive:
    """The first half of `archive_event`: the checks, then the file."""
    async with engine.connect() as connection:
        facts = await repository.event_facts(connection, event_id)
    if facts is None:
        raise ArchiveRefused(f"there is no event {event_id}")
    moving = why_still_moving(facts, now)
    if moving is not None:
        raise ArchiveRefused(moving)
    refusal = why_not_finished(facts, now, after_days=after_days)
    if refusal is not None and not force:
        raise ArchiveRefused(refusal + "; --force archives it anyway")
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
    return WrittenArchive(event_id, facts.name, summary, keys)


async def delete_archived(engine: AsyncEngine, written: WrittenArchive) -> None:
    """The second half of `archive_event`: the rows `written` holds out of the database, exactly
    those and only while unchanged (the module's docstring says how)."""
    problem = await _first_problem(engine, written)
    if problem is not None:
        # Nothing deleted: the file is a stale copy of rows still here, and would only mislead.
        await asyncio.to_thread(_remove_file, written.summary.path)
        log.warning("archive.stopped", event_id=written.event_id, problem=problem, deleted=0)
        raise ArchiveStopped(
            f"{problem}; nothing was deleted and the file was removed: run the command again"
        )
    deleted: dict[str, int] = {}
    for table in reversed(metadata.sorted_tables):
        rows = list(written.keys.get(table.name, {}).items())
        for start in range(0, len(rows), DELETE_BATCH):
            batch = dict(rows[start : start + DELETE_BATCH])
            problem = await repository.delete_archived_rows(engine, table, batch)
            if problem is not None:
                await _stop_midway(written, deleted, problem)
            deleted[table.name] = deleted.get(table.name, 0) + len(batch)
    log.info("archive.deleted", event_id=written.event_id, rows=written.summary.total_rows)


async def _first_problem(engine: AsyncEngine, written: WrittenArchive) -> str | None:
    """Why the archived rows must not be deleted as they are, read again without locks (the deletes
    check each batch again under lock): a row changed, or one added, since the file was read."""
    async with engine.connect() as connection:
        added = await repository.rows_added_since(connection, written.event_id, written.keys)
        if added is not None:
            table, key = added
            return (
                f"a {table} row (key {key}) of event {written.event_id} was written after the archive read it"
            )
        for table in reversed(metadata.sorted_tables):
            rows = list(written.keys.get(table.name, {}).items())
            for start in range(0, len(rows), DELETE_BATCH):
                batch = dict(rows[start : start + DELETE_BATCH])
                problem = await repository.archived_rows_problem(
                    connection, table, batch, written.keys, lock=False
                )
                if problem is not None:
                    return problem
        await connection.rollback()
    return None


async def _stop_midway(written: WrittenArchive, deleted: dict[str, int], problem: str) -> None:
    # Batches go in the file's order, table by table: the rows deleted are the first ones of each
    # table, which is what the file is cut down to, so it holds exactly what left the database.
    path = written.summary.path
    scope = {**written.summary.header.get("scope", {}), "partial": True}
    await asyncio.to_thread(keep_first_rows, path, deleted, scope=scope)
    total = sum(deleted.values())
    log.error("archive.stopped", event_id=written.event_id, problem=problem, deleted=total)
    raise ArchiveStopped(
        f"{problem}; stopped after deleting {total} rows, which {path} now holds (marked partial);"
        f" the rest of event {written.event_id} is still in the database: run the command again to"
        " archive it into a second file, and to bring the event back unarchive that second file first,"
        " then this one"
    )


def _remove_file(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.with_name(path.name + ".sha256").unlink(missing_ok=True)


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
    scope = summary.header.get("scope", {})
    event_id = scope.get("event")
    if isinstance(event_id, int):
        async with engine.connect() as connection:
            exists = await repository.event_exists(connection, event_id)
        if scope.get("partial"):
            # Rows of an archive that stopped midway: their parents are in the later file.
            if not exists:
                raise ArchiveRefused(
                    f"{path} is the partial first part of event {event_id}'s archive: unarchive the"
                    " later file that holds the event first"
                )
        elif exists:
            raise ArchiveRefused(f"event {event_id} is in the database already")
    try:
        await restore_rows(engine, metadata, path, refuse_present_keys=True)
    except BackupError as exc:
        raise ArchiveRefused(str(exc)) from exc
    log.info("archive.restored", path=str(path), rows=summary.total_rows, event_id=event_id)
    return summary
