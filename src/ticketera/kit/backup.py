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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import orjson
from sqlalchemy import MetaData, Select, Table, func, select, text
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
        self._digest = hashlib.sha256()

    def line(self, value: Any) -> None:
        data = orjson.dumps(value, default=_encode) + b"\n"
        self._digest.update(data)
        self._stream.write(data)

    def trailer(self, rows: dict[str, int]) -> None:
        self._stream.write(
            orjson.dumps({"end": True, "rows": rows, "sha256": self._digest.hexdigest()}) + b"\n"
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


# The primary keys of the rows an archive wrote, per table: what must be deleted, and nothing more.
WrittenKeys = dict[str, list[tuple[Any, ...]]]


async def write_rows_file(
    engine: AsyncEngine,
    path: Path,
    selections: Sequence[tuple[Table, Select[Any]]],
    *,
    file_format: str,
    schema_revision: str | None,
    scope: dict[str, Any] | None = None,
) -> tuple[BackupSummary, WrittenKeys]:
    """The rows each selection reads (all of a table's columns, in primary-key order), from one
    snapshot, into `path` in the backup format; the selections come in the order foreign keys need.
    Returns the summary and the primary keys of the rows written."""
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
                written = keys.setdefault(str(table.name), [])
                writer.line({"table": str(table.name), "columns": columns})
                result = await connection.stream(statement)
                count = 0
                async for rows in result.partitions(BATCH_ROWS):
                    for row in rows:
                        writer.line(list(row))
                        written.append(tuple(row[index] for index in key_at))
                    count += len(rows)
                summary.rows[str(table.name)] = count
            writer.trailer(summary.rows)
        await connection.rollback()
    await asyncio.to_thread(_publish, partial, path)
    return summary, keys


def _publish(partial: Path, path: Path) -> None:
    """The finished file under its name, and its checksum beside it as `sha256sum -c` reads it."""
    partial.replace(path)
    checksum = hashlib.sha256(path.read_bytes()).hexdigest()
    path.with_name(path.name + ".sha256").write_text(f"{checksum}  {path.name}\n")


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


async def restore_rows(engine: AsyncEngine, metadata: MetaData, path: Path) -> None:
    """The rows of `path`, already checked whole, into the tables of `engine` (migrated to the file's
    schema revision), in the file's order, which is the order foreign keys need; one transaction.
    A backup goes into empty tables; an archive beside the rows of other events, whose keys its own
    rows never share (ids are not handed out twice)."""
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
