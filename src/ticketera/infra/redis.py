"""The Redis connection: one client per process, short timeouts, behind the Redis breaker."""

from __future__ import annotations

import asyncio

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from ticketera.kit.resilience import CircuitBreaker, CircuitOpenError, breaker_for

log = structlog.get_logger(__name__)

# A waiting room must answer within a second even when Redis is gone: fail fast, never hang.
REDIS_TIMEOUT_SECONDS = 1.0


def _is_redis_outage(exc: BaseException) -> bool:
    return isinstance(exc, (RedisError, OSError, TimeoutError))


class RedisConnection:
    def __init__(self, url: str, breaker: CircuitBreaker | None = None) -> None:
        self.url = url
        self.client: Redis = Redis.from_url(
            url,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            health_check_interval=30,
            decode_responses=True,
        )
        self.breaker = breaker or breaker_for("redis", counts_as_failure=_is_redis_outage)

    async def ping(self) -> bool:
        try:
            async with self.breaker, asyncio.timeout(REDIS_TIMEOUT_SECONDS * 2):
                await self.client.ping()
            return True
        except CircuitOpenError:
            return False
        except Exception as exc:
            log.warning("redis.ping_failed", error=type(exc).__name__, detail=str(exc)[:200])
            return False

    async def close(self) -> None:
        await self.client.aclose()
