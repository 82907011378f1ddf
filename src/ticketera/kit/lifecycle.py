"""Background loops that stop between steps: a stop event ends their sleep at once, and the step
under way finishes instead of being cancelled in the middle of a transaction."""

from __future__ import annotations

import asyncio
import contextlib

# How long a stopping process lets its background steps end before it cancels them. The steps look
# at the stop between items (a notification, a refund, an email, a batch of expiries), so this only
# has to outlast one item's slowest call; and it is inside the 40 s the Compose stack gives a
# container between SIGTERM and SIGKILL (systemd gives 90 s; plain `docker stop`, 10).
BACKGROUND_STOP_GRACE_SECONDS = 20.0


def stopped(stop: asyncio.Event | None) -> bool:
    """Whether a loop handed this (optional) stop should end before its next item."""
    return stop is not None and stop.is_set()


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds`, or less when `stop` is set meanwhile (at once when it is set already)."""
    if seconds <= 0:
        await asyncio.sleep(0)
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()
