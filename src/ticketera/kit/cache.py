"""A tiny in-process cache with a time to live and single-flight loading.

Written by hand because the kept caching libraries (cachetools, aiocache) either are synchronous or
do not coalesce concurrent misses: when an entry expires under load, exactly one caller should
reload it while the others wait for that result, instead of a stampede of identical queries.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    def __init__(self, ttl_seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._entries: dict[K, tuple[float, V]] = {}
        self._loading: dict[K, asyncio.Lock] = {}

    async def get(self, key: K, load: Callable[[], Awaitable[V]], *, fresh: bool = False) -> V:
        entry = self._entries.get(key)
        if not fresh and entry is not None and self._clock() - entry[0] <= self.ttl_seconds:
            return entry[1]
        lock = self._loading.setdefault(key, asyncio.Lock())
        async with lock:
            entry = self._entries.get(key)
            # Someone else reloaded it while we waited: take theirs.
            if entry is not None and self._clock() - entry[0] <= self.ttl_seconds and not fresh:
                return entry[1]
            value = await load()
            self._entries[key] = (self._clock(), value)
            return value

    def forget(self, key: K) -> None:
        self._entries.pop(key, None)
