"""A TCP relay in front of the MariaDB test server, to fail the database without touching it.

`go_down()` drops every connection and refuses new ones (a crash or restart), `come_back()` listens
on the same port again; `freeze()` stops passing bytes while keeping every socket open (a server
that hangs, or a network that drops packets without a reset), `thaw()` lets them through again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy.engine import make_url

from tests.conftest import fresh_database
from ticketera.kit.db import create_engine
from ticketera.kit.migrate import upgrade


class Relay:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

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

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

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
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()
            self._writers.discard(writer)


@contextlib.asynccontextmanager
async def relayed_database(
    tmp_path: Path, prefix: str = "ticketera_relayed"
) -> AsyncIterator[tuple[str, Relay]]:
    """A fresh, migrated MariaDB test database reached through a relay: its URL and the relay."""
    async with fresh_database("mariadb", tmp_path, prefix) as url:
        engine = create_engine(url)
        await upgrade(engine)
        await engine.dispose()
        parsed = make_url(url)
        relay = Relay(parsed.host or "127.0.0.1", parsed.port or 3306)
        await relay.come_back()
        try:
            yield parsed.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False), relay
        finally:
            relay.thaw()
            await relay.go_down()
