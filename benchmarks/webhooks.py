"""Benchmark: MercadoPago webhooks in a burst, and how long an approval takes to mark its order paid.

What it measures, against the real service (`ticketera serve`) and the MercadoPago simulator
(`python -m ticketera.mpsim`), both subprocesses on loopback ports, over real HTTP. The service's
database is a SQLite file in a temporary directory, or with `--mariadb` a new
`ticketera_bench_<random>` database on the server at TICKETERA_TEST_MYSQL_URL (default
mysql://root@127.0.0.1:3306/), dropped at the end. The service points MP_BASE_URL at the simulator
and PUBLIC_BASE_URL at itself, so the preferences it creates name its own webhook endpoint; rate
limits are off.

Set-up: one event (waiting room disabled, one general-admission section) and 2 x `--orders` (100)
orders bought through join -> hold -> order, each with its MercadoPago preference.

(a) Webhook endpoint latency. The first `--orders` orders are paid on the simulator's control API
    with its notifications held (`outOfOrder: true`), so what reaches the service is only what this
    script sends: `--concurrency` (100) signed notifications at once, one per payment, each on a
    warm keep-alive connection of its own, released together; latency is measured client-side, per
    request. Repeated `--rounds` (5) times with fresh x-request-ids, so each round is a new inbox
    row per payment: round 1 sells every order (the service reads each payment back after answering),
    later rounds find them sold. Between rounds the script waits until every inbox row is processed
    (it reads the service's database: no API says so), so no round runs beside the previous one's
    processing; that time is reported as "inbox processed". Interleaved with the rounds, a baseline:
    `GET /health/live` at the same concurrency, same method, and the ratio of the two.

(b) Approval to paid. Two more sets of `--orders` orders are paid with notifications delivered as
    MercadoPago would (at once, signed by the simulator): one payment at a time, then
    `--pay-concurrency` (10) in flight. For each, the time from `POST /_sim/payments` returning (the
    approval) until `GET /api/orders/{id}` shows `paid`, polled every 10 ms: the simulator's
    delivery, the service's answer, its read-back of the payment and the sale's commit, plus up to
    one poll gap. With several in flight the polling itself (one GET per 10 ms per payment) is part
    of the load, as buyers' browsers waiting on the order page would be.

Target (reported, never asserted): webhook p95 < 50 ms.

Run it from the project root:

    .venv/bin/python benchmarks/webhooks.py             # SQLite
    .venv/bin/python benchmarks/webhooks.py --mariadb   # MariaDB

The load generator, the simulator, the service (and MariaDB) share the machine's cores, so the
figures include their competition for them; the baseline in the same run is there to show it.
"""

from __future__ import annotations

import os
import sys

# The sibling benchmarks/queue.py shares its name with the standard library's `queue`, and running
# this file as a script puts its folder first on sys.path, where `import queue` (anyio, asyncio's
# executor) would find that file instead. Drop the folder before anything else is imported.
if os.path.realpath(sys.path[0] or os.curdir) == os.path.dirname(os.path.realpath(__file__)):
    sys.path.pop(0)

# Then the project root, so the shared plumbing imports as `benchmarks.harness`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

import argparse
import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import case, func, select

from benchmarks import harness, shop
from ticketera.config import to_async_url
from ticketera.kit.db import create_engine
from ticketera.payments.models import NotificationState, PaymentNotification
from ticketera.payments.signature import manifest, sign

WEBHOOK_PATH = "/api/webhooks/mercadopago"
TARGET_WEBHOOK_P95_MS = 50.0
POLL_SECONDS = 0.01
# How long a round's processing, or one payment's way to paid, may take before the run is called broken.
PROCESSING_TIMEOUT_SECONDS = 120.0


@dataclass
class Round:
    """One burst of webhooks and the baseline burst beside it."""

    number: int
    webhook_ms: harness.Latency
    live_ms: harness.Latency
    processed_s: float  # from the burst's start until every inbox row of the round was processed
    # The service's CPU (its process tree, from /proc) per request: while the webhooks were answered
    # (their processing starts meanwhile), until they were all processed too, and for the baseline.
    answer_cpu_ms: float = 0.0
    processed_cpu_ms: float = 0.0
    live_cpu_ms: float = 0.0
    failures: dict[str, int] = field(default_factory=dict)


@dataclass
class Approvals:
    """Approval to paid, for payments made `concurrency` at a time."""

    concurrency: int
    latency_ms: harness.Latency
    polls_per_order: float  # GETs of the order per payment, until it read paid


@dataclass
class Result:
    backend: str
    workers: int
    orders: int
    concurrency: int
    pay_concurrency: int
    server_version: str = ""
    rounds: list[Round] = field(default_factory=list)
    webhook_ms: harness.Latency = field(default_factory=harness.Latency)
    live_ms: harness.Latency = field(default_factory=harness.Latency)
    approvals: list[Approvals] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    service_problems: list[str] = field(default_factory=list)

    @property
    def target_met(self) -> bool:
        return self.webhook_ms.samples > 0 and self.webhook_ms.p95 < TARGET_WEBHOOK_P95_MS


# --------------------------------------------------------------------------------------------
# (a) Bursts of webhooks, and the baseline

# A webhook ready to send: URL (with its query), JSON body, headers.
Delivery = tuple[str, dict[str, Any], dict[str, str]]


def signed_notification(payment_id: int, secret: str) -> Delivery:
    """URL, body and headers of a webhook as MercadoPago sends it, with a fresh x-request-id."""
    data_id = str(payment_id)
    request_id = str(uuid.uuid4())
    ts = str(int(time.time()))
    body = {
        "id": int(uuid.uuid4().int % 10**11),
        "live_mode": False,
        "type": "payment",
        "date_created": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "user_id": 202809963,
        "api_version": "v1",
        "action": "payment.updated",
        "data": {"id": data_id},
    }
    headers = {
        "x-signature": f"ts={ts},v1={sign(secret, manifest(data_id, request_id, ts))}",
        "x-request-id": request_id,
    }
    return f"{WEBHOOK_PATH}?data.id={data_id}&type=payment", body, headers


def delivering(deliveries: list[Delivery]) -> Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]:
    """What client number `index` sends in a burst: delivery number `index`."""

    async def deliver(client: httpx.AsyncClient, index: int) -> httpx.Response:
        url, body, headers = deliveries[index]
        return await client.post(url, json=body, headers=headers)

    return deliver


async def burst(
    clients: list[httpx.AsyncClient], send: Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]
) -> tuple[list[float], Counter[str]]:
    """One request per client, all released at once; each one's latency and what went wrong."""
    latencies: list[float] = []
    failures: Counter[str] = Counter()

    async def one(index: int, client: httpx.AsyncClient) -> None:
        started = time.perf_counter()
        try:
            response = await send(client, index)
        except httpx.HTTPError as exc:
            failures[f"exception {type(exc).__name__}"] += 1
            return
        if response.status_code == 200:
            latencies.append(time.perf_counter() - started)
        else:
            failures[f"status {response.status_code}"] += 1

    await harness.released_together(clients, one)
    return latencies, failures


class Inbox:
    """The service's notification inbox, read straight from its database by the load generator.

    Nothing in the API says when a notification has been processed (that is the point of answering
    first), so the rows' states are the only way to know a round's work is over.
    """

    def __init__(self, database_url: str) -> None:
        self.engine = create_engine(to_async_url(database_url), pool_size=1)

    async def counts(self) -> tuple[int, int]:
        """(rows, rows not processed yet)."""
        # SUM(CASE ...) rather than COUNT(*) FILTER, which MariaDB does not have.
        not_done = case((PaymentNotification.state != NotificationState.DONE.value, 1), else_=0)
        statement = select(func.count(), func.coalesce(func.sum(not_done), 0))
        async with self.engine.connect() as connection:
            rows, unprocessed = (await connection.execute(statement)).one()
        return int(rows), int(unprocessed)

    async def wait_processed(self, expected_rows: int) -> None:
        rows = unprocessed = 0

        async def processed() -> bool:
            nonlocal rows, unprocessed
            rows, unprocessed = await self.counts()
            return rows >= expected_rows and unprocessed == 0

        deadline = time.monotonic() + PROCESSING_TIMEOUT_SECONDS
        if not await harness.poll(processed, deadline=deadline, interval=POLL_SECONDS):
            raise harness.BenchmarkError(
                f"inbox: {rows} of {expected_rows} rows, {unprocessed} not processed in time"
            )

    async def close(self) -> None:
        await self.engine.dispose()


@dataclass
class Bursts:
    rounds: list[Round] = field(default_factory=list)
    # Every round's raw latencies, for the totals: percentiles of percentiles would mislead.
    webhook_s: list[float] = field(default_factory=list)
    live_s: list[float] = field(default_factory=list)


async def measure_webhooks(
    base_url: str,
    inbox: Inbox,
    orders: list[shop.Order],
    args: argparse.Namespace,
    secret: str,
    service_cpu: Callable[[], float],
) -> Bursts:
    bursts = Bursts()
    per_request = 1000.0 / args.concurrency
    # One keep-alive connection per client, as one MercadoPago delivery has.
    async with harness.one_connection_clients(base_url, args.concurrency) as clients:
        # Warm-up: every connection open before the first measured burst.
        await burst(clients, lambda client, _: client.get("/health/live"))
        for number in range(1, args.rounds + 1):
            deliveries = [
                signed_notification(orders[index % len(orders)].payment_id, secret)
                for index in range(args.concurrency)
            ]

            cpu_before, started = service_cpu(), time.perf_counter()
            webhook_s, failures = await burst(clients, delivering(deliveries))
            cpu_answered = service_cpu()
            await inbox.wait_processed(number * args.concurrency)
            processed_s, cpu_processed = time.perf_counter() - started, service_cpu()
            live_s, live_failures = await burst(clients, lambda client, _: client.get("/health/live"))
            cpu_live = service_cpu()
            failures.update({f"live {name}": count for name, count in live_failures.items()})
            round_ = Round(
                number,
                harness.Latency.of(webhook_s),
                harness.Latency.of(live_s),
                processed_s,
                answer_cpu_ms=(cpu_answered - cpu_before) * per_request,
                processed_cpu_ms=(cpu_processed - cpu_before) * per_request,
                live_cpu_ms=(cpu_live - cpu_processed) * per_request,
                failures=dict(failures),
            )
            bursts.rounds.append(round_)
            bursts.webhook_s.extend(webhook_s)
            bursts.live_s.extend(live_s)
            print(format_round(round_), flush=True)
    return bursts


# --------------------------------------------------------------------------------------------
# (b) Approval to paid


async def measure_approval_to_paid(
    base_url: str, simulator: httpx.AsyncClient, orders: list[shop.Order], concurrency: int
) -> tuple[list[float], int]:
    """Per payment, seconds from the approval until the order reads paid; and the polls it took."""
    latencies: list[float] = []
    polls = 0

    async def follow(index: int) -> None:
        order = orders[index]
        async with harness.one_connection_client(base_url) as watcher:
            await shop.pay(simulator, order)
            approved = time.perf_counter()

            async def paid() -> bool:
                nonlocal polls
                polls += 1
                if await shop.order_status(watcher, order.id) != "paid":
                    return False
                latencies.append(time.perf_counter() - approved)
                return True

            deadline = time.monotonic() + PROCESSING_TIMEOUT_SECONDS
            if not await harness.poll(paid, deadline=deadline, interval=POLL_SECONDS):
                raise harness.BenchmarkError(
                    f"order {order.id} was not paid {PROCESSING_TIMEOUT_SECONDS:.0f} s after approval"
                )

    await harness.in_parallel(len(orders), concurrency, follow)
    return latencies, polls


# --------------------------------------------------------------------------------------------
# A run


async def hold_notifications(simulator: httpx.AsyncClient, held: bool) -> None:
    """Whether the simulator keeps its notifications (`outOfOrder`) or delivers them at once."""
    response = await simulator.patch("/_sim/config", json={"outOfOrder": held})
    harness.expect(response, 200, "PATCH /_sim/config")


async def run(
    base_url: str,
    service_pid: int,
    simulator_url: str,
    database_url: str,
    secret: str,
    result: Result,
    args: argparse.Namespace,
) -> None:
    # The simulator's own client: payments in flight at once, plus the config switches.
    async with shop.simulator_client(simulator_url, args.pay_concurrency + 2) as simulator:
        # One GA event with room for every order, and orders of one place, each by a new buyer.
        count = 3 * args.orders
        event_id, section_id = await shop.create_event(base_url, "Webhook benchmark", count)
        orders = await shop.buy_orders(base_url, event_id, section_id, [1] * count)
        burst_orders = orders[: args.orders]
        print(f"  set-up: {len(orders)} orders with their preferences", flush=True)

        # (a) Held notifications: the service hears only the bursts below.
        await hold_notifications(simulator, True)
        await harness.in_parallel(
            len(burst_orders), args.pay_concurrency, lambda index: shop.pay(simulator, burst_orders[index])
        )
        print(
            f"  (a) POST {WEBHOOK_PATH}, {args.concurrency} concurrent signed deliveries per round"
            f" for {len(burst_orders)} approved payments; baseline GET /health/live x{args.concurrency}",
            flush=True,
        )
        inbox = Inbox(database_url)
        try:
            bursts = await measure_webhooks(
                base_url, inbox, burst_orders, args, secret, lambda: harness.tree_cpu_seconds(service_pid)
            )
        finally:
            await inbox.close()
        result.rounds = bursts.rounds
        result.webhook_ms = harness.Latency.of(bursts.webhook_s)
        result.live_ms = harness.Latency.of(bursts.live_s)
        async with harness.one_connection_client(base_url) as checker:
            # Every payment a notification named (all of them unless --concurrency < --orders).
            notified = burst_orders[: args.concurrency]
            unpaid = [order.id for order in notified if await shop.order_status(checker, order.id) != "paid"]
        if unpaid:
            raise harness.BenchmarkError(
                f"{len(unpaid)} orders not paid after the webhook rounds, e.g. {unpaid[:5]}"
            )
        for round_ in result.rounds:
            for name, count in round_.failures.items():
                result.failures[name] = result.failures.get(name, 0) + count

        # (b) Notifications delivered by the simulator as they happen.
        await hold_notifications(simulator, False)
        for batch, concurrency in ((1, 1), (2, args.pay_concurrency)):
            followed = orders[batch * args.orders : (batch + 1) * args.orders]
            latencies, polls = await measure_approval_to_paid(base_url, simulator, followed, concurrency)
            result.approvals.append(
                Approvals(concurrency, harness.Latency.of(latencies), polls / len(followed))
            )


def run_backend(backend: str, database_url: str, workdir: Path, args: argparse.Namespace) -> Result:
    result = Result(backend, args.workers, args.orders, args.concurrency, args.pay_concurrency)
    if backend == "mariadb":
        result.server_version = asyncio.run(harness.mysql_server_version())
    # Production mode, the admission ticker and the in-process worker off: what is measured is the
    # webhook's own path, not a sweep running beside it. PUBLIC_BASE_URL names the service, so the
    # preferences' notification_url is its own webhook endpoint.
    env = harness.production_environment(database_url, workdir)
    try:
        with harness.running_service_with_mp_simulator(workdir, env, args.workers, public_base_url=True) as (
            base_url,
            process,
            simulator_url,
        ):
            print(header_line(result), flush=True)
            secret = env["MP_WEBHOOK_SECRET"]
            asyncio.run(run(base_url, process.pid, simulator_url, database_url, secret, result, args))
    finally:
        result.service_problems = harness.service_problems(workdir)
    return result


# --------------------------------------------------------------------------------------------
# Report


def header_line(result: Result) -> str:
    service = harness.service_line(result.backend, result.workers, result.server_version)
    return f"{service}; ticketera mp-sim beside it"


def format_round(round_: Round) -> str:
    failures = ", ".join(f"{name} x{count}" for name, count in sorted(round_.failures.items())) or "none"
    what = "sells every order" if round_.number == 1 else "orders already paid"
    return (
        f"    round {round_.number} ({what:19s}) webhook {round_.webhook_ms.summary()}"
        f" | live {round_.live_ms.summary()} | inbox processed {round_.processed_s:5.2f} s"
        f" | service CPU/req: answering {round_.answer_cpu_ms:.2f} ms, with processing"
        f" {round_.processed_cpu_ms:.2f} ms, live {round_.live_cpu_ms:.2f} ms | failures {failures}"
    )


def _row(label: str, latency: harness.Latency, note: str = "") -> str:
    return f"  {label:<38}{latency.p50:8.1f}{latency.p95:9.1f}{latency.p99:9.1f}{latency.samples:9d}" + (
        f"   {note}" if note else ""
    )


def cpu_lines(rounds: list[Round]) -> list[str]:
    """The service's CPU per request: the first round (which sells) apart from the later ones."""
    if not rounds:
        return []

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else 0.0

    later = rounds[1:]
    text_ = (
        f"  service CPU per request: webhook answered {mean([r.answer_cpu_ms for r in rounds]):.2f} ms;"
        f" answered and processed {rounds[0].processed_cpu_ms:.2f} ms selling"
    )
    if later:
        text_ += f", {mean([r.processed_cpu_ms for r in later]):.2f} ms already sold"
    return [text_ + f"; GET /health/live {mean([r.live_cpu_ms for r in rounds]):.2f} ms"]


def format_result(result: Result) -> str:
    webhook, live = result.webhook_ms, result.live_ms
    failures = ", ".join(f"{name} x{count}" for name, count in sorted(result.failures.items())) or "none"
    ratio_p50 = webhook.p50 / live.p50 if live.p50 else 0.0
    ratio_p95 = webhook.p95 / live.p95 if live.p95 else 0.0
    verdict = "met" if result.target_met else "NOT met"
    lines = [
        "",
        f"  {result.backend + ', ' + str(result.workers) + ' worker(s), ms':<38}"
        f"{'p50':>8}{'p95':>9}{'p99':>9}{'samples':>9}",
        _row(f"(a) webhook POST, {result.concurrency} at once", webhook),
        _row(f"    GET /health/live, {result.concurrency} at once", live),
        f"  {'    webhook / live':<38}{ratio_p50:7.1f}x{ratio_p95:8.1f}x",
        *(
            _row(
                f"{'(b)' if index == 0 else '   '} approval -> paid, {approvals.concurrency} at a time",
                approvals.latency_ms,
                f"{approvals.polls_per_order:.1f} polls per order",
            )
            for index, approvals in enumerate(result.approvals)
        ),
        *cpu_lines(result.rounds),
        f"  failures: {failures}",
        f"  target webhook p95 < {TARGET_WEBHOOK_P95_MS:.0f} ms: {webhook.p95:.1f} ms -> {verdict}",
        *harness.problem_lines(result.service_problems),
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Entry point


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="MercadoPago webhooks: endpoint latency in bursts, and approval-to-paid time."
    )
    harness.add_database_option(parser, "sqlite")
    harness.add_workers_option(parser, 1)
    parser.add_argument("--orders", type=int, default=100, help="orders per phase (default 100)")
    parser.add_argument("--concurrency", type=int, default=100, help="webhooks per burst (default 100)")
    parser.add_argument("--rounds", type=int, default=5, help="webhook bursts (default 5)")
    parser.add_argument(
        "--pay-concurrency", type=int, default=10, help="payments followed at once in (b) (default 10)"
    )
    harness.add_json_option(parser)
    args = parser.parse_args(argv)
    harness.check_at_least_one(
        parser, args, ["workers", "orders", "concurrency", "rounds", "pay_concurrency"]
    )
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    title = (
        f"Ticketera webhook benchmark: {args.orders} orders per phase, bursts of {args.concurrency},"
        f" {args.rounds} rounds"
    )
    return harness.run_one_backend(args, title, "webhooks", partial(run_backend, args=args), format_result)


if __name__ == "__main__":
    sys.exit(main())
