"""A frozen database answers 503 in seconds, not never: the app's statements wait at most
DB_STATEMENT_TIMEOUT_MS for MariaDB. The freeze is a TCP relay in front of the test server that
stops passing bytes (a server that hangs, or a network that drops it without a reset)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import fresh_database, make_settings, serving
from tests.shop import eventually
from ticketera.kit.db import create_engine
from ticketera.kit.migrate import upgrade

pytestmark = pytest.mark.mariadb


class FreezingRelay:
    """127.0.0.1:<port> -> the MariaDB test server, passing bytes until `freeze()`."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def freeze(self) -> None:
        self.flowing.clear()

    def thaw(self) -> None:
        self.flowing.set()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for pipe in self._pipes:
            pipe.cancel()
        for pipe in list(self._pipes):
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await pipe

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(*self.target)
        for reader, writer in ((client_reader, server_writer), (server_reader, client_writer)):
            pipe = asyncio.create_task(self._pipe(reader, writer))
            self._pipes.add(pipe)
            pipe.add_done_callback(self._pipes.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self.flowing.wait()
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def relayed_database(tmp_path: Path) -> AsyncIterator[tuple[str, FreezingRelay]]:
    async with fresh_database("mariadb", tmp_path, "ticketera_frozen") as url:
        engine = create_engine(url)
        await upgrade(engine)
        await engine.dispose()
        parsed = make_url(url)
        relay = FreezingRelay(parsed.host or "127.0.0.1", parsed.port or 3306)
        await relay.start()
        try:
            relayed = parsed.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)
            yield relayed, relay
        finally:
            await relay.close()


async def test_a_frozen_database_answers_503_and_the_next_request_after_it_thaws_works(
    tmp_path: Path,
) -> None:
    async with relayed_database(tmp_path) as (url, relay):
        settings = make_settings(url, tmp_path, db_lock_timeout_seconds=1, db_statement_timeout_ms=1500)
        async with serving(settings) as client:
            assert (await client.get("/api/events")).status_code == 200
            relay.freeze()
            async with asyncio.timeout(60):  # a hang fails the test; the figure is the benchmarks'
                frozen = await client.get("/api/events", timeout=httpx.Timeout(60))
            assert frozen.status_code == 503
            assert frozen.json()["error"] == "database_unavailable"
            relay.thaw()
            # The connection that timed out was given up; a new one serves the next request.
            assert (await client.get("/api/events")).status_code == 200


def test_a_statement_timeout_shorter_than_the_lock_wait_is_refused(tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="DB_STATEMENT_TIMEOUT_MS"):
        make_settings(
            "sqlite+aiosqlite:///x.db", tmp_path, db_lock_timeout_seconds=3, db_statement_timeout_ms=3000
        )


async def test_the_database_breaker_closes_seconds_after_the_database_is_back(tmp_path: Path) -> None:
    """The probe's 55 s of 503 after MariaDB came back: the open breaker pings the database itself
    every second and closes as soon as it answers, well before its 60 s open time runs out."""
    async with relayed_database(tmp_path) as (url, relay):
        settings = make_settings(url, tmp_path, db_lock_timeout_seconds=1, db_statement_timeout_ms=1200)
        async with serving(settings) as client:
            relay.freeze()
            for _ in range(5):  # the guide's threshold: five outages open the database breaker
                async with asyncio.timeout(60):
                    assert (await client.get("/api/events", timeout=httpx.Timeout(60))).status_code == 503
            health = await client.get("/health", timeout=httpx.Timeout(60))
            assert health.json()["services"]["database"]["circuitBreaker"]["state"] == "OPEN"
            relay.thaw()

            async def healthy() -> bool:
                answer = await client.get("/health", timeout=httpx.Timeout(60))
                return answer.status_code == 200

            await eventually(healthy, within=30)
            assert (await client.get("/api/events")).status_code == 200
