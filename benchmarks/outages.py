"""Benchmark: what buyers and MercadoPago get while a dependency is down, and how fast it all heals.

The tests check what the service answers when MariaDB freezes or goes away, or MercadoPago fails
(503 `database_unavailable`, webhooks spooled, orders placed without waiting for a checkout, the
breakers closing again); how long each takes is measured here, never asserted there. Against the
real service (`ticketera serve` with its worker in-process, a private `mariadbd` of this script's own
on a free loopback port, the MercadoPago simulator), over real HTTP, one fault after another:

- **frozen** (SIGSTOP on mariadbd: sockets open and silent, the worst case) and **killed** (SIGKILL,
  then started again on the same data: a crash and its recovery):
  1. an order is placed while all is well (join, hold, order: its checkout is at the simulator);
  2. the fault; at once, a few buyers read their order: how long until each is answered, and what;
     `/health` meanwhile;
  3. two seconds in, the buyer pays in the simulator, which sends the approval's webhook: what the
     service answers it (200 from its disk spool, or 503);
  4. after `--outage-seconds` the database comes back: how long until orders are served again, and
     until the approved order is paid (spool drained, payment applied; the reconciler first asks
     about an order minutes later, so it is not what pays it).
- **mercadopago** (every call to the simulator's API answers 500): a few buyers place orders at
  once: what they are answered, and how fast; after `--outage-seconds` the API answers again: how
  long until every one of those orders has its checkout (made by the worker as soon as MercadoPago
  answers its breaker's probe).

Goals (issue 12): a frozen database answers within 2 s; an approval during a database outage is paid
within 10 s of its return; no order waits on MercadoPago. Reported as met or not met, never asserted.

    .venv/bin/python benchmarks/outages.py                 # make bench-outages
    .venv/bin/python benchmarks/outages.py --faults frozen --outage-seconds 20 --json outages.json
"""

from __future__ import annotations

import os
import sys

# Running this file puts its folder first on sys.path, where benchmarks/queue.py would shadow the
# standard library's `queue`: drop it, then add the project root (see benchmarks/harness.py).
if os.path.realpath(sys.path[0] or os.curdir) == os.path.dirname(os.path.realpath(__file__)):
    sys.path.pop(0)
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

import argparse
import asyncio
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from benchmarks import harness

FROZEN_ANSWER_GOAL_SECONDS = 2.0
PAID_AFTER_RETURN_GOAL_SECONDS = 10.0
CLIENT_TIMEOUT_SECONDS = 120.0
RECOVERY_LIMIT_SECONDS = 120.0
POLL_SECONDS = 0.1
PAY_AFTER_SECONDS = 2.0


@dataclass
class Order:
    id: int
    token: str
    preference_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class FaultRun:
    fault: str
    outage_seconds: float
    reads: dict[str, int] = field(default_factory=dict)
    slowest_read_s: float = 0.0
    fastest_read_s: float = 0.0
    health: str = ""
    health_s: float = 0.0
    webhook_answers: list[int] = field(default_factory=list)
    serving_again_after_s: float | None = None
    paid_after_return_s: float | None = None


@dataclass
class Report:
    runs: list[FaultRun] = field(default_factory=list)
    targets: dict[str, object] = field(default_factory=dict)
    service_problems: list[str] = field(default_factory=list)


async def create_event(client: httpx.AsyncClient) -> dict[str, object]:
    body = {
        "name": "Bench outage",
        "startsAt": harness.starts_at(),
        "queue": {"enabled": False},
        "sections": [{"name": "Campo", "price": "9000.00", "capacity": 100}],
    }
    return harness.expect(
        await client.post("/api/events", json=body, headers=harness.ADMIN_HEADERS), 201, "POST /api/events"
    )


async def place_order(client: httpx.AsyncClient, event: dict[str, object]) -> Order:
    event_id = event["id"]
    sections = event["sections"]
    assert isinstance(sections, list)
    joined = harness.expect(await client.post(f"/api/queue/{event_id}/join", json={}), 201, "join")
    hold = harness.expect(
        await client.post(
            f"/api/events/{event_id}/holds",
            json={"sectionId": sections[0]["id"], "quantity": 1},
            headers={"X-Access-Token": joined["accessToken"]},
        ),
        201,
        "hold",
    )
    placed = harness.expect(
        await client.post(
            "/api/orders",
            json={"holdId": hold["holdId"], "buyer": {"email": "ana@example.com", "name": "Ana"}},
            headers={"Idempotency-Key": f"outage-{uuid.uuid4().hex}"},
        ),
        201,
        "order",
    )
    # While MercadoPago fails the order is placed all the same, and its checkout made later.
    checkout = placed["checkoutUrl"]
    preference_id = httpx.URL(checkout).params["pref_id"] if checkout else ""
    return Order(int(placed["id"]), str(placed["orderToken"]), preference_id)


async def timed_read(client: httpx.AsyncClient, order: Order) -> tuple[str, float]:
    started = time.perf_counter()
    response = await client.get(f"/api/orders/{order.id}", headers=order.headers)
    code = response.json().get("error", "") if response.status_code >= 400 else ""
    return f"{response.status_code} {code}".strip(), time.perf_counter() - started


async def one_fault(
    client: httpx.AsyncClient,
    simulator: httpx.AsyncClient,
    server: harness.PrivateMariaDB,
    fault: str,
    args: argparse.Namespace,
) -> FaultRun:
    run = FaultRun(fault, args.outage_seconds)
    order = await place_order(client, await create_event(client))
    await simulator.post("/_sim/notifications/drain", params={"timeout": 10})
    before = len((await simulator.get("/_sim/notifications")).json())
    if fault == "frozen":
        server.freeze()
    else:
        server.kill()
    failed_at = time.monotonic()
    try:

        async def pay_soon() -> None:
            await asyncio.sleep(PAY_AFTER_SECONDS)
            paid = await simulator.post(
                "/_sim/payments", json={"preferenceId": order.preference_id, "outcome": "APRO"}
            )
            harness.expect(paid, 201, "the simulator's payment")

        reads, (health_body, health_s), _ = await asyncio.gather(
            asyncio.gather(*(timed_read(client, order) for _ in range(args.readers))),
            _health(client),
            pay_soon(),
        )
        run.reads = dict(Counter(answer for answer, _ in reads))
        run.slowest_read_s = max(elapsed for _, elapsed in reads)
        run.fastest_read_s = min(elapsed for _, elapsed in reads)
        run.health, run.health_s = health_body, health_s
        await asyncio.sleep(max(0.0, args.outage_seconds - (time.monotonic() - failed_at)))
    finally:
        if fault == "frozen":
            server.thaw()
        else:
            server.start()
    returned_at = time.monotonic()

    async def serving() -> bool:
        answer, _ = await timed_read(client, order)
        return answer == "200"

    async def paid() -> bool:
        response = await client.get(f"/api/orders/{order.id}", headers=order.headers)
        return response.status_code == 200 and response.json()["status"] == "paid"

    run.serving_again_after_s = await harness.seconds_until(
        serving, limit=RECOVERY_LIMIT_SECONDS, interval=POLL_SECONDS
    )
    if await harness.seconds_until(paid, limit=RECOVERY_LIMIT_SECONDS, interval=POLL_SECONDS) is not None:
        run.paid_after_return_s = time.monotonic() - returned_at
    deliveries = (await simulator.get("/_sim/notifications")).json()[before:]
    run.webhook_answers = [attempt["status"] for d in deliveries for attempt in d["attempts"]]
    return run


async def mercadopago_fault(
    client: httpx.AsyncClient, simulator: httpx.AsyncClient, args: argparse.Namespace
) -> FaultRun:
    run = FaultRun("mercadopago", args.outage_seconds)
    event = await create_event(client)
    harness.expect(
        await simulator.post("/_sim/faults", json={"status": 500, "count": 100_000, "pathPrefix": "/"}),
        201,
        "the simulator's fault",
    )
    failed_at = time.monotonic()
    try:

        async def timed_order() -> tuple[str, float, Order | None]:
            started = time.perf_counter()
            try:
                order = await place_order(client, event)
            except harness.BenchmarkError as exc:
                return str(exc)[:40], time.perf_counter() - started, None
            return "201 without checkout", time.perf_counter() - started, order

        placed = await asyncio.gather(*(timed_order() for _ in range(args.readers)))
        run.reads = dict(Counter(answer for answer, _, _ in placed))
        run.slowest_read_s = max(elapsed for _, elapsed, _ in placed)
        run.fastest_read_s = min(elapsed for _, elapsed, _ in placed)
        run.health, run.health_s = await _health(client, "mercadopago")
        await asyncio.sleep(max(0.0, args.outage_seconds - (time.monotonic() - failed_at)))
    finally:
        await simulator.delete("/_sim/faults")
    returned_at = time.monotonic()
    orders = [order for _, _, order in placed if order is not None]

    async def every_checkout_made() -> bool:
        for order in orders:
            response = await client.get(f"/api/orders/{order.id}", headers=order.headers)
            if response.status_code != 200 or not response.json()["checkoutUrl"]:
                return False
        return True

    if await harness.seconds_until(every_checkout_made, limit=RECOVERY_LIMIT_SECONDS, interval=POLL_SECONDS):
        run.paid_after_return_s = time.monotonic() - returned_at
    return run


async def _health(client: httpx.AsyncClient, dependency: str = "database") -> tuple[str, float]:
    """`/health`'s status and the failing dependency's breaker, and how long it took."""
    started = time.perf_counter()
    response = await client.get("/health")
    body = response.json()
    breaker = body["services"].get(dependency, {}).get("circuitBreaker", {}).get("state", "?")
    return f"{response.status_code} {body['status']}, breaker {breaker}", time.perf_counter() - started


async def run(
    base_url: str, simulator_url: str, server: harness.PrivateMariaDB, args: argparse.Namespace
) -> Report:
    report = Report()
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=CLIENT_TIMEOUT_SECONDS) as client,
        httpx.AsyncClient(base_url=simulator_url, timeout=CLIENT_TIMEOUT_SECONDS) as simulator,
    ):
        for fault in args.faults:
            if fault == "mercadopago":
                report.runs.append(await mercadopago_fault(client, simulator, args))
            else:
                report.runs.append(await one_fault(client, simulator, server, fault, args))
            # The service heals from one fault before the next is measured.
            await harness.seconds_until(
                lambda: _healthy(client), limit=RECOVERY_LIMIT_SECONDS, interval=POLL_SECONDS
            )
    frozen = [run for run in report.runs if run.fault == "frozen"]
    database = [run for run in report.runs if run.fault != "mercadopago"]
    mercadopago = [run for run in report.runs if run.fault == "mercadopago"]
    report.targets = {
        "frozen_answer_within_s": FROZEN_ANSWER_GOAL_SECONDS,
        "frozen_slowest_answer_s": max((run.slowest_read_s for run in frozen), default=None),
        "frozen_met": all(run.slowest_read_s <= FROZEN_ANSWER_GOAL_SECONDS for run in frozen),
        "paid_within_s_of_return": PAID_AFTER_RETURN_GOAL_SECONDS,
        "paid_met": all(_within(run.paid_after_return_s, PAID_AFTER_RETURN_GOAL_SECONDS) for run in database),
        "orders_without_mercadopago_met": all(
            set(run.reads) == {"201 without checkout"} and run.paid_after_return_s is not None
            for run in mercadopago
        ),
    }
    return report


def _within(seconds: float | None, goal: float) -> bool:
    return seconds is not None and seconds <= goal


async def _healthy(client: httpx.AsyncClient) -> bool:
    return (await client.get("/health")).status_code == 200


def format_report(report: Report) -> str:
    lines = [
        "",
        f"{'fault':<11} {'answers during the outage':<34} {'fastest':>8} {'slowest':>8}   {'/health':<38}"
        f" {'webhook':<8} {'serving again':>14} {'done after':>11}",
    ]
    for run in report.runs:
        reads = ", ".join(f"{count} x {answer}" for answer, count in sorted(run.reads.items()))
        webhook = ",".join(str(status) for status in run.webhook_answers) or "-"
        again = f"{run.serving_again_after_s:.1f} s" if run.serving_again_after_s is not None else "-"
        paid = f"{run.paid_after_return_s:.1f} s" if run.paid_after_return_s is not None else "never"
        lines.append(
            f"{run.fault:<11} {reads:<34} {run.fastest_read_s:7.2f}s {run.slowest_read_s:7.2f}s"
            f"   {run.health + f' ({run.health_s:.2f} s)':<38} {webhook:<8} {again:>14} {paid:>11}"
        )
    targets = report.targets
    lines += [
        "",
        f"Outage: {report.runs[0].outage_seconds:.0f} s each. 'serving again' and 'done after' count from the"
        " dependency's return. Database faults: the buyers read their order, and 'done' is the approval"
        " made mid-outage paid (through the webhook's spool). mercadopago: the buyers place orders, and"
        " 'done' is every one of them given its checkout.",
        f"Goals: a frozen database answers within {FROZEN_ANSWER_GOAL_SECONDS:.0f} s"
        f" -> {'met' if targets['frozen_met'] else 'NOT met'};"
        f" an approval during the outage is paid within {PAID_AFTER_RETURN_GOAL_SECONDS:.0f} s of the return"
        f" -> {'met' if targets['paid_met'] else 'NOT met'};"
        f" orders placed while MercadoPago fails, their checkouts made once it answers"
        f" -> {'met' if targets['orders_without_mercadopago_met'] else 'NOT met'}. Reported, never asserted.",
    ]
    if report.service_problems:
        lines.append(
            "The service's warnings below are expected: its dependencies were made to fail on purpose."
        )
    lines.extend(harness.problem_lines(report.service_problems))
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Buyers and webhooks while MariaDB or MercadoPago is down.")
    parser.add_argument("--outage-seconds", type=float, default=20.0, help="each fault lasts (default 20)")
    parser.add_argument("--readers", type=int, default=5, help="buyers reading their order (default 5)")
    parser.add_argument(
        "--faults",
        nargs="+",
        choices=("frozen", "killed", "mercadopago"),
        default=["frozen", "killed", "mercadopago"],
        help="which, in order",
    )
    harness.add_json_option(parser)
    args = parser.parse_args(argv)
    harness.check_at_least_one(parser, args, ["readers"])
    if args.outage_seconds < PAY_AFTER_SECONDS + 1:
        parser.error(f"--outage-seconds must be at least {PAY_AFTER_SECONDS + 1:.0f}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load = harness.start(
        f"Ticketera outages benchmark: {', '.join(args.faults)}, {args.outage_seconds:.0f} s each,"
        f" {args.readers} buyers at a time"
    )
    with tempfile.TemporaryDirectory(prefix="ticketera-bench-outages-") as tmp:
        workdir = Path(tmp)
        with harness.private_mariadb(workdir) as server:
            # The worker runs in the web process, as the embedded default does: it makes the checkouts
            # MercadoPago could not, once it answers again.
            extra = {"WORKER_IN_PROCESS": "true", "WORKER_INTERVAL_SECONDS": "1"}
            env = harness.service_environment(harness.passed_environment(), server.url, workdir, extra=extra)
            try:
                with harness.running_service_with_mp_simulator(workdir, env, 1, public_base_url=True) as (
                    base_url,
                    _service,
                    simulator_url,
                ):
                    report = asyncio.run(run(base_url, simulator_url, server, args))
            finally:
                problems = harness.service_problems(workdir)
    report.service_problems = problems
    print(format_report(report))
    harness.write_figures(args, load, result=asdict(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
