"""The admission ticker through a database outage: one line when it stops, one when it resumes."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from tests.conftest import services_of
from tests.shop import eventually
from ticketera.queue import tasks


async def test_an_outage_stops_the_ticks_with_one_line_not_a_traceback_per_tick(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = services_of(client.app)  # type: ignore[attr-defined]
    breaker = services.database.breaker
    ticks = 0
    real_tick = tasks.admission_tick

    async def counted_tick(*args: Any, **kwargs: Any) -> int:
        nonlocal ticks
        ticks += 1
        return await real_tick(*args, **kwargs)

    monkeypatch.setattr(tasks, "admission_tick", counted_tick)
    breaker.trip()

    with capture_logs() as logs:
        ticker = asyncio.create_task(
            tasks.run_admission_ticker(
                services.waiting_room,
                services.database,
                services.clock,
                tick_seconds=0.01,
                stop=asyncio.Event(),
            )
        )
        try:

            async def ticked(times: int) -> bool:
                return ticks >= times

            await eventually(lambda: ticked(10))  # ten ticks that meet the open breaker
            breaker.reset()
            resumed_from = ticks
            await eventually(lambda: ticked(resumed_from + 2))
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker

    events = [line["event"] for line in logs]
    assert events.count("queue.ticker_waiting") == 1
    assert events.count("queue.ticker_resumed") == 1
    assert "queue.tick_failed" not in events


async def test_a_stopped_ticker_ends_its_tick_and_returns(client: httpx.AsyncClient) -> None:
    services = services_of(client.app)  # type: ignore[attr-defined]
    stop = asyncio.Event()
    with capture_logs() as logs:
        ticker = asyncio.create_task(
            tasks.run_admission_ticker(
                services.waiting_room, services.database, services.clock, tick_seconds=3600, stop=stop
            )
        )

        async def started() -> bool:
            return any(line["event"] == "queue.ticker_started" for line in logs)

        await eventually(started)
        stop.set()
        await asyncio.wait_for(ticker, timeout=30)
    assert ticker.exception() is None
