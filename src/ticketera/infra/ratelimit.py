"""Request rate limits in the app (per IP on public calls, per user on joins), on top of nginx's.

Built on the `limits` library with its sliding-window counter: Redis storage when Redis is
configured, so every replica shares the counts; memory storage in the embedded default. A limiter
that cannot reach Redis lets requests through (and says so in the log): rate limits protect the
service, they must never become the reason it refuses everyone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Annotated

import structlog
from fastapi import Depends, Request
from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisClusterStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from ticketera.infra.redis import REDIS_TIMEOUT_SECONDS
from ticketera.kit.components import Component
from ticketera.kit.errors import DomainError
from ticketera.kit.http import client_ip, component
from ticketera.kit.resilience import CircuitBreaker
from ticketera.kit.security import bearer_token, secrets_match

log = structlog.get_logger(__name__)


class RateLimited(DomainError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, retry_after: float) -> None:
        super().__init__("Too many requests; slow down and try again shortly.")
        self.retry_after = retry_after


def parse_limits(text: str) -> list[RateLimitItem]:
    """`"20/second"`, `"10/second; 300/minute"`, or `"off"` for none."""
    return [] if text.strip().lower() == "off" else list(parse_many(text))


class RateLimiter:
    def __init__(
        self,
        *,
        per_ip: str,
        per_user_join: str,
        redis_url: str | None = None,
        cluster: bool = False,
        breaker: CircuitBreaker | None = None,
        unlimited_key: str | None = None,
    ) -> None:
        self.per_ip = parse_limits(per_ip)
        # Callers with this bearer key (the admin's) are never limited.
        self._unlimited_key = unlimited_key
        self.per_user_join = parse_limits(per_user_join)
        self._breaker = breaker
        storage: Storage
        if redis_url is None:
            storage = MemoryStorage()
        else:
            scheme, _, rest = redis_url.partition("://")
            timeout = REDIS_TIMEOUT_SECONDS
            if cluster:
                storage = RedisClusterStorage(
                    f"async+redis+cluster://{rest}",
                    implementation="redispy",
                    socket_timeout=timeout,
                    socket_connect_timeout=timeout,
                )
            else:
                storage = RedisStorage(
                    f"async+{scheme}://{rest}",
                    implementation="redispy",
                    socket_timeout=timeout,
                    socket_connect_timeout=timeout,
                )
        self._limiter = SlidingWindowCounterRateLimiter(storage)

    async def limit_public_call(self, client_ip: str, authorization: str | None) -> None:
        """The per-IP limit (APP_RATE_LIMIT) of a public call; admins are not limited."""
        if not self.per_ip or secrets_match(bearer_token(authorization), self._unlimited_key):
            return
        await self.enforce(self.per_ip, "ip", client_ip)

    async def enforce(self, items: Sequence[RateLimitItem], *identifiers: str) -> None:
        """Count one request; raise RateLimited (429 with Retry-After) past any of the limits."""
        if not items:
            return
        if self._breaker is not None and self._breaker.state != "CLOSED":
            return  # Redis is known to be down: let traffic through rather than wait on it
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_SECONDS * 2):
                for item in items:
                    if not await self._limiter.hit(item, *identifiers):
                        stats = await self._limiter.get_window_stats(item, *identifiers)
                        raise RateLimited(retry_after=max(1.0, stats.reset_time - time.time()))
        except RateLimited:
            raise
        except Exception as exc:
            log.warning("ratelimit.storage_unavailable", error=type(exc).__name__, detail=str(exc)[:200])


RATE_LIMITER = Component[RateLimiter]("rate_limiter")
Limiter = Annotated[RateLimiter, Depends(component(RATE_LIMITER))]


async def _public_rate_limit(request: Request, limiter: Limiter) -> None:
    """The app's own per-IP limit (APP_RATE_LIMIT) on public calls; admins are not limited."""
    await limiter.limit_public_call(client_ip(request), request.headers.get("authorization"))


PublicRateLimit = Depends(_public_rate_limit)
