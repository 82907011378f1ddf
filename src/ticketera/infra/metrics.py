"""Request metrics for Prometheus, and the switch between single- and multi-process collection.

Every request is counted and timed under its route template (`/api/events/{event_id}`), never its
raw path, so the number of series stays bounded by the routes the app declares, whatever clients
send. `ticketera serve --workers N` runs N processes behind one port; there prometheus-client's
multiprocess mode keeps each worker's values in files under PROMETHEUS_MULTIPROC_DIR (the supervisor
in `infra.workers` sets it), and a scrape answered by any worker adds them all up.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The label of requests no route matched (404s, slash redirects): one series for all of them.
UNMATCHED_ROUTE = "unmatched"
# From a fast cached read (a few ms) to the 10 s a stuck dependency can cost; p95 targets sit low.
LATENCY_BUCKETS = (0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def multiprocess_directory() -> str | None:
    """The directory shared by the workers of this server, or None when this process is alone.

    prometheus-client reads the same variable once, when it is first imported, to decide where
    values live; the supervisor sets it before its workers start, so both always agree.
    """
    return os.environ.get(MULTIPROC_DIR_ENV) or None


@dataclass(frozen=True)
class RequestMetrics:
    requests: Counter
    latency: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry | None) -> RequestMetrics:
        """The request metrics of one app, registered in `registry`.

        One set per app rather than per process: each app's `/metrics` reports its own traffic, and
        tests that build hundreds of apps never meet a name registered twice. In a multi-worker
        server there is exactly one app per process, and `registry` is None: the values go to the
        worker's files, and the scrape reads them back from there for all workers at once.
        """
        return cls(
            requests=Counter(
                "ticketera_http_requests",
                "HTTP requests answered, by method, route template and status code.",
                ["method", "route", "status"],
                registry=registry,
            ),
            latency=Histogram(
                "ticketera_http_request_duration_seconds",
                "Time until the response started (headers sent), by method, route template and status class.",
                ["method", "route", "status_class"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route, f"{status // 100}xx").observe(seconds)


class RequestMetricsMiddleware:
    """Counts and times every HTTP request except those to `skip_paths` (the scrape itself).

    Time is measured until the response starts: for an ordinary answer that is the whole work,
    and for the waiting room's event stream it is the time to open it, not the minutes it stays
    open, which would bury every real latency under the streams.
    """

    def __init__(self, app: ASGIApp, *, metrics: RequestMetrics, skip_paths: frozenset[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.skip_paths = skip_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.skip_paths:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # if the app fails before answering, the server answers 500
        latency: float | None = None

        async def send_timed(message: Message) -> None:
            nonlocal status, latency
            if message["type"] == "http.response.start":
                status = message["status"]
                latency = time.perf_counter() - started
            await send(message)

        try:
            await self.app(scope, receive, send_timed)
        finally:
            elapsed = latency if latency is not None else time.perf_counter() - started
            self.metrics.observe(scope["method"], route_template(scope), status, elapsed)


def route_template(scope: Scope) -> str:
    """The template of the route that answered, e.g. `/api/events/{event_id}`.

    The router records the route it chose in the scope for FastAPI routes (also on a 405, where
    the path matched but not the method). FastAPI's own pages (`/docs`, `/openapi.json`) are plain
    Starlette routes it does not record, so those few are matched again here.
    """
    template = getattr(scope.get("route"), "path_format", None)
    if isinstance(template, str):
        return template
    for route in getattr(scope.get("router"), "routes", ()):
        template = getattr(route, "path_format", None)
        if isinstance(route, BaseRoute) and isinstance(template, str):
            match, _ = route.matches(scope)
            if match is not Match.NONE:
                return template
    return UNMATCHED_ROUTE
