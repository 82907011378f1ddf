"""Noticing a MariaDB that stopped answering, and turning what hangs on it into quick 503s.

A frozen server (SIGSTOP, a hung host, a network that drops packets without a reset) keeps its
sockets open and says nothing: without a deadline, every request that reached it waits until it
thaws. A driver read timeout would bound each statement, but asyncmy's wraps every socket read in
`asyncio.wait_for` and costs 7% of the on-sale throughput (see `kit.db.create_engine`). This costs
two dictionary operations per transaction instead:

- the pool's check-out and check-in mark which connections are in use, and since when;
- four times per `unresponsive_after`, if one has been in use for half of it, the watch opens a
  connection of its own (outside the pool, which a stuck server may have exhausted) and waits for
  the server's greeting, the packet MariaDB sends first on every new connection, a few
  milliseconds after the connect when it is alive;
- a greeting, even an error such as "too many connections", means the server is alive and only
  busy (a lock wait, a slow query), and nothing happens. No greeting within the other half:
  the database breaker is tripped, so new requests answer 503 at once (its background probe closes
  it as soon as the database answers), and every connection in use is cut, so the requests waiting
  on them fail at once as a lost connection (503 `database_unavailable`) instead of hanging; so do
  connections being opened to it (`open_watched`), whose handshake would wait just the same.

The greeting comes from the server's connection handling, not its storage engine: a server whose
InnoDB hangs while it still accepts connections is not noticed here (its lock-wait timeout and the
load balancer's health checks are what remain). Written by hand: no kept library watches a
SQLAlchemy pool this way.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import ConnectionPoolEntry

from ticketera.kit.resilience import CircuitBreaker

log = structlog.get_logger(__name__)
T = TypeVar("T")

# A MySQL packet starts with a 3-byte length and a sequence number.
_PACKET_HEADER_BYTES = 4
# The most windows a greeting is waited for when this process's own loop keeps sleeping through
# them (server_greets): a frozen server is still found, a few windows later on a starved host.
MAX_STALLED_WINDOWS = 8
# Connections being opened, by server address: when a server is found frozen, these are given up
# along with the connections in use (a new connection's handshake would wait for it just the same).
_OPENING: dict[tuple[str, int], set[asyncio.Task[Any]]] = defaultdict(set)


class GivenUp(Exception):
    """A connection being opened to a server the watch found frozen."""


async def open_watched(address: tuple[str, int], connect: Callable[[], Awaitable[T]]) -> T:
    """`connect()`, given up (GivenUp) if the watch finds the server at `address` frozen meanwhile."""
    opening = asyncio.ensure_future(connect())
    _OPENING[address].add(opening)
    try:
        return await opening
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if opening.cancelled() and (current is None or not current.cancelling()):
            raise GivenUp(f"the database at {address[0]}:{address[1]} stopped answering") from None
        raise
    finally:
        _OPENING[address].discard(opening)


class FreezeWatch:
    def __init__(
        self,
        engine: AsyncEngine,
        breaker: CircuitBreaker,
        *,
        host: str,
        port: int,
        unresponsive_after: float,
    ) -> None:
        self._breaker = breaker
        self._address = (host, port)
        self.unresponsive_after = unresponsive_after
        # id(pool entry) -> (driver connection, monotonic time of check-out)
        self._in_use: dict[int, tuple[Any, float]] = {}
        self._task: asyncio.Task[None] | None = None
        event.listen(engine.sync_engine, "checkout", self._checked_out)
        event.listen(engine.sync_engine, "checkin", self._checked_in)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch(), name="database-freeze-watch")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _checked_out(self, dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        self._in_use[id(record)] = (dbapi_connection, time.monotonic())

    def _checked_in(self, _dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        self._in_use.pop(id(record), None)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.unresponsive_after / 4)
            try:
                await self.check()
            except Exception as exc:  # the watch must outlive whatever one check ran into
                log.warning("database.freeze_watch_failed", error=type(exc).__name__)

    async def check(self) -> bool:
        """One look; True when the database was found frozen (and what hung on it was cut)."""
        now, half = time.monotonic(), self.unresponsive_after / 2
        if not any(now - since >= half for _, since in self._in_use.values()):
            return False
        if await self.server_greets():
            return False
        stuck = list(self._in_use.values())
        log.error(
            "database.frozen",
            silent_seconds=round(self.unresponsive_after, 2),
            connections_cut=len(stuck),
        )
        self._breaker.trip()
        for dbapi_connection, _ in stuck:
            _cut(dbapi_connection)
        for opening in list(_OPENING.get(self._address, ())):
            opening.cancel()
        return True

    async def server_greets(self) -> bool:
        """Whether the server sends its greeting within half of `unresponsive_after` of this
        process listening for it.

        A window this process's own event loop slept through (its CPU went to other processes, as
        on a host that runs the workers, the database and more on two cores) is not the server's
        silence: the greeting may be waiting in the socket, and a timer due in the same loop pass
        would cancel the read before it is taken. So the window is counted only while the loop
        was awake: a pass that ends later than due by half a window or more gives the server
        another window, up to MAX_STALLED_WINDOWS of them."""
        window = self.unresponsive_after / 2
        greeting = asyncio.ensure_future(self._greeting())
        try:
            for _ in range(MAX_STALLED_WINDOWS):
                due = time.monotonic() + window
                await asyncio.wait({greeting}, timeout=window)
                # One more pass: a read made ready in the pass that woke us finishes now.
                await asyncio.sleep(0)
                if greeting.done() or time.monotonic() - due < window / 2:
                    break
            if not greeting.done():
                return False
            return greeting.exception() is None and greeting.result()
        finally:
            greeting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await greeting

    async def _greeting(self) -> bool:
        try:
            reader, writer = await asyncio.open_connection(*self._address)
            try:
                await reader.readexactly(_PACKET_HEADER_BYTES)
            finally:
                writer.close()
        except (OSError, asyncio.IncompleteReadError):
            return False
        return True


def _cut(dbapi_connection: Any) -> None:
    """Close the connection's socket under the driver's feet: its pending read ends at once with
    a lost connection, which SQLAlchemy invalidates and the service reports as an outage."""
    driver_connection = getattr(dbapi_connection, "_connection", dbapi_connection)
    transport = getattr(driver_connection, "_transport", None)  # asyncmy
    if transport is None:  # aiomysql
        transport = getattr(getattr(driver_connection, "_writer", None), "transport", None)
    if transport is not None:
        transport.abort()
