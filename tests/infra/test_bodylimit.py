"""Request bodies are bounded in the app: 413 before a declared-too-large body is read, and as soon
as an undeclared (chunked) one passes the limit, so a huge upload never lands in memory."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson

from tests.conftest import ADMIN, WEBHOOK_SECRET, DatabaseUnderTest, make_settings, serving
from tests.factories import event_body, open_sale
from ticketera.payments.signature import manifest, sign

MB = 1_048_576


async def chunks(count: int, size: int, pulled: list[int]) -> AsyncIterator[bytes]:
    """A JSON object `count * size` bytes long, sent without Content-Length; `pulled` counts the
    chunks the server asked for."""
    yield b'{"userId": "ana", "padding": "'
    for _ in range(count):
        pulled.append(1)
        yield b"x" * size
    yield b'"}'


async def test_a_body_declared_too_large_is_refused_before_it_is_read(client: httpx.AsyncClient) -> None:
    event = await open_sale(client)
    body = orjson.dumps({"userId": "ana", "padding": "x" * (2 * MB)})
    refused = await client.post(f"/api/queue/{event['id']}/join", content=body)
    assert refused.status_code == 413
    assert refused.json()["error"] == "payload_too_large"
    assert refused.headers["x-request-id"]


async def test_a_streamed_body_is_cut_off_as_it_passes_the_limit(client: httpx.AsyncClient) -> None:
    """The probe's 200 MB join: refused after about a megabyte was read, not after all of it."""
    event = await open_sale(client)
    pulled: list[int] = []
    refused = await client.post(f"/api/queue/{event['id']}/join", content=chunks(200, MB, pulled))
    assert refused.status_code == 413
    assert refused.json()["error"] == "payload_too_large"
    assert len(pulled) <= 3


async def test_webhooks_read_their_body_within_the_limit_too(client: httpx.AsyncClient) -> None:
    """A signed webhook reads its body (after the signature): a huge one is cut off as well."""
    ts, request_id = str(int(time.time())), "req-1"
    signature = sign(WEBHOOK_SECRET, manifest("123", request_id, ts))
    pulled: list[int] = []
    refused = await client.post(
        "/api/webhooks/mercadopago?type=payment&data.id=123",
        content=chunks(20, MB, pulled),
        headers={"x-signature": f"ts={ts},v1={signature}", "x-request-id": request_id},
    )
    assert refused.status_code == 413
    assert len(pulled) <= 3


async def test_bodies_within_the_limit_and_bulk_calls_pass(
    db: DatabaseUnderTest, tmp_path: Path, simulator_url: str
) -> None:
    settings = make_settings(
        db.url, tmp_path, mp_base_url=simulator_url, max_body_bytes=4096, max_bulk_body_bytes=MB
    )
    async with serving(settings) as http:
        # An event with a long description of its sections is a bulk call: past 4 KB, within 1 MB.
        sections = [{"name": f"Sector {i:03d}", "price": "1000.00", "capacity": 10} for i in range(120)]
        created = await http.post("/api/events", json=event_body(sections=sections), headers=ADMIN)
        assert len(created.request.content) > 4096
        assert created.status_code == 201, created.text
        joined = await http.post(f"/api/queue/{created.json()['id']}/join", json={"userId": "ana"})
        assert joined.status_code in (200, 201), joined.text
        too_big = await http.post(
            f"/api/queue/{created.json()['id']}/join", json={"userId": "beto", "pad": "x" * 5000}
        )
        assert too_big.status_code == 413
