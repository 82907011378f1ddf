"""/health, /health/live and /health/ready against real databases and Redis."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import DatabaseUnderTest, _backend_unavailable, make_settings, serving
from ticketera.config import Settings

REDIS_URL = "redis://127.0.0.1:6379/15"


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def get_health(settings: Settings, path: str = "/health", times: int = 1) -> list[httpx.Response]:
    async with serving(settings) as client:
        return [await client.get(path) for _ in range(times)]


async def test_health_has_the_guides_shape_with_real_figures(
    client: httpx.AsyncClient, db: DatabaseUnderTest
) -> None:
    response = await client.get("/health")

    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    assert body["status"] == "ok"
    assert isinstance(body["uptime"], int)
    assert body["version"]
    assert body["services"]["redis"] == {
        "status": "not_configured",
        "circuitBreaker": {"state": "CLOSED", "failureCount": 0},
    }
    database = body["services"]["database"]
    assert database["status"] == "connected"
    assert database["backend"] == ("sqlite" if db.backend == "sqlite" else "mysql")
    assert database["pool"]["connectionLimit"] == 20
    assert 1 <= database["pool"]["totalConnections"] <= 20
    assert 0 <= database["pool"]["freeConnections"] <= database["pool"]["totalConnections"]
    assert database["circuitBreaker"] == {"state": "CLOSED", "failureCount": 0}
    assert body["services"]["queue"] == {"status": "enabled", "available": True, "backend": "memory"}
    memory = body["performance"]["memory"]
    assert memory["rss"] > 10 * 2**20
    assert 0 < memory["heapUsed"] < memory["rss"] * 4


async def test_pool_limit_follows_db_pool_size(db: DatabaseUnderTest, tmp_path: Path) -> None:
    (response,) = await get_health(make_settings(db.url, tmp_path, db_pool_size=7))

    assert response.json()["services"]["database"]["pool"]["connectionLimit"] == 7


async def test_liveness_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health/live")).json() == {"status": "ok"}
    assert (await client.get("/health/ready")).json() == {"status": "ready"}


async def test_unreachable_database_is_503_and_opens_the_breaker_after_five_failures(tmp_path: Path) -> None:
    settings = make_settings(
        f"mysql://root@127.0.0.1:{closed_port()}/nowhere", tmp_path, db_connect_timeout_seconds=1
    )

    responses = await get_health(settings, times=6)
    ready = await get_health(settings, "/health/ready")

    assert [response.status_code for response in responses] == [503] * 6
    assert responses[0].json()["status"] == "error"
    assert responses[0].json()["services"]["database"]["status"] == "disconnected"
    breakers = [response.json()["services"]["database"]["circuitBreaker"] for response in responses]
    assert [breaker["failureCount"] for breaker in breakers[:4]] == [1, 2, 3, 4]
    assert breakers[4]["state"] == "OPEN"
    assert breakers[5]["state"] == "OPEN"
    assert ready[0].status_code == 503


async def test_api_calls_fail_fast_with_503_while_the_database_is_down(tmp_path: Path) -> None:
    settings = make_settings(f"mysql://root@127.0.0.1:{closed_port()}/nowhere", tmp_path)

    responses = await get_health(settings, "/api/events", times=7)

    assert [response.status_code for response in responses] == [503] * 7
    assert {response.json()["error"] for response in responses} == {"database_unavailable"}
    assert int(responses[-1].headers["retry-after"]) > 30  # the breaker is open for 60 s


@pytest.fixture
async def redis_available() -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:
        _backend_unavailable("redis", f"cannot connect to {REDIS_URL}: {exc}")
    finally:
        await client.aclose()


async def test_configured_redis_is_reported_connected(
    db: DatabaseUnderTest, tmp_path: Path, redis_available: None
) -> None:
    (response,) = await get_health(make_settings(db.url, tmp_path, redis_url=REDIS_URL))

    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "ok"
    assert body["services"]["redis"]["status"] == "connected"
    assert body["services"]["queue"] == {"status": "enabled", "available": True, "backend": "redis"}


async def test_unreachable_redis_degrades_without_taking_the_replica_out(
    db: DatabaseUnderTest, tmp_path: Path
) -> None:
    settings = make_settings(db.url, tmp_path, redis_url=f"redis://127.0.0.1:{closed_port()}/0")

    responses = await get_health(settings, times=3)

    assert [response.status_code for response in responses] == [200] * 3
    body = responses[-1].json()
    assert body["status"] == "degraded"
    assert body["services"]["redis"]["status"] == "disconnected"
    assert body["services"]["redis"]["circuitBreaker"]["state"] == "OPEN"  # 3 failures open it
    assert body["services"]["queue"]["available"] is False


async def test_request_id_is_echoed_or_generated(client: httpx.AsyncClient) -> None:
    echoed = await client.get("/health/live", headers={"X-Request-ID": "abc-123"})
    generated = await client.get("/health/live")
    forged = await client.get("/health/live", headers={"X-Request-ID": "bad id\twith tabs"})

    assert echoed.headers["x-request-id"] == "abc-123"
    assert len(generated.headers["x-request-id"]) == 32
    assert forged.headers["x-request-id"] != "bad id\twith tabs"


async def test_unexpected_errors_are_500_in_the_contract_shape(settings: Settings) -> None:
    async with serving(settings) as client:

        async def explode() -> None:
            raise RuntimeError("boom")

        client.app.add_api_route("/explode", explode)  # type: ignore[attr-defined]
        response = await client.get("/explode", headers={"X-Request-ID": "req-500"})

    assert response.status_code == 500
    assert response.json()["error"] == "internal_error"
    assert "boom" not in response.text
    assert response.headers["x-request-id"] == "req-500"


async def test_openapi_reference_is_served(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()

    assert {"/api/events", "/api/events/{event_id}", "/api/events/{event_id}/seats", "/health"} <= set(
        spec["paths"]
    )
    assert (await client.get("/docs")).status_code == 200


async def test_unknown_routes_and_methods_use_the_error_shape(client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/nothing-here")
    wrong_method = await client.delete("/api/events")

    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    assert (wrong_method.status_code, wrong_method.json()["error"]) == (405, "method_not_allowed")
