"""The notification pump stops between notifications: the one under way is processed, the ones
still queued stay pending in the inbox for the worker's sweep."""

from __future__ import annotations

import asyncio
from typing import Any

from ticketera.payments.tasks import NotificationPump


class SlowProcessor:
    """Processes a notification once released; no spool to drain."""

    spool = None

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.processed: list[int] = []

    async def process_notification(self, notification_id: int) -> None:
        self.started.set()
        await self.release.wait()
        self.processed.append(notification_id)


def pump_of(processor: SlowProcessor) -> NotificationPump:
    any_processor: Any = processor
    return NotificationPump(any_processor)


async def test_a_stopped_pump_processes_the_notification_under_way_and_returns() -> None:
    processor = SlowProcessor()
    pump = pump_of(processor)
    pump.submit(1)
    pump.submit(2)
    stop = asyncio.Event()
    running = asyncio.create_task(pump.run(stop))
    await asyncio.wait_for(processor.started.wait(), timeout=30)
    stop.set()
    await asyncio.sleep(0.05)
    assert not running.done()  # notification 1 is under way
    processor.release.set()
    await asyncio.wait_for(running, timeout=30)
    assert processor.processed == [1]


async def test_an_idle_pump_stops_at_once() -> None:
    processor = SlowProcessor()
    pump = pump_of(processor)
    stop = asyncio.Event()
    running = asyncio.create_task(pump.run(stop))
    await asyncio.sleep(0.05)
    assert not running.done()  # waiting for its queue
    stop.set()
    await asyncio.wait_for(running, timeout=30)
    assert processor.processed == []


async def test_a_running_pump_processes_what_is_submitted_in_order() -> None:
    processor = SlowProcessor()
    processor.release.set()
    pump = pump_of(processor)
    stop = asyncio.Event()
    running = asyncio.create_task(pump.run(stop))
    for notification_id in (3, 4, 5):
        pump.submit(notification_id)
    await asyncio.wait_for(pump.drained(), timeout=30)
    stop.set()
    await asyncio.wait_for(running, timeout=30)
    assert processor.processed == [3, 4, 5]
