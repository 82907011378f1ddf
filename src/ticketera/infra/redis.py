"""The Redis connection: one client per process (single server or Cluster), short timeouts, one breaker."""

from __future__ import annotations

import asyncio

import structlog
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import (
    ClusterError,
    MaxConnectionsError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TryAgainError,
)

from ticketera.kit.components import Component
from ticketera.kit.resilience import CircuitBreaker, CircuitOpenError, breaker_for

log = structlog.get_logger(__name__)

# A waiting room must answer within a second even when Redis is gone: fail fast, never hang.
REDIS_TIMEOUT_SECONDS = 0.5
# Connections per process; Lua steps take microseconds, so a few dozen serve thousands of requests.
REDIS_POOL_SIZE = 64
# What uvloop (the served app's loop) says, as a RuntimeError, to a write on a connection the server
# has already dropped; asyncio's own loop drops the write, and the read then fails as ConnectionError.
CLOSED_TRANSPORT = "the handler is closed"


def is_redis_outage(exc: BaseException) -> bool:
    """Errors that mean Redis cannot serve us, as opposed to a mistake or this process being busy.

    A full connection pool, or our own deadline expiring (`asyncio.timeout`, builtin TimeoutError),
    is this process being busy: the caller is refused, but the breaker stays closed. Redis's own
    socket timeouts (`redis.exceptions.TimeoutError`) do count: Redis did not answer in time.
    """
    # A cluster between masters (failover, a slot without a node, redirections running out) is an
    # outage of the line, whichever class redis-py gives it; the cluster client's own errors are
    # not even RedisErrors.
    if isinstance(exc, (ClusterError, TryAgainError, RedisClusterException)):
        return True
    if isinstance(exc, ResponseError):
        return any(marker in str(exc) for marker in ("CLUSTERDOWN", "LOADING", "TRYAGAIN", "MASTERDOWN"))
    # A master killed mid-write (a failover): redis-py drops the connection and lets the error out.
    if isinstance(exc, RuntimeError) and CLOSED_TRANSPORT in str(exc):
        return True
    if isinstance(exc, MaxConnectionsError) or "No connection available" in str(exc):
        return False
    if isinstance(exc, TimeoutError):
        return False
    return isinstance(exc, (RedisError, OSError))


def _config_values(answer: object, name: str) -> set[str]:
    """A CONFIG GET value, from one server (`{name: value}`) or from each node of a cluster
    (`{node: {name: value}}`)."""
    if not isinstance(answer, dict):
        return set()
    if name in answer:
        return {str(answer[name])}
    return {str(node[name]) for node in answer.values() if isinstance(node, dict) and name in node}


class RedisConnection:
    def __init__(self, url: str, *, cluster: bool = False, breaker: CircuitBreaker | None = None) -> None:
        self.url = url
        self.cluster = cluster
        self.client: Redis | RedisCluster
        if cluster:
            self.client = RedisCluster.from_url(
                url,
                max_connections=REDIS_POOL_SIZE,
                socket_timeout=REDIS_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                decode_responses=True,
            )
        else:
            # A blocking pool: a burst of requests waits briefly for a connection instead of failing.
            pool = BlockingConnectionPool.from_url(
                url,
                max_connections=REDIS_POOL_SIZE,
                timeout=REDIS_TIMEOUT_SECONDS,
                socket_timeout=REDIS_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                health_check_interval=30,
                decode_responses=True,
            )
            self.client = Redis(connection_pool=pool)
        self.breaker = breaker or breaker_for("redis", counts_as_failure=is_redis_outage)
        # At most this many commands in flight per process, for both client kinds: the cluster
        # client refuses (rather than queues) past its per-node connection limit.
        self.slots = asyncio.Semaphore(REDIS_POOL_SIZE)

    def is_outage(self, exc: BaseException) -> bool:
        return is_redis_outage(exc)

    async def answers(self) -> None:
        """A PING not through the breaker (the breaker's background probe, and `ping`'s PING);
        raises if Redis does not answer in time."""
        async with asyncio.timeout(REDIS_TIMEOUT_SECONDS * 2):
            await self.client.ping()

    async def ping(self) -> bool:
        try:
            async with self.breaker:
                await self.answers()
            return True
        except CircuitOpenError:
            return False
        except Exception as exc:
            log.warning("redis.ping_failed", error=type(exc).__name__, detail=str(exc)[:200])
            return False

    async def persistence_risks(self) -> list[str]:
        """What in Redis' configuration could lose places in line, which live only there: an
        eviction policy other than `noeviction` (it would silently drop waiting users' keys under
        memory pressure), or no append-only file (a restart loses every line). Empty when the
        configuration cannot be read (a managed Redis may refuse CONFIG): nothing is known then."""
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_SECONDS * 4):
                policies = _config_values(
                    await self.client.config_get("maxmemory-policy"), "maxmemory-policy"
                )
                appendonly = _config_values(await self.client.config_get("appendonly"), "appendonly")
        except Exception as exc:
            log.info("redis.config_unreadable", error=type(exc).__name__, detail=str(exc)[:200])
            return []
        risks = []
        if evicting := sorted(policies - {"noeviction"}):
            risks.append(
                f"maxmemory-policy is {', '.join(evicting)}: under memory pressure Redis would drop "
                "waiting users' places; set it to noeviction"
            )
        if "no" in appendonly:
            risks.append("appendonly is no: a Redis restart would lose every waiting line; turn AOF on")
        return risks

    async def close(self) -> None:
        await self.client.aclose()

    async def delete_matching(self, pattern: str) -> int:
        """Delete every key matching `pattern` (SCAN, never KEYS, so Redis keeps serving meanwhile)."""
        deleted = 0
        async for key in self.client.scan_iter(match=pattern, count=1000):
            # One key at a time: keys of different cluster slots cannot share a DEL.
            deleted += int(await self.client.delete(key))
        return deleted


# None when no Redis is configured (the embedded default).
REDIS = Component["RedisConnection | None"]("redis")
