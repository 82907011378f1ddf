"""A background loop's pause: the whole interval, unless its stop event is set."""

from __future__ import annotations

import asyncio

from tests.shop import eventually
from ticketera.kit.lifecycle import pause


async def test_a_pause_ends_when_the_stop_is_set_meanwhile() -> None:
    stop = asyncio.Event()
    paused = asyncio.create_task(pause(stop, 3600))
    await asyncio.sleep(0.05)
    assert not paused.done()
    stop.set()

    async def ended() -> bool:
        return paused.done()

    await eventually(ended)


async def test_a_pause_once_stopped_does_not_wait() -> None:
    stop = asyncio.Event()
    stop.set()
    await asyncio.wait_for(pause(stop, 3600), timeout=30)


async def test_a_pause_without_a_stop_lasts_its_seconds() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    await pause(asyncio.Event(), 0.05)
    assert loop.time() - started >= 0.05
    await pause(asyncio.Event(), 0)  # a zero pause only lets the other tasks run
