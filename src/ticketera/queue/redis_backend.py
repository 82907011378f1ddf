"""The Redis waiting room: every step one Lua script, so replicas never interleave inside a step.

All keys of one event share the hash tag `{event:<id>}`, so each script touches a single slot and
the backend runs unchanged on Redis Cluster. Calls go through the Redis circuit breaker with short
socket timeouts: when Redis is gone, callers get `QueueUnavailable` within a second instead of
hanging, and the breaker (3 failures -> open 30 s) stops piling up connection attempts.

Persistence: the line lives only in Redis. Run it with AOF (`appendonly yes`, `appendfsync
everysec`) so a restart resumes from the state Redis kept, losing at most about a second of joins.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any, TypeVar

import structlog
from redis.commands.core import AsyncScript

from ticketera.infra.redis import REDIS_TIMEOUT_SECONDS, RedisConnection
from ticketera.kit.resilience import CircuitOpenError
from ticketera.queue.backend import (
    LATE_JOIN_BASE,
    RATE_WINDOW_MS,
    AdmissionPolicy,
    JoinOutcome,
    LineFigures,
    QueueEntry,
    UserState,
    UserView,
    burst_of,
)
from ticketera.queue.errors import QueueUnavailable

log = structlog.get_logger(__name__)
T = TypeVar("T")


def _script_source(name: str) -> str:
    folder = resources.files("ticketera.queue") / "lua"
    return (folder / "common.lua").read_text() + "\n" + (folder / f"{name}.lua").read_text()


class EventKeys:
    """The keys of one event's waiting room, all in one cluster slot."""

    def __init__(self, event_id: int) -> None:
        tag = f"q:{{event:{event_id}}}"
        self.users = f"{tag}:users"
        self.line = f"{tag}:line"
        self.prequeue = f"{tag}:prequeue"
        self.late_joins = f"{tag}:late_joins"
        self.released = f"{tag}:released"
        self.active = f"{tag}:active"
        self.bucket = f"{tag}:bucket"
        self.admissions = f"{tag}:admissions"
        self.last_tick = f"{tag}:last_tick"
        self.counters = f"{tag}:counters"

    def all(self) -> list[str]:
        return [
            self.users,
            self.line,
            self.prequeue,
            self.late_joins,
            self.released,
            self.active,
            self.bucket,
            self.admissions,
            self.last_tick,
            self.counters,
        ]


def parse_entry(raw: str) -> QueueEntry:
    state, sequence, deadline = raw.split("|")
    return QueueEntry(UserState(state), int(sequence), int(deadline))


class RedisQueueBackend:
    name = "redis"

    def __init__(self, connection: RedisConnection) -> None:
        self.connection = connection
        client = connection.client
        self._join = client.register_script(_script_source("join"))
        self._view = client.register_script(_script_source("view"))
        self._release = client.register_script(_script_source("release"))
        self._admit = client.register_script(_script_source("admit"))
        self._claim = client.register_script(_script_source("claim"))
        self._end = client.register_script(_script_source("end"))
        self._figures = client.register_script(_script_source("figures"))
        self._expire = client.register_script(_script_source("expire"))

    async def _run(self, step: Callable[[], Awaitable[T]]) -> T:
        """One Redis round trip, bounded in time and counted by the Redis breaker.

        Waiting for a free connection slot is this process being busy, not Redis failing: it is
        bounded too, but never counted by the breaker.
        """
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                await self.connection.slots.acquire()
        except TimeoutError as exc:
            log.warning("queue.redis_slots_exhausted")
            raise QueueUnavailable(retry_after=1.0) from exc
        try:
            async with self.connection.breaker, asyncio.timeout(REDIS_TIMEOUT_SECONDS * 1.5):
                return await step()
        except CircuitOpenError as exc:
            raise QueueUnavailable(retry_after=exc.retry_after) from exc
        except TimeoutError as exc:
            # Our own deadline: answer fast, but a busy event loop is no proof that Redis is down.
            log.warning("queue.redis_step_timeout")
            raise QueueUnavailable(retry_after=1.0) from exc
        except Exception as exc:
            if self.connection.is_outage(exc):
                log.warning("queue.redis_unavailable", error=type(exc).__name__, detail=str(exc)[:200])
                raise QueueUnavailable() from exc
            raise
        finally:
            self.connection.slots.release()

    async def _script(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        return await self._run(lambda: script(keys=keys, args=args))

    async def join(
        self, event_id: int, user_id: str, *, now_ms: int, on_sale_ms: int | None, max_waiting: int
    ) -> JoinOutcome:
        k = EventKeys(event_id)
        raw, outcome, rank = await self._script(
            self._join,
            [k.users, k.line, k.prequeue, k.late_joins, k.released, k.active],
            [user_id, now_ms, "" if on_sale_ms is None else on_sale_ms, max_waiting, LATE_JOIN_BASE],
        )
        if outcome == 2:
            return JoinOutcome(
                parse_entry(raw) if raw else QueueEntry(UserState.LEFT), created=False, full=True
            )
        return JoinOutcome(
            parse_entry(raw), created=outcome == 1, ahead=int(rank) if int(rank) >= 0 else None
        )

    async def view(self, event_id: int, user_id: str, *, now_ms: int) -> UserView | None:
        k = EventKeys(event_id)
        found = await self._script(self._view, [k.users, k.line, k.prequeue], [user_id])
        if not found:
            return None
        raw, rank = found
        entry = parse_entry(raw)
        if entry.state in (UserState.ADMITTED, UserState.SHOPPING) and entry.deadline_ms <= now_ms:
            entry = QueueEntry(UserState.EXPIRED, entry.sequence, entry.deadline_ms)
        return UserView(entry, int(rank) if int(rank) >= 0 else None)

    async def prequeue_members(self, event_id: int) -> list[str]:
        members = await self._run(lambda: self.connection.client.smembers(EventKeys(event_id).prequeue))
        return sorted(str(member) for member in members)

    async def release_prequeue(self, event_id: int, ordered: list[str], *, now_ms: int) -> bool:
        k = EventKeys(event_id)
        released = await self._script(self._release, [k.line, k.prequeue, k.released], ordered)
        return bool(released)

    async def is_released(self, event_id: int) -> bool:
        return bool(await self._run(lambda: self.connection.client.exists(EventKeys(event_id).released)))

    async def admit(self, event_id: int, policy: AdmissionPolicy, *, now_ms: int, tick: int) -> list[str]:
        k = EventKeys(event_id)
        admitted: list[str] = await self._script(
            self._admit,
            [k.users, k.line, k.active, k.bucket, k.admissions, k.last_tick, k.counters],
            [
                now_ms,
                policy.admit_per_minute,
                policy.max_active,
                policy.claim_ms,
                1 if policy.paused else 0,
                tick,
                burst_of(policy.admit_per_minute),
            ],
        )
        return list(admitted)

    async def claim(self, event_id: int, user_id: str, *, now_ms: int, access_ms: int) -> QueueEntry | None:
        k = EventKeys(event_id)
        raw = await self._script(self._claim, [k.users, k.active], [user_id, now_ms, access_ms])
        return parse_entry(raw) if raw else None

    async def leave(self, event_id: int, user_id: str, *, now_ms: int) -> bool:
        return await self._end_turn(event_id, user_id, UserState.LEFT)

    async def finish(self, event_id: int, user_id: str, *, now_ms: int) -> bool:
        return await self._end_turn(event_id, user_id, UserState.DONE)

    async def _end_turn(self, event_id: int, user_id: str, state: UserState) -> bool:
        k = EventKeys(event_id)
        ended = await self._script(self._end, [k.users, k.line, k.prequeue, k.active], [user_id, state.value])
        return bool(ended)

    async def figures(self, event_id: int, *, now_ms: int) -> LineFigures:
        k = EventKeys(event_id)
        result = await self._script(
            self._figures,
            [k.users, k.line, k.prequeue, k.active, k.counters, k.admissions, k.released],
            [now_ms],
        )
        waiting, prequeue, active, admitted_total, released, *admissions = result
        recent: list[tuple[int, int]] = []
        for item in admissions:
            at, count = (int(part) for part in str(item).split(":"))
            if at > now_ms - RATE_WINDOW_MS:
                recent.append((at, count))
        return LineFigures(
            waiting=int(waiting),
            prequeue=int(prequeue),
            active=int(active),
            admitted_total=int(admitted_total),
            admitted_last_minute=sum(count for _, count in recent),
            released=bool(released),
            measured_at_ms=now_ms,
            recent_admissions=recent,
        )

    async def expire_at(self, event_id: int, *, at_ms: int) -> None:
        await self._script(self._expire, EventKeys(event_id).all(), [at_ms])

    async def ping(self) -> bool:
        return await self.connection.ping()

    async def close(self) -> None:
        # The connection belongs to the app; it closes it.
        return None
