"""Engine set-up, column types and naming rules of the database kit."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import Request
from sqlalchemy import Column, Integer, MetaData, Table, select, text

from tests.conftest import DatabaseUnderTest, fresh_database, services_of
from tests.test_cli import free_port
from ticketera.kit import db as db_kit
from ticketera.kit.db import (
    MYSQL_IDENTIFIER_LIMIT,
    Database,
    DatabaseTimeout,
    DatabaseUnavailable,
    UTCDateTime,
    create_engine,
    is_database_outage,
)
from ticketera.kit.resilience import BreakerState
from ticketera.models import metadata


def test_every_constraint_and_index_name_fits_mysql() -> None:
    names = [
        str(constraint.name)
        for table in metadata.sorted_tables
        for constraint in table.constraints
        if constraint.name
    ] + [str(index.name) for table in metadata.sorted_tables for index in table.indexes if index.name]
    assert names
    too_long = [name for name in names if len(name) > MYSQL_IDENTIFIER_LIMIT]
    assert too_long == []


async def test_sqlite_runs_in_wal_with_foreign_keys_and_a_busy_timeout(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    try:
        async with engine.connect() as connection:
            journal = (await connection.execute(text("PRAGMA journal_mode"))).scalar()
            foreign_keys = (await connection.execute(text("PRAGMA foreign_keys"))).scalar()
            busy = (await connection.execute(text("PRAGMA busy_timeout"))).scalar()
    finally:
        await engine.dispose()
    assert (journal, foreign_keys, busy) == ("wal", 1, 5000)


async def test_sqlite_writers_take_the_write_lock_at_begin(tmp_path: Path) -> None:
    """Two write transactions never interleave: the second waits at BEGIN IMMEDIATE."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    captured: list[str] = []
    try:
        from sqlalchemy import event

        @event.listens_for(engine.sync_engine, "before_cursor_execute")
        def capture(_c: object, _cur: object, statement: str, *_args: object) -> None:
            captured.append(statement)

        async with engine.begin() as connection:
            await connection.execute(text("SELECT 1"))
        async with engine.connect() as connection:
            read_only = await connection.execution_options(ticketera_read_only=True)
            await read_only.execute(text("SELECT 1"))
    finally:
        await engine.dispose()
    assert "BEGIN IMMEDIATE" in captured
    assert "BEGIN" in captured


async def test_datetimes_round_trip_as_aware_utc(db: DatabaseUnderTest) -> None:
    table = Table(
        "tz_probe", MetaData(), Column("id", Integer, primary_key=True), Column("at", UTCDateTime())
    )
    moment = datetime(2030, 5, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=-3)))
    async with db.engine.begin() as connection:
        await connection.run_sync(table.create)
        try:
            await connection.execute(table.insert().values(id=1, at=moment))
            stored = (await connection.execute(select(table.c.at))).scalar_one()
        finally:
            await connection.run_sync(table.drop)
    assert stored == moment
    assert stored.tzinfo == UTC
    assert stored.hour == 15


def test_outages_are_told_apart_from_refused_queries() -> None:
    from sqlalchemy.exc import OperationalError

    class DriverError(Exception):
        pass

    assert is_database_outage(raised_in("asyncmy.connection", ConnectionRefusedError()))
    assert is_database_outage(OperationalError("x", {}, DriverError(2003, "Can't connect")))
    assert not is_database_outage(OperationalError("x", {}, DriverError(1213, "Deadlock found")))
    assert not is_database_outage(OperationalError("x", {}, DriverError(1205, "Lock wait timeout")))
    assert not is_database_outage(OperationalError("x", {}, DriverError("database is locked")))
    assert not is_database_outage(ValueError("bad input"))


def test_bare_os_errors_count_as_outages_only_when_the_database_layer_raised_them() -> None:
    for module in ("sqlalchemy.pool.base", "asyncmy.connection", "aiomysql.connection", "aiosqlite.core"):
        assert is_database_outage(raised_in(module, TimeoutError())), module
        assert is_database_outage(raised_in(module, ConnectionResetError())), module
    assert not is_database_outage(raised_in("aiosmtplib.smtp", ConnectionRefusedError()))
    assert not is_database_outage(raised_in("ticketera.tickets.mailer", TimeoutError()))
    assert not is_database_outage(raised_in("httpcore._async.connection", OSError("unreachable")))
    # Never raised: no traceback, so nothing says it is the database's.
    assert not is_database_outage(ConnectionRefusedError())


async def test_aiomysql_is_chosen_by_url_and_serves_the_api(tmp_path: Path) -> None:
    from sqlalchemy.engine import make_url

    from tests.conftest import (
        ADMIN,
        fresh_database,
        make_settings,
        serving,
    )
    from tests.factories import event_body, reserved_section
    from ticketera.kit.migrate import upgrade

    async with fresh_database("mariadb", tmp_path, "ticketera_aiomysql") as asyncmy_url:
        url = make_url(asyncmy_url).set(drivername="mysql+aiomysql").render_as_string(hide_password=False)
        engine = create_engine(url, pool_size=2)
        await upgrade(engine)
        await engine.dispose()
        async with serving(make_settings(url, tmp_path)) as client:
            driver = services_of(client.app).database.engine.dialect.driver  # type: ignore[attr-defined]
            created = await client.post(
                "/api/events", json=event_body(sections=[reserved_section()]), headers=ADMIN
            )
            seats = await client.get(f"/api/events/{created.json()['id']}/seats")
            health = await client.get("/health")
    assert driver == "aiomysql"
    assert created.status_code == 201
    assert len(seats.json()["seats"]) == 10
    assert health.json()["services"]["database"]["status"] == "connected"


async def test_db_ssl_asks_the_driver_for_a_verified_tls_connection() -> None:
    import ssl

    from sqlalchemy import event

    captured: dict[str, object] = {}
    engine = create_engine("mysql+asyncmy://u@127.0.0.1:1/x", use_ssl=True, connect_timeout=1)

    @event.listens_for(engine.sync_engine, "do_connect")
    def capture(_dialect: object, _record: object, _args: object, params: dict[str, object]) -> None:
        captured.update(params)

    try:
        async with engine.connect():
            pass
    except Exception:
        pass
    finally:
        await engine.dispose()
    context = captured["ssl"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert captured["connect_timeout"] == 1


def test_lock_contention_is_told_apart_from_outages() -> None:
    from sqlalchemy.exc import OperationalError

    from ticketera.kit.db import is_lock_contention

    class DriverError(Exception):
        pass

    assert is_lock_contention(OperationalError("x", {}, DriverError(1205, "Lock wait timeout exceeded")))
    assert is_lock_contention(OperationalError("x", {}, DriverError(1213, "Deadlock found")))
    assert is_lock_contention(OperationalError("x", {}, DriverError("database is locked")))
    assert not is_lock_contention(OperationalError("x", {}, DriverError(2003, "Can't connect")))
    assert not is_lock_contention(ValueError("x"))


async def test_transactions_inno_db_gave_up_on_are_run_again(tmp_path: Path) -> None:
    from collections.abc import Awaitable

    from sqlalchemy.ext.asyncio import AsyncSession

    from ticketera.kit.db import Database, ResourceBusy

    database = Database(create_engine(f"sqlite+aiosqlite:///{tmp_path / 'retry.db'}"))
    calls: list[str] = []

    def work_failing(times: int, error: ResourceBusy) -> Callable[[AsyncSession], Awaitable[str]]:
        async def work(session: AsyncSession) -> str:
            calls.append("try")
            if len(calls) <= times:
                raise error
            return "done"

        return work

    try:
        assert (
            await database.transaction(work_failing(2, ResourceBusy(deadlock=True, retryable=True))) == "done"
        )
        assert len(calls) == 3
        calls.clear()
        with pytest.raises(ResourceBusy):
            await database.transaction(work_failing(3, ResourceBusy(retryable=True)))
        assert len(calls) == 3
        calls.clear()
        with pytest.raises(ResourceBusy):
            await database.transaction(work_failing(1, ResourceBusy()))
        assert len(calls) == 1
    finally:
        await database.dispose()


async def _connection_id(database: Database) -> int:
    async with database.read_session() as session:
        return int((await session.execute(text("SELECT CONNECTION_ID()"))).scalar_one())


async def _kill(url: str, connection_id: int) -> None:
    """What a server restart or wait_timeout does to a pooled connection, done from outside the pool."""
    outsider = create_engine(url, pool_size=1)
    try:
        async with outsider.connect() as other:
            await other.execute(text(f"KILL CONNECTION {int(connection_id)}"))
    finally:
        await outsider.dispose()


@asynccontextmanager
async def _pooled_mariadb(tmp_path: Path, pool_size: int) -> AsyncIterator[tuple[str, Database]]:
    """A Database on a new MariaDB database of its own: (its URL, the Database), disposed after."""
    async with fresh_database("mariadb", tmp_path, "ticketera_ping") as url:
        database = Database(create_engine(url, pool_size=pool_size))
        try:
            yield url, database
        finally:
            await database.dispose()


async def test_a_pooled_connection_dropped_while_idle_is_replaced_before_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with _pooled_mariadb(tmp_path, pool_size=2) as (url, database):
        victim = await _connection_id(database)
        await _kill(url, victim)
        # Idle past the threshold (made zero here instead of waiting): pinged, found dead,
        # replaced, and the request never sees it.
        monkeypatch.setattr(db_kit, "PING_AFTER_IDLE_SECONDS", 0.0)
        assert await _connection_id(database) != victim
        assert database.breaker.state is BreakerState.CLOSED


async def test_a_connection_dropped_within_the_ping_window_fails_one_request_then_the_pool_heals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_kit, "PING_AFTER_IDLE_SECONDS", 3600.0)
    async with _pooled_mariadb(tmp_path, pool_size=2) as (url, database):
        first = await _connection_id(database)
        await _kill(url, first)
        # The connection was used a moment ago, so it is not pinged: the request that meets the
        # dead connection fails as an outage (503), not as a wrong answer...
        with pytest.raises(DatabaseUnavailable):
            await _connection_id(database)
        # ...and the pool replaces it: the next request works on a new connection.
        assert await _connection_id(database) != first


async def test_a_new_connection_is_not_pinged_and_an_idle_one_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_kit, "PING_AFTER_IDLE_SECONDS", 0.5)
    async with _pooled_mariadb(tmp_path, pool_size=1) as (_, database):
        pings: list[object] = []
        real_ping = database.engine.dialect.do_ping

        def counted_ping(dbapi_connection: Any) -> bool:
            pings.append(dbapi_connection)
            return real_ping(dbapi_connection)

        monkeypatch.setattr(database.engine.dialect, "do_ping", counted_ping)
        first = await _connection_id(database)
        # It had just connected, so it went out unpinged (a failed ping of a replacement would
        # leave the pool out of attempts).
        assert pings == []
        assert await _connection_id(database) == first
        assert pings == []
        await asyncio.sleep(0.6)
        assert await _connection_id(database) == first
        assert len(pings) == 1


# -- errors told apart by their source ---------------------------------------------------------------

# What a driver's own code looks like to a traceback: a function whose module is the driver's.
_FAKE_DRIVER_SOURCE = """
import asyncio

def fail(error):
    raise error

async def connect(port):
    await asyncio.open_connection("127.0.0.1", port)
"""


def _module_named(name: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": name}
    exec(compile(_FAKE_DRIVER_SOURCE, f"<{name}>", "exec"), namespace)
    return namespace


def raised_in(module: str, error: BaseException) -> BaseException:
    """`error`, raised by a function of `module`, as it reaches whoever catches it."""
    try:
        _module_named(module)["fail"](error)
    except BaseException as raised:
        return raised
    raise AssertionError("fail() returned")


async def our_own_connection_refused() -> None:
    """Our code (an SMTP or HTTP client, say) meeting a closed port, with asyncio frames innermost."""
    await asyncio.open_connection("127.0.0.1", free_port())


@asynccontextmanager
async def _sqlite_database(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(create_engine(f"sqlite+aiosqlite:///{tmp_path / 'sources.db'}"))
    try:
        yield database
    finally:
        await database.dispose()


OwnErrorFactory = Callable[[], OSError]


@pytest.mark.parametrize("session_kind", ["write_session", "read_session"])
@pytest.mark.parametrize(
    "own_error",
    [
        pytest.param(lambda: OSError(28, "No space left on device"), id="file-error"),
        pytest.param(lambda: TimeoutError("smtp.example.com did not answer"), id="smtp-timeout"),
        pytest.param(lambda: ConnectionResetError("peer reset"), id="connection-reset"),
    ],
)
async def test_our_own_os_errors_inside_a_session_propagate_unchanged_and_spare_the_breaker(
    tmp_path: Path, session_kind: str, own_error: OwnErrorFactory
) -> None:
    async with _sqlite_database(tmp_path) as database:

        async def query_then_fail(error: BaseException) -> None:
            async with getattr(database, session_kind)() as session:
                await session.execute(text("SELECT 1"))
                raise error

        # More than the breaker's threshold (5): none of them may count.
        for _ in range(6):
            error = own_error()
            with pytest.raises(type(error)) as caught:
                await query_then_fail(error)
            assert caught.value is error
            assert database.breaker.failure_count == 0
        assert database.breaker.state is BreakerState.CLOSED
        assert await database.read(lambda session: session.scalar(text("SELECT 1"))) == 1


@pytest.mark.parametrize("session_kind", ["write_session", "read_session"])
async def test_a_refused_connection_of_our_own_inside_a_session_is_not_the_database(
    tmp_path: Path, session_kind: str
) -> None:
    async with _sqlite_database(tmp_path) as database:
        with pytest.raises(ConnectionRefusedError):
            async with getattr(database, session_kind)():
                await our_own_connection_refused()
        assert database.breaker.failure_count == 0


async def test_an_httpx_timeout_inside_a_session_is_not_the_database(tmp_path: Path) -> None:
    async def too_slow(_request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("the other service is slow")

    async with (
        _sqlite_database(tmp_path) as database,
        httpx.AsyncClient(transport=httpx.MockTransport(too_slow)) as http,
    ):
        with pytest.raises(httpx.ReadTimeout):
            async with database.write_session():
                await http.get("http://other.test/")
        assert database.breaker.failure_count == 0


async def test_a_bare_error_raised_by_the_driver_is_still_an_outage(tmp_path: Path) -> None:
    fake_driver = _module_named("aiomysql.connection")
    async with _sqlite_database(tmp_path) as database:
        with pytest.raises(DatabaseUnavailable) as caught:
            async with database.read_session():
                # asyncio's frames are innermost; the driver's, next out, decide.
                await fake_driver["connect"](free_port())
        assert isinstance(caught.value.__cause__, ConnectionRefusedError)
        assert database.breaker.failure_count == 1


async def test_an_unreachable_mariadb_is_an_outage_and_counts() -> None:
    database = Database(create_engine(f"mysql+asyncmy://root@127.0.0.1:{free_port()}/x", connect_timeout=1))
    try:
        for expected_failures in (1, 2):
            with pytest.raises(DatabaseUnavailable):
                async with database.read_session() as session:
                    await session.execute(text("SELECT 1"))
            assert database.breaker.failure_count == expected_failures
        assert await database.ping() is False
        assert database.breaker.failure_count == 3
    finally:
        await database.dispose()


async def test_a_sqlite_file_that_cannot_be_opened_is_an_outage(tmp_path: Path) -> None:
    # The path names a directory: SQLite answers "unable to open database file".
    database = Database(create_engine(f"sqlite+aiosqlite:///{tmp_path}"))
    try:
        with pytest.raises(DatabaseUnavailable):
            async with database.write_session() as session:
                await session.execute(text("SELECT 1"))
        assert database.breaker.failure_count == 1
    finally:
        await database.dispose()


async def test_a_ping_that_times_out_counts_toward_the_breaker(monkeypatch: pytest.MonkeyPatch) -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def never_greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Accepts and then says nothing, as a hung MariaDB would, until the connection goes.
        accepted.append(writer)
        with contextlib.suppress(ConnectionError):
            await reader.read()
        writer.close()

    server = await asyncio.start_server(never_greet, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setattr(db_kit, "PING_TIMEOUT_SECONDS", 0.2)
    database = Database(create_engine(f"mysql+asyncmy://root@127.0.0.1:{port}/x", connect_timeout=3))
    try:
        assert await database.ping() is False
        assert database.breaker.failure_count == 1
    finally:
        await database.dispose()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


def test_a_ping_timeout_is_an_outage_wherever_it_was_raised() -> None:
    assert is_database_outage(DatabaseTimeout("no answer"))
    assert isinstance(DatabaseTimeout("no answer"), TimeoutError)


async def test_through_the_api_our_own_error_is_a_500_and_spares_the_breaker(tmp_path: Path) -> None:
    from tests.conftest import make_settings, serving
    from ticketera.kit.migrate import upgrade

    async def mail_fails(request: Request) -> None:
        async with services_of(request.app).database.write_session() as session:
            await session.execute(text("SELECT 1"))
            await our_own_connection_refused()

    async with fresh_database("sqlite", tmp_path, "ticketera_sources") as url:
        engine = create_engine(url)
        await upgrade(engine)
        await engine.dispose()
        async with serving(make_settings(url, tmp_path)) as client:
            app: Any = client.app  # type: ignore[attr-defined]
            app.add_api_route("/_test/mail-fails", mail_fails, methods=["POST"])
            responses = [await client.post("/_test/mail-fails") for _ in range(6)]
            breaker = services_of(app).database.breaker
            health = await client.get("/health")

    assert [response.status_code for response in responses] == [500] * 6
    assert {response.json()["error"] for response in responses} == {"internal_error"}
    assert all(response.headers.get("x-request-id") for response in responses)
    assert breaker.failure_count == 0
    assert breaker.state is BreakerState.CLOSED
    assert health.json()["services"]["database"]["status"] == "connected"
