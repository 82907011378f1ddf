"""The database breaker opens on the guide's threshold and closes seconds after MariaDB is back:
it pings the database itself while open instead of waiting out its 60 s. The outage is a TCP relay
in front of the test server that refuses connections, then accepts them again on the same port."""

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


class Relay:
    """127.0.0.1:<port> -> the MariaDB test server, until `go_down()` drops every connection and
    refuses new ones; `come_back()` listens on the same port again."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def come_back(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def go_down(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(*self.target)
        self._writers.update((client_writer, server_writer))
        await asyncio.gather(
            self._pipe(client_reader, server_writer),
            self._pipe(server_reader, client_writer),
            return_exceptions=True,
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()
            self._writers.discard(writer)


@contextlib.asynccontextmanager
async def relayed_database(tmp_path: Path) -> AsyncIterator[tuple[str, Relay]]:
    async with fresh_database("mariadb", tmp_path, "ticketera_relayed") as url:
        engine = create_engine(url)
        await upgrade(engine)
        await engine.dispose()
        parsed = make_url(url)
        relay = Relay(parsed.host or "127.0.0.1", parsed.port or 3306)
        await relay.come_back()
        try:
            yield parsed.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False), relay
        finally:
            await relay.go_down()


async def test_the_database_breaker_closes_seconds_after_the_database_is_back(tmp_path: Path) -> None:
    """The probe's 41-55 s of 503 after MariaDB came back: now as long as one probe interval."""
    async with (
        relayed_database(tmp_path) as (url, relay),
        serving(make_settings(url, tmp_path)) as client,
    ):
        assert (await client.get("/api/events")).status_code == 200
        await relay.go_down()
        for _ in range(5):  # the guide's threshold: five outages open the database breaker
            down = await client.get("/api/events", timeout=httpx.Timeout(60))
            assert (down.status_code, down.json()["error"]) == (503, "database_unavailable")
        health = await client.get("/health")
        assert health.status_code == 503
        assert health.json()["services"]["database"]["circuitBreaker"]["state"] == "OPEN"
        await relay.come_back()

        async def healthy() -> bool:
            return (await client.get("/health")).status_code == 200

        await eventually(healthy, within=30)
        assert (await client.get("/api/events")).status_code == 200
