"""httpx's client on aiohttp's connections (the MercadoPago client's transport): the same requests
go out, the same answers come back, and each failure is the httpx exception the retries and the
breaker decide on."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import orjson
import pytest

from ticketera.kit.aiohttp_transport import AiohttpTransport

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def tcp_server(handler: Handler) -> AsyncIterator[str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        ),
        0,
    )
    return head, await reader.readexactly(length)


async def test_a_request_goes_out_as_httpx_built_it_and_its_answer_comes_back_decoded() -> None:
    seen: list[tuple[bytes, bytes]] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:  # kept alive: several requests on one connection
            try:
                head, body = await read_request(reader)
            except asyncio.IncompleteReadError:
                break
            seen.append((head, body))
            payload = gzip.compress(orjson.dumps({"got": orjson.loads(body)}))
            writer.write(
                b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
                + f"Content-Length: {len(payload)}\r\nX-Request-Id: r1\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        writer.close()

    async with tcp_server(echo) as url:
        transport = AiohttpTransport(max_connections=2)
        async with httpx.AsyncClient(
            base_url=url, transport=transport, headers={"Authorization": "Bearer t"}
        ) as client:
            first = await client.post(
                "/checkout/preferences", json={"a": 1}, headers={"X-Idempotency-Key": "k1"}
            )
            second = await client.post("/checkout/preferences", json={"a": 2})

    assert (first.status_code, first.json(), first.headers["x-request-id"]) == (201, {"got": {"a": 1}}, "r1")
    assert second.json() == {"got": {"a": 2}}
    head = seen[0][0].lower()
    assert head.startswith(b"post /checkout/preferences http/1.1")
    for header in (b"authorization: bearer t", b"x-idempotency-key: k1", b"content-type: application/json"):
        assert header in head
    assert len(seen) == 2


async def test_a_refused_connection_is_a_connect_error() -> None:
    async with tcp_server(lambda _reader, writer: asyncio.sleep(0)) as url:
        pass  # closed again: nothing listens on its port any more
    async with httpx.AsyncClient(base_url=url, transport=AiohttpTransport(max_connections=1)) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("/v1/payments/1")


async def test_a_server_that_says_nothing_is_a_read_timeout_and_a_full_pool_a_pool_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        await asyncio.sleep(5)
        writer.close()

    async with tcp_server(silent) as url:
        transport = AiohttpTransport(max_connections=1)
        timeout = httpx.Timeout(0.3, pool=0.1)
        async with httpx.AsyncClient(base_url=url, transport=transport, timeout=timeout) as client:
            waiting = asyncio.create_task(client.get("/v1/payments/1"))
            await asyncio.sleep(0.05)
            with pytest.raises(httpx.PoolTimeout):
                await client.get("/v1/payments/2")
            with pytest.raises(httpx.ReadTimeout):
                await waiting
