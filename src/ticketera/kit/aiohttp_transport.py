"""httpx's client on aiohttp's connections: what our MercadoPago client, and the load test's fans,
send their requests through.

httpx's own transport (httpcore over anyio) cost about 1 ms of CPU per call here, a tenth of a
ticket's (benchmarks/onsale.py --profile: the checkout was 13-19% of the service's CPU, two thirds of
it below `AsyncHTTPTransport.handle_async_request`); aiohttp's client does the same I/O for about a
fifth of that (benchmarks/harness.py, LeanClient). The client above stays httpx's, so what callers
see does not change: the same requests, and the same exception types for the same failures (a
refused connection is `httpx.ConnectError`, a silent server `httpx.ReadTimeout`, our own pool full
`httpx.PoolTimeout`), which is what the retries and the breaker decide on. Written here because
no kept library does it (httpx-aiohttp-style adapters on PyPI are unmaintained forks).

A body is read whole before the answer is handed over: not for streams (server-sent events),
which keep httpx's own transport.
"""

from __future__ import annotations

import asyncio
import ssl

import aiohttp
import httpx


class AiohttpTransport(httpx.AsyncBaseTransport):
    """At most `max_connections` requests in flight, each on a kept-alive connection when one is
    idle. The aiohttp session is made on first use, inside the event loop that uses it."""

    def __init__(
        self, *, max_connections: int, keepalive_seconds: float = 15.0, tls: ssl.SSLContext | None = None
    ) -> None:
        self._slots = asyncio.Semaphore(max_connections)
        self._keepalive_seconds = keepalive_seconds
        # None: aiohttp's default verification (the system's authorities).
        self._tls: ssl.SSLContext | bool = tls if tls is not None else True
        self._session: aiohttp.ClientSession | None = None

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                # The pool is bounded by `_slots`, so a wait for it is told apart (PoolTimeout).
                connector=aiohttp.TCPConnector(
                    limit=0, keepalive_timeout=self._keepalive_seconds, ssl=self._tls
                ),
                # Bodies are handed to httpx as they came, and httpx decodes them per their headers.
                auto_decompress=False,
                # httpx has sent its cookies already, and keeps none of the answers'.
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"),
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        try:
            async with asyncio.timeout(timeouts.get("pool")):
                await self._slots.acquire()
        except TimeoutError as exc:
            raise httpx.PoolTimeout("no connection free in time", request=request) from exc
        try:
            return await self._send(request, timeouts)
        finally:
            self._slots.release()

    async def _send(self, request: httpx.Request, timeouts: dict[str, float | None]) -> httpx.Response:
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=timeouts.get("connect"), sock_read=timeouts.get("read")
        )
        # httpx has read the body already (a bytes payload), and named every header it sends.
        body = await request.aread()
        headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers.raw]
        try:
            async with self._session_now().request(
                request.method,
                str(request.url),
                headers=headers,
                data=body or None,
                allow_redirects=False,
                timeout=timeout,
            ) as answer:
                content = await answer.read()
                return httpx.Response(
                    answer.status,
                    headers=list(answer.raw_headers),
                    content=content,
                    request=request,
                    extensions={"http_version": b"HTTP/1.1"},
                )
        except aiohttp.ConnectionTimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc) or "connect timed out", request=request) from exc
        except (aiohttp.SocketTimeoutError, aiohttp.ServerTimeoutError, TimeoutError) as exc:
            raise httpx.ReadTimeout(str(exc) or "read timed out", request=request) from exc
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
            raise httpx.RemoteProtocolError(str(exc) or type(exc).__name__, request=request) from exc
        except aiohttp.ClientOSError as exc:
            raise httpx.ReadError(str(exc), request=request) from exc
        except aiohttp.ClientError as exc:
            raise httpx.TransportError(str(exc) or type(exc).__name__, request=request) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
