"""The worker through a database outage (one line per step when it stops, one when it resumes),
and how it stops: the steps under way end first, unless a second signal or the grace cuts them off."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from tests.conftest import services_of, serving
from tests.shop import eventually
from ticketera.config import Settings
from ticketera.ops.tasks import run_worker, stop_on_signals


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
                stop=asyncio.Event(),
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


async def test_a_stopped_worker_ends_the_step_under_way_then_returns(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cut off in the middle of a transaction, a step would lose the connection it was returning
    (and log a traceback): the stop waits for the step instead."""
    services = services_of(client.app)  # type: ignore[attr-defined]
    in_step, release = asyncio.Event(), asyncio.Event()
    finished: list[str] = []
    real_pass = services.payments.run_pass

    async def slow_pass(*args: Any, **kwargs: Any) -> dict[str, int]:
        in_step.set()
        await release.wait()
        swept = await real_pass(*args, **kwargs)
        finished.append("payments")
        return swept

    monkeypatch.setattr(services.payments, "run_pass", slow_pass)
    stop = asyncio.Event()
    with capture_logs() as logs:
        worker = asyncio.create_task(
            run_worker(
                services.database,
                services.clock,
                interval=3600,
                payments=services.payments,
                mailer=services.mailer,
                stop=stop,
            )
        )
        await asyncio.wait_for(in_step.wait(), timeout=30)
        stop.set()
        await asyncio.sleep(0.1)
        assert not worker.done()  # the payments step is still under way
        release.set()
        await asyncio.wait_for(worker, timeout=30)
    assert finished == ["payments"]
    assert [line["event"] for line in logs][-1] == "worker.stopped"


@pytest.fixture
async def signal_handlers() -> AsyncIterator[None]:
    """The handlers `stop_on_signals` installs on the tests' loop, taken off afterwards."""
    yield
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().remove_signal_handler(signum)


async def stopping_on_signals(stop: asyncio.Event, grace: float) -> asyncio.Task[None]:
    """A task that listens for the signals, then runs a step that never ends by itself."""
    listening = asyncio.Event()

    async def worker() -> None:
        stop_on_signals(stop, grace=grace)
        listening.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(worker())
    await asyncio.wait_for(listening.wait(), timeout=30)
    return task


async def test_sigterm_asks_the_worker_to_stop_and_a_second_signal_cuts_it_off(
    signal_handlers: None,
) -> None:
    stop = asyncio.Event()
    with capture_logs() as logs:
        worker = await stopping_on_signals(stop, grace=3600)
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(stop.wait(), timeout=30)
        assert not worker.done()
        os.kill(os.getpid(), signal.SIGINT)
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(worker, timeout=30)
    assert [(line["event"], line.get("reason"), line.get("signal")) for line in logs] == [
        ("worker.stopping", None, "SIGTERM"),
        ("worker.cut_off", "second_signal", "SIGINT"),
    ]


async def test_steps_that_outlast_the_grace_are_cut_off(signal_handlers: None) -> None:
    stop = asyncio.Event()
    with capture_logs() as logs:
        worker = await stopping_on_signals(stop, grace=0.1)
        os.kill(os.getpid(), signal.SIGINT)
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(worker, timeout=30)
    assert logs[-1]["event"] == "worker.cut_off"
    assert logs[-1]["reason"] == "grace_exceeded"
    assert logs[-1]["grace_seconds"] == 0.1
