"""A small in-process cache with a time to live, a size bound and single-flight loading.

Entries live in a ``cachetools.TTLCache`` driven by the injected clock: past ``maxsize`` the least
recently used entry goes, and expired entries are dropped on the next store instead of being kept
forever. Some keys are unbounded (event ids), so a plain dict here was a slow leak.

The single-flight layer is still ours: when an entry expires under load, exactly one caller should
reload it while the others wait for that result, instead of a stampede of identical queries.
cachetools' ``cached``/``cachedmethod`` decorators are synchronous and do not coalesce awaits.
async-lru does coalesce concurrent calls, but it is a function decorator whose TTL runs on the event
loop's timer: a single call cannot be forced to reload (``get(..., fresh=True)``), and a test clock
cannot drive its expiry.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

import cachetools

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

DEFAULT_MAXSIZE = 1024


class _Flight:
    """One key's loading lock, and how many callers hold or await it (so the last one drops it)."""

    __slots__ = ("callers", "lock")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.callers = 0


class TtlCache(Generic[K, V]):
    """Values kept ``ttl_seconds`` after they were loaded, at most ``maxsize`` of them."""

    def __init__(
        self,
        ttl_seconds: float,
        *,
        maxsize: int = DEFAULT_MAXSIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.ttl_seconds = ttl_seconds
        self.maxsize = maxsize
        self._entries: cachetools.TTLCache[K, V, float] = cachetools.TTLCache(
            maxsize=maxsize, ttl=ttl_seconds, timer=clock
        )
        self._loading: dict[K, _Flight] = {}

    def __len__(self) -> int:
        """How many entries are stored and not expired."""
        return len(self._entries)

    async def get(self, key: K, load: Callable[[], Awaitable[V]], *, fresh: bool = False) -> V:
        if not fresh:
            # A lookup, not .get(): None is a value some callers cache.
            try:
                return self._entries[key]
            except KeyError:
                pass
        flight = self._loading.get(key)
        if flight is None:
            flight = self._loading[key] = _Flight()
        flight.callers += 1
        try:
            async with flight.lock:
                if not fresh:
                    # Someone else reloaded it while we waited: take theirs.
                    try:
                        return self._entries[key]
                    except KeyError:
                        pass
                value = await load()
                self._entries[key] = value
                return value
        finally:
            flight.callers -= 1
            if flight.callers == 0:
                # No one holds or awaits it: kept, it would be one lock per key ever loaded.
                del self._loading[key]

    def forget(self, key: K) -> None:
        self._entries.pop(key, None)
