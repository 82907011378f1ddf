"""The freeze watch on a starved host: when this process's own event loop did not run for the
whole window (its CPU went elsewhere: four workers, the database and a load generator on two
cores), a greeting that arrived meanwhile still counts, and a live database is not taken for a
frozen one (which would trip the breaker and cut every connection in use: a burst of 503s)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.ext.asyncio import create_async_engine

from ticketera.kit.dbwatch import FreezeWatch
from ticketera.kit.resilience import CircuitBreaker

WINDOW_SECONDS = 0.4
GREETING_DELAY_SECONDS = 0.1


@contextmanager
def greeting_server(*, greets: bool) -> Iterator[tuple[str, int]]:
    """A TCP server in a thread of its own (it runs while the test's loop is stalled) that sends a
    MySQL-like first packet on every connection, or, with `greets=False`, nothing (frozen)."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)  # so that the thread notices the server closed
    accepted: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            accepted.append(connection)
            if greets:
                # Once the test's loop is stalled: the greeting arrives while nobody listens.
                time.sleep(GREETING_DELAY_SECONDS)
                connection.sendall(b"\x0a\x00\x00\x00" + b"\x00" * 10)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        host, port = server.getsockname()[:2]
        yield str(host), int(port)
    finally:
        server.close()
        for connection in accepted:
            connection.close()
        thread.join(timeout=5)


async def greets_while_this_loop_is_stalled(address: tuple[str, int]) -> bool:
    engine = create_async_engine("sqlite+aiosqlite://")
    try:
        breaker = CircuitBreaker("database", 5, 60.0)
        watch = FreezeWatch(
            engine, breaker, host=address[0], port=address[1], unresponsive_after=WINDOW_SECONDS
        )
        asking = asyncio.create_task(watch.server_greets())
        await asyncio.sleep(0.01)  # the connection is on its way
        # This process starved for longer than the window (blocking on purpose): nobody listening.
        time.sleep(WINDOW_SECONDS)  # noqa: ASYNC251
        return await asking
    finally:
        await engine.dispose()


async def test_a_greeting_that_came_while_this_process_was_starved_counts() -> None:
    with greeting_server(greets=True) as address:
        assert await greets_while_this_loop_is_stalled(address)


async def test_a_server_that_never_greets_is_still_found_frozen_after_a_stall() -> None:
    with greeting_server(greets=False) as address:
        started = time.monotonic()
        assert not await greets_while_this_loop_is_stalled(address)
        # A stall buys the server more time, within bounds.
        assert time.monotonic() - started < 20 * WINDOW_SECONDS
