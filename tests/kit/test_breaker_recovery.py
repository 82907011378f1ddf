"""The database breaker opens on the guide's threshold and closes seconds after MariaDB is back:
it pings the database itself while open instead of waiting out its 60 s. The outage is a TCP relay
in front of the test server (tests.relay) that refuses connections, then accepts them again."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import make_settings, serving
from tests.relay import relayed_database
from tests.shop import eventually

pytestmark = pytest.mark.mariadb


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
