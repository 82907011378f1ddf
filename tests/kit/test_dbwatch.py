"""A frozen MariaDB gives 503 in seconds, not never; a busy one is left alone. The freeze is a TCP
relay in front of the test server that stops passing bytes (tests.relay)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from tests.conftest import DatabaseUnderTest, make_settings, serving
from tests.relay import relayed_database
from tests.shop import eventually
from ticketera.kit.db import Database, create_engine
from ticketera.kit.resilience import BreakerState

pytestmark = pytest.mark.mariadb

# However slow the machine, an answer comes long before this; without the watch none would come
# until the relay thaws.
ANSWER_WITHIN_SECONDS = 60


async def test_requests_on_a_frozen_database_answer_503_and_it_serves_again_once_thawed(
    tmp_path: Path,
) -> None:
    async with (
        relayed_database(tmp_path, "ticketera_frozen") as (url, relay),
        serving(make_settings(url, tmp_path, breaker_probe_seconds=1)) as client,
    ):
        assert (await client.get("/api/events")).status_code == 200
        relay.freeze()

        async with asyncio.timeout(ANSWER_WITHIN_SECONDS):
            hung = [
                asyncio.create_task(client.get("/api/events", timeout=httpx.Timeout(None))) for _ in range(3)
            ]
            answers = await asyncio.gather(*hung)
            later = await client.get("/api/events")
            health = await client.get("/health")

        assert [(a.status_code, a.json()["error"]) for a in answers] == [(503, "database_unavailable")] * 3
        assert (later.status_code, later.json()["error"]) == (503, "database_unavailable")
        assert health.status_code == 503
        assert health.json()["services"]["database"]["circuitBreaker"]["state"] == "OPEN"
        relay.thaw()

        async def serving_again() -> bool:
            return (await client.get("/api/events")).status_code == 200

        await eventually(serving_again, within=ANSWER_WITHIN_SECONDS)


async def test_a_transaction_waiting_for_a_row_lock_is_busy_not_frozen(db: DatabaseUnderTest) -> None:
    """The watch asks the server for a greeting, gets one, and cuts nothing: the waiting
    transaction gets its lock once the holder commits."""
    if db.backend != "mariadb":
        pytest.skip("the watch is MariaDB's: an SQLite file cannot freeze this way")
    database = Database(create_engine(db.url, lock_timeout_seconds=10))
    database.watch_for_freezes(0.2)
    try:
        async with database.write_session() as setup:
            await setup.execute(text("CREATE TABLE IF NOT EXISTS watch_probe (id INT PRIMARY KEY)"))
            await setup.execute(text("INSERT IGNORE INTO watch_probe VALUES (1)"))
        holder_has_lock, waiter_started = asyncio.Event(), asyncio.Event()

        async def holder() -> None:
            async with database.write_session() as session:
                await session.execute(text("SELECT id FROM watch_probe WHERE id = 1 FOR UPDATE"))
                holder_has_lock.set()
                await waiter_started.wait()
                await asyncio.sleep(1.5)  # several of the watch's looks, with a connection in use

        async def waiter() -> int:
            await holder_has_lock.wait()
            async with database.write_session() as session:
                waiter_started.set()
                result = await session.execute(text("SELECT id FROM watch_probe WHERE id = 1 FOR UPDATE"))
                return int(result.scalar_one())

        _, locked = await asyncio.gather(holder(), waiter())

        assert locked == 1
        assert database.breaker.state is BreakerState.CLOSED
    finally:
        async with database.write_session() as cleanup:
            await cleanup.execute(text("DROP TABLE IF EXISTS watch_probe"))
        await database.dispose()
