"""The single-flight TTL cache."""

from __future__ import annotations

import asyncio

from ticketera.kit.cache import TtlCache


class Ticker:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_concurrent_misses_load_once_and_entries_expire() -> None:
    clock = Ticker()
    cache: TtlCache[str, int] = TtlCache(2.0, clock=clock)
    loads: list[int] = []

    async def load() -> int:
        loads.append(1)
        await asyncio.sleep(0)
        return len(loads)

    first = await asyncio.gather(*(cache.get("k", load) for _ in range(50)))
    clock.now = 1.9
    cached = await cache.get("k", load)
    clock.now = 2.1
    reloaded = await cache.get("k", load)
    forced = await cache.get("k", load, fresh=True)
    cache.forget("k")
    after_forget = await cache.get("k", load)

    assert first == [1] * 50
    assert (cached, reloaded, forced, after_forget) == (1, 2, 3, 4)
