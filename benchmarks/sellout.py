"""Benchmark: a sell-out end to end, join -> order -> webhook -> paid -> tickets issued.

What it measures, against the real stack on this machine, every process on free loopback ports:

* `ticketera serve --workers 4` in production mode (APP_ENV=production with its secrets) on a
  private `mariadbd` of this script's own (harness.private_mariadb: installed in a temporary folder,
  a free port, removed at the end), so that its CPU is this sale's alone and nobody else's tests on
  a shared server (killing connections, filling max_connections) reach into the run; the app's rate
  limits off (every fan comes from the load generator's one address, which the per-address limit
  would hold to 20 requests a second);
* the waiting room on a private `redis-server` (no persistence), its admission ticker on;
* the MercadoPago simulator (`python -m ticketera.mpsim`): every order creates its checkout there,
  and an approved payment's webhook reaches the service at its PUBLIC_BASE_URL, as in production;
* `ticketera worker` as its own process (expiries, the payment sweeps, the tickets emails), with an
  SMTP sink (aiosmtpd's `Sink`) so the tickets emails go out as they would (each renders a PDF);
* one event: a general-admission section of `--seats` (10,000) places, the waiting room enabled.

The fans are the project's own load generator, `ticketera.loadtest` (a client of the HTTP API
only): `--fans` (50,000) arrive over `--ramp-seconds`, join the line, poll their place at the pace
the answer suggests, and once admitted buy 1-4 places in one request (the express purchase:
`POST /api/orders` with X-Access-Token and `{"sectionId", "quantity", "buyer"}`), pay APRO on the
simulator, and poll their order until it is paid and its tickets are issued. Fans still in line at
the sell-out go home. The load generator runs in a process of its own (spawned), so that this
one's Chromium and meters do not slow it; with `--generators N` the fans are split over N such
processes, their figures merged. One is enough here: at 50,000 fans it used well under a core
(its CPU and its event loop's lag are printed, to check).

Admission (say why): `--admit-per-minute` 12,000 lets the ~4,000 buyers that 10,000 places at 2.5
each make through in 20 s, a third of the 60-s budget, so the line never sets the pace; the cap of
`--max-active` 1,500 shoppers (admitted until paid) is what ~150 buyers a second keep in flight at
5-10 s each from admission to paid (think times included), and no more, so the service is not
handed more buyers than it can turn over.

It reports, from the first join: the time to the sell-out (the last order created, from the
database) and to the last ticket issued, tickets/s, each step's p50/p95/p99 and errors by code (the
load generator's figures), where the CPU went per ticket (the service's process tree, the worker,
MariaDB, Redis, the simulator, the SMTP sink, the load generator), each service worker's largest
resident memory under load, and, in the same run, `GET /health/live`'s service CPU per request, so
a ticket's cost reads as a number of those; and the shortest sell-out the machine's cores could
give were they the stack's alone (its CPU per ticket times the places, over the cores). During the
sale Debian's Chromium loads the event page `/events/{id}` again and again
(benchmarks/first_paint.py), after an idle baseline of 5 loads.

At the end it reads the database: sold units == capacity, no unit sold twice, every approved
payment's order paid and holding its tickets. It exits 1 only when one of those fails; timings are
reported as targets met or not, never asserted.

    make bench-sellout                                         # 50,000 fans, 10,000 places
    .venv/bin/python benchmarks/sellout.py --fans 5000 --seats 1000 --json sellout.json

The machine's other work shows in the figures: the load average at the start and the end is printed.
"""

from __future__ import annotations

import os
import sys

# As in the sibling scripts: this folder must not shadow the standard library's `queue`.
if os.path.realpath(sys.path[0] or os.curdir) == os.path.dirname(os.path.realpath(__file__)):
    sys.path.pop(0)
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

import argparse
import asyncio
import contextlib
import multiprocessing
import resource
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from benchmarks import first_paint, harness
from ticketera.config import to_async_url
from ticketera.loadtest.recorder import Recorder, percentile
from ticketera.loadtest.report import compute_figures, write_report
from ticketera.loadtest.runner import LoadtestOptions, RunResult, Targets, run_in_fast_loop

# The figures (16, item 5; 12 for memory): reported as met or not, never asserted.
TARGET_SECONDS = 60.0
RSS_GOAL_MB = 150.0
WORKERS = 4
LIVE_REQUESTS = 2000
LIVE_CONCURRENCY = 20
IDLE_PAINTS = 5
# How long the service's idle CPU is read before the sale.
IDLE_SECONDS = 5.0
# After the fans are done, how long an approved payment may still take to be paid and ticketed
# before it counts as not paid (the worker's sweep runs every 5 s; two passes and some).
SETTLE_SECONDS = 30.0
# Processes metered that a deployment would not run beside the service.
OUTSIDE_THE_STACK = frozenset({"load generator", "SMTP sink"})
STEPS = ("join", "status", "leave", "event", "order", "pay", "order_status", "tickets")


@dataclass
class Shares:
    """What each load-generator process did with its share of the fans."""

    fans: list[int] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    wall_s: list[float] = field(default_factory=list)
    loop_lag_p95_ms: list[float | None] = field(default_factory=list)


@dataclass
class Ledger:
    """What the database holds at the end, for the event sold."""

    capacity: int = 0
    units_sold: int = 0
    units_held: int = 0
    tickets_valid: int = 0
    units_ticketed_twice: int = 0
    orders_by_status: dict[str, int] = field(default_factory=dict)
    places_paid: int = 0
    payments_approved: int = 0
    approved_not_paid: int = 0
    approved_without_all_tickets: int = 0
    emails_by_state: dict[str, int] = field(default_factory=dict)
    # Seconds from the first join (database clock = this machine's clock).
    first_order_s: float | None = None
    last_order_s: float | None = None
    last_paid_s: float | None = None
    last_ticket_s: float | None = None
    settle_wait_s: float = 0.0
    # The pipeline behind a purchase, seconds (p50, p95, max): order created -> paid, an approved
    # payment's webhook stored -> processed, order paid -> its tickets email sent.
    order_to_paid_s: tuple[float, float, float] | None = None
    webhook_wait_s: tuple[float, float, float] | None = None
    paid_to_email_s: tuple[float, float, float] | None = None

    @property
    def oversold(self) -> bool:
        return self.units_sold > self.capacity or self.units_ticketed_twice > 0

    @property
    def correct(self) -> bool:
        return (
            not self.oversold
            and self.approved_not_paid == 0
            and self.approved_without_all_tickets == 0
            and self.tickets_valid == self.places_paid
        )


@dataclass
class SelloutResult:
    fans: int
    seats: int
    generators: int
    admit_per_minute: int
    max_active: int
    server_version: str = ""
    load_average_end: list[float] = field(default_factory=list)
    # Seconds from the first join.
    sellout_s: float | None = None
    last_ticket_s: float | None = None
    tickets_per_s: float = 0.0
    stopped_by: str = ""
    fans_by_outcome: dict[str, int] = field(default_factory=dict)
    approvals_made: int = 0  # 2xx answers of the simulator's payment call
    steps: dict[str, Any] = field(default_factory=dict)
    errors_by_code: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    failures: int = 0
    ledger: Ledger = field(default_factory=Ledger)
    # CPU seconds over the sale, by process group, and per ticket issued (ms).
    cpu_s: dict[str, float] = field(default_factory=dict)
    cpu_ms_per_ticket: dict[str, float] = field(default_factory=dict)
    service_cpu_ms_per_request: float = 0.0
    # The shortest sell-out this machine's cores could give, were they the stack's alone: the CPU
    # every process of the stack spent per ticket (not the load generator's, nor the SMTP sink's,
    # which a deployment does not run), times the places, over the cores.
    cores_bound_s: float = 0.0
    generator: Shares = field(default_factory=Shares)
    live_requests_per_s: float = 0.0
    live_service_cpu_ms: float = 0.0
    # The service's own CPU with nobody asking (admission tickers, watches, metrics), in cores.
    service_idle_cores: float = 0.0
    ticket_in_live_requests: float = 0.0
    rss_idle_mb: list[float] = field(default_factory=list)
    rss_peak_mb: list[float] = field(default_factory=list)
    paint_idle: dict[str, Any] = field(default_factory=dict)
    paint_loaded: dict[str, Any] = field(default_factory=dict)
    paint_skipped: str = ""
    service_problems: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# The stack


@contextlib.contextmanager
def spawned(command: list[str], workdir: Path, name: str, env: Mapping[str, str]) -> Iterator[int]:
    """A process of ours (`command`), its output in `workdir/<name>-output.log`; yields its pid,
    stops it after."""
    with (workdir / f"{name}-output.log").open("wb") as output:
        process = subprocess.Popen(  # our own entry points, fixed arguments
            command, cwd=workdir, env=dict(env), stdout=output, stderr=subprocess.STDOUT
        )
        try:
            yield process.pid
        finally:
            harness.stop(process)


def smtp_sink(workdir: Path) -> tuple[list[str], int]:
    """The command line of an SMTP server that accepts and drops every message, and its port."""
    port = harness.free_port()
    sink = "aiosmtpd.handlers.Sink"
    return [sys.executable, "-m", "aiosmtpd", "-n", "-c", sink, "-l", f"127.0.0.1:{port}"], port


async def create_event(base_url: str, args: argparse.Namespace) -> tuple[int, int]:
    """The sale: one general-admission section of --seats places, the waiting room on. (id, capacity)"""
    body = {
        "name": "Sell-out benchmark",
        "startsAt": harness.starts_at(),
        "maxTicketsPerUser": 10,
        "queue": {
            "enabled": True,
            "admitPerMinute": args.admit_per_minute,
            "maxActiveShoppers": args.max_active,
        },
        "sections": [{"name": "Campo", "price": "9000.00", "capacity": args.seats}],
    }
    async with httpx.AsyncClient(base_url=base_url, timeout=harness.REQUEST_TIMEOUT_SECONDS) as client:
        response = await client.post("/api/events", json=body, headers=harness.ADMIN_HEADERS)
        event = harness.expect(response, 201, "POST /api/events")
        # Every worker loads what it caches for the page and the event (not measured).
        for _ in range(2 * WORKERS):
            await client.get(f"/events/{event['id']}")
            await client.get(f"/api/events/{event['id']}")
    return int(event["id"]), int(event["capacity"])


async def measure_live(base_url: str, service_pid: int, result: SelloutResult) -> None:
    """The baseline of the same run: `GET /health/live`, its service CPU per request."""
    async with harness.lean_clients(base_url, LIVE_CONCURRENCY) as clients:
        for client in clients:  # connections opened, not measured
            await client.call("GET", "/health/live")
        before = harness.tree_cpu_seconds(service_pid)
        started = time.perf_counter()
        failures = Counter[int]()

        async def live(index: int) -> None:
            status, _ = await clients[index % LIVE_CONCURRENCY].call("GET", "/health/live")
            failures[status] += status != 200

        await harness.in_parallel(LIVE_REQUESTS, LIVE_CONCURRENCY, live)
        wall = time.perf_counter() - started
        spent = harness.tree_cpu_seconds(service_pid) - before
    result.live_requests_per_s = LIVE_REQUESTS / wall
    result.live_service_cpu_ms = spent * 1000 / LIVE_REQUESTS


# --------------------------------------------------------------------------------------------
# The load generators


def run_share(options: LoadtestOptions) -> tuple[RunResult, float]:
    """One load-generator process: its fans' run, and the CPU seconds the process spent."""
    result = run_in_fast_loop(options)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return result, usage.ru_utime + usage.ru_stime


def share_options(
    args: argparse.Namespace, base_url: str, simulator_url: str, event_id: int
) -> list[LoadtestOptions]:
    count = args.generators
    fans = [args.fans // count + (1 if index < args.fans % count else 0) for index in range(count)]
    return [
        LoadtestOptions(
            url=base_url,
            fans=share,
            event_id=event_id,
            max_seconds=args.max_seconds,
            concurrency=max(1, args.concurrency // count),
            ramp_seconds=args.ramp_seconds,
            think_seconds=args.think_seconds,
            simulator_url=simulator_url,
            quantity=(1, 4),
            poll_max_seconds=args.poll_max_seconds,
            # A fan under this load may wait long for paid: the run's bound is what limits it.
            paid_timeout_seconds=args.max_seconds,
            seed=args.seed + index * args.fans,
            targets=Targets(),
        )
        for index, share in enumerate(fans)
    ]


def merged(results: list[RunResult]) -> RunResult:
    """One run of all the generators' fans, on the clock of the one that started first (the
    monotonic clock is the machine's, so the processes' times compare)."""
    first = min(results, key=lambda run: run.recorder.started)
    recorder = Recorder(started=first.recorder.started)
    for run in results:
        shift = run.recorder.started - first.recorder.started
        recorder.requests += [replace(sample, at=sample.at + shift) for sample in run.recorder.requests]
        recorder.admissions += [at + shift for at in run.recorder.admissions]
        recorder.outcomes.update(run.recorder.outcomes)
        recorder.places_ordered += run.recorder.places_ordered
        recorder.orders_paid += run.recorder.orders_paid
        recorder.tickets_issued += run.recorder.tickets_issued
        recorder.client_wait_s += run.recorder.client_wait_s
    # The target's figures sampled from /metrics are the same for every generator: the first's.
    recorder.snapshots = list(first.recorder.snapshots)
    recorder.requests.sort(key=lambda sample: sample.at)
    ends = [run.recorder.started + run.duration_s for run in results]
    return replace(
        first,
        options=replace(first.options, fans=sum(run.options.fans for run in results)),
        recorder=recorder,
        duration_s=max(ends) - first.recorder.started,
        stopped_by="max_seconds" if any(run.stopped_by == "max_seconds" for run in results) else "finished",
        final_event=max(results, key=lambda run: run.recorder.started + run.duration_s).final_event,
    )


async def run_generators(options: list[LoadtestOptions]) -> list[tuple[RunResult, float]]:
    # Spawned, not forked: this process runs an event loop, Chromium's driver and a sampler.
    context = multiprocessing.get_context("spawn")
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(max_workers=len(options), mp_context=context) as pool:
        return list(await asyncio.gather(*(loop.run_in_executor(pool, run_share, one) for one in options)))


# --------------------------------------------------------------------------------------------
# The database at the end


async def read_ledger(database_url: str, event_id: int, capacity: int, joined_wall: float) -> Ledger:
    """The event's units, tickets, orders, approved payments and emails, as the database has them."""
    ledger = Ledger(capacity=capacity)
    engine = create_async_engine(to_async_url(database_url), pool_size=1)

    async def rows(connection: AsyncConnection, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in (await connection.execute(text(sql), {"event": event_id})).all()]

    try:
        async with engine.connect() as connection:
            [(sold, held)] = await rows(
                connection,
                "SELECT SUM(status = 'sold'), SUM(status = 'held') FROM seats WHERE event_id = :event",
            )
            ledger.units_sold, ledger.units_held = int(sold or 0), int(held or 0)
            [(valid, distinct)] = await rows(
                connection,
                "SELECT COUNT(*), COUNT(DISTINCT seat_id) FROM tickets"
                " WHERE event_id = :event AND status = 'valid'",
            )
            ledger.tickets_valid, ledger.units_ticketed_twice = int(valid), int(valid) - int(distinct)
            orders = await rows(
                connection,
                "SELECT status, COUNT(*), SUM(quantity) FROM orders WHERE event_id = :event GROUP BY status",
            )
            ledger.orders_by_status = {str(status): int(count) for status, count, _ in orders}
            ledger.places_paid = sum(int(places or 0) for status, _, places in orders if status == "paid")
            # Every approved payment of the event: its order paid, with one valid ticket per place.
            [(approved, not_paid, short)] = await rows(
                connection,
                "SELECT COUNT(*), SUM(o.status <> 'paid'),"
                " SUM(o.quantity <> (SELECT COUNT(*) FROM tickets t"
                "   WHERE t.order_id = o.id AND t.status = 'valid'))"
                " FROM payments p JOIN orders o ON o.id = p.order_id"
                " WHERE o.event_id = :event AND p.status = 'approved'",
            )
            ledger.payments_approved = int(approved)
            ledger.approved_not_paid, ledger.approved_without_all_tickets = (
                int(not_paid or 0),
                int(short or 0),
            )
            emails = await rows(
                connection,
                "SELECT e.state, COUNT(*) FROM email_outbox e JOIN orders o ON o.id = e.order_id"
                " WHERE o.event_id = :event GROUP BY e.state",
            )
            ledger.emails_by_state = {str(state): int(count) for state, count in emails}
            [(first_order, last_order, last_paid)] = await rows(
                connection,
                "SELECT MIN(created_at), MAX(created_at), MAX(paid_at) FROM orders WHERE event_id = :event",
            )
            [(last_ticket,)] = await rows(
                connection, "SELECT MAX(issued_at) FROM tickets WHERE event_id = :event"
            )
            ledger.order_to_paid_s = spread(
                await rows(
                    connection,
                    "SELECT created_at, paid_at FROM orders WHERE event_id = :event AND paid_at IS NOT NULL",
                )
            )
            ledger.webhook_wait_s = spread(
                await rows(
                    connection,
                    "SELECT n.received_at, n.processed_at FROM payment_notifications n"
                    " JOIN payments p ON p.provider_payment_id = n.resource_id"
                    " JOIN orders o ON o.id = p.order_id"
                    " WHERE o.event_id = :event AND n.processed_at IS NOT NULL",
                )
            )
            ledger.paid_to_email_s = spread(
                await rows(
                    connection,
                    "SELECT o.paid_at, e.sent_at FROM email_outbox e JOIN orders o ON o.id = e.order_id"
                    " WHERE o.event_id = :event AND e.sent_at IS NOT NULL AND o.paid_at IS NOT NULL",
                )
            )
    finally:
        await engine.dispose()
    ledger.first_order_s = utc_since(first_order, joined_wall)
    ledger.last_order_s = utc_since(last_order, joined_wall)
    ledger.last_paid_s = utc_since(last_paid, joined_wall)
    ledger.last_ticket_s = utc_since(last_ticket, joined_wall)
    return ledger


def spread(pairs: list[tuple[Any, ...]]) -> tuple[float, float, float] | None:
    """p50, p95 and the longest of the seconds from each pair's first moment to its second."""
    waits = [(end - start).total_seconds() for start, end in pairs]
    if not waits:
        return None
    return percentile(waits, 50), percentile(waits, 95), max(waits)


def utc_since(moment: datetime | None, wall: float) -> float | None:
    """Seconds from `wall` (a time.time()) to `moment`, a naive UTC datetime of the database's:
    the database runs on this machine's clock too."""
    if moment is None:
        return None
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    return aware.timestamp() - wall


async def settled_ledger(database_url: str, event_id: int, capacity: int, joined_wall: float) -> Ledger:
    """The ledger once every approved payment is paid and ticketed, or after SETTLE_SECONDS: the
    fans stop polling at --max-seconds, the worker's sweep may still be on its way."""
    started = time.monotonic()
    while True:
        ledger = await read_ledger(database_url, event_id, capacity, joined_wall)
        settled = ledger.approved_not_paid == 0 and ledger.approved_without_all_tickets == 0
        if settled or time.monotonic() - started > SETTLE_SECONDS:
            ledger.settle_wait_s = time.monotonic() - started
            return ledger
        await asyncio.sleep(1.0)


# --------------------------------------------------------------------------------------------
# The run
# Process groups metered over the sale, besides the service's tree and the load generators.
Pids = dict[str, list[int]]


def cpu_by_group(service_pid: int, pids: Pids) -> dict[str, float]:
    return {
        "service": harness.tree_cpu_seconds(service_pid),
        **{name: harness.processes_cpu_seconds(group) for name, group in pids.items()},
    }


def by_process_mb(sizes: dict[int, int], parent: int) -> list[float]:
    """The parent's size first, then the workers' largest first, in MB."""
    workers = sorted((size for pid, size in sizes.items() if pid != parent), reverse=True)
    return [round(size / 2**20, 1) for size in [sizes.get(parent, 0), *workers]]


def first_join_offset(run: RunResult) -> float:
    """Seconds from the run's time zero to the moment the first join was sent."""
    joins = [sample.at - sample.ms / 1000 for sample in run.recorder.requests if sample.step == "join"]
    return min(joins) if joins else 0.0


async def measure(
    args: argparse.Namespace,
    result: SelloutResult,
    base_url: str,
    simulator_url: str,
    service_pid: int,
    pids: Pids,
    database_url: str,
) -> None:
    event_id, capacity = await create_event(base_url, args)
    await measure_live(base_url, service_pid, result)
    print(
        f"  event {event_id}: {capacity:,} general-admission places; /health/live"
        f" {result.live_requests_per_s:,.0f} req/s, {result.live_service_cpu_ms:.2f} ms service CPU each",
        flush=True,
    )
    idle_before = harness.tree_cpu_seconds(service_pid)
    await asyncio.sleep(IDLE_SECONDS)
    result.service_idle_cores = (harness.tree_cpu_seconds(service_pid) - idle_before) / IDLE_SECONDS
    result.rss_idle_mb = by_process_mb(harness.tree_rss_by_process(service_pid), service_pid)
    page = f"{base_url}/events/{event_id}"
    paint_missing = None if args.first_paint else "--no-first-paint"
    paint_missing = paint_missing or first_paint.available()
    if paint_missing is None:
        idle = await first_paint.measure(page, IDLE_PAINTS)
        result.paint_idle = idle.as_dict()
        print(f"  {idle.line('event page, idle')}", flush=True)
    else:
        result.paint_skipped = paint_missing
    options = share_options(args, base_url, simulator_url, event_id)
    print(
        f"  {args.fans:,} fans over {args.ramp_seconds:g} s from {args.generators} load-generator"
        f" process(es), {args.concurrency} requests in flight in all; bound {args.max_seconds:g} s ...",
        flush=True,
    )
    before = cpu_by_group(service_pid, pids)
    wall_offset = time.time() - time.monotonic()
    async with harness.peak_rss(service_pid) as peaks:
        load = asyncio.ensure_future(run_generators(options))
        if paint_missing is None:
            loaded = await first_paint.measure_while(page, load)
            result.paint_loaded = loaded.as_dict()
        outputs = await load
    after = cpu_by_group(service_pid, pids)
    result.rss_peak_mb = by_process_mb(peaks, service_pid)
    run = merged([output for output, _ in outputs])
    for output, cpu in outputs:
        result.generator.fans.append(output.options.fans)
        result.generator.cpu_s.append(round(cpu, 2))
        result.generator.wall_s.append(round(output.duration_s, 2))
        lags = sorted(s.loop_lag_ms for s in output.recorder.snapshots if s.loop_lag_ms is not None)
        result.generator.loop_lag_p95_ms.append(round(lags[int(0.95 * (len(lags) - 1))], 1) if lags else None)
    figures = write_report(run, args.report)[0] if args.report is not None else compute_figures(run)
    joined = first_join_offset(run)
    joined_wall = run.recorder.started + joined + wall_offset
    result.ledger = await settled_ledger(database_url, event_id, capacity, joined_wall)
    result.stopped_by = run.stopped_by
    result.fans_by_outcome = {name: count for name, count in figures["fans"].items() if count}
    result.approvals_made = sum(1 for s in run.recorder.requests if s.step == "pay" and 200 <= s.status < 300)
    result.steps = {step: figures["steps"][step] for step in STEPS if step in figures["steps"]}
    result.errors_by_code = figures["requests"]["byCode"]
    result.requests = figures["requests"]["total"]
    result.failures = figures["requests"]["failures"]
    result.sellout_s = result.ledger.last_order_s
    result.last_ticket_s = result.ledger.last_ticket_s
    if result.last_ticket_s:
        result.tickets_per_s = result.ledger.tickets_valid / result.last_ticket_s
    result.cpu_s = {name: round(after[name] - before[name], 2) for name in after}
    result.cpu_s["load generator"] = round(sum(result.generator.cpu_s), 2)
    tickets = max(1, result.ledger.tickets_valid)
    result.cpu_ms_per_ticket = {
        name: round(seconds * 1000 / tickets, 2) for name, seconds in result.cpu_s.items()
    }
    result.service_cpu_ms_per_request = result.cpu_s["service"] * 1000 / max(1, result.requests)
    stack_ms = sum(ms for name, ms in result.cpu_ms_per_ticket.items() if name not in OUTSIDE_THE_STACK)
    result.cores_bound_s = stack_ms * capacity / 1000 / (os.cpu_count() or 1)
    if result.live_service_cpu_ms > 0:
        result.ticket_in_live_requests = result.cpu_ms_per_ticket["service"] / result.live_service_cpu_ms


def run_stack(args: argparse.Namespace, mariadb: harness.PrivateMariaDB, workdir: Path) -> SelloutResult:
    """The stack up, the sale measured, the stack down."""
    database_url = mariadb.url
    result = SelloutResult(
        server_version=mariadb.sql("SELECT VERSION()"),
        fans=args.fans,
        seats=args.seats,
        generators=args.generators,
        admit_per_minute=args.admit_per_minute,
        max_active=args.max_active,
    )
    sink_command, sink_port = smtp_sink(workdir)
    port = harness.free_port()
    environment = harness.production_environment(
        database_url,
        workdir,
        extra={
            # The admission ticker lets the line in (production runs it in every web process).
            "QUEUE_TICKER": "true",
            # Production's 1,000 waiting per event would turn most of the fans away.
            "QUEUE_MAX_SIZE": str(args.fans + 1000),
            "SMTP_URL": f"smtp://127.0.0.1:{sink_port}",
            # The preferences name the service's own webhook, so approvals reach it.
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        },
    )
    ticketera = str(Path(sys.executable).parent / "ticketera")
    try:
        with harness.private_redis(workdir) as (redis_url, redis_process):
            environment["REDIS_URL"] = redis_url
            with (
                spawned(sink_command, workdir, "smtp-sink", harness.passed_environment()) as sink_pid,
                harness.running_mp_simulator(workdir, environment) as simulator_url,
            ):
                environment["MP_BASE_URL"] = simulator_url
                # The worker after the service: the service migrated the database the worker reads.
                with (
                    harness.running_service(workdir, environment, WORKERS, port=port) as (
                        base_url,
                        process,
                        _,
                    ),
                    spawned([ticketera, "worker"], workdir, "worker", environment) as worker_pid,
                ):
                    pids: Pids = {
                        "worker": [worker_pid],
                        "MariaDB": [mariadb.process.pid] if mariadb.process else [],
                        "Redis": [redis_process.pid],
                        "simulator": [harness.SIMULATOR_PIDS[simulator_url]],
                        "SMTP sink": [sink_pid],
                    }
                    asyncio.run(
                        measure(args, result, base_url, simulator_url, process.pid, pids, database_url)
                    )
    finally:
        result.service_problems = harness.service_problems(workdir) + [
            f"worker: {line}" for line in harness.service_problems(workdir, workdir / "worker-output.log")
        ]
    return result


# --------------------------------------------------------------------------------------------
# The report


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def waits(figures: tuple[float, float, float] | None) -> str:
    if figures is None:
        return "-"
    return " / ".join(f"{value:.1f}" for value in figures) + " s"


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def format_result(result: SelloutResult) -> str:
    ledger = result.ledger
    lines = [
        f"\n  sell-out (last order created): {seconds(result.sellout_s)} from the first join;"
        f" last ticket issued: {seconds(result.last_ticket_s)}; {result.tickets_per_s:.1f} tickets/s"
        f" ({ledger.tickets_valid:,} tickets); run {result.stopped_by}",
        f"  fans: {', '.join(f'{name} {count:,}' for name, count in result.fans_by_outcome.items())}",
        f"  database: {ledger.units_sold:,} of {ledger.capacity:,} units sold, {ledger.units_held} held,"
        f" {ledger.units_ticketed_twice} ticketed twice; orders {ledger.orders_by_status};"
        f" {ledger.payments_approved:,} approved payments ({result.approvals_made:,} approvals made),"
        f" {ledger.approved_not_paid} not paid, {ledger.approved_without_all_tickets} without all"
        f" their tickets (settled after {ledger.settle_wait_s:.0f} s); emails {ledger.emails_by_state}",
        f"  behind a purchase (p50 / p95 / longest): ordered -> paid {waits(ledger.order_to_paid_s)};"
        f" webhook stored -> processed {waits(ledger.webhook_wait_s)};"
        f" paid -> tickets email sent {waits(ledger.paid_to_email_s)}",
        f"  requests: {result.requests:,} to the service, {result.failures} failures;"
        f" by code: {result.errors_by_code or 'none'}",
    ]
    for step, figures in result.steps.items():
        lines.append(
            f"    {step:<12} {figures['ok']:>7,} ok of {figures['requests']:>7,}"
            f"  p50 {figures['p50_ms'] or 0:7.1f}  p95 {figures['p95_ms'] or 0:7.1f}"
            f"  p99 {figures['p99_ms'] or 0:7.1f} ms"
        )
    lines.append("  CPU per ticket (ms; seconds over the sale):")
    lines += [
        f"    {name:<24} {result.cpu_ms_per_ticket[name]:7.2f}  ({seconds_:.1f} s)"
        for name, seconds_ in result.cpu_s.items()
    ]
    generator = result.generator
    lines.append(
        f"  load generator: {len(generator.fans)} process(es), CPU {generator.cpu_s} s"
        f" over {generator.wall_s} s"
        f" (event-loop lag p95 {generator.loop_lag_p95_ms} ms)"
    )
    lines.append(
        f"  a ticket costs the service {result.cpu_ms_per_ticket.get('service', 0):.1f} ms of CPU ="
        f" {result.ticket_in_live_requests:.0f} GET /health/live ({result.live_service_cpu_ms:.2f} ms each,"
        f" same run); {result.service_cpu_ms_per_request:.2f} ms per request of the sale; idle, the"
        f" service spends {result.service_idle_cores:.3f} cores (tickers, watches)"
    )
    lines.append(
        f"  the stack's CPU per ticket, times {ledger.capacity:,} places, over {os.cpu_count()} cores:"
        f" no sell-out here could take less than {result.cores_bound_s:.0f} s"
    )
    workers = result.rss_peak_mb[1:]
    lines.append(
        f"  RSS: idle {result.rss_idle_mb} MB, under load {result.rss_peak_mb} MB"
        " (parent first, then workers)"
    )
    if result.paint_skipped:
        lines.append(f"  first paint: not measured ({result.paint_skipped})")
    else:
        for label, paint in (("idle", result.paint_idle), ("under load", result.paint_loaded)):
            lines.append(
                f"  event page {label}: first contentful paint median {paint.get('medianMs') or 0:.0f} ms,"
                f" worst {paint.get('worstMs') or 0:.0f} ms; time to first byte median"
                f" {paint.get('medianTtfbMs') or 0:.0f} ms ({paint.get('samples')} loads,"
                f" {paint.get('failed')} failed)"
            )
    lines.append("\n  Targets (issue 16; reported, never asserted):")
    in_time = result.last_ticket_s is not None and result.last_ticket_s < TARGET_SECONDS
    lines.append(
        f"    {ledger.capacity:,} sold end to end in under {TARGET_SECONDS:.0f} s: {verdict(in_time)}"
    )
    lines.append(
        f"    zero oversold: {verdict(not ledger.oversold and ledger.units_sold <= ledger.capacity)}"
    )
    all_paid = ledger.approved_not_paid == 0 and ledger.approved_without_all_tickets == 0
    lines.append(f"    every approved payment paid and ticketed: {verdict(all_paid)}")
    lines.append(f"    sold out (units sold == capacity): {verdict(ledger.units_sold == ledger.capacity)}")
    small = bool(workers) and max(workers) < RSS_GOAL_MB
    lines.append(f"    RSS per worker under load under {RSS_GOAL_MB:.0f} MB: {verdict(small)}")
    lines += harness.problem_lines(result.service_problems)
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fans", type=int, default=50_000, help="simulated fans (default 50,000)")
    parser.add_argument("--seats", type=int, default=10_000, help="general-admission places (default 10,000)")
    parser.add_argument(
        "--generators",
        type=int,
        default=None,
        help="load-generator processes, each a share of the fans (default 1)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=200, help="requests in flight, all generators together (200)"
    )
    parser.add_argument("--ramp-seconds", type=float, default=10.0, help="the fans' arrivals spread (10)")
    parser.add_argument(
        "--think-seconds", type=float, default=2.0, help="a fan's pause before order, pay (2)"
    )
    parser.add_argument(
        "--poll-max-seconds",
        type=float,
        default=60.0,
        help="slowest a fan in line polls (60; the line's own pace is followed within it)",
    )
    parser.add_argument("--admit-per-minute", type=int, default=12_000, help="the line's admission rate")
    parser.add_argument("--max-active", type=int, default=1500, help="the line's cap on active shoppers")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="the load generators' bound (900)")
    parser.add_argument("--seed", type=int, default=16, help="the fans' choices (default 16)")
    parser.add_argument(
        "--no-first-paint", dest="first_paint", action="store_false", help="no Chromium during the sale"
    )
    parser.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="DIR",
        help="also write the loadtest's report (charts) here",
    )
    harness.add_json_option(parser)
    args = parser.parse_args(argv)
    harness.check_at_least_one(
        parser, args, ["fans", "seats", "generators", "concurrency", "admit_per_minute", "max_active"]
    )
    if args.generators is None:
        args.generators = 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load = harness.start(
        f"Sell-out end to end: {args.fans:,} fans, {args.seats:,} places, ticketera serve --workers {WORKERS}"
        " on MariaDB, Redis waiting room, MercadoPago simulator, ticketera worker"
    )
    print(
        f"  line: admitPerMinute {args.admit_per_minute:,}, maxActiveShoppers {args.max_active:,};"
        f" think {args.think_seconds:g} s, polls at most every {args.poll_max_seconds:g} s",
        flush=True,
    )
    if shutil.which("redis-server") is None:
        print("redis-server is not on PATH: install Redis to run this benchmark")
        return 2
    try:
        with (
            tempfile.TemporaryDirectory(prefix="ticketera-bench-sellout-") as tmp,
            harness.private_mariadb(Path(tmp)) as mariadb,
        ):
            result = run_stack(args, mariadb, Path(tmp))
    except harness.BenchmarkError as exc:
        print(f"\nthe stack did not start: {exc}")
        return 2
    result.load_average_end = [round(value, 2) for value in os.getloadavg()]
    print(format_result(result))
    print(f"  load average at the end: {' '.join(f'{value:.2f}' for value in result.load_average_end)}")
    harness.write_figures(args, load, result=asdict(result))
    if not result.ledger.correct:
        print("\nCORRECTNESS FAILED: oversold, or an approved payment not paid or not ticketed (see above)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
