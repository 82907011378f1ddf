"""Database engine, sessions and column types, for SQLite (embedded) and MariaDB/MySQL.

The request or job boundary owns the transaction: `Database.write_session()` commits when the block
ends cleanly and rolls back otherwise; services only flush. Read-only requests use
`Database.read_session()`, which never takes SQLite's write lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import ssl
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, TypeVarTuple, cast, overload

import structlog
from sqlalchemy import BigInteger, DateTime, Enum, Integer, MetaData, event, text
from sqlalchemy.dialects import mysql
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, CursorResult, Dialect, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry, QueuePool
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.selectable import Select, TypedReturnsRows
from sqlalchemy.types import TypeDecorator

from ticketera.config import Settings
from ticketera.kit.dbwatch import FreezeWatch, GivenUp, open_watched
from ticketera.kit.errors import Conflict, ServiceUnavailable
from ticketera.kit.resilience import CircuitBreaker, CircuitOpenError, RetryPolicy, breaker_for

if TYPE_CHECKING:
    from ticketera.kit.replicas import ReplicaSet

log = structlog.get_logger(__name__)
T = TypeVar("T")
RowTs = TypeVarTuple("RowTs")
Params = Mapping[str, Any] | Sequence[Mapping[str, Any]] | None

# Explicit, short constraint names: Alembic needs names to drop constraints on both engines, and
# MySQL refuses identifiers over 64 characters (tests/kit/test_db.py checks every name).
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
MYSQL_IDENTIFIER_LIMIT = 64
# Largest id a BIGINT column holds; larger ids in a URL are refused as bad input, not looked up.
MAX_ID = 2**63 - 1

# MySQL client error codes that mean the server cannot be reached or dropped us. Deadlocks (1213)
# and lock-wait timeouts (1205) are contention, not an outage, and must not open the breaker.
_MYSQL_OUTAGE_CODES = {1040, 1053, 2002, 2003, 2005, 2006, 2013, 2055}
_MYSQL_CONTENTION_CODES = {1205, 1213}
_MYSQL_DEADLOCK = 1213
# Top-level packages whose code talks to the database: SQLAlchemy (its pool included) and the drivers.
_DATABASE_PACKAGES = frozenset({"sqlalchemy", "asyncmy", "aiomysql", "aiosqlite", "sqlite3", "pymysql"})
# Standard-library I/O plumbing that any socket, TLS or thread error passes through, whoever did the
# I/O: its frames say nothing about whose error it is, so the next frame out decides.
_IO_PLUMBING_PACKAGES = frozenset({"asyncio", "ssl", "socket", "selectors", "concurrent", "threading"})
SQLITE_BUSY_TIMEOUT_MS = 5000
READ_ONLY_OPTION = "ticketera_read_only"
PING_TIMEOUT_SECONDS = 2.0
# A pooled MariaDB connection idle for longer than this is pinged before use.
PING_AFTER_IDLE_SECONDS = 1.0
_IDLE_SINCE = "ticketera_idle_since"


# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")
# Binary collation on MariaDB, as SQLite compares: uniqueness (section names, row labels, keys) must
# mean the same on both engines. Case-insensitive duplicates are caught by the services instead.
MYSQL_TABLE_OPTIONS: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


E = TypeVar("E", bound=StrEnum)


def enum_column(kind: type[E], length: int) -> Enum:
    """A column of one of our StrEnums: a VARCHAR of the values on both engines (no native ENUM,
    whose ALTER on MariaDB rewrites the table), read back as the enum's members. Rows hold the
    values ("pending_payment"), not the member names."""
    return Enum(
        kind,
        native_enum=False,
        create_constraint=False,
        length=length,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in Python, naive UTC in the database (MySQL DATETIME has no zone).

    Microsecond precision on MySQL too, so hold and order deadlines compare exactly.
    """

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "mysql":
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


def is_database_outage(exc: BaseException) -> bool:
    """True when the error means the database is unreachable, not that a query was refused, nor that
    other code run inside a session failed.

    Whatever the driver raises reaches us wrapped by SQLAlchemy in a DBAPIError, told apart here by
    its code. A bare OSError (ConnectionError, TimeoutError, ...) is an outage only when the database
    layer raised it: the same types come from SMTP, HTTP calls to other services or files, used while
    a session is open, and those must neither answer 503 nor count toward the database's breaker.
    """
    if isinstance(exc, DatabaseTimeout):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated or isinstance(exc, InterfaceError):
            return True
        if isinstance(exc, OperationalError):
            args = getattr(exc.orig, "args", ())
            if args and isinstance(args[0], int):
                return args[0] in _MYSQL_OUTAGE_CODES
            message = str(exc.orig).lower()
            return "unable to open database" in message or "disk i/o error" in message
        return False
    if isinstance(exc, OSError):
        return raised_by_database_layer(exc)
    return False


def raised_by_database_layer(exc: BaseException) -> bool:
    """Whether the frame that raised `exc`, looking past stdlib I/O plumbing, is SQLAlchemy's or a
    driver's.

    SQLAlchemy's `handle_error` event was the other candidate: it also fires for errors our own type
    processors raise mid-statement, and not for a bare error at connect time, so the traceback is the
    more faithful witness. An exception that was never raised has no traceback, hence no known source.
    """
    for frame, _ in reversed(list(traceback.walk_tb(exc.__traceback__))):
        package = str(frame.f_globals.get("__name__", "")).partition(".")[0]
        if package not in _IO_PLUMBING_PACKAGES:
            return package in _DATABASE_PACKAGES
    return False


def is_lock_contention(exc: BaseException) -> bool:
    """True when a statement gave up waiting for a lock another transaction holds."""
    if not isinstance(exc, OperationalError):
        return False
    args = getattr(exc.orig, "args", ())
    if args and isinstance(args[0], int):
        return args[0] in _MYSQL_CONTENTION_CODES
    return "database is locked" in str(exc.orig).lower()


def _mysql_code(exc: BaseException) -> int | None:
    args: tuple[object, ...] = getattr(getattr(exc, "orig", None), "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def engine_for(settings: Settings, *, pool_size: int | None = None, url: str | None = None) -> AsyncEngine:
    """The engine for the configured database (or, given `url`, one of its replicas), as every part
    of the program makes it (the app, the worker, migrations, maintenance commands), so DB_SSL and
    the timeouts hold for every connection."""
    return create_engine(
        url or settings.async_database_url,
        pool_size=pool_size or settings.db_pool_size,
        pool_recycle=settings.db_pool_recycle_seconds,
        connect_timeout=settings.db_connect_timeout_seconds,
        use_ssl=settings.db_ssl or settings.db_ssl_ca is not None,
        ssl_ca=settings.db_ssl_ca,
        lock_timeout_seconds=settings.db_lock_timeout_seconds,
    )


async def connection_limit(settings: Settings, url: str | None = None) -> int | None:
    """MariaDB's max_connections on the primary (or, given `url`, a replica), or None (SQLite, or
    the server could not say)."""
    if settings.is_sqlite:
        return None
    engine = engine_for(settings, pool_size=1, url=url)
    try:
        async with engine.connect() as connection:
            return int(await connection.scalar(text("SELECT @@max_connections")) or 0) or None
    except Exception as exc:  # only a warning depends on it
        log.info("database.limit_unknown", error=type(exc).__name__)
        return None
    finally:
        await engine.dispose()


def create_engine(
    database_url: str,
    *,
    pool_size: int = 20,
    pool_recycle: int = 1800,
    connect_timeout: float = 5.0,
    use_ssl: bool = False,
    ssl_ca: Path | None = None,
    lock_timeout_seconds: int = 3,
) -> AsyncEngine:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return _create_sqlite_engine(database_url, pool_size=pool_size)
    # No read timeout on the driver: asyncmy's `read_timeout` wraps every socket read in
    # asyncio.wait_for and leaves its fast read path, which cost 7% of the on-sale throughput
    # (benchmarks/onsale.py, A/B on one machine). A frozen server is noticed by
    # `Database.watch_for_freezes` instead, at two dictionary operations per transaction.
    connect_args: dict[str, Any] = {
        "connect_timeout": connect_timeout,
        "async_creator_fn": _connect_within(
            url.get_driver_name(), connect_timeout, (url.host or "", url.port or 3306)
        ),
    }
    if use_ssl:
        # Verified against the system's authorities, or the one given: never an unchecked certificate.
        connect_args["ssl"] = ssl.create_default_context(cafile=str(ssl_ca) if ssl_ca else None)
    engine = create_async_engine(
        database_url,
        poolclass=AsyncAdaptedQueuePool,
        pool_size=pool_size,
        # The guide's "20 conexiones": a hard ceiling the database can plan for, so no overflow.
        max_overflow=0,
        pool_timeout=10,
        # Pinged on check-out only after an idle spell: see _ping_if_idle below.
        pool_pre_ping=False,
        # The connection used last is handed out first, so under steady traffic a few connections
        # stay warm (and skip the ping) while the rest idle, rather than every one going cold in turn.
        pool_use_lifo=True,
        pool_recycle=pool_recycle,
        # Every session and connection here ends its transaction itself (commit, or rollback when
        # the session closes), so the pool's own rollback on return was a second round trip per
        # request that found nothing to undo: 6 of the 23 statements of a ticket's join-hold-order.
        pool_reset_on_return=None,
        # READ COMMITTED avoids InnoDB gap locks, which turn concurrent seat holds into deadlocks.
        isolation_level="READ COMMITTED",
        connect_args=connect_args,
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_mysql_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        cursor = dbapi_connection.cursor()
        # A stuck row lock becomes a quick error the service turns into 409, not a hung request.
        cursor.execute(f"SET SESSION innodb_lock_wait_timeout = {int(lock_timeout_seconds)}")
        cursor.execute("SET SESSION time_zone = '+00:00'")
        cursor.close()
        # It just answered: a new connection (a replacement included) needs no ping before use.
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkin")
    def _note_idle_since(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        # pool_pre_ping paid a round trip on every check-out, three per ticket sold. A connection
        # that finished a request a moment ago was alive then; one idle for longer (the server may
        # have restarted, or closed it) is pinged, and replaced before use if the ping finds it
        # dropped, as pool_pre_ping would. A restart within that moment is met by requests instead:
        # each worker's first one to use a dropped connection fails as an outage (503), and that
        # error makes its pool replace every older connection.
        idle_since = record.info.get(_IDLE_SINCE)
        if idle_since is not None and time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # As pool_pre_ping decides: only an error the dialect reads as "disconnected" means
            # replace the connection; anything else is raised as it is.
            if not engine.dialect.is_disconnect(cast(Any, exc), dbapi_connection, None):
                raise
            raise DisconnectionError(f"the pooled connection failed its ping: {exc}") from exc

    return engine


def _connect_within(
    driver_name: str, seconds: float, address: tuple[str, int]
) -> Callable[..., Awaitable[Any]]:
    """The driver's connect, with the handshake inside the deadline too (the drivers' own
    `connect_timeout` covers only the TCP connect, so a server that accepts and then says nothing
    held a new connection, and the request behind it, until it thawed), and given up at once when
    the freeze watch finds the server frozen."""
    driver = importlib.import_module(driver_name)

    async def connect(*args: Any, **kwargs: Any) -> Any:
        try:
            async with asyncio.timeout(seconds):
                return await open_watched(address, lambda: driver.connect(*args, **kwargs))
        except TimeoutError as exc:
            raise DatabaseTimeout(f"no handshake from the database within {seconds}s") from exc
        except GivenUp as exc:
            raise DatabaseTimeout(str(exc)) from exc

    return connect


def _create_sqlite_engine(database_url: str, *, pool_size: int) -> AsyncEngine:
    url = make_url(database_url)
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(
        database_url,
        poolclass=AsyncAdaptedQueuePool,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=10,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below emit BEGIN itself, instead of the sqlite3 module
        # silently deferring it: that is how writers get BEGIN IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # Switching to WAL needs the database to itself; once the file is in WAL mode (it stays so),
        # a new connection must not ask again, or it would wait behind every writer at connect time.
        cursor.execute("PRAGMA journal_mode")
        if str(cursor.fetchone()[0]).lower() != "wal":
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_sqlite_begin(connection: Connection) -> None:
        # Writers take the write lock up front: two deferred transactions that both read and then
        # try to write would otherwise fail with SQLITE_BUSY mid-way instead of waiting in line.
        if connection.get_execution_options().get(READ_ONLY_OPTION):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


@overload
async def execute_core(
    session: AsyncSession, statement: TypedReturnsRows[*RowTs], params: Params = None
) -> CursorResult[*RowTs]: ...


@overload
async def execute_core(
    session: AsyncSession, statement: Executable, params: Params = None
) -> CursorResult[*tuple[Any, ...]]: ...


async def execute_core(
    session: AsyncSession, statement: Executable, params: Params = None
) -> CursorResult[*tuple[Any, ...]]:
    """Run a statement that returns rows or counts (never entities) on the session's connection.

    The ORM's execution layer (compile-state setup, autoflush, its own result wrapping) costs about
    a third of each statement's CPU, and the on-sale path runs eighteen statements per ticket
    (benchmarks/onsale.py). It also skips the session's autoflush: use it only where the same
    transaction has no pending ORM objects the statement must see.
    """
    connection = await session.connection()
    return await connection.execute(statement, params)


class DriverStatement:
    """A Core statement compiled once per dialect and run on the driver's own cursor.

    `execute_core` still pays SQLAlchemy's execution layer and its asyncio bridge for every
    statement: a greenlet is made and switched to and from for each one, and the parameters, the
    execution context and the result are built around it. Measured with asyncmy on this machine
    (a one-row SELECT with two parameters, 3,000 times): about 125 us of CPU through a cached Core
    statement, 115 us through `exec_driver_sql`, 170 us through `execute_core` on a session, and
    38 us on the driver's cursor. The on-sale path runs a dozen statements per ticket, so its
    hottest ones are run here: the SQL is still written with Core (so it is the same on both
    engines, and checked by mypy and the tests like any other statement), compiled once per
    dialect, with the columns' own bind and result processors applied.

    Errors come out as SQLAlchemy's (`DBAPIError.instance`), and a connection the driver reports
    dropped is invalidated, as SQLAlchemy would, so `Database._guarded` sees what it always saw.
    Like `execute_core`, it skips the session's autoflush and returns tuples, never entities.
    An IN list is compiled as it stands, so it is written as comparisons or as one statement per
    size (`DriverStatementsBySize`), never as an expanding parameter.
    """

    __slots__ = ("_compiled", "statement")

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._compiled: dict[str, _CompiledForDriver] = {}

    def compiled_for(self, dialect: Dialect) -> _CompiledForDriver:
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            compiled = self._compiled[dialect.name] = _CompiledForDriver.of(self.statement, dialect)
        return compiled


class DriverStatementsBySize:
    """A statement whose shape depends on a count (IN lists, multi-row VALUES), built by `build(n)`
    the first time each count is asked for, then kept."""

    __slots__ = ("_build", "_by_size")

    def __init__(self, build: Callable[[int], Executable]) -> None:
        self._build = build
        self._by_size: dict[int, DriverStatement] = {}

    def of_size(self, size: int) -> DriverStatement:
        statement = self._by_size.get(size)
        if statement is None:
            statement = self._by_size[size] = DriverStatement(self._build(size))
        return statement


_Processor = Callable[[Any], Any] | None


class _CompiledForDriver:
    __slots__ = ("bind_processors", "defaults", "names", "result_processors", "sql")

    def __init__(
        self,
        sql: str,
        names: list[str],
        bind_processors: list[_Processor],
        defaults: dict[str, Any],
        result_processors: list[_Processor],
    ) -> None:
        self.sql = sql
        self.names = names
        self.bind_processors = bind_processors
        self.defaults = defaults
        self.result_processors = result_processors

    @classmethod
    def of(cls, statement: Executable, dialect: Dialect) -> _CompiledForDriver:
        compiled = cast(Any, statement).compile(dialect=dialect)
        if "__[POSTCOMPILE_" in compiled.string:
            raise TypeError("driver statements take no expanding IN: one statement per size instead")
        if not dialect.positional or compiled.positiontup is None:
            raise TypeError(f"{dialect.name}: driver statements need a positional paramstyle")
        if getattr(compiled, "insert_prefetch", None) or getattr(compiled, "update_prefetch", None):
            raise TypeError("driver statements run no Python-side column defaults: name every column")
        names = list(compiled.positiontup)
        binds = {name: compiled.binds[name] for name in names}
        bind_processors = [binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names]
        # Values written into the statement (literal comparisons, IN lists of constants).
        defaults = {name: bind.effective_value for name, bind in binds.items() if not bind.required}
        result_processors: list[_Processor] = [
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in (statement.selected_columns if isinstance(statement, Select) else ())
        ]
        return cls(compiled.string, names, bind_processors, defaults, result_processors)

    def arguments(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        defaults = self.defaults
        values = [params[name] if name in params else defaults[name] for name in self.names]
        return tuple(
            value if processor is None else processor(value)
            for value, processor in zip(values, self.bind_processors, strict=True)
        )

    def rows(self, raw: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
        processors = self.result_processors
        if not any(processors):
            return [tuple(row) for row in raw]
        return [
            tuple(
                value if processor is None else processor(value)
                for value, processor in zip(row, processors, strict=True)
            )
            for row in raw
        ]


class DriverResult:
    """What a driver statement gave: its rows (tuples, processed), the rows it changed, the id an
    INSERT made."""

    __slots__ = ("lastrowid", "rowcount", "rows")

    def __init__(self, rows: list[tuple[Any, ...]], rowcount: int, lastrowid: int | None) -> None:
        self.rows = rows
        self.rowcount = rowcount
        self.lastrowid = lastrowid

    def scalar_one(self) -> Any:
        if len(self.rows) != 1:
            raise RuntimeError(f"expected one row, got {len(self.rows)}")
        return self.rows[0][0]

    def scalars(self) -> list[Any]:
        return [row[0] for row in self.rows]

    def inserted_id(self) -> int:
        if not self.lastrowid:
            raise RuntimeError("the INSERT reported no id")
        return int(self.lastrowid)


_DRIVER = "ticketera_driver"


async def execute_on_driver(
    session: AsyncSession, statement: DriverStatement, params: Mapping[str, Any]
) -> DriverResult:
    """Run a driver statement in the session's transaction (see `DriverStatement`)."""
    connection, driver = await _driver_connection(session)
    dialect = connection.dialect
    compiled = statement.compiled_for(dialect)
    arguments = compiled.arguments(params)
    try:
        if dialect.name == "sqlite":
            cursor = await driver.execute(compiled.sql, arguments)
            try:
                raw = await cursor.fetchall() if cursor.description else []
                return DriverResult(compiled.rows(raw), cursor.rowcount, cursor.lastrowid)
            finally:
                await cursor.close()
        cursor = driver.cursor()
        try:
            await cursor.execute(compiled.sql, arguments)
            raw = await cursor.fetchall() if cursor.description else []
            return DriverResult(compiled.rows(raw), cursor.rowcount, cursor.lastrowid)
        finally:
            await cursor.close()
    except Exception as exc:
        dbapi = dialect.loaded_dbapi
        if not isinstance(exc, dbapi.Error):
            raise
        dropped = dialect.is_disconnect(cast(Any, exc), None, None)
        if dropped:
            session.info.pop(_DRIVER, None)
            await connection.invalidate(exc)
        raise DBAPIError.instance(
            compiled.sql, arguments, exc, dbapi.Error, connection_invalidated=dropped, dialect=dialect
        ) from exc


async def _driver_connection(session: AsyncSession) -> tuple[AsyncConnection, Any]:
    """The session's connection and its driver connection, kept for the rest of its transaction
    (`session.connection()` is itself a trip through the greenlet bridge)."""
    transaction = session.sync_session.get_transaction()
    kept = session.info.get(_DRIVER)
    if kept is not None and transaction is not None and kept[0] is transaction:
        return kept[1], kept[2]
    connection = await session.connection()
    driver = (await connection.get_raw_connection()).driver_connection
    session.info[_DRIVER] = (session.sync_session.get_transaction(), connection, driver)
    return connection, driver


def inserted_id(result: CursorResult[*tuple[Any, ...]]) -> int:
    """The new row's id, from a single-row INSERT run by `execute_core`."""
    key = result.inserted_primary_key
    if key is None or key[0] is None:
        raise RuntimeError("the INSERT reported no primary key")
    return int(key[0])


async def insert_unless_present(
    session: AsyncSession, model: type[Any], values: dict[str, Any], unique_column: str
) -> None:
    """INSERT a row unless one with the same `unique_column` exists, without an error either way.

    One statement whatever the engine (INSERT ... ON CONFLICT DO NOTHING on SQLite, a no-op
    ON DUPLICATE KEY UPDATE on MariaDB), so two racing inserts of one key both succeed and the
    unique index decides which row stays.
    """
    if session.get_bind().dialect.name == "sqlite":
        await session.execute(
            sqlite_dialect.insert(model)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[unique_column])
        )
    else:
        inserted = mysql.insert(model).values(**values)
        await session.execute(
            inserted.on_duplicate_key_update({unique_column: inserted.inserted[unique_column]})
        )


class Database:
    """The engine, its session factories and its circuit breaker, shared by a process."""

    def __init__(
        self,
        engine: AsyncEngine,
        breaker: CircuitBreaker | None = None,
        *,
        replicas: ReplicaSet | None = None,
    ) -> None:
        self.engine = engine
        # Read replicas (kit.replicas), for the reads that tolerate lag; their failures never
        # reach this breaker, which is the primary's alone.
        self.replicas = replicas
        self.breaker = breaker or breaker_for("database", counts_as_failure=is_database_outage)
        self._write_sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._read_sessions = async_sessionmaker(
            engine.execution_options(**{READ_ONLY_OPTION: True}), expire_on_commit=False
        )
        # SQLite has one writer at a time. Waiting for it inside SQLite means polling a busy
        # handler, first come not first served, and a "database is locked" for whoever loses too
        # often; waiting here instead is a fair queue that costs no CPU.
        self._sqlite_writer = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        self._freeze_watch: FreezeWatch | None = None

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def write_session(self) -> AsyncIterator[AsyncSession]:
        """A session whose work is committed when the block ends cleanly."""
        async with contextlib.AsyncExitStack() as stack:
            if self._sqlite_writer is not None:
                await stack.enter_async_context(self._sqlite_writer)
            session = await stack.enter_async_context(self._guarded(self._write_sessions))
            yield session
            await session.commit()

    async def transaction(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run `work` in a write session, again from scratch if InnoDB gave up on it (a deadlock
        victim or a lock-wait timeout; at most three attempts, with jittered backoff): contended
        paths call this instead of taking the request's session."""

        async def attempt() -> T:
            async with self.write_session() as session:
                return await work(session)

        return await DEADLOCK_RETRY.run(attempt)

    async def read(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run `work` in a read session (no write lock; on SQLite it never waits for writers)."""
        async with self.read_session() as session:
            return await work(session)

    @asynccontextmanager
    async def read_session(self) -> AsyncIterator[AsyncSession]:
        """A session for reads only; whatever it did is rolled back."""
        async with self._guarded(self._read_sessions) as session:
            yield session

    @asynccontextmanager
    async def replica_session(self) -> AsyncIterator[AsyncSession]:
        """A session for a read that tolerates DB_REPLICA_MAX_LAG_SECONDS of lag: on a replica that
        answers and is that fresh, else (none configured, none fit, or the picked one cannot
        connect) the primary's read session. Never for a read that decides a write or follows the
        caller's own write: those use `read_session`."""
        replica = self.replicas.pick() if self.replicas is not None else None
        if replica is not None and self.replicas is not None:
            async with self.replicas.session(replica) as session:
                if session is not None:
                    yield session
                    return
        if self.replicas is not None:
            self.replicas.primary_reads += 1
        async with self.read_session() as primary_session:
            yield primary_session

    @asynccontextmanager
    async def _guarded(self, factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
        try:
            async with self.breaker, factory() as session:
                try:
                    yield session
                except BaseException:
                    await session.rollback()
                    raise
        except CircuitOpenError as exc:
            raise DatabaseUnavailable(retry_after=exc.retry_after) from exc
        except PoolTimeoutError as exc:
            log.warning("database.pool_exhausted", pool=self.pool_status())
            raise DatabaseOverloaded() from exc
        except IntegrityError as exc:
            # Services check uniqueness under a lock first; this is the backstop for what slips past.
            log.warning("database.integrity_error", detail=str(exc.orig)[:200])
            raise ConflictingChange() from exc
        except Exception as exc:
            if is_lock_contention(exc):
                log.info("database.lock_contention", detail=str(getattr(exc, "orig", exc))[:200])
                raise ResourceBusy(
                    deadlock=_mysql_code(exc) == _MYSQL_DEADLOCK, retryable=_mysql_code(exc) is not None
                ) from exc
            if is_database_outage(exc):
                log.error("database.unreachable", error=type(exc).__name__, detail=str(exc)[:200])
                raise DatabaseUnavailable() from exc
            raise

    async def answers(self) -> None:
        """One round trip, not through the breaker (it is the breaker's background probe, and
        `ping`'s round trip); raises unless the database answers in time."""
        try:
            async with asyncio.timeout(PING_TIMEOUT_SECONDS), self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except TimeoutError as exc:
            # Raised by asyncio's timer, not the driver, so the breaker's predicate could not
            # tell it is the database's; this block does nothing but wait for the database.
            raise DatabaseTimeout(f"no answer to a ping within {PING_TIMEOUT_SECONDS}s") from exc

    async def ping(self) -> bool:
        """One round trip through the breaker; False when the database cannot answer in time."""
        try:
            async with self.breaker:
                await self.answers()
            return True
        except CircuitOpenError:
            return False
        except Exception as exc:
            log.warning("database.ping_failed", error=type(exc).__name__, detail=str(exc)[:200])
            return False

    def pool_status(self) -> dict[str, int]:
        pool = self.engine.pool
        assert isinstance(pool, QueuePool)
        free = pool.checkedin()
        return {
            "totalConnections": free + pool.checkedout(),
            "freeConnections": free,
            "connectionLimit": pool.size(),
        }

    def watch_for_freezes(self, unresponsive_after: float) -> None:
        """Cut what hangs on a server that stopped answering (see `kit.dbwatch`): MariaDB/MySQL over
        TCP only, since an SQLite file cannot freeze that way. Needs a running event loop."""
        url = self.engine.url
        if self.backend == "sqlite" or not url.host or self._freeze_watch is not None:
            return
        self._freeze_watch = FreezeWatch(
            self.engine,
            self.breaker,
            host=url.host,
            port=url.port or 3306,
            unresponsive_after=unresponsive_after,
        )
        self._freeze_watch.start()

    def check_replicas(self, unresponsive_after: float) -> None:
        """Start checking the replicas (and watching them for freezes, unless 0). Needs a running loop."""
        if self.replicas is None:
            return
        self.replicas.start()
        if unresponsive_after > 0:
            for replica in self.replicas.replicas:
                replica.watch_for_freezes(unresponsive_after)

    async def dispose(self) -> None:
        if self.replicas is not None:
            await self.replicas.dispose()
        if self._freeze_watch is not None:
            await self._freeze_watch.stop()
        await self.engine.dispose()


class ResourceBusy(Conflict):
    """Another request holds what this one needs; retrying in a moment will likely succeed."""

    code = "resource_busy"
    retry_after = 1.0

    def __init__(self, *, deadlock: bool = False, retryable: bool = False) -> None:
        super().__init__("Someone else is changing the same thing right now; try again in a moment.")
        self.deadlock = deadlock
        # InnoDB gave up on this transaction (deadlock victim, or a lock wait that timed out): running
        # it again will very likely work. SQLite's "database is locked" already waited its full
        # busy timeout, so it is not retried.
        self.retryable = retryable


class ConflictingChange(Conflict):
    code = "conflict"

    def __init__(self) -> None:
        super().__init__("The change conflicts with data saved meanwhile.")


class DatabaseOverloaded(ServiceUnavailable):
    code = "server_busy"
    retry_after = 1.0

    def __init__(self) -> None:
        super().__init__("Every database connection is busy; try again in a moment.")


class DatabaseTimeout(TimeoutError):
    """The database did not answer within a deadline of ours that covered nothing else."""


class DatabaseUnavailable(ServiceUnavailable):
    code = "database_unavailable"

    def __init__(self, retry_after: float | None = None) -> None:
        super().__init__("The database is not reachable right now; try again shortly.")
        self.retry_after = retry_after or 5.0


def _worth_retrying(exc: BaseException) -> bool:
    return isinstance(exc, ResourceBusy) and exc.retryable


DEADLOCK_RETRY = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.1, is_retryable=_worth_retrying)
