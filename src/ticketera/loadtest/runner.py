"""The run: check the addresses, learn the event, let the fans in over the ramp, sample the
figures every few seconds, and stop everything at --max-seconds whatever is still going."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from ticketera.loadtest.fans import REQUEST_TIMEOUT_SECONDS, Api, EventPlan, Fan, FanOptions, Section
from ticketera.loadtest.recorder import Recorder, Snapshot
from ticketera.loadtest.safety import check_address, guarded_client
from ticketera.loadtest.scrape import TargetFigures, cpu_percent, parse_metrics

DEFAULT_MAX_SECONDS = 300.0
# CPU is the difference of two scrapes at least this far apart: with several workers each one
# writes its CPU time to /metrics only every 5 s (ops/metrics.py), so closer scrapes would see
# a worker at 0% and then at 250%.
CPU_WINDOW_SECONDS = 5.0
LAG_PROBE_SECONDS = 0.05
CLEANUP_SECONDS = 10.0
# Connections per lane (fans.Api): small, because httpcore's pool costs O(connections) per request.
LANE_CONNECTIONS = 8
SIMULATOR_CONNECTIONS = 8


class LoadtestError(Exception):
    """The run could not start (the target or the event is not there, a bad option); exit code 2."""


@dataclass(frozen=True)
class Targets:
    """What the run must show to pass: the deployment guide's production column by default.
    A limit of 0 (or below) leaves that figure unchecked."""

    p95_ms: float = 100.0
    requests_per_minute: float = 2000.0
    rss_mb: float = 512.0
    cpu_percent: float = 70.0
    # Failures (server errors, no answer, refusals the API should not give) per request.
    error_rate: float = 0.01


@dataclass(frozen=True)
class LoadtestOptions:
    url: str
    fans: int
    event_id: int | None = None
    report_dir: Path | None = None
    max_seconds: float = DEFAULT_MAX_SECONDS
    concurrency: int = 100
    ramp_seconds: float = 10.0
    think_seconds: float = 2.0
    abandon_rate: float = 0.0
    pay: bool = True
    simulator_url: str | None = None
    quantity: tuple[int, int] = (1, 4)
    sse: bool = False
    express: bool = True
    poll_min_seconds: float = 2.0
    poll_max_seconds: float = 60.0
    paid_timeout_seconds: float = 60.0
    sample_seconds: float = 2.0
    seed: int | None = None
    i_own_this: bool = False
    targets: Targets = field(default_factory=Targets)


@dataclass
class RunResult:
    options: LoadtestOptions
    url: str
    simulator_url: str | None
    plan: EventPlan
    recorder: Recorder
    started_at: datetime
    duration_s: float
    stopped_by: str  # "finished" or "max_seconds"
    seed: int
    final_event: dict[str, Any] = field(default_factory=dict)
    metrics_exported: bool = False
    notes: list[str] = field(default_factory=list)


Display = Callable[[Recorder, RunResult | None], None]


def run_in_fast_loop(options: LoadtestOptions, display: Display | None = None) -> RunResult:
    """`run_loadtest` to its end, on uvloop where it is installed (uvicorn[standard] brings it): the
    fans' event loop is the load generator's hot path, and a generator that runs out of CPU sets
    the pace of the very sale it measures (its event-loop lag is in the report)."""
    try:
        import uvloop
    except ImportError:  # Windows: asyncio's own loop
        return asyncio.run(run_loadtest(options, display))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(run_loadtest(options, display))


async def run_loadtest(options: LoadtestOptions, display: Display | None = None) -> RunResult:
    """The whole run, bounded by options.max_seconds (plus the few seconds of setup and a last sample)."""
    url = check_address(options.url, "--url", i_own_this=options.i_own_this)
    simulator_url = (
        check_address(options.simulator_url, "--simulator-url", i_own_this=options.i_own_this)
        if options.simulator_url
        else None
    )
    if options.fans < 1 or options.concurrency < 1 or not 0 <= options.abandon_rate <= 1:
        raise LoadtestError("--fans and --concurrency must be at least 1, --abandon-rate within 0..1")
    allowed = [url] + ([simulator_url] if simulator_url else [])
    seed = options.seed if options.seed is not None else random.SystemRandom().randrange(2**31)
    recorder = Recorder()
    async with contextlib.AsyncExitStack() as stack:
        lane_connections = min(options.concurrency, LANE_CONNECTIONS)
        lanes = [
            await stack.enter_async_context(
                guarded_client(url, allowed, connections=lane_connections, timeout=REQUEST_TIMEOUT_SECONDS)
            )
            for _ in range(math.ceil(options.concurrency / lane_connections))
        ]
        # The monitor's own connection, so that its samples never wait behind the fans' requests.
        target = await stack.enter_async_context(
            guarded_client(url, allowed, connections=2, timeout=REQUEST_TIMEOUT_SECONDS)
        )
        simulator = None
        if simulator_url and options.pay:
            simulator = await stack.enter_async_context(
                guarded_client(
                    simulator_url, allowed, connections=SIMULATOR_CONNECTIONS, timeout=REQUEST_TIMEOUT_SECONDS
                )
            )
            await _expect_simulator(simulator, simulator_url)
        stream_client = None
        if options.sse:
            # A stream holds its connection while the fan waits: one each, apart from the pool.
            stream_client = await stack.enter_async_context(
                guarded_client(
                    url, allowed, connections=options.fans, timeout=REQUEST_TIMEOUT_SECONDS, streams=True
                )
            )
        plan = await _learn_event(target, options.event_id)
        result = RunResult(
            options, url, simulator_url, plan, recorder, datetime.now(UTC), 0.0, "finished", seed
        )
        if options.pay and simulator is None:
            result.notes.append(
                "No --simulator-url: orders were created and left unpaid (a real MercadoPago checkout"
                " is never paid by a load test)."
            )
        api = Api(
            lanes,
            lane_connections,
            simulator,
            recorder,
            stream_client,
            simulator_connections=SIMULATOR_CONNECTIONS,
        )
        fan_options = FanOptions(
            run_tag=f"lt{uuid.uuid4().hex[:8]}",
            think_seconds=options.think_seconds,
            abandon_rate=options.abandon_rate,
            pay=options.pay,
            quantity=options.quantity,
            sse=options.sse,
            express=options.express,
            poll_min_seconds=options.poll_min_seconds,
            poll_max_seconds=options.poll_max_seconds,
            paid_timeout_seconds=options.paid_timeout_seconds,
        )
        monitor = Monitor(target, plan.event_id, recorder, api.sold_out)
        await monitor.sample(first=True)
        result.metrics_exported = monitor.exported
        recorder.started = time.monotonic()  # time zero: the first fan's arrival
        fans = [Fan(index, api, plan, fan_options, seed + index) for index in range(options.fans)]
        tasks: list[asyncio.Task[str]] = []

        async def arrive() -> None:
            for index, fan in enumerate(fans):
                due = options.ramp_seconds * index / options.fans
                delay = due - recorder.now()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(fan.visit(), name=f"fan-{index}"))

        async def sample_forever() -> None:
            while True:
                await asyncio.sleep(options.sample_seconds)
                await monitor.sample()
                if display is not None:
                    display(recorder, None)

        arrivals = asyncio.create_task(arrive())
        sampler = asyncio.create_task(sample_forever())
        lag_probe = asyncio.create_task(monitor.probe_loop_lag())
        try:
            async with asyncio.timeout(options.max_seconds):
                await arrivals
                await asyncio.gather(*tasks, return_exceptions=True)
        except TimeoutError:
            result.stopped_by = "max_seconds"
        finally:
            for task in [arrivals, sampler, lag_probe, *tasks]:
                task.cancel()
            # Fans still in line give their places back (fans.py); a target that does not answer
            # cannot keep the run past its bound by more than this.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLEANUP_SECONDS):
                    await asyncio.gather(arrivals, sampler, lag_probe, *tasks, return_exceptions=True)
        result.duration_s = recorder.now()
        # Fans never let in before the bound are unfinished too.
        recorder.outcomes["unfinished"] += options.fans - len(tasks)
        await monitor.sample()
        result.final_event = await monitor.read_event() or {}
        if display is not None:
            display(recorder, result)
    return result


async def _expect_simulator(simulator: httpx.AsyncClient, simulator_url: str) -> None:
    try:
        response = await simulator.get("/_sim/health")
    except httpx.HTTPError as exc:
        raise LoadtestError(f"--simulator-url {simulator_url} does not answer: {exc!r}") from exc
    if response.status_code != 200:
        raise LoadtestError(
            f"--simulator-url {simulator_url} is not the MercadoPago simulator: GET /_sim/health answered"
            f" {response.status_code}"
        )


async def _learn_event(target: httpx.AsyncClient, event_id: int | None) -> EventPlan:
    try:
        if event_id is None:
            event_id = await _pick_event(target)
        response = await target.get(f"/api/events/{event_id}")
    except httpx.HTTPError as exc:
        raise LoadtestError(f"the target does not answer: {exc!r}") from exc
    if response.status_code != 200:
        raise LoadtestError(
            f"GET /api/events/{event_id} answered {response.status_code}: {response.text[:200]}"
        )
    event = response.json()
    return EventPlan(
        event_id=int(event["id"]),
        name=str(event.get("name", "")),
        queue_enabled=bool((event.get("queue") or {}).get("enabled", False)),
        max_per_fan=int(event.get("maxTicketsPerUser") or 1),
        capacity=int(event.get("capacity", 0)),
        available=int(event.get("available", 0)),
        sections=tuple(
            Section(int(s["id"]), str(s.get("name", "")), str(s.get("kind", ""))) for s in event["sections"]
        ),
    )


async def _pick_event(target: httpx.AsyncClient) -> int:
    """Without --event: the one event on sale with places left, preferring the demo's (`make dev`)."""
    response = await target.get("/api/events", params={"limit": "200"})
    if response.status_code != 200:
        raise LoadtestError(f"GET /api/events answered {response.status_code}: give --event")
    items = [e for e in response.json().get("items", []) if int(e.get("available", 0)) > 0]
    demo = [e for e in items if str(e.get("name", "")).startswith("Demo")]
    if len(demo) == 1:
        return int(demo[0]["id"])
    if len(items) == 1:
        return int(items[0]["id"])
    raise LoadtestError(f"{len(items)} events have places left: say which with --event")


class Monitor:
    """Samples the figures every few seconds: the fans' states, the target's /metrics, what is left."""

    def __init__(
        self, target: httpx.AsyncClient, event_id: int, recorder: Recorder, sold_out: asyncio.Event
    ) -> None:
        self.target = target
        self.sold_out = sold_out
        self.event_id = event_id
        self.recorder = recorder
        self.exported = False
        self._history: list[tuple[float, TargetFigures]] = []
        self._client_cpu = (time.monotonic(), time.process_time())
        self.worst_lag_s = 0.0

    async def probe_loop_lag(self) -> None:
        """How late the event loop wakes a sleeper: when the fans' own process is saturated,
        every answer waits this long to be read, and the latencies measured include it."""
        while True:
            started = time.monotonic()
            await asyncio.sleep(LAG_PROBE_SECONDS)
            self.worst_lag_s = max(self.worst_lag_s, time.monotonic() - started - LAG_PROBE_SECONDS)

    async def read_event(self) -> dict[str, Any] | None:
        try:
            response = await self.target.get(f"/api/events/{self.event_id}")
        except httpx.HTTPError:
            return None
        body = response.json() if response.status_code == 200 else None
        return body if isinstance(body, dict) else None

    async def read_metrics(self) -> TargetFigures | None:
        try:
            response = await self.target.get("/metrics")
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        try:
            return parse_metrics(response.text, self.event_id)
        except ValueError:
            return None

    async def sample(self, *, first: bool = False) -> None:
        at = self.recorder.now()
        event, figures = await asyncio.gather(self.read_event(), self.read_metrics())
        snapshot = Snapshot(at=at, fans=self.recorder.snapshot_fans())
        wall, cpu = time.monotonic(), time.process_time()
        if wall > self._client_cpu[0]:
            snapshot.client_cpu_percent = (cpu - self._client_cpu[1]) / (wall - self._client_cpu[0]) * 100
        self._client_cpu = (wall, cpu)
        snapshot.loop_lag_ms, self.worst_lag_s = self.worst_lag_s * 1000, 0.0
        with contextlib.suppress(OSError):
            snapshot.load_average = os.getloadavg()[0]
        if event is not None:
            snapshot.seats_left = int(event.get("available", 0))
            sections = event.get("sections") or []
            snapshot.seats_held = sum(int(s.get("held", 0)) for s in sections)
            snapshot.seats_sold = sum(int(s.get("sold", 0)) for s in sections)
            if snapshot.seats_left == 0 and not any(int(s.get("held", 0)) for s in sections):
                self.sold_out.set()
        if figures is not None:
            self.exported = self.exported or bool(figures.rss_bytes)
            snapshot.line_waiting = figures.line.get("waiting")
            snapshot.line_active = figures.line.get("active")
            snapshot.admitted_total = figures.admitted_total
            snapshot.rss_mb = {pid: value / 2**20 for pid, value in figures.rss_bytes.items()}
            now = time.monotonic()
            earlier = [entry for entry in self._history if now - entry[0] >= CPU_WINDOW_SECONDS]
            base = earlier[-1] if earlier else (self._history[0] if self._history else None)
            if base is not None:
                snapshot.cpu_percent = cpu_percent(base[1], figures, now - base[0])
            self._history = [entry for entry in self._history if now - entry[0] < 2 * CPU_WINDOW_SECONDS]
            self._history.append((now, figures))
        if not first:
            self.recorder.snapshots.append(snapshot)
