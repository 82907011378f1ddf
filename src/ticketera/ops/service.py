"""Health of the process and its dependencies, in the deployment guide's JSON shape."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from ticketera import __version__
from ticketera.infra.redis import RedisConnection
from ticketera.kit.components import Component
from ticketera.kit.db import Database
from ticketera.kit.resilience import BreakerState, CircuitBreaker
from ticketera.ops.memory import heap_used_bytes, rss_bytes

# time.monotonic() when the app was created, for /health's uptime.
PROCESS_STARTED = Component[float]("process_started")
CLOSED_BREAKER = {"state": "CLOSED", "failureCount": 0}
PAYMENTS_STATUS = {
    BreakerState.CLOSED: "available",
    BreakerState.HALF_OPEN: "recovering",
    BreakerState.OPEN: "unavailable",
}


@dataclass(frozen=True)
class HealthReport:
    body: dict[str, Any]

    @property
    def healthy(self) -> bool:
        # Only the database is required to serve: with Redis down, pages and holds keep working and
        # the waiting room answers 503 queue_unavailable by itself, so the replica stays in rotation.
        return bool(self.body["services"]["database"]["status"] == "connected")


async def health_report(
    database: Database,
    redis: RedisConnection | None,
    started_at: float,
    *,
    payments_breaker: CircuitBreaker | None = None,
) -> HealthReport:
    database_ok, redis_ok = await asyncio.gather(
        database.ping(), redis.ping() if redis is not None else _not_configured()
    )
    if redis is None:
        redis_part: dict[str, Any] = {"status": "not_configured", "circuitBreaker": dict(CLOSED_BREAKER)}
        queue_backend = "memory"
    else:
        redis_part = {
            "status": "connected" if redis_ok else "disconnected",
            "circuitBreaker": redis.breaker.snapshot(),
        }
        queue_backend = "redis"
    queue_available = redis is None or bool(redis_ok)
    payments_state = payments_breaker.state if payments_breaker is not None else BreakerState.CLOSED
    if not database_ok:
        status = "error"
    elif not queue_available or payments_state is BreakerState.OPEN:
        # Degraded, not down: browsing and holds work while payments or the queue wait.
        status = "degraded"
    else:
        status = "ok"
    body = {
        "status": status,
        "uptime": int(time.monotonic() - started_at),
        "version": __version__,
        "services": {
            "redis": redis_part,
            "database": {
                "status": "connected" if database_ok else "disconnected",
                "backend": database.backend,
                "pool": database.pool_status(),
                "circuitBreaker": database.breaker.snapshot(),
                # Each replica: in_use, lagging, down or unknown (not checked yet); a replica out of
                # use leaves its reads to the primary, so it never makes the service unhealthy.
                "replicas": database.replicas.report() if database.replicas is not None else [],
            },
            "queue": {"status": "enabled", "available": queue_available, "backend": queue_backend},
            "mercadopago": {
                # Known from the breaker only: pinging MercadoPago per health check would spend
                # their rate limit on our load balancer's curiosity.
                "status": PAYMENTS_STATUS[payments_state],
                "circuitBreaker": (
                    payments_breaker.snapshot() if payments_breaker is not None else dict(CLOSED_BREAKER)
                ),
            },
        },
        "performance": {"memory": {"rss": rss_bytes(), "heapUsed": heap_used_bytes()}},
    }
    return HealthReport(body)


async def _not_configured() -> None:
    return None
