"""The single-flight TTL cache."""

from __future__ import annotations

import asyncio

import pytest

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


class Loader:
    """A load function that counts its calls and can be held until released."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self) -> int:
        self.calls += 1
        await self.release.wait()
        return self.calls


async def test_past_maxsize_the_least_recently_used_entry_is_evicted() -> None:
    cache: TtlCache[str, int] = TtlCache(60.0, maxsize=2, clock=Ticker())
    loaders = {key: Loader() for key in "abc"}

    await cache.get("a", loaders["a"])
    await cache.get("b", loaders["b"])
    await cache.get("a", loaders["a"])  # "a" is now the more recently used
    await cache.get("c", loaders["c"])

    assert len(cache) == 2
    await cache.get("a", loaders["a"])
    assert loaders["a"].calls == 1
    await cache.get("b", loaders["b"])
    assert loaders["b"].calls == 2


async def test_expired_entries_leave_the_storage() -> None:
    clock = Ticker()
    cache: TtlCache[int, int] = TtlCache(2.0, clock=clock)
    for event_id in range(100):
        await cache.get(event_id, Loader())
    assert len(cache) == 100

    clock.now = 2.5
    await cache.get(1000, Loader())

    # The store of the new entry swept the expired ones out; nothing stale is left behind.
    assert cache._entries.expire() == []
    assert list(cache._entries) == [1000]
    assert len(cache) == 1


async def test_default_maxsize_bounds_unbounded_keys() -> None:
    cache: TtlCache[int, int] = TtlCache(60.0, clock=Ticker())
    for event_id in range(cache.maxsize + 10):
        await cache.get(event_id, Loader())
    assert len(cache) == cache.maxsize == 1024


def test_maxsize_must_hold_something() -> None:
    with pytest.raises(ValueError, match="maxsize"):
        TtlCache(1.0, maxsize=0)


async def test_loading_locks_do_not_accumulate() -> None:
    cache: TtlCache[int, int] = TtlCache(60.0, clock=Ticker())
    for event_id in range(50):
        await cache.get(event_id, Loader())
        await cache.get(event_id, Loader(), fresh=True)
    await asyncio.gather(*(cache.get(event_id, Loader()) for event_id in range(50, 100) for _ in range(3)))

    async def broken() -> int:
        raise RuntimeError("source down")

    with pytest.raises(RuntimeError):
        await cache.get(200, broken)

    held = Loader()
    held.release.clear()
    loading = asyncio.create_task(cache.get(300, held))
    waiting = asyncio.create_task(cache.get(300, held))
    await asyncio.sleep(0)
    assert cache._loading[300].callers == 2
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    loading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loading

    assert cache._loading == {}


async def test_single_flight_holds_while_a_load_is_in_flight() -> None:
    clock = Ticker()
    cache: TtlCache[str, int] = TtlCache(2.0, clock=clock)
    loader = Loader()
    loader.release.clear()

    callers = [asyncio.create_task(cache.get("k", loader)) for _ in range(20)]
    await asyncio.sleep(0)
    assert loader.calls == 1
    assert cache._loading["k"].callers == 20
    loader.release.set()
    assert await asyncio.gather(*callers) == [1] * 20

    # Expired under load: one reload again, not twenty.
    clock.now = 3.0
    loader.release.clear()
    callers = [asyncio.create_task(cache.get("k", loader)) for _ in range(20)]
    await asyncio.sleep(0)
    loader.release.set()
    assert await asyncio.gather(*callers) == [2] * 20
    assert loader.calls == 2
    assert cache._loading == {}


async def test_none_is_cached_like_any_value() -> None:
    cache: TtlCache[int, str | None] = TtlCache(60.0, clock=Ticker())
    calls = 0

    async def missing() -> str | None:
        nonlocal calls
        calls += 1
        return None

    assert await cache.get(1, missing) is None
    assert await cache.get(1, missing) is None
    assert calls == 1
