"""Benchmark: waiting-room join and status throughput over HTTP, against the framework ceiling.

What it measures, against the real service (`ticketera serve --workers N`) over real HTTP, with a
private Redis (`redis-server` on a free loopback port, no persistence, stopped at the end) and a
fresh SQLite database:

* throughput (completed requests / wall time) and latency p50/p95/p99 of, phase by phase:
  the trivial endpoint `GET /health/live` (the framework ceiling), `POST /api/queue/{id}/join` with
  distinct user ids, `GET /api/queue/{id}/status` with the tokens those joins returned, and a mixed
  phase where every load-generator worker joins a new user and then reads that user's status, in
  turn (the realistic pattern); each phase with its ratio to the ceiling;
* the ceiling again at the end, so a drifting machine shows as two different ceilings;
* a paced phase at the deployment guide's 2,000 requests per minute (open loop, alternating joins
  and status reads) for `--paced-seconds`: the guide's "p95 under 100 ms" is read here;
* Redis memory per 100,000 waiting users: `--memory-users` joins with 24-character ids, straight
  through the project's `RedisQueueBackend` (not HTTP), `used_memory` before and after. Redis runs
  the shipped deploy/redis/redis.conf (persistence off: the figure is memory, not this disk).

The load generator is this process (asyncio, httpx, HTTP/1.1 keep-alive, `--concurrency` workers).
It shares the machine with the service and Redis, so each phase also reports the CPU each of them
used (cores busy = CPU seconds / wall seconds), the service's CPU milliseconds per request and
the Redis commands per request. The admission ticker is off (QUEUE_TICKER=false) and the rate
limits are off, so nobody is admitted and positions stay put while the figures are taken.

Run it from the project root:

    make bench-queue                     # runs .venv/bin/python benchmarks/queue.py
    .venv/bin/python benchmarks/queue.py --workers 2 --concurrency 64 --requests 20000 --json q.json

It only reports: it checks that the service answers correctly (a join gives a token, a status
read gives a place in line) and counts non-2xx answers, but never asserts how long anything took,
so a slow machine cannot make it fail. The targets are printed as met or not met, for reading.
"""

from __future__ import annotations

import os
import sys

# This file shares its name with the standard library's `queue`, and running it as a script puts
# its folder first on sys.path, where `import queue` (asyncio's executor, logging.handlers) would
# find this file instead. Drop the folder before anything else is imported.
if os.path.realpath(sys.path[0] or os.curdir) == os.path.dirname(os.path.realpath(__file__)):
    sys.path.pop(0)

# Then the project root, so the shared plumbing imports as `benchmarks.harness`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

import argparse
import asyncio
import contextlib
import itertools
import json
import secrets
import tempfile
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
import redis.asyncio

from benchmarks import harness
from ticketera.infra.redis import RedisConnection
from ticketera.queue.redis_backend import EventKeys, RedisQueueBackend

USER_ID_LENGTH = 24
GUIDE_REQUESTS_PER_MINUTE = 2000.0
GUIDE_P95_MS = 100.0
CEILING_SHARE_TARGET = 0.5
MEMORY_EVENT_ID = 900_000_001  # only in Redis: no event row is needed by the backend itself
# The memory figure is for the configuration operators run (deploy/redis/redis.conf), not defaults.
SHIPPED_REDIS_CONFIG = Path(__file__).resolve().parent.parent / "deploy" / "redis" / "redis.conf"


@dataclass
class PhaseResult:
    name: str
    completed: int
    wall_s: float
    throughput_rps: float
    latency_ms: harness.Latency
    status_codes: dict[str, int]
    non_2xx: int
    transport_errors: dict[str, int]
    ratio_vs_ceiling: float = 0.0
    client_cpu_s: float = 0.0
    server_cpu_s: float = 0.0
    redis_cpu_s: float = 0.0
    client_cores: float = 0.0
    server_cores: float = 0.0
    redis_cores: float = 0.0
    server_cpu_ms_per_request: float = 0.0
    redis_cpu_ms_per_request: float = 0.0
    redis_commands_per_request: float = 0.0
    redis_scripts_per_request: float = 0.0
    # Service + Redis CPU per request of the ceiling / of this phase: the throughput ratio the
    # service alone would reach if the load generator did not share the machine.
    cpu_ratio_vs_ceiling: float = 0.0
    target_rps: float | None = None


@dataclass
class MemoryResult:
    users: int
    user_id_length: int
    used_memory_before: int
    used_memory_after: int
    bytes_per_user: float
    mib_per_100k_users: float
    users_hash_bytes: int
    line_zset_bytes: int
    waiting_after: int
    join_seconds: float
    joins_per_second: float


@dataclass
class Report:
    settings: dict[str, Any]
    redis_version: str = ""
    phases: list[PhaseResult] = field(default_factory=list)
    ceiling_drift: float = 0.0
    memory: MemoryResult | None = None
    targets: dict[str, Any] = field(default_factory=dict)
    service_problems: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Processes: Redis, the service, and what they cost


def _service_environment(workdir: Path, redis_url: str) -> dict[str, str]:
    """SQLite, the private Redis, rate limits and the admission ticker off."""
    return harness.service_environment(
        harness.passed_environment(),
        f"sqlite:///{workdir / 'bench.db'}",
        workdir,
        extra={
            "REDIS_URL": redis_url,
            "APP_RATE_LIMIT": "off",
            "QUEUE_JOIN_RATE_LIMIT": "off",
            "QUEUE_MAX_SIZE": "1000000",
            "QUEUE_TICKER": "false",
        },
    )


@dataclass
class Meters:
    """Reads what the client, the service and Redis have spent so far."""

    service_pid: int
    redis_pid: int
    redis_client: redis.asyncio.Redis

    async def read(self) -> tuple[float, float, float, int, int]:
        """CPU seconds of client, service and Redis; Redis commands (also those inside scripts); scripts."""
        info = await self.redis_client.info("commandstats")
        calls = {key.removeprefix("cmdstat_"): int(value["calls"]) for key, value in info.items()}
        redis_stat = harness.proc_stat(self.redis_pid)
        return (
            harness.client_cpu_seconds(),
            harness.tree_cpu_seconds(self.service_pid),
            redis_stat[1] if redis_stat else 0.0,
            sum(calls.values()),
            calls.get("evalsha", 0) + calls.get("eval", 0),
        )

    async def finish(self, result: PhaseResult, before: tuple[float, float, float, int, int]) -> PhaseResult:
        after = await self.read()
        wall = max(result.wall_s, 1e-9)
        result.client_cpu_s = after[0] - before[0]
        result.server_cpu_s = after[1] - before[1]
        result.redis_cpu_s = after[2] - before[2]
        result.client_cores = result.client_cpu_s / wall
        result.server_cores = result.server_cpu_s / wall
        result.redis_cores = result.redis_cpu_s / wall
        # Minus the INFO call this reading itself made.
        commands = after[3] - before[3] - 1
        if result.completed:
            result.server_cpu_ms_per_request = result.server_cpu_s * 1000.0 / result.completed
            result.redis_cpu_ms_per_request = result.redis_cpu_s * 1000.0 / result.completed
            result.redis_commands_per_request = commands / result.completed
            result.redis_scripts_per_request = (after[4] - before[4]) / result.completed
        return result


# --------------------------------------------------------------------------------------------
# Load


def _user_id(prefix: str, index: int) -> str:
    """A 24-character id, like a platform account id; distinct per prefix and index."""
    return f"{prefix}{index:0{USER_ID_LENGTH - len(prefix)}d}"


def _run_prefix(phase: str) -> str:
    return f"{phase}{secrets.token_hex(4)}"  # 9 characters: distinct from run to run


async def create_queue_event(client: httpx.AsyncClient) -> int:
    body = {
        "name": "Bench",
        "startsAt": harness.starts_at(),
        "queue": {"enabled": True, "admitPerMinute": 60, "maxActiveShoppers": 100},
        "sections": [{"name": "Campo", "price": "9000.00", "capacity": 1000}],
    }
    response = await client.post("/api/events", json=body, headers=harness.ADMIN_HEADERS)
    return int(harness.expect(response, 201, "POST /api/events")["id"])


class Plan:
    """What one phase sends: `send` is timed, `after` (checks, bookkeeping) is not."""

    name = ""

    async def send(self, client: httpx.AsyncClient, worker: int, index: int) -> httpx.Response:
        raise NotImplementedError

    def after(self, worker: int, index: int, response: httpx.Response) -> None:
        return None


class CeilingPlan(Plan):
    def __init__(self, name: str) -> None:
        self.name = name

    async def send(self, client: httpx.AsyncClient, worker: int, index: int) -> httpx.Response:
        return await client.get("/health/live")


class JoinPlan(Plan):
    name = "join"

    def __init__(self, event_id: int) -> None:
        self.path = f"/api/queue/{event_id}/join"
        self.prefix = _run_prefix("j")
        self.tokens: dict[int, str] = {}

    async def send(self, client: httpx.AsyncClient, worker: int, index: int) -> httpx.Response:
        return await client.post(self.path, json={"userId": _user_id(self.prefix, index)})

    def after(self, worker: int, index: int, response: httpx.Response) -> None:
        if response.status_code == 201:
            self.tokens[index] = response.json()["queueToken"]


class StatusPlan(Plan):
    name = "status"

    def __init__(self, event_id: int, tokens: list[str]) -> None:
        self.path = f"/api/queue/{event_id}/status"
        self.headers = [{"Authorization": f"Bearer {token}"} for token in tokens]

    async def send(self, client: httpx.AsyncClient, worker: int, index: int) -> httpx.Response:
        return await client.get(self.path, headers=self.headers[index % len(self.headers)])


class MixedPlan(Plan):
    """Each worker joins a new user, then reads that user's status with the token it got, in turn."""

    name = "mixed join+status"

    def __init__(self, event_id: int) -> None:
        self.join_path = f"/api/queue/{event_id}/join"
        self.status_path = f"/api/queue/{event_id}/status"
        self.prefix = _run_prefix("m")
        self.pending: dict[int, str] = {}

    async def send(self, client: httpx.AsyncClient, worker: int, index: int) -> httpx.Response:
        token = self.pending.pop(worker, None)
        if token is None:
            return await client.post(self.join_path, json={"userId": _user_id(self.prefix, index)})
        return await client.get(self.status_path, headers={"Authorization": f"Bearer {token}"})

    def after(self, worker: int, index: int, response: httpx.Response) -> None:
        if response.request.method == "POST" and response.status_code == 201:
            self.pending[worker] = response.json()["queueToken"]


def _phase_result(
    name: str, latencies: list[float], codes: Counter[int], errors: Counter[str], wall: float
) -> PhaseResult:
    return PhaseResult(
        name=name,
        completed=len(latencies),
        wall_s=wall,
        throughput_rps=len(latencies) / wall if wall > 0 else 0.0,
        latency_ms=harness.Latency.of(latencies),
        status_codes={str(code): count for code, count in sorted(codes.items())},
        non_2xx=sum(count for code, count in codes.items() if not 200 <= code < 300),
        transport_errors=dict(errors),
    )


async def run_closed_loop(
    clients: list[httpx.AsyncClient],
    plan: Plan,
    meters: Meters,
    *,
    concurrency: int,
    requests: int,
    duration: float | None,
) -> PhaseResult:
    """`concurrency` workers, each sending its next request as soon as the previous one answered.

    Worker n sends on clients[n], its own keep-alive connection.
    """
    latencies: list[float] = []
    codes: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    counter = itertools.count()
    before = await meters.read()
    started = time.perf_counter()
    deadline = started + duration if duration is not None else None

    async def worker(number: int) -> None:
        while True:
            if deadline is not None and time.perf_counter() >= deadline:
                return
            index = next(counter)
            if deadline is None and index >= requests:
                return
            sent = time.perf_counter()
            try:
                response = await plan.send(clients[number % len(clients)], number, index)
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] += 1
                continue
            latencies.append(time.perf_counter() - sent)
            codes[response.status_code] += 1
            plan.after(number, index, response)

    await asyncio.gather(*(worker(number) for number in range(concurrency)))
    wall = time.perf_counter() - started
    return await meters.finish(_phase_result(plan.name, latencies, codes, errors, wall), before)


async def run_paced(
    clients: list[httpx.AsyncClient],
    event_id: int,
    tokens: list[str],
    meters: Meters,
    *,
    per_minute: float,
    seconds: float,
) -> PhaseResult:
    """Open loop at a fixed rate: joins of new users alternating with status reads of waiting users.

    Each request starts on schedule whether or not earlier ones have answered, so a slow answer
    cannot hide the queueing it causes.
    """
    rate = per_minute / 60.0
    total = max(2, round(rate * seconds))
    prefix = _run_prefix("p")
    join_path = f"/api/queue/{event_id}/join"
    status_path = f"/api/queue/{event_id}/status"
    latencies: list[float] = []
    codes: Counter[int] = Counter()
    errors: Counter[str] = Counter()

    async def one(index: int) -> None:
        client = clients[index % len(clients)]
        sent = time.perf_counter()
        try:
            if index % 2 == 0:
                response = await client.post(join_path, json={"userId": _user_id(prefix, index)})
            else:
                token = tokens[index % len(tokens)]
                response = await client.get(status_path, headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            errors[type(exc).__name__] += 1
            return
        latencies.append(time.perf_counter() - sent)
        codes[response.status_code] += 1

    before = await meters.read()
    started = time.perf_counter()
    tasks: list[asyncio.Task[None]] = []
    for index in range(total):
        delay = started + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index)))
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - started
    name = f"paced {per_minute:,.0f}/min"
    result = await meters.finish(_phase_result(name, latencies, codes, errors, wall), before)
    result.target_rps = rate
    return result


async def check_status(client: httpx.AsyncClient, event_id: int, token: str) -> None:
    """A status read outside the timed phases: the user is waiting with a place in line."""
    response = await client.get(f"/api/queue/{event_id}/status", headers={"Authorization": f"Bearer {token}"})
    body = response.json() if response.status_code == 200 else {}
    if body.get("status") != "waiting" or not isinstance(body.get("position"), int):
        raise harness.BenchmarkError(f"status answered {response.status_code}: {response.text[:300]}")


async def run_http_phases(base_url: str, meters: Meters, args: argparse.Namespace) -> list[PhaseResult]:
    async with contextlib.AsyncExitStack() as stack:
        # One client with one keep-alive connection per load worker (`concurrency` connections in
        # all): a single pool shared by 64 workers cost this process about 2.5x the CPU per request.
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=base_url,
                    limits=limits,
                    timeout=harness.REQUEST_TIMEOUT_SECONDS,
                    http1=True,
                    http2=False,
                )
            )
            for _ in range(args.concurrency)
        ]
        event_id = await create_queue_event(clients[0])

        def closed(plan: Plan, requests: int | None = None) -> Coroutine[Any, Any, PhaseResult]:
            return run_closed_loop(
                clients,
                plan,
                meters,
                concurrency=args.concurrency,
                requests=requests or args.requests,
                duration=None if requests else args.duration,
            )

        # Warm-up, not measured: opens every connection and loads the event's settings in each worker.
        await closed(CeilingPlan("warm-up"), args.concurrency * 4)
        warm = JoinPlan(event_id)
        await closed(warm, 200)
        await closed(StatusPlan(event_id, list(warm.tokens.values())), 200)

        phases = [await closed(CeilingPlan("ceiling /health/live"))]
        join = JoinPlan(event_id)
        phases.append(await closed(join))
        tokens = [join.tokens[index] for index in sorted(join.tokens)]
        if not tokens:
            raise harness.BenchmarkError(
                f"no join succeeded: {phases[-1].status_codes} {phases[-1].transport_errors}"
            )
        await check_status(clients[0], event_id, tokens[-1])
        phases.append(await closed(StatusPlan(event_id, tokens)))
        phases.append(await closed(MixedPlan(event_id)))
        phases.append(await closed(CeilingPlan("ceiling again (drift)")))
        phases.append(
            await run_paced(
                clients,
                event_id,
                tokens,
                meters,
                per_minute=args.paced_per_minute,
                seconds=args.paced_seconds,
            )
        )
    ceiling = phases[0]
    ceiling_cpu = ceiling.server_cpu_ms_per_request + ceiling.redis_cpu_ms_per_request
    for phase in phases:
        phase.ratio_vs_ceiling = (
            phase.throughput_rps / ceiling.throughput_rps if ceiling.throughput_rps else 0.0
        )
        phase_cpu = phase.server_cpu_ms_per_request + phase.redis_cpu_ms_per_request
        phase.cpu_ratio_vs_ceiling = ceiling_cpu / phase_cpu if phase_cpu else 0.0
    return phases


# --------------------------------------------------------------------------------------------
# Redis memory


async def measure_memory(redis_url: str, users: int, batch: int) -> MemoryResult:
    """`users` joins straight through RedisQueueBackend to a fresh event; `used_memory` before and after."""
    connection = RedisConnection(redis_url)
    backend = RedisQueueBackend(connection)
    client = connection.client
    keys = EventKeys(MEMORY_EVENT_ID)
    try:
        if await client.exists(keys.users, keys.line):
            raise harness.BenchmarkError(f"event {MEMORY_EVENT_ID} already has a line in the private Redis")
        before = int((await client.info("memory"))["used_memory"])
        user_ids = [secrets.token_hex(USER_ID_LENGTH // 2) for _ in range(users)]
        now_ms = int(time.time() * 1000)
        started = time.perf_counter()
        created = 0
        for start in range(0, users, batch):
            outcomes = await asyncio.gather(
                *(
                    backend.join(MEMORY_EVENT_ID, user_id, now_ms=now_ms, on_sale_ms=None, max_waiting=10**9)
                    for user_id in user_ids[start : start + batch]
                )
            )
            created += sum(1 for outcome in outcomes if outcome.created)
        join_seconds = time.perf_counter() - started
        after = int((await client.info("memory"))["used_memory"])
        figures = await backend.figures(MEMORY_EVENT_ID, now_ms=now_ms)
        if created != users or figures.waiting != users:
            raise harness.BenchmarkError(
                f"{created} joins created, {figures.waiting} waiting, expected {users}"
            )
        users_hash = int(await client.memory_usage(keys.users, samples=0) or 0)
        line_zset = int(await client.memory_usage(keys.line, samples=0) or 0)
    finally:
        await connection.close()
    per_user = (after - before) / users
    return MemoryResult(
        users=users,
        user_id_length=USER_ID_LENGTH,
        used_memory_before=before,
        used_memory_after=after,
        bytes_per_user=per_user,
        mib_per_100k_users=per_user * 100_000 / 2**20,
        users_hash_bytes=users_hash,
        line_zset_bytes=line_zset,
        waiting_after=figures.waiting,
        join_seconds=join_seconds,
        joins_per_second=users / join_seconds,
    )


# --------------------------------------------------------------------------------------------
# Report


def format_phase(phase: PhaseResult) -> str:
    lat = phase.latency_ms
    failed = phase.non_2xx + sum(phase.transport_errors.values())
    return (
        f"  {phase.name:<22} {phase.throughput_rps:>7,.0f} {phase.ratio_vs_ceiling:>5.0%}"
        f" {phase.cpu_ratio_vs_ceiling:>5.0%} {lat.p50:>7.1f} {lat.p95:>7.1f} {lat.p99:>7.1f}"
        f" {phase.completed:>7,} {failed:>5,}  {phase.client_cores:>5.2f} {phase.server_cores:>5.2f}"
        f" {phase.redis_cores:>5.2f}  {phase.server_cpu_ms_per_request:>6.2f}"
        f" {phase.redis_cpu_ms_per_request:>6.3f}"
        f" {phase.redis_scripts_per_request:>7.2f} {phase.redis_commands_per_request:>5.1f}"
    )


def format_report(report: Report) -> str:
    settings = report.settings
    lines = [
        "",
        "                          throughput   ratio to    latency (ms)                      "
        "cores busy (CPU s / wall s)  CPU ms / request   Redis / request",
        "  phase                    req/s  ceil. ceil.CPU    p50     p95     p99    done  fail "
        "  client  svc.  Redis    svc.   Redis  scripts  cmds",
    ]
    lines.extend(format_phase(phase) for phase in report.phases)
    lines.append(
        f"  ceiling drift: end / start = {report.ceiling_drift:.2f}. Ratios are against the first ceiling"
        " run: 'ceil.' = req/s over the ceiling's req/s;\n  'ceil.CPU' = (service + Redis CPU per ceiling"
        " request) / (the same per request of the phase): the ratio if the service had the machine to"
        " itself.\n  Redis cmds counts the commands run inside scripts too."
    )
    failures = [phase for phase in report.phases if phase.non_2xx or phase.transport_errors]
    for phase in failures:
        lines.append(f"  ! {phase.name}: status codes {phase.status_codes}, errors {phase.transport_errors}")
    paced = report.phases[-1]
    lines.append(
        f"  paced phase: {paced.completed} requests in {paced.wall_s:.1f} s"
        f" (scheduled {paced.target_rps or 0:.1f}/s, achieved {paced.throughput_rps:.1f}/s)"
    )
    if report.memory is not None:
        memory = report.memory
        lines += [
            "",
            f"Redis memory, {memory.users:,} waiting users ({memory.user_id_length}-character ids, joined"
            f" through RedisQueueBackend, {settings['memory_batch']} at a time):",
            f"  used_memory {memory.used_memory_before / 2**20:.1f}"
            f" -> {memory.used_memory_after / 2**20:.1f} MiB: {memory.bytes_per_user:.0f} bytes per user,"
            f" {memory.mib_per_100k_users:.1f} MiB per 100,000 users",
            f"  keys: users hash {memory.users_hash_bytes / 2**20:.1f} MiB, line sorted set"
            f" {memory.line_zset_bytes / 2**20:.1f} MiB (MEMORY USAGE)",
            f"  {memory.joins_per_second:,.0f} joins/s straight into Redis from this process"
            f" ({memory.join_seconds:.1f} s)",
        ]
    targets = report.targets
    lines += [
        "",
        "Targets (reported, never asserted):",
        f"  mixed join+status >= {CEILING_SHARE_TARGET:.0%} of the ceiling:"
        f" {targets['mixed_vs_ceiling']:.0%} -> {'met' if targets['mixed_met'] else 'NOT met'}"
        f"  (join {targets['join_vs_ceiling']:.0%}, status {targets['status_vs_ceiling']:.0%});"
        f" by CPU per request {targets['mixed_cpu_vs_ceiling']:.0%}"
        f" -> {'met' if targets['mixed_cpu_met'] else 'NOT met'}",
        f"  p95 at {settings['paced_per_minute']:,.0f} req/min well under {GUIDE_P95_MS:.0f} ms:"
        f" p95 {targets['paced_p95_ms']:.1f} ms -> {'met' if targets['paced_met'] else 'NOT met'}",
    ]
    if report.service_problems:
        lines.append(
            f"\nThe service logged {len(report.service_problems)} warning/error line(s), first ones:"
        )
        lines.extend(f"  {problem}" for problem in report.service_problems[:5])
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Waiting-room join/status throughput and latency over HTTP vs /health/live; Redis memory."
    )
    parser.add_argument("--workers", type=int, default=2, help="service worker processes (default 2)")
    parser.add_argument("--concurrency", type=int, default=64, help="load-generator workers (default 64)")
    parser.add_argument("--requests", type=int, default=20000, help="requests per phase (default 20000)")
    parser.add_argument(
        "--duration", type=float, default=None, metavar="SECONDS", help="run each phase this long instead"
    )
    parser.add_argument(
        "--paced-per-minute", type=float, default=GUIDE_REQUESTS_PER_MINUTE, help="paced rate (default 2000)"
    )
    parser.add_argument("--paced-seconds", type=float, default=20.0, help="paced phase length (default 20)")
    parser.add_argument(
        "--memory-users",
        type=int,
        default=100_000,
        help="users joined for the memory figure (default 100000)",
    )
    parser.add_argument(
        "--memory-batch", type=int, default=500, help="concurrent joins per batch (default 500)"
    )
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the figures here")
    args = parser.parse_args(argv)
    for name in ("workers", "concurrency", "memory_batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.requests < 2:
        parser.error("--requests must be at least 2")
    if args.duration is not None and args.duration <= 0:
        parser.error("--duration must be positive")
    if args.paced_per_minute <= 0 or args.paced_seconds <= 0:
        parser.error("--paced-per-minute and --paced-seconds must be positive")
    if args.memory_users < 0:
        parser.error("--memory-users must be 0 (skip) or more")
    return args


async def _http_part(
    base_url: str, service_pid: int, redis_pid: int, redis_url: str, args: argparse.Namespace
) -> list[PhaseResult]:
    redis_client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    try:
        return await run_http_phases(base_url, Meters(service_pid, redis_pid, redis_client), args)
    finally:
        await redis_client.aclose()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    per_phase = f"{args.duration:g} s" if args.duration is not None else f"{args.requests:,} requests"
    report = Report(
        settings={
            key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()
        }
    )
    with tempfile.TemporaryDirectory(prefix="ticketera-bench-queue-") as tmp:
        workdir = Path(tmp)
        with harness.private_redis(workdir, config=SHIPPED_REDIS_CONFIG) as (redis_url, redis_process):
            report.redis_version = str(redis.Redis.from_url(redis_url).info("server")["redis_version"])
            print(
                f"Ticketera waiting-room benchmark: {args.workers} service worker(s), SQLite, private Redis"
                f" {report.redis_version}; load {args.concurrency} concurrent, {per_phase} per phase;"
                f" {os.cpu_count()} CPU(s)"
            )
            print(
                "Admission ticker off (QUEUE_TICKER=false): nobody is admitted and positions stay put."
                " Rate limits off. The load generator runs on the same machine (see 'cores used')."
            )
            try:
                with harness.running_service(
                    workdir, _service_environment(workdir, redis_url), args.workers
                ) as (base_url, service, _):
                    report.phases = asyncio.run(
                        _http_part(base_url, service.pid, redis_process.pid, redis_url, args)
                    )
            finally:
                report.service_problems = harness.service_problems(workdir)
            # After the service stopped: Redis is idle, so used_memory moves only with these joins.
            if args.memory_users:
                report.memory = asyncio.run(measure_memory(redis_url, args.memory_users, args.memory_batch))
    by_name = {phase.name: phase for phase in report.phases}
    first, last = report.phases[0], by_name["ceiling again (drift)"]
    report.ceiling_drift = last.throughput_rps / first.throughput_rps if first.throughput_rps else 0.0
    mixed, paced = by_name["mixed join+status"], report.phases[-1]
    report.targets = {
        "mixed_vs_ceiling": mixed.ratio_vs_ceiling,
        "mixed_cpu_vs_ceiling": mixed.cpu_ratio_vs_ceiling,
        "mixed_met": mixed.ratio_vs_ceiling >= CEILING_SHARE_TARGET,
        "mixed_cpu_met": mixed.cpu_ratio_vs_ceiling >= CEILING_SHARE_TARGET,
        "join_vs_ceiling": by_name["join"].ratio_vs_ceiling,
        "status_vs_ceiling": by_name["status"].ratio_vs_ceiling,
        "paced_p95_ms": paced.latency_ms.p95,
        "paced_met": paced.latency_ms.p95 < GUIDE_P95_MS / 2,
        "paced_met_rule": f"p95 < {GUIDE_P95_MS / 2:.0f} ms (half the guide's {GUIDE_P95_MS:.0f} ms)",
    }
    print(format_report(report))
    if args.json is not None:
        args.json.write_text(json.dumps(asdict(report), indent=2) + "\n")
        print(f"\nFigures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
