"""Real HTTP servers inside the test's event loop: the MercadoPago simulator, and any ASGI app.

    async with running_simulator("TEST-token", "test-webhook-secret") as base_url:
        settings = make_settings(..., mp_base_url=base_url)

The server runs under uvicorn as a task of the running loop, on a port the kernel picked, so any test
package can start one without a fixed port. A synchronous client (the official SDK, `requests`) must
then be called through `asyncio.to_thread`: blocking the loop would block the server too.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from ticketera.kit.clock import Clock, utc_now
from ticketera.mpsim.app import create_simulator
from ticketera.mpsim.settings import SimulatorSettings

# Compressed from MercadoPago's 15 minutes and more, so a retry test takes a fraction of a second.
FAST_RETRY_SCHEDULE = (0.05, 0.1, 0.2)


class _InLoopServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The test runner keeps its own Ctrl+C handling; the server stops through should_exit.
        yield


def listening_socket(host: str = "127.0.0.1") -> socket.socket:
    """A socket already bound to a free port: no race between choosing the port and listening on it."""
    # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets that say so, and without it
    # every keep-alive answer waits ~40 ms on Nagle and delayed ACKs.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    return sock


def socket_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{host}:{port}"


@asynccontextmanager
async def serving_asgi(app: ASGIApp, sock: socket.socket | None = None) -> AsyncIterator[str]:
    """Serve `app` (lifespan included) until the block ends; yields its base URL."""
    sock = sock or listening_socket()
    base_url = socket_url(sock)
    # No logging set-up at all: uvicorn's would change levels of loggers other tests look at.
    config = uvicorn.Config(app, lifespan="on", log_config=None, access_log=False, log_level=None)
    server = _InLoopServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                await task
                raise RuntimeError(f"the server for {base_url} stopped before it started")
            await asyncio.sleep(0.01)
        yield base_url
    finally:
        server.should_exit = True
        await task
        sock.close()


@asynccontextmanager
async def running_simulator(
    access_token: str = "TEST-token",
    webhook_secret: str = "test-webhook-secret",
    *,
    retry_schedule: Sequence[float] = FAST_RETRY_SCHEDULE,
    clock: Clock = utc_now,
    **overrides: Any,
) -> AsyncIterator[str]:
    """The MercadoPago simulator on a free port; yields its base URL (the service's MP_BASE_URL).

    `overrides` are further SimulatorSettings fields (e.g. mpsim_notification_url=...).
    """
    sock = listening_socket()
    base_url = socket_url(sock)
    values: dict[str, Any] = {
        "_env_file": None,
        "mp_access_token": access_token,
        "mp_webhook_secret": webhook_secret,
        "mpsim_public_url": base_url,
        "mpsim_retry_schedule": list(retry_schedule),
        "mpsim_notification_url": None,
    }
    values.update(overrides)
    app = create_simulator(SimulatorSettings(**values), clock=clock)
    async with serving_asgi(app, sock) as url:
        yield url
