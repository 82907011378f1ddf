"""The app's own rate limits: per IP on public calls, per user on joins, shared through Redis."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.conftest import ADMIN, DatabaseUnderTest, make_settings, minute_boundary_delay, serving
from tests.factories import create_event, known_user
from tests.queue.conftest import TEST_REDIS_URL, flush, redis_connection_or_skip


@pytest.mark.parametrize("storage", ["memory", "redis"])
async def test_public_calls_are_limited_per_ip_and_admins_are_not(
    db: DatabaseUnderTest, tmp_path: Path, storage: str
) -> None:
    overrides: dict[str, object] = {"app_rate_limit": "3/minute"}
    if storage == "redis":
        connection = await redis_connection_or_skip(TEST_REDIS_URL)
        await flush(connection)
        await connection.close()
        overrides["redis_url"] = TEST_REDIS_URL
    async with serving(make_settings(db.url, tmp_path, **overrides)) as client:
        await asyncio.sleep(minute_boundary_delay())
        allowed = [await client.get("/api/events") for _ in range(3)]
        refused = await client.get("/api/events")
        admin = await client.get("/api/events", headers=ADMIN)
        health = await client.get("/health/live")

    assert [response.status_code for response in allowed] == [200] * 3
    assert refused.status_code == 429
    assert refused.json()["error"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert admin.status_code == 200
    assert health.status_code == 200


async def test_joins_are_limited_per_user(db: DatabaseUnderTest, tmp_path: Path) -> None:
    settings = make_settings(db.url, tmp_path, queue_join_rate_limit="2/minute")
    async with serving(settings) as client:
        event = await create_event(client)
        url = f"/api/queue/{event['id']}/join"
        await asyncio.sleep(minute_boundary_delay())
        same_user = [await client.post(url, json=known_user(client, "bot")) for _ in range(3)]
        other_user = await client.post(url, json=known_user(client, "fan"))

    assert [response.status_code for response in same_user] == [201, 200, 429]
    assert other_user.status_code == 201


async def test_replicas_share_the_counts_through_redis(db: DatabaseUnderTest, tmp_path: Path) -> None:
    connection = await redis_connection_or_skip(TEST_REDIS_URL)
    await flush(connection)
    await connection.close()
    settings = make_settings(db.url, tmp_path, app_rate_limit="4/minute", redis_url=TEST_REDIS_URL)
    async with serving(settings) as first, serving(settings) as second:
        await asyncio.sleep(minute_boundary_delay())
        statuses = [
            (await (first if index % 2 else second).get("/api/events")).status_code for index in range(5)
        ]

    assert statuses == [200, 200, 200, 200, 429]


async def test_an_unreachable_limiter_lets_traffic_through(db: DatabaseUnderTest, tmp_path: Path) -> None:
    from tests.ops.test_endpoints import closed_port

    settings = make_settings(
        db.url, tmp_path, app_rate_limit="1/minute", redis_url=f"redis://127.0.0.1:{closed_port()}"
    )
    async with serving(settings) as client:
        statuses = [(await client.get("/api/events")).status_code for _ in range(3)]

    assert statuses == [200, 200, 200]
