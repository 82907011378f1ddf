"""Backups that restore: every row of every table, read in one consistent snapshot while sales go on,
written as compressed JSON lines with the schema revision and a checksum; restored into an empty
database of either engine.

Written by hand rather than around `mariadb-dump`: the same command must back up MariaDB and SQLite,
from inside the app's image, which ships no database client, and a backup of one engine must restore
into the other (a laptop's SQLite sale moved to a server, a production copy opened on a laptop). The
format is the program's own tables and columns, so a backup taken at an older schema revision is
restored at that revision and then migrated forward like any database.

A file is:
- a header line: `{"format": "ticketera-backup", "version": 1, "schemaRevision", "backend", "createdAt"}`;
- per table: `{"table": name, "columns": [...]}` and one JSON array per row, in primary-key order;
- a trailer: `{"end": true, "rows": {table: count}, "sha256": <of every line before the trailer>}`.

Archives (`ticketera db archive`, and the partitions `ticketera db partitions` drops) are the same file with
`"format": "ticketera-archive"` and a `scope` saying what they hold: some rows of some tables rather than
all of them, read back into a live database by `restore_rows`.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import orjson
from sqlalchemy import MetaData, Select, Table, func, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.types import TypeDecorator

FORMAT = "ticketera-backup"
ARCHIVE_FORMAT = "ticketera-archive"
VERSION = 1
BATCH_ROWS = 1000


class BackupError(Exception):
    """A file that is not a whole Ticketera backup, or a database it must not be restored into."""


@dataclass
class BackupSummary:
    path: Path
    schema_revision: str | None
    backend: str
    created_at: str
    rows: dict[str, int] = field(default_factory=dict)
    # The whole header line, for what a kind of file adds to it (an archive's `scope`).
    header: dict[str, Any] = field(default_factory=dict)

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


def _encode(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode()}
    return value


def _decoder(table: Table | None, name: str) -> Any:
    """How a column's JSON value becomes what the column takes back, from its type."""
    column = table.columns.get(name) if table is not None else None
    kind: type | None = None
    if column is not None:
        # A decorated type (UTCDateTime) says what it stores through the type it decorates.
        stored = column.type.impl_instance if isinstance(column.type, TypeDecorator) else column.type
        try:
            kind = stored.python_type
        except NotImplementedError:
            kind = None
    if kind is datetime:
        return lambda value: None if value is None else datetime.fromisoformat(value).astimezone(UTC)
    if kind is date:
        return lambda value: None if value is None else date.fromisoformat(value)
    if kind is Decimal:
        return lambda value: None if value is None else Decimal(value)
    if kind is bytes:
        return lambda value: None if value is None else base64.b64decode(value["base64"])
    return lambda value: value


class _Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...


class _Writer:
    def __init__(self, stream: _Sink) -> None:
        self._stream = stream
        self.digest = hashlib.sha256()

    def line(self, value: Any) -> None:
        data = orjson.dumps(value, default=_encode) + b"\n"
        self.digest.update(data)
        self._stream.write(data)

    def trailer(self, rows: dict[str, int]) -> None:
        self._stream.write(
            orjson.dumps({"end": True, "rows": rows, "sha256": self.digest.hexdigest()}) + b"\n"
        )


async def write_backup(
    engine: AsyncEngine, metadata: MetaData, path: Path, *, schema_revision: str | None
) -> BackupSummary:
    """Every table of `metadata` into `path`, from one snapshot, so a backup taken during an on-sale is
    a moment of it: no paid order without its tickets, no ticket without its order."""
    selections = [
        (table, select(*table.columns).order_by(*table.primary_key.columns))
        for table in metadata.sorted_tables
    ]
    summary, _ = await write_rows_file(
        engine, path, selections, file_format=FORMAT, schema_revision=schema_revision
    )
    return summary


# The primary keys of the rows an archive wrote, per table, in the file's order, each with the
# fingerprint of the row as written (`row_fingerprint`): what may be deleted, and only while unchanged.
WrittenKeys = dict[str, dict[tuple[Any, ...], int]]


def row_fingerprint(row: Sequence[Any]) -> int:
    """A row's values (all of its table's columns, in the table's order) as one number: a row read
    again by the same engine has the same fingerprint unless some value changed."""
    return hash(tuple(row))


async def write_rows_file(
    engine: AsyncEngine,
    path: Path,
    selections: Sequence[tuple[Table, Select[Any]]],
    *,
    file_format: str,
    schema_revision: str | None,
    scope: dict[str, Any] | None = None,
    collect_keys: bool = True,
) -> tuple[BackupSummary, WrittenKeys]:
    """The rows each selection reads (all of a table's columns, in primary-key order), from one
    snapshot, into `path` in the backup format; the selections come in the order foreign keys need.
    Returns the summary and the primary keys and fingerprints of the rows written (none without
    `collect_keys`: a caller that deletes by a condition need not hold a large table's keys)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    created_at = datetime.now(UTC).isoformat()
    summary = BackupSummary(path, schema_revision, engine.dialect.name, created_at)
    header: dict[str, Any] = {
        "format": file_format,
        "version": VERSION,
        "schemaRevision": schema_revision,
        "backend": engine.dialect.name,
        "createdAt": created_at,
    }
    if scope is not None:
        header["scope"] = scope
    summary.header = header
    keys: WrittenKeys = {}
    async with engine.connect() as connection:
        await _consistent_snapshot(connection)
        with gzip.open(partial, "wb", compresslevel=6) as stream:
            writer = _Writer(stream)
            writer.line(header)
            for table, statement in selections:
                columns = [str(column.name) for column in table.columns]
                key_at = [columns.index(str(column.name)) for column in table.primary_key.columns]
                written = keys.setdefault(str(table.name), {})
                writer.line({"table": str(table.name), "columns": columns})
                result = await connection.stream(statement)
                count = 0
                async for rows in result.partitions(BATCH_ROWS):
                    for row in rows:
                        writer.line(list(row))
                        if collect_keys:
                            written[tuple(row[index] for index in key_at)] = row_fingerprint(row)
                    count += len(rows)
                summary.rows[str(table.name)] = count
            writer.trailer(summary.rows)
        await connection.rollback()
    await asyncio.to_thread(_publish, partial, path)
    return summary, keys


def keep_first_rows(path: Path, counts: dict[str, int], *, scope: dict[str, Any]) -> BackupSummary:
    """Rewrite the file at `path` (checked whole) to hold only the first `counts[table]` rows of each
    table, under `scope`: what an archive stopped midway really took out of the database."""
    partial = path.with_name(path.name + ".partial")
    summary = read_backup_header(path, file_format=ARCHIVE_FORMAT)
    header = {**summary.header, "scope": scope}
    rows: dict[str, int] = {}
    table = ""
    with gzip.open(partial, "wb", compresslevel=6) as stream:
        writer = _Writer(stream)
        writer.line(header)
        for number, line in enumerate(_lines(path)):
            parsed = orjson.loads(line)
            if number == 0:
                continue
            if isinstance(parsed, dict):
                if parsed.get("end"):
                    break
                table = str(parsed["table"])
                rows[table] = 0
                writer.line(parsed)
            elif rows[table] < counts.get(table, 0):
                rows[table] += 1
                stream.write(line)
                writer.digest.update(line)
        writer.trailer(rows)
    _publish(partial, path)
    return BackupSummary(path, summary.schema_revision, summary.backend, summary.created_at, rows, header)


def _publish(partial: Path, path: Path) -> None:
    """The finished file under its name, and its checksum beside it as `sha256sum -c` reads it.

    Both are on disk when this returns, not just in the page cache: callers delete the rows (DROP
    PARTITION, an archive's and the retention's deletes) right after, and a power cut must not leave
    the rows gone and the file empty or missing. Hence the file's fsync before the rename (its
    contents), and the folder's after it (the rename itself)."""
    _fsync_file(partial)
    partial.replace(path)
    checksum = hashlib.sha256(path.read_bytes()).hexdigest()
    sidecar = path.with_name(path.name + ".sha256")
    sidecar.write_text(f"{checksum}  {path.name}\n")
    _fsync_file(sidecar)
    _fsync_folder(path.parent)


def _fsync_file(path: Path) -> None:
    with path.open("rb+") as stream:
        os.fsync(stream.fileno())


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


async def _consistent_snapshot(connection: AsyncConnection) -> None:
    """One read view for the whole backup: InnoDB's consistent snapshot (REPEATABLE READ, no locks,
    sales go on); on SQLite, a read transaction of WAL mode, which writers do not disturb."""
    if connection.dialect.name == "mysql":
        await connection.execution_options(isolation_level="REPEATABLE READ")
        await connection.execute(text("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"))
    else:
        await connection.execute(text("SELECT 1"))


def _lines(path: Path) -> Iterator[bytes]:
    try:
        with gzip.open(path, "rb") as stream:
            yield from stream
    except (OSError, EOFError) as exc:
        raise BackupError(f"{path} is not a readable backup: {exc}") from exc


def read_backup_header(path: Path, *, file_format: str = FORMAT) -> BackupSummary:
    """The header and row counts of a backup (or of an archive, with `file_format=ARCHIVE_FORMAT`),
    after checking it is whole (its checksum)."""
    digest = hashlib.sha256()
    header: dict[str, Any] | None = None
    trailer: dict[str, Any] | None = None
    for line in _lines(path):
        if trailer is not None:
            raise BackupError(f"{path} has lines after its end")
        parsed = orjson.loads(line)
        if header is None:
            header = parsed
            if not isinstance(header, dict) or header.get("format") != file_format:
                kind = "archive" if file_format == ARCHIVE_FORMAT else "backup"
                raise BackupError(f"{path} is not a Ticketera {kind}")
            if header.get("version") != VERSION:
                raise BackupError(
                    f"{path} is a backup of format version {header.get('version')}, not {VERSION}"
                )
        elif isinstance(parsed, dict) and parsed.get("end"):
            trailer = parsed
            continue
        digest.update(line)
    if header is None or trailer is None:
        raise BackupError(f"{path} is cut short: it has no end")
    if trailer.get("sha256") != digest.hexdigest():
        raise BackupError(f"{path} does not match its checksum: it was changed or damaged")
    return BackupSummary(
        path,
        header.get("schemaRevision"),
        str(header.get("backend")),
        str(header.get("createdAt")),
        trailer["rows"],
        header,
    )


async def database_is_empty(engine: AsyncEngine, metadata: MetaData) -> bool:
    """No table of `metadata` exists, or none has a row."""
    async with engine.connect() as connection:
        existing = set(await connection.run_sync(lambda sync: sync.dialect.get_table_names(sync)))
        for table in metadata.sorted_tables:
            if table.name in existing and await connection.scalar(select(func.count()).select_from(table)):
                return False
    return True


async def drop_everything(engine: AsyncEngine, metadata: MetaData) -> None:
    """Every table of `metadata` and the migrations' own, for a restore told `--force`."""
    async with engine.begin() as connection:
        await connection.run_sync(metadata.drop_all)
        await connection.execute(text("DROP TABLE IF EXISTS alembic_version"))


async def restore_backup(engine: AsyncEngine, metadata: MetaData, backup: BackupSummary) -> None:
    """`backup` (as `read_backup_header` checked it) into `engine`'s database, replacing whatever it
    held: its tables made at the backup's schema revision, the rows, then migrated to head."""
    # Alembic is 10 MB of a web worker's memory: loaded by what restores, not by every import.
    from ticketera.kit.migrate import upgrade

    # Empty tables at head cannot be migrated back to an older backup's revision: start bare.
    await drop_everything(engine, metadata)
    await upgrade(engine, backup.schema_revision or "head")
    await restore_rows(engine, metadata, backup.path)
    await upgrade(engine, "head")


async def restore_rows(
    engine: AsyncEngine, metadata: MetaData, path: Path, *, refuse_present_keys: bool = False
) -> None:
    """The rows of `path`, already checked whole, into the tables of `engine` (migrated to the file's
    schema revision), in the file's order, which is the order foreign keys need; one transaction.

    A backup goes into empty tables; an archive beside the rows of other events, whose keys its own
    rows usually do not share. Usually, not always: MariaDB never hands an id out twice, but SQLite
    numbers a table without AUTOINCREMENT (holds, tickets, payments, seats, the audit log...) one past
    its largest id, so a row written after an archive took that table's newest row gets the archived
    row's id. With `refuse_present_keys` (archives), each batch first looks for its keys, and a row
    already there stops the restore with an error naming the table and key (the one transaction
    rolls back: nothing is restored) rather than a database's raw duplicate-key error."""
    table: Table | None = None
    columns: list[str] = []
    decoders: list[Any] = []
    batch: list[dict[str, Any]] = []
    async with engine.begin() as connection:
        if connection.dialect.name == "mysql":
            # Rows arrive in dependency order already; unchecked, a self-reference never waits on itself.
            await connection.execute(text("SET FOREIGN_KEY_CHECKS = 0"))

        async def flush() -> None:
            if table is not None and batch:
                if refuse_present_keys:
                    await _refuse_present(connection, table, batch)
                await connection.execute(table.insert(), batch)
                batch.clear()

        for number, line in enumerate(_lines(path)):
            parsed = orjson.loads(line)
            if number == 0:
                continue
            if isinstance(parsed, dict):
                await flush()
                if parsed.get("end"):
                    break
                table = metadata.tables.get(parsed["table"])
                if table is None:
                    raise BackupError(f"{path} has a table this version does not know: {parsed['table']}")
                columns = parsed["columns"]
                decoders = [_decoder(table, name) for name in columns]
                continue
            batch.append(
                {name: decode(value) for name, decode, value in zip(columns, decoders, parsed, strict=True)}
            )
            if len(batch) >= BATCH_ROWS:
                await flush()
        await flush()
        if connection.dialect.name == "mysql":
            await connection.execute(text("SET FOREIGN_KEY_CHECKS = 1"))


async def _refuse_present(connection: AsyncConnection, table: Table, batch: list[dict[str, Any]]) -> None:
    key_columns = list(table.primary_key.columns)
    keys = [tuple(row[str(column.name)] for column in key_columns) for row in batch]
    condition = (
        key_columns[0].in_([key[0] for key in keys])
        if len(key_columns) == 1
        else tuple_(*key_columns).in_(keys)
    )
    present = (await connection.execute(select(*key_columns).where(condition).limit(1))).first()
    if present is not None:
        key = ", ".join(f"{column.name}={value}" for column, value in zip(key_columns, present, strict=True))
        raise BackupError(
            f"the database already has a {table.name} row with {key}, another row than the archived one:"
            " SQLite gave its id to a row written after the archive (it reuses a table's newest id once"
            " that row is deleted); nothing was restored"
        )
