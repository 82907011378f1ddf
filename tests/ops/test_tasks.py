"""The worker through a database outage: one line per step when it stops, one when it resumes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from tests.conftest import services_of, serving
from tests.shop import eventually
from ticketera.config import Settings
from ticketera.ops.tasks import run_worker


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app without its own in-process worker: the test runs the only one."""
    async with serving(settings.model_copy(update={"worker_in_process": False})) as http:
        yield http


async def test_an_outage_stops_each_step_with_one_line_not_a_traceback_per_pass(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = services_of(client.app)  # type: ignore[attr-defined]
    breaker = services.database.breaker
    passes = 0
    real_pass = services.payments.run_pass

    async def counted_pass(*args: Any, **kwargs: Any) -> dict[str, int]:
        nonlocal passes
        passes += 1
        return await real_pass(*args, **kwargs)

    monkeypatch.setattr(services.payments, "run_pass", counted_pass)
    breaker.trip()

    with capture_logs() as logs:
        worker = asyncio.create_task(
            run_worker(
                services.database,
                services.clock,
                interval=0.01,
                payments=services.payments,
                mailer=services.mailer,
            )
        )
        try:

            async def passed(times: int) -> bool:
                return passes >= times

            await eventually(lambda: passed(10))  # ten passes that meet the open breaker
            breaker.reset()
            resumed_from = passes
            await eventually(lambda: passed(resumed_from + 2))
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker

    events = [line["event"] for line in logs]
    for step in ("expiries", "payments", "emails"):
        assert events.count(f"worker.{step}_waiting") == 1, step
        assert events.count(f"worker.{step}_resumed") == 1, step
    assert not [event for event in events if event.endswith("pass_failed")]
