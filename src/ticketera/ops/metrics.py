"""`GET /metrics` in Prometheus text format: requests by route, queues, holds, orders, breakers, pool.

Three kinds of figures, each collected where it is true:
- Requests (counts, latency histograms) are counted by the middleware in `infra.metrics`, per
  process; with several workers the scrape adds up every worker's files.
- Figures of shared state (orders by status, live holds, the waiting rooms) are read at scrape time
  by whichever worker answers, from the database and the queue backend every worker shares, and
  kept a few seconds so that several Prometheus servers scraping cost one read.
- Figures of one process (circuit breakers, connection pool, resident memory, CPU time) are gauges labelled,
  with several workers, by the worker's pid: each worker writes its own (see `ProcessGauges`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

import structlog
from fastapi import APIRouter, FastAPI
from prometheus_client import CollectorRegistry, Gauge, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncSession

from ticketera.events import service as events_service
from ticketera.holds import service as holds_service
from ticketera.infra.metrics import RequestMetrics, RequestMetricsMiddleware, multiprocess_directory
from ticketera.infra.redis import REDIS
from ticketera.kit.cache import TtlCache
from ticketera.kit.components import Component, Components
from ticketera.kit.db import Database
from ticketera.kit.http import CLOCK, DATABASE, components_of
from ticketera.kit.replicas import ReplicaSet, ReplicaStatus
from ticketera.kit.resilience import BreakerState, CircuitBreaker
from ticketera.ops.memory import rss_bytes
from ticketera.orders import service as orders_service
from ticketera.payments.tasks import PAYMENTS
from ticketera.queue.service import WAITING_ROOM, WaitingRoom, to_ms
from ticketera.queue.tasks import ADMIT_AFTER_START

log = structlog.get_logger(__name__)

METRICS_PATH = "/metrics"
# Orders, holds and queue sizes are read again at most this often, however many scrapes arrive.
FIGURES_TTL_SECONDS = 5.0
# A scrape must answer while a dependency hangs: its figures are left out (and its `up` is 0).
SOURCE_TIMEOUT_SECONDS = 2.0
# With several workers, how often each one writes its own breaker, pool and memory figures, so
# that a scrape answered by a sibling shows them current even when this worker gets no traffic.
PROCESS_REFRESH_SECONDS = 5.0
BREAKER_STATE_CODES = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


@dataclass(frozen=True)
class QueueLine:
    event_id: int
    waiting: int
    prequeue: int
    active: int
    admitted_total: int


@dataclass(frozen=True)
class DatabaseFigures:
    orders_by_status: dict[str, int]
    live_holds: int
    live_held_units: int
    open_queue_event_ids: list[int]


@dataclass(frozen=True)
class SharedFigures:
    """What the database and the waiting room said; None for a source that could not be read."""

    database: DatabaseFigures | None
    queues: list[QueueLine] | None


async def read_database_figures(database: Database, now: datetime) -> DatabaseFigures:
    async def read(session: AsyncSession) -> DatabaseFigures:
        orders = await orders_service.count_by_status(session, now)
        holds, units = await holds_service.count_live_holds(session, now)
        # The admission ticker's own work list: the events whose line is live. The backends cannot
        # list their lines cheaply (Redis would need a SCAN of the keyspace), the database can.
        events = await events_service.events_with_open_queues(session, started_before=now - ADMIT_AFTER_START)
        by_status = {status.value: count for status, count in orders.items()}
        return DatabaseFigures(by_status, holds, units, sorted(event.id for event in events))

    return await database.read(read)


async def read_queue_lines(room: WaitingRoom, event_ids: list[int], now: datetime) -> list[QueueLine]:
    lines = []
    for event_id in event_ids:
        figures = await room.backend.figures(event_id, now_ms=to_ms(now))
        lines.append(
            QueueLine(event_id, figures.waiting, figures.prequeue, figures.active, figures.admitted_total)
        )
    return lines


async def read_shared_figures(components: Components) -> SharedFigures:
    database = components.find(DATABASE)
    room = components.find(WAITING_ROOM)
    if database is None or room is None:  # the app is not started (no lifespan ran)
        return SharedFigures(None, None)
    now = components.get(CLOCK)()
    try:
        async with asyncio.timeout(SOURCE_TIMEOUT_SECONDS):
            found = await read_database_figures(database, now)
    except Exception as exc:
        log.warning("metrics.source_failed", source="database", error=type(exc).__name__)
        return SharedFigures(None, None)
    try:
        async with asyncio.timeout(SOURCE_TIMEOUT_SECONDS):
            lines = await read_queue_lines(room, found.open_queue_event_ids, now)
    except Exception as exc:
        log.warning("metrics.source_failed", source="queue", error=type(exc).__name__)
        return SharedFigures(found, None)
    return SharedFigures(found, lines)


class SharedFiguresCollector(Collector):
    """One scrape's figures of shared state, as metric families."""

    def __init__(self, figures: SharedFigures) -> None:
        self.figures = figures

    def collect(self) -> Iterable[Metric]:
        database, queues = self.figures.database, self.figures.queues
        up = GaugeMetricFamily(
            "ticketera_metrics_source_up",
            "1 when the last read of this source for /metrics worked; its figures are missing if 0.",
            labels=["source"],
        )
        up.add_metric(["database"], float(database is not None))
        up.add_metric(["queue"], float(queues is not None))
        yield up
        if database is not None:
            orders = GaugeMetricFamily(
                "ticketera_orders",
                "Orders by status; unpaid orders past their deadline count as expired.",
                labels=["status"],
            )
            for status, count in sorted(database.orders_by_status.items()):
                orders.add_metric([status], count)
            yield orders
            yield GaugeMetricFamily(
                "ticketera_holds_live", "Holds still holding seats or places.", value=database.live_holds
            )
            yield GaugeMetricFamily(
                "ticketera_holds_live_units",
                "Seats and places held by live holds.",
                value=database.live_held_units,
            )
        if queues is not None:
            users = GaugeMetricFamily(
                "ticketera_queue_users",
                "Users of each live waiting room: in line (waiting), joined before the on-sale "
                "(prequeue), or let in and not yet done (active).",
                labels=["event_id", "state"],
            )
            admitted = CounterMetricFamily(
                "ticketera_queue_admitted",
                "Users let in by each live waiting room since it opened.",
                labels=["event_id"],
            )
            for line in queues:
                event = str(line.event_id)
                users.add_metric([event, "waiting"], line.waiting)
                users.add_metric([event, "prequeue"], line.prequeue)
                users.add_metric([event, "active"], line.active)
                admitted.add_metric([event], line.admitted_total)
            yield users
            yield admitted


class ProcessGauges:
    """Figures of this process alone: its circuit breakers, its connection pool, its memory.

    Gauges rather than a collector, because with several workers a scrape is answered by one of
    them and only values in the shared files reach it. Mode `liveall` gives each worker its own
    series (label `pid`), and the supervisor deletes a dead worker's, so a restarted worker does
    not leave a stale open breaker behind. Alone, they are plain gauges set at every scrape.
    """

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.breaker_state = Gauge(
            "ticketera_circuit_breaker_state",
            "Circuit breaker per dependency: 0 closed, 1 half open, 2 open.",
            ["dependency"],
            registry=registry,
            multiprocess_mode="liveall",
        )
        self.breaker_failures = Gauge(
            "ticketera_circuit_breaker_failures",
            "Consecutive failures the breaker has counted (a success while closed resets them).",
            ["dependency"],
            registry=registry,
            multiprocess_mode="liveall",
        )
        self.pool_connections = Gauge(
            "ticketera_db_pool_connections",
            "Database connections open in this process's pool: in use or free.",
            ["state"],
            registry=registry,
            multiprocess_mode="liveall",
        )
        self.pool_limit = Gauge(
            "ticketera_db_pool_limit",
            "Most connections this process's pool opens (DB_POOL_SIZE).",
            registry=registry,
            multiprocess_mode="liveall",
        )
        self.replica_in_use = Gauge(
            "ticketera_db_replica_in_use",
            "1 while this process sends reads that tolerate lag to the read replica, 0 while it "
            "leaves them to the primary (the replica is down, lagging or not checked yet).",
            ["replica"],
            registry=registry,
            multiprocess_mode="liveall",
        )
        self.replica_lag = Gauge(
            "ticketera_db_replica_lag_seconds",
            "How far behind the primary the read replica may be, at most (GTID positions compared "
            "by this process's checker); absent until measured.",
            ["replica"],
            registry=registry,
            multiprocess_mode="liveall",
        )
        self.replica_reads = Gauge(
            "ticketera_db_replica_reads",
            "Reads that tolerate lag served since this process started, by server: a replica, or "
            "'primary' when none was fit.",
            ["server"],
            registry=registry,
            multiprocess_mode="liveall",
        )
        self.resident_memory = Gauge(
            "ticketera_process_resident_memory_bytes",
            "Resident memory (RSS) of the process.",
            registry=registry,
            multiprocess_mode="liveall",
        )
        # A gauge, not a counter: each worker reports its own running total (label `pid` with several
        # workers), so a client outside the host (`ticketera loadtest`) can chart the service's CPU
        # from two scrapes without reading /proc.
        self.cpu_seconds = Gauge(
            "ticketera_process_cpu_seconds",
            "CPU time (user and system) the process has used since it started, in seconds.",
            registry=registry,
            multiprocess_mode="liveall",
        )

    def refresh(self, components: Components) -> None:
        for dependency, breaker in breakers_of(components).items():
            self.breaker_state.labels(dependency).set(BREAKER_STATE_CODES[breaker.state])
            self.breaker_failures.labels(dependency).set(breaker.failure_count)
        database = components.find(DATABASE)
        if database is not None:
            pool = database.pool_status()
            self.pool_connections.labels("in_use").set(pool["totalConnections"] - pool["freeConnections"])
            self.pool_connections.labels("free").set(pool["freeConnections"])
            self.pool_limit.set(pool["connectionLimit"])
            if database.replicas is not None:
                self.refresh_replicas(database.replicas)
        self.resident_memory.set(rss_bytes())
        self.cpu_seconds.set(time.process_time())

    def refresh_replicas(self, replicas: ReplicaSet) -> None:
        for replica in replicas.replicas:
            in_use = replicas.status_of(replica) is ReplicaStatus.IN_USE
            self.replica_in_use.labels(replica.name).set(float(in_use))
            lag = replicas.lag_seconds(replica)
            if lag is not None:
                self.replica_lag.labels(replica.name).set(lag)
            self.replica_reads.labels(replica.name).set(replica.reads)
        self.replica_reads.labels("primary").set(replicas.primary_reads)


def breakers_of(components: Components) -> dict[str, CircuitBreaker]:
    """The breakers of the dependencies this app has: Redis and the payment provider only when
    configured, so a missing series means "not used here", never a healthy-looking 0."""
    found: dict[str, CircuitBreaker] = {}
    database = components.find(DATABASE)
    if database is not None:
        found["database"] = database.breaker
    redis = components.find(REDIS)
    if redis is not None:
        found["redis"] = redis.breaker
    payments = components.find(PAYMENTS)
    if payments is not None:
        found["mercadopago"] = payments.gateway.breaker
    return found


class MetricsExporter:
    """The metrics of one app: its request metrics, its process gauges, and how a scrape reads them."""

    def __init__(self, components: Components, multiprocess_dir: str | None) -> None:
        self._components = components
        self._registry = CollectorRegistry()
        # With several workers the app's own metrics are registered nowhere: their values go to this
        # worker's files, and MultiProcessCollector reads every worker's files back, this one's too.
        own = None if multiprocess_dir is not None else self._registry
        self.requests = RequestMetrics.create(own)
        self.process = ProcessGauges(own)
        if multiprocess_dir is not None:
            # prometheus-client leaves this constructor unannotated.
            MultiProcessCollector(self._registry, path=multiprocess_dir)  # type: ignore[no-untyped-call]
        self._shared: TtlCache[str, SharedFigures] = TtlCache(FIGURES_TTL_SECONDS)

    async def render(self, accept: str = "", accept_encoding: str = "") -> tuple[bytes, dict[str, str]]:
        """The exposition body and its headers, in the format the scraper asked for."""
        figures = await self._shared.get("shared", lambda: read_shared_figures(self._components))
        self.process.refresh(self._components)
        scrape = CollectorRegistry(auto_describe=False)
        scrape.register(self._registry)
        scrape.register(SharedFiguresCollector(figures))
        encoder, content_type = choose_encoder(accept)
        body = encoder(scrape)
        headers = {"Content-Type": content_type}
        if gzip_accepted(accept_encoding):
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        return body, headers

    @asynccontextmanager
    async def refreshing(self, _app: FastAPI) -> AsyncIterator[None]:
        """While the app runs (with several workers), write this process's figures every few seconds."""
        task = asyncio.create_task(self._refresh_forever(), name="metrics-process-refresh")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _refresh_forever(self) -> None:
        while True:
            try:
                self.process.refresh(self._components)
            except Exception as exc:
                log.warning("metrics.refresh_failed", error=type(exc).__name__)
            await asyncio.sleep(PROCESS_REFRESH_SECONDS)


def install_metrics(app: FastAPI) -> None:
    """Count and time the app's requests and serve them, with the scrape-time figures, at /metrics.

    Call once in create_app, after the other middleware (so the timing covers them too); calling
    it again on the same app changes nothing.
    """
    components = components_of(app)
    if METRICS_EXPORTER in components:
        return
    # No `_created` series: they double the series of every counter and histogram, and the
    # multi-worker files have none, so the output is the same with one worker or several.
    disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated upstream
    directory = multiprocess_directory()
    exporter = MetricsExporter(components, directory)
    components.provide(METRICS_EXPORTER, exporter)
    app.add_middleware(
        RequestMetricsMiddleware, metrics=exporter.requests, skip_paths=frozenset({METRICS_PATH})
    )
    if directory is not None:
        # An included router's lifespan runs inside the app's, once the database and Redis exist.
        app.include_router(APIRouter(lifespan=exporter.refreshing))


METRICS_EXPORTER = Component[MetricsExporter]("metrics_exporter")
