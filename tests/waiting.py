"""Waiting for a positive signal instead of for time.

A test that asserts something did *not* happen (a duplicate applied twice, a stale notification
undoing a sale) must first wait until what could have made it happen has been processed; a sleep
proves nothing on a slow machine. `eventually` (tests.shop) waits for something that should happen.
"""

from __future__ import annotations

import asyncio

from tests.conftest import services_of
from tests.shop import Shop, Simulator

# Generous: a busy machine may take seconds; a hang still fails well before pytest-timeout.
PROCESSED_WITHIN_SECONDS = 30.0


async def notifications_processed(shop: Shop, sim: Simulator) -> None:
    """Until every notification the simulator has sent so far was answered by the shop (which stores
    it and hands it to its notification pump before answering) and the pump has processed them all."""
    await sim.drain()
    async with asyncio.timeout(PROCESSED_WITHIN_SECONDS):
        await services_of(shop.app).notification_pump.drained()
