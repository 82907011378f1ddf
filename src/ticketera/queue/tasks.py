"""The admission ticker: every replica runs one; the backends make each tick count once per event."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import structlog

from ticketera.events import service as events_service
from ticketera.kit.clock import Clock
from ticketera.kit.db import Database
from ticketera.kit.errors import ServiceUnavailable
from ticketera.kit.lifecycle import pause
from ticketera.kit.resilience import OutageNotice
from ticketera.queue.service import EventQueueSettings, WaitingRoom, to_ms

log = structlog.get_logger(__name__)

# Events stay in the ticker's list this long after they start, for late admissions at the door.
ADMIT_AFTER_START = timedelta(hours=6)


async def admission_tick(room: WaitingRoom, database: Database, clock: Clock, *, tick_seconds: float) -> int:
    """One admission step for every event with an open waiting room; how many users were let in."""
    now = clock()
    async with database.read_session() as session:
        events = await events_service.events_with_open_queues(session, started_before=now - ADMIT_AFTER_START)
        settings = [EventQueueSettings.of(event) for event in events]
    tick = to_ms(now) // int(tick_seconds * 1000)
    admitted = 0
    for event_settings in settings:
        try:
            admitted += len(await room.admission_step(event_settings, tick=tick))
        except ServiceUnavailable as exc:
            log.warning("queue.tick_skipped", event_id=event_settings.event_id, error=exc.code)
    return admitted


async def run_admission_ticker(
    room: WaitingRoom,
    database: Database,
    clock: Clock,
    *,
    tick_seconds: float,
    stop: asyncio.Event,
) -> None:
    """Step every open waiting room each tick until `stop` is set (a tick under way ends first);
    a failed tick never stops the loop."""
    log.info("queue.ticker_started", tick_seconds=tick_seconds)
    outage = OutageNotice("queue.ticker_waiting", "queue.ticker_resumed")
    while not stop.is_set():
        started = time.monotonic()
        try:
            await admission_tick(room, database, clock, tick_seconds=tick_seconds)
            outage.ran()
        except asyncio.CancelledError:
            raise
        except ServiceUnavailable as exc:
            outage.stopped(exc)
        except Exception as exc:
            log.exception("queue.tick_failed", error=type(exc).__name__)
        await pause(stop, max(0.05, tick_seconds - (time.monotonic() - started)))
