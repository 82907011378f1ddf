"""Read replicas: which one serves a read that tolerates lag, and when the primary serves it instead.

Only reads that tolerate DB_REPLICA_MAX_LAG_SECONDS of lag come here (`Database.replica_session`):
the public listing, an event's detail, its seat map, the door's check-in figures. A read that decides
a write (holds, orders, payments) or follows the caller's own write (the buyer's order page right
after paying, an admin reading back the event they changed) stays on the primary, whatever this says.

How far behind a replica is, and why it is measured this way
------------------------------------------------------------
Each process runs one checker (`ReplicaSet.start`), four times per DB_REPLICA_MAX_LAG_SECONDS:

1. it notes the time on its own monotonic clock and asks the primary `SELECT @@gtid_binlog_pos`,
   the GTID of the last transaction written to its binlog in each replication domain. Everything
   the primary had committed when the clock was read is covered by that position;
2. it asks every replica `SELECT @@gtid_slave_pos`, the last GTID its SQL thread applied per domain;
3. a replica whose position has reached (per domain, sequence number at least as high) the
   position sampled at time t had every transaction the primary committed before t. The newest
   such t is the replica's `fresh_as_of`; its lag at any later moment is at most `now - fresh_as_of`.

A request's pick is a memory read: a replica serves it only while `now - fresh_as_of` is within
the maximum, so between two checks the bound keeps growing on its own, and a checker that stalls
(a frozen replica, an unreachable primary) makes its replicas fall out of use by themselves.

Why not `SHOW SLAVE STATUS`' Seconds_Behind_Master: the `readonly` user has SELECT on Ticketera's
database only, and SHOW SLAVE STATUS needs SLAVE MONITOR; and the figure compares the timestamp of
the event the SQL thread is applying with the replica's clock, so it reads 0 while the IO thread
silently waits on a dead connection (up to slave_net_timeout, 60 s), jumps with long transactions,
and trusts two servers' clocks to agree. Why not a heartbeat table (pt-heartbeat): it needs a
writer on the primary, a row per writer or one clock shared by all, and binlog traffic of its own.
Comparing GTID positions needs no privilege (both are global variables any user may read), no
write, and only this process's clock; its resolution is one check period. A replica whose
replication stopped while the primary takes no writes counts as fresh, rightly: it lacks nothing.

A replica that does not answer the check, or on which a request meets an outage, is marked down
(its own breaker, tripped: the primary's breaker never hears of it) until a check finds it answering
and caught up again. A frozen replica is cut by a `FreezeWatch` of its own, as the primary is.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from enum import StrEnum

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ticketera.config import Settings
from ticketera.kit.db import READ_ONLY_OPTION, DatabaseUnavailable, engine_for, is_database_outage
from ticketera.kit.dbwatch import FreezeWatch
from ticketera.kit.resilience import BreakerState, CircuitBreaker

log = structlog.get_logger(__name__)

# A GTID position as MariaDB writes it ("0-1-42,1-2-7"): per replication domain, the sequence
# number of the last transaction (the server id in the middle does not order them).
GtidPosition = dict[int, int]
# Checks per DB_REPLICA_MAX_LAG_SECONDS: a replica past the maximum is noticed within a quarter of it.
CHECKS_PER_MAX_LAG = 4
# How long positions sampled from the primary are kept: a replica that reached none of them is
# further behind than this, which is all anyone needs to know.
HISTORY_SECONDS = 30.0
# A check never waits less than this for an answer (a 0.1 s maximum lag must not make a busy
# replica look down).
MIN_CHECK_TIMEOUT_SECONDS = 0.5

_Clock = Callable[[], float]


def parse_gtid_position(value: str | None) -> GtidPosition:
    """`"0-1-42,1-2-7"` -> {0: 42, 1: 7}; empty or None (no transaction yet) -> {}."""
    position: GtidPosition = {}
    for part in (value or "").split(","):
        part = part.strip()
        if not part:
            continue
        domain, _server, sequence = part.split("-")
        position[int(domain)] = max(position.get(int(domain), 0), int(sequence))
    return position


def has_reached(replica: GtidPosition, primary: GtidPosition) -> bool:
    """Whether a replica at `replica` has applied every transaction up to `primary`."""
    return all(replica.get(domain, -1) >= sequence for domain, sequence in primary.items())


class ReplicaStatus(StrEnum):
    UNKNOWN = "unknown"  # not checked yet
    IN_USE = "in_use"
    LAGGING = "lagging"
    DOWN = "down"


class Replica:
    """One replica: its engine, its sessions, and what the last check found."""

    def __init__(self, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.engine = engine
        self.sessions = sessions
        url = engine.url
        # Host, port and database only: this name goes to /health, /metrics and the logs.
        self.name = f"{url.host}:{url.port or 3306}/{url.database or ''}"
        # Threshold 1: one outage is enough to send reads to the primary, which costs nothing.
        # Only a check closes it (`reset`), so its open time is never waited out.
        self.breaker = CircuitBreaker("database_replica", failure_threshold=1, reset_timeout=3600.0)
        self.fresh_as_of: float | None = None
        self.checked: bool = False
        self.reads = 0
        self.error: str | None = None
        self._freeze_watch: FreezeWatch | None = None

    @property
    def answering(self) -> bool:
        return self.breaker.state is BreakerState.CLOSED

    def mark_down(self, error: BaseException | str) -> None:
        self.error = error if isinstance(error, str) else type(error).__name__
        if self.answering:
            log.warning("database.replica_down", replica=self.name, error=self.error)
        self.breaker.trip()

    def watch_for_freezes(self, unresponsive_after: float) -> None:
        url = self.engine.url
        if url.host and self._freeze_watch is None:
            self._freeze_watch = FreezeWatch(
                self.engine,
                self.breaker,
                host=url.host,
                port=url.port or 3306,
                unresponsive_after=unresponsive_after,
            )
            self._freeze_watch.start()

    async def dispose(self) -> None:
        if self._freeze_watch is not None:
            await self._freeze_watch.stop()
        await self.engine.dispose()


class ReplicaSet:
    """The replicas of one process, their checker, and the pick of one for a read."""

    def __init__(
        self,
        primary: AsyncEngine,
        replicas: Sequence[Replica],
        *,
        max_lag_seconds: float,
        clock: _Clock = time.monotonic,
    ) -> None:
        self.primary = primary
        self.replicas = list(replicas)
        self.max_lag_seconds = max_lag_seconds
        self.check_interval = max_lag_seconds / CHECKS_PER_MAX_LAG
        self.check_timeout = max(max_lag_seconds, MIN_CHECK_TIMEOUT_SECONDS)
        self.primary_reads = 0
        self._clock = clock
        # (monotonic time before asking, the primary's position then), oldest first.
        self._samples: deque[tuple[float, GtidPosition]] = deque()
        self._turn = itertools.count()
        self._task: asyncio.Task[None] | None = None

    # -- per request: memory reads only ---------------------------------------------------------

    def usable(self, replica: Replica, now: float) -> bool:
        return (
            replica.answering
            and replica.fresh_as_of is not None
            and now - replica.fresh_as_of <= self.max_lag_seconds
        )

    def pick(self) -> Replica | None:
        """A replica fit to serve a read now, taking turns among the fit ones; None: the primary."""
        now = self._clock()
        fit = [replica for replica in self.replicas if self.usable(replica, now)]
        return fit[next(self._turn) % len(fit)] if fit else None

    @asynccontextmanager
    async def session(self, replica: Replica) -> AsyncIterator[AsyncSession | None]:
        """A read session on `replica`, connected; None if it could not connect (it is then marked
        down, and the caller reads from the primary). An outage met later is marked too, and raised."""
        session = replica.sessions()
        try:
            try:
                await session.connection()
                connected = True
            except Exception as exc:
                if not is_database_outage(exc):
                    raise
                replica.mark_down(exc)
                connected = False
            if not connected:
                yield None
                return
            replica.reads += 1
            try:
                yield session
            except Exception as exc:
                if not is_database_outage(exc):
                    raise
                # Too late to read from the primary instead (the handler has begun); the next
                # requests will, and this one answers 503 as a primary outage would.
                replica.mark_down(exc)
                raise DatabaseUnavailable() from exc
        finally:
            await session.close()

    # -- the checker ------------------------------------------------------------------------------

    def start(self) -> None:
        """Check every replica four times per maximum lag, until `stop`. Needs a running loop."""
        if self._task is None and self.replicas:
            for replica in self.replicas:
                log.info("database.replica_configured", replica=replica.name)
            self._task = asyncio.get_running_loop().create_task(self._check_forever(), name="replica-checks")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _check_forever(self) -> None:
        while True:
            try:
                await self.check()
            except Exception as exc:  # the checker must outlive whatever one round ran into
                log.warning("database.replica_check_failed", error=type(exc).__name__)
            await asyncio.sleep(self.check_interval)

    async def check(self) -> None:
        """One round: sample the primary's position, then ask every replica where it is."""
        asked_at = self._clock()
        try:
            async with asyncio.timeout(self.check_timeout), self.primary.connect() as connection:
                position = parse_gtid_position(await connection.scalar(text("SELECT @@gtid_binlog_pos")))
        except Exception as exc:
            # No new sample: the replicas are measured against the last ones, so their bound keeps
            # growing and they fall out of use after the maximum lag, as a lag nobody can measure.
            log.info("database.replica_primary_position_unknown", error=type(exc).__name__)
        else:
            self._note_sample(asked_at, position)
        await asyncio.gather(*(self._check_replica(replica) for replica in self.replicas))

    def _note_sample(self, asked_at: float, position: GtidPosition) -> None:
        if self._samples and self._samples[-1][1] == position:
            # Nothing written since: the same position, true at a later time.
            self._samples[-1] = (asked_at, position)
        else:
            self._samples.append((asked_at, position))
        while self._samples and self._samples[0][0] < asked_at - HISTORY_SECONDS and len(self._samples) > 1:
            self._samples.popleft()

    async def _check_replica(self, replica: Replica) -> None:
        try:
            async with asyncio.timeout(self.check_timeout), replica.engine.connect() as connection:
                value = await connection.scalar(text("SELECT @@gtid_slave_pos"))
        except Exception as exc:
            replica.checked = True
            replica.mark_down(exc)
            return
        replica.checked = True
        position = parse_gtid_position(value)
        fresh_as_of = next(
            (at for at, sampled in reversed(self._samples) if has_reached(position, sampled)), None
        )
        was_usable = self.usable(replica, self._clock())
        if fresh_as_of is not None:
            replica.fresh_as_of = max(fresh_as_of, replica.fresh_as_of or fresh_as_of)
        if not replica.answering:
            log.info("database.replica_answers", replica=replica.name)
            replica.breaker.reset()
            replica.error = None
        now_usable = self.usable(replica, self._clock())
        if was_usable and not now_usable:
            log.warning("database.replica_lagging", replica=replica.name, lag_seconds=self._lag_of(replica))
        elif now_usable and not was_usable:
            log.info("database.replica_in_use", replica=replica.name, lag_seconds=self._lag_of(replica))

    # -- what /health and /metrics show -----------------------------------------------------------

    def status_of(self, replica: Replica) -> ReplicaStatus:
        if not replica.answering:
            return ReplicaStatus.DOWN
        if not replica.checked:
            return ReplicaStatus.UNKNOWN
        return ReplicaStatus.IN_USE if self.usable(replica, self._clock()) else ReplicaStatus.LAGGING

    def _lag_of(self, replica: Replica) -> float | None:
        """Seconds the replica may be behind at most; None when no check has measured it."""
        if replica.fresh_as_of is None:
            return None
        return round(max(0.0, self._clock() - replica.fresh_as_of), 3)

    def report(self) -> list[dict[str, object]]:
        return [
            {
                "name": replica.name,
                "status": self.status_of(replica).value,
                "lagSeconds": self._lag_of(replica) if replica.answering else None,
                "reads": replica.reads,
                "error": replica.error,
            }
            for replica in self.replicas
        ]

    def lag_seconds(self, replica: Replica) -> float | None:
        return self._lag_of(replica)

    async def dispose(self) -> None:
        await self.stop()
        for replica in self.replicas:
            await replica.dispose()


def replica_set_for(settings: Settings, primary: AsyncEngine) -> ReplicaSet | None:
    """The replicas DATABASE_REPLICA_URL names, each with an engine made as the primary's is (same
    pool size, timeouts and DB_SSL); None when there are none."""
    replicas = []
    for url in settings.async_replica_urls:
        engine = engine_for(settings, url=url)
        sessions = async_sessionmaker(
            engine.execution_options(**{READ_ONLY_OPTION: True}), expire_on_commit=False
        )
        replicas.append(Replica(engine, sessions))
    if not replicas:
        return None
    return ReplicaSet(primary, replicas, max_lag_seconds=settings.db_replica_max_lag_seconds)
