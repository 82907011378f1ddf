"""Benchmark: check-in at the door, many scanners at once, then every ticket scanned a second time.

What it measures, against the real service (`ticketera serve --workers W`) and the MercadoPago
simulator (`python -m ticketera.mpsim`), both subprocesses on loopback ports, over real HTTP. The
service's database is a new `ticketera_bench_<random>` database on the MariaDB server at
TICKETERA_TEST_MYSQL_URL (default mysql://root@127.0.0.1:3306/), dropped at the end, or with
`--sqlite` a SQLite file in a temporary directory. The service points MP_BASE_URL at the simulator
and PUBLIC_BASE_URL at itself, so the simulator's webhooks reach it; rate limits are off.

Set-up (timed, reported, not the point): one event with a general-admission section of `--tickets`
(2,000) places, sold `--per-order` (5) at a time, each order by a new buyer through
join -> hold -> order, then paid on the simulator's control API (POST /_sim/payments, approved),
whose signed webhook makes the service sell the order and issue its tickets in the same
transaction. The script waits until every order reads paid with all its tickets
(GET /api/orders/{id}/tickets with the order token, which also hands over the codes), and checks
every code offline against the event's public key (GET /api/events/{id}/checkin-key).

Then, `--concurrency` (20) scanners, each an asyncio task with its own keep-alive connection and
device id, each with its share of the codes (round-robin, every code in exactly one share):

    baseline  GET /health/live, `--live-requests` (2,000) in all, same scanners, same method
    (a)       POST /api/checkin {code, eventId, deviceId}: each share scanned once; all 200 ok
    (b)       the same shares scanned again: all 409 already_checked_in (the door reading the
              admission back, as when someone tries a screenshot of a used ticket)

For each: scans (or requests) per second over the phase's wall time, p50/p95/p99 of every answer,
outcomes, and CPU per scan of the service (its process tree), MariaDB (`mariadbd`) and this load
generator. Ratios scan p50 / live p50 show what a scan costs above the framework's floor. Before
the measured phases, every scanner sends a few well-formed forged codes (answered 404 invalid, no
write): connections open and every worker has loaded the event's public key. Afterwards, the door's
figures (GET /api/events/{id}/checkin) must count every ticket sold and checked in.

Run it from the project root:

    make bench-checkin                          # runs .venv/bin/python benchmarks/checkin.py
    .venv/bin/python benchmarks/checkin.py --workers 2 --json checkin.json
    .venv/bin/python benchmarks/checkin.py --sqlite

It only reports: it checks the answers (every first scan ok, every rescan a conflict, figures that
add up) and counts what went wrong, but never asserts how long anything took. The load generator,
the simulator, the service and MariaDB share the machine's cores; the baseline in the same run
shows what that competition costs.
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
import contextlib
import dataclasses
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from benchmarks import harness, shop
from ticketera.tickets.codes import ForgedCode, MalformedCode, read_code, sign_code, unb64, verify_code

STAFF_KEY = "bench-checkin-staff"
STAFF_HEADERS = {"Authorization": f"Bearer {STAFF_KEY}"}
DEFAULT_WORKERS = {"mariadb": 2, "sqlite": 1}
POLL_SECONDS = 0.05
# How long the sold orders may take to read paid, per order, before the run is called broken.
PAID_TIMEOUT_SECONDS_PER_ORDER = 0.5
PAID_TIMEOUT_MIN_SECONDS = 60.0
WARM_UP_SCANS_PER_SCANNER = 5


@dataclass
class Phase:
    """One measured phase: the baseline, the first scans, or the rescans."""

    name: str
    expected: str  # "200 ok", "409 already_checked_in", "200" for the baseline
    requests: int = 0
    wall_s: float = 0.0
    per_s: float = 0.0
    latency_ms: harness.Latency = field(default_factory=harness.Latency)
    outcomes: dict[str, int] = field(default_factory=dict)
    unexpected: int = 0
    service_cpu_ms_per_request: float = 0.0
    mariadb_cpu_ms_per_request: float = 0.0
    client_cpu_ms_per_request: float = 0.0
    service_cores: float = 0.0
    mariadb_cores: float = 0.0
    client_cores: float = 0.0


@dataclass
class Result:
    backend: str
    workers: int
    workers_default: bool
    tickets: int
    orders: int
    concurrency: int
    server_version: str = ""
    sale_s: float = 0.0
    sale_tickets_per_s: float = 0.0
    live: Phase | None = None
    first: Phase | None = None
    rescan: Phase | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    figures_consistent: bool = False
    service_problems: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Set-up: an event, paid orders, their codes


async def sell(
    base_url: str, simulator_url: str, event_id: int, section_id: int, tickets: int, per_order: int
) -> list[shop.Order]:
    """`tickets` places sold in orders of `per_order` (the last one smaller), each paid as soon as it
    is made; returns the orders once every one reads paid, with its codes."""
    sizes = [min(per_order, tickets - start) for start in range(0, tickets, per_order)]
    async with shop.simulator_client(simulator_url, shop.SETUP_CONCURRENCY) as simulator:
        sold = await shop.buy_orders(
            base_url, event_id, section_id, sizes, then=lambda order: shop.pay(simulator, order)
        )
    await collect_codes(base_url, sold, sizes)
    return sold


async def collect_codes(base_url: str, orders: list[shop.Order], sizes: list[int]) -> None:
    """Poll each order's tickets (the buyer's view) until it is paid with all of them."""
    timeout = max(PAID_TIMEOUT_MIN_SECONDS, PAID_TIMEOUT_SECONDS_PER_ORDER * len(orders))
    deadline = time.monotonic() + timeout

    async def follow(index: int) -> None:
        order, status = orders[index], ""
        async with harness.one_connection_client(base_url) as buyer:

            async def issued() -> bool:
                nonlocal status
                status, order.codes = await shop.order_tickets(buyer, order)
                return status == "paid" and len(order.codes) == sizes[index]

            if not await harness.poll(issued, deadline=deadline, interval=POLL_SECONDS):
                raise harness.BenchmarkError(
                    f"order {order.id} is {status} with {len(order.codes)} tickets"
                    f" {timeout:.0f} s after the payments"
                )

    await harness.in_parallel(len(orders), shop.SETUP_CONCURRENCY, follow)


async def public_key(base_url: str, event_id: int) -> bytes:
    async with harness.one_connection_client(base_url) as scanner:
        response = await scanner.get(f"/api/events/{event_id}/checkin-key")
    key = str(harness.expect(response, 200, "checkin-key")["publicKey"])
    return unb64(key)


def check_codes(codes: list[str], key: bytes, event_id: int, tickets: int) -> None:
    """Every code distinct, signed by the event's key and for this event: what a scanner checks offline."""
    if len(set(codes)) != tickets:
        raise harness.BenchmarkError(f"{len(set(codes))} distinct codes for {tickets} tickets")
    for code in codes:
        try:
            claim = verify_code(code, key)
        except (MalformedCode, ForgedCode) as exc:
            raise harness.BenchmarkError(f"a code the service issued does not verify: {exc}") from exc
        if claim.event_id != event_id:
            raise harness.BenchmarkError(f"a code of event {event_id} claims event {claim.event_id}")


def forged_codes(code: str, count: int) -> list[str]:
    """Well-formed codes of the same event, signed by a key the service never made."""
    claim = read_code(code)[0]
    stranger = Ed25519PrivateKey.generate()
    return [
        sign_code(stranger, dataclasses.replace(claim, serial=claim.serial ^ n)) for n in range(1, count + 1)
    ]


# --------------------------------------------------------------------------------------------
# The measured phases

# What a scanner sends for one code: the response, or None if the request itself failed.
Send = Callable[[httpx.AsyncClient, int, str], Awaitable[httpx.Response]]


async def run_scanners(
    clients: list[httpx.AsyncClient], shares: list[list[str]], send: Send
) -> tuple[list[float], Counter[str], float]:
    """Each client works through its share, all starting together: latencies, outcomes, wall."""
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()

    async def scanner(number: int, client: httpx.AsyncClient) -> None:
        for item in shares[number]:
            started = time.perf_counter()
            try:
                response = await send(client, number, item)
            except httpx.HTTPError as exc:
                outcomes[f"exception {type(exc).__name__}"] += 1
                continue
            latencies.append(time.perf_counter() - started)
            result = ""
            with contextlib.suppress(ValueError, AttributeError):
                result = str(response.json().get("result", ""))
            outcomes[f"{response.status_code} {result}".strip()] += 1

    wall = await harness.released_together(clients, scanner)
    return latencies, outcomes, wall


def scanning(event_id: int) -> Send:
    async def send(client: httpx.AsyncClient, number: int, code: str) -> httpx.Response:
        body = {"code": code, "eventId": event_id, "deviceId": f"scanner-{number:02d}"}
        return await client.post("/api/checkin", json=body, headers=STAFF_HEADERS)

    return send


async def live(client: httpx.AsyncClient, _number: int, _item: str) -> httpx.Response:
    return await client.get("/health/live")


def round_robin(items: list[str], parts: int) -> list[list[str]]:
    return [items[part::parts] for part in range(parts)]


async def measure(
    clients: list[httpx.AsyncClient],
    shares: list[list[str]],
    send: Send,
    meters: harness.Meters,
    phase: Phase,
) -> Phase:
    before = await meters.read()
    latencies, outcomes, wall = await run_scanners(clients, shares, send)
    phase.requests = sum(outcomes.values())
    phase.wall_s = wall
    phase.per_s = phase.requests / wall if wall else 0.0
    phase.latency_ms = harness.Latency.of(latencies)
    phase.outcomes = dict(outcomes)
    phase.unexpected = phase.requests - outcomes.get(phase.expected, 0)
    cost = await meters.cost_since(before, wall)
    if phase.requests:
        phase.service_cpu_ms_per_request = cost.service_cpu_s * 1000.0 / phase.requests
        phase.mariadb_cpu_ms_per_request = cost.mariadb_cpu_s * 1000.0 / phase.requests
        phase.client_cpu_ms_per_request = cost.client_cpu_s * 1000.0 / phase.requests
    phase.service_cores, phase.mariadb_cores, phase.client_cores = (
        cost.service_cores,
        cost.mariadb_cores,
        cost.client_cores,
    )
    return phase


async def run(
    base_url: str,
    simulator_url: str,
    meters: harness.Meters,
    result: Result,
    args: argparse.Namespace,
) -> None:
    started = time.perf_counter()
    event_id, section_id = await shop.create_event(
        base_url, "Check-in benchmark", args.tickets, max_tickets_per_user=args.per_order
    )
    orders = await sell(base_url, simulator_url, event_id, section_id, args.tickets, args.per_order)
    result.sale_s = time.perf_counter() - started
    result.sale_tickets_per_s = args.tickets / result.sale_s if result.sale_s else 0.0
    result.orders = len(orders)
    codes = [code for order in orders for code in order.codes]
    check_codes(codes, await public_key(base_url, event_id), event_id, args.tickets)
    print(
        f"  set-up: {args.tickets:,} tickets in {len(orders):,} orders sold and paid in {result.sale_s:.1f} s"
        f" ({result.sale_tickets_per_s:.0f} tickets/s); every code verified offline with the event's key",
        flush=True,
    )

    print(table_title(result), flush=True)
    print(COLUMNS, flush=True)
    shares = round_robin(codes, args.concurrency)
    live_shares = round_robin([""] * args.live_requests, args.concurrency)
    async with harness.one_connection_clients(base_url, args.concurrency) as clients:
        # Warm-up, not reported: connections opened, and each worker has read the event's public
        # key, scanning forged codes that are refused without a write.
        warm_up = round_robin(
            forged_codes(codes[0], WARM_UP_SCANS_PER_SCANNER * args.concurrency), args.concurrency
        )
        _, outcomes, _ = await run_scanners(clients, warm_up, scanning(event_id))
        if set(outcomes) != {"404 invalid"}:
            raise harness.BenchmarkError(f"forged codes were answered {dict(outcomes)}, not 404 invalid")
        await run_scanners(clients, round_robin([""] * 5 * args.concurrency, args.concurrency), live)

        result.live = await measure(clients, live_shares, live, meters, Phase("GET /health/live", "200"))
        print(format_phase(result.live, result), flush=True)
        result.first = await measure(
            clients, shares, scanning(event_id), meters, Phase("(a) first scans", "200 ok")
        )
        print(format_phase(result.first, result), flush=True)
        result.rescan = await measure(
            clients, shares, scanning(event_id), meters, Phase("(b) rescans", "409 already_checked_in")
        )
        print(format_phase(result.rescan, result), flush=True)

    async with harness.one_connection_client(base_url) as door:
        response = await door.get(f"/api/events/{event_id}/checkin", headers=STAFF_HEADERS)
    figures = harness.expect(response, 200, "door figures")
    result.figures = {"sold": figures["sold"], "checkedIn": figures["checkedIn"]}
    result.figures_consistent = figures["sold"] == figures["checkedIn"] == args.tickets


def run_backend(backend: str, database_url: str, workdir: Path, args: argparse.Namespace) -> Result:
    workers = args.workers or DEFAULT_WORKERS[backend]
    result = Result(backend, workers, args.workers is None, args.tickets, 0, args.concurrency)
    if backend == "mariadb":
        result.server_version = asyncio.run(harness.mysql_server_version())
    # Production mode, the admission ticker and the in-process worker off: what is measured is the
    # scan's own path, not a sweep (or the tickets email) beside it. PUBLIC_BASE_URL names the
    # service, so the simulator's webhooks reach it.
    env = harness.production_environment(database_url, workdir, extra={"STAFF_API_KEY": STAFF_KEY})
    try:
        with harness.running_service_with_mp_simulator(workdir, env, workers, public_base_url=True) as (
            base_url,
            process,
            simulator_url,
        ):
            print(header_line(result), flush=True)
            meters = harness.Meters(process.pid, harness.mariadb_pids() if backend == "mariadb" else [], None)
            asyncio.run(run(base_url, simulator_url, meters, result, args))
    finally:
        result.service_problems = harness.service_problems(workdir)
    return result


# --------------------------------------------------------------------------------------------
# Report


def header_line(result: Result) -> str:
    return (
        harness.service_line(result.backend, result.workers, result.server_version, result.workers_default)
        + f"; ticketera mp-sim beside it; {result.concurrency} scanners"
    )


LABEL_WIDTH = 40
COLUMNS = (
    f"  {'':<{LABEL_WIDTH}}{'per s':>8}{'p50':>8}{'p95':>8}{'p99':>8}{'samples':>9}"
    f"{'svc CPU':>9}{'DB CPU':>8}{'p50 vs live':>13}"
)


def table_title(result: Result) -> str:
    return (
        f"\n  {result.backend}, {result.workers} worker(s), {result.tickets:,} tickets,"
        f" {result.concurrency} scanners; ms: latency, and CPU per request (DB: mariadbd)"
    )


def format_phase(phase: Phase, result: Result) -> str:
    latency = phase.latency_ms
    baseline = result.live.latency_ms.p50 if result.live is not None else 0.0
    ratio = latency.p50 / baseline if baseline else 0.0
    database = f"{phase.mariadb_cpu_ms_per_request:8.2f}" if result.backend == "mariadb" else f"{'-':>8}"
    line = (
        f"  {phase.name + ' -> ' + phase.expected:<{LABEL_WIDTH}}{phase.per_s:8,.0f}{latency.p50:8.1f}"
        f"{latency.p95:8.1f}{latency.p99:8.1f}{latency.samples:9,d}"
        f"{phase.service_cpu_ms_per_request:9.2f}{database}{ratio:12.1f}x"
    )
    if phase.unexpected:
        others = {name: count for name, count in phase.outcomes.items() if name != phase.expected}
        line += f"   UNEXPECTED {phase.unexpected:,}: {others}"
    return line


def format_result(result: Result) -> str:
    lines = []
    if result.live is not None:
        lines.append(
            "  cores busy (service / MariaDB / load generator): "
            + ", ".join(
                f"{phase.name} {phase.service_cores:.2f} / {phase.mariadb_cores:.2f}"
                f" / {phase.client_cores:.2f}"
                for phase in (result.live, result.first, result.rescan)
                if phase is not None
            )
        )
    verdict = "consistent" if result.figures_consistent else "NOT consistent"
    lines.append(
        f"  door figures: {result.figures.get('sold', 0):,} sold, {result.figures.get('checkedIn', 0):,}"
        f" checked in -> {verdict}"
    )
    unexpected = sum(phase.unexpected for phase in (result.first, result.rescan) if phase is not None)
    lines.append(f"  unexpected answers: {unexpected:,}")
    lines.extend(harness.problem_lines(result.service_problems))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Entry point


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Check-in at the door: scans per second and latency, first scans and rescans."
    )
    harness.add_database_option(parser, "mariadb")
    harness.add_workers_option(parser, DEFAULT_WORKERS)
    parser.add_argument("--tickets", type=int, default=2000, help="tickets sold and scanned (default 2000)")
    parser.add_argument("--per-order", type=int, default=5, help="tickets per order (default 5, at most 100)")
    parser.add_argument("--concurrency", type=int, default=20, help="scanners at once (default 20)")
    parser.add_argument(
        "--live-requests",
        type=int,
        default=2000,
        help="GET /health/live requests in the baseline (default 2000)",
    )
    harness.add_json_option(parser)
    args = parser.parse_args(argv)
    harness.check_at_least_one(
        parser, args, ["tickets", "per_order", "concurrency", "live_requests", "workers"]
    )
    if args.per_order > 100:
        parser.error("--per-order must be at most 100 (an event's maxTicketsPerUser)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    title = (
        f"Ticketera check-in benchmark: {args.tickets:,} tickets, {args.concurrency} scanners,"
        " each ticket scanned twice"
    )
    return harness.run_one_backend(
        args, title, "checkin", partial(run_backend, args=args), format_result, "; try --sqlite"
    )


if __name__ == "__main__":
    sys.exit(main())
