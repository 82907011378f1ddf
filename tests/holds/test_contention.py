"""Holds under contention, end to end: the real server, real HTTP, several OS processes at once.

1,000 buyers (four processes of 250 concurrent requests each, started together) want 100 reserved
seats, each seat wanted by ten of them, and then 1,000 more want 100 general-admission places.
Exactly 100 of each must win, every unit goes to exactly one hold, and every loser hears 409
`seats_unavailable`: on MariaDB behind two workers and on SQLite behind one. How fast a loser hears
it is not asserted here (a busy machine would fail the test without saying anything about holds):
benchmarks/onsale.py measures the hold's 409 latency; a hang still fails, at the client's timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import ssl
import statistics
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import fresh_database
from tests.factories import event_body, ga_section, reserved_section
from tests.test_cli import SECRETS, TICKETERA, cli_env, free_port, stop, wait_until_ready

PROCESSES = 4
ATTEMPTS_PER_PROCESS = 250
UNITS = 100
# All attempts are launched at once; each process lets this many reach the server at a time, as a
# front proxy's connection limit would: 40 in flight against MariaDB's two workers, 16 against
# SQLite's single one. On a 2-core machine where the four client processes, the server and the
# database share the cores, letting all 1,000 through at once only queues them on the CPU (about
# 4 s at the tail on a quiet machine, more on a busy one), which tests nothing about holds.
IN_FLIGHT_PER_PROCESS = {"mariadb": 10, "sqlite": 4}
WORKERS = {"mariadb": 2, "sqlite": 1}
ADMIN_HEADERS = {"Authorization": f"Bearer {SECRETS['ADMIN_API_KEY']}"}
BARRIER_SECONDS = 60.0
REQUEST_TIMEOUT_SECONDS = 30.0

# One attempt as a worker process reports it: status code (0 when no answer came), error code,
# the unit ids of the hold, and the wall time of the hold request alone (printed, never asserted).
Attempt = tuple[int, str | None, list[int], float]


@dataclass(frozen=True)
class Sale:
    base: str
    event_id: int
    reserved_section: int
    ga_section: int
    seat_ids: list[int]
    in_flight_per_process: int


@dataclass(frozen=True)
class Server:
    backend: str
    base: str


@dataclass(frozen=True)
class Database:
    backend: str
    url: str


@pytest.fixture(params=["mariadb", "sqlite"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh, empty database: its own on the MariaDB test server, or a new SQLite file."""
    async with fresh_database(request.param, tmp_path, "ticketera_contention") as url:
        yield Database(request.param, url)


@pytest.fixture
def server(database: Database, tmp_path: Path) -> Iterator[Server]:
    """`ticketera serve` on that database: two workers on MariaDB, one on SQLite."""
    port = free_port()
    env = cli_env(
        tmp_path,
        **SECRETS,
        APP_ENV="production",
        DATABASE_URL=database.url,
        APP_RATE_LIMIT="off",
        QUEUE_JOIN_RATE_LIMIT="off",
        QUEUE_TICKER="false",
        WORKER_IN_PROCESS="false",
        LOG_LEVEL="WARNING",
    )
    command = [TICKETERA, "serve", "--host", "127.0.0.1", "--port", str(port)]
    # The server's output goes to a file: a pipe nobody reads fills up and then blocks its writes.
    output_file = tmp_path / "server-output.log"
    with output_file.open("w") as sink:
        process = subprocess.Popen(
            [*command, "--workers", str(WORKERS[database.backend])],
            cwd=tmp_path,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base, process, seconds=60)
        yield Server(database.backend, base)
    finally:
        stop(process)
        output = output_file.read_text()
        if "Traceback" in output:
            print(f"\n--- server output ({database.backend}) ---\n{output[-4000:]}")


async def open_sale(base: str, backend: str) -> Sale:
    body = event_body(
        name="Contention",
        sections=[
            reserved_section("Platea", rows=10, seats=10),
            ga_section("Campo", capacity=UNITS),
        ],
        queue={"enabled": False},
        maxTicketsPerUser=10,
    )
    async with httpx.AsyncClient(base_url=base, timeout=REQUEST_TIMEOUT_SECONDS) as client:
        created = await client.post("/api/events", json=body, headers=ADMIN_HEADERS)
        assert created.status_code == 201, created.text
        event: dict[str, Any] = created.json()
        platea, campo = event["sections"]
        seats = (await client.get(f"/api/events/{event['id']}/seats")).json()["seats"]
    seat_ids = sorted(seat["id"] for seat in seats if seat["section"] == platea["id"])
    assert len(seat_ids) == UNITS
    return Sale(base, event["id"], platea["id"], campo["id"], seat_ids, IN_FLIGHT_PER_PROCESS[backend])


def reserved_body(sale: Sale, attempt: int) -> dict[str, Any]:
    """Attempt k wants seat k mod 100: each seat is wanted by exactly ten buyers."""
    return {"seatIds": [sale.seat_ids[attempt % UNITS]]}


def ga_body(sale: Sale, attempt: int) -> dict[str, Any]:
    return {"sectionId": sale.ga_section, "quantity": 1}


async def _join(client: httpx.AsyncClient, event_id: int, user_id: str) -> str:
    response = await client.post(f"/api/queue/{event_id}/join", json={"userId": user_id})
    assert response.status_code == 201, response.text
    token: str = response.json()["accessToken"]
    return token


async def _hold(client: httpx.AsyncClient, event_id: int, token: str, body: dict[str, Any]) -> Attempt:
    started = time.perf_counter()
    try:
        response = await client.post(
            f"/api/events/{event_id}/holds", json=body, headers={"X-Access-Token": token}
        )
    except httpx.HTTPError as exc:
        return (0, type(exc).__name__, [], time.perf_counter() - started)
    elapsed = time.perf_counter() - started
    answer: dict[str, Any] = response.json()
    if response.status_code == 201:
        return (201, None, [seat["id"] for seat in answer["seats"]], elapsed)
    return (response.status_code, str(answer.get("error")), [], elapsed)


async def _phase(
    sale: Sale, phase: str, indices: range, barrier: Barrier, tls: ssl.SSLContext
) -> list[Attempt]:
    """Every buyer joins (one user, one client, one connection), then all hold at the same moment.

    A client per buyer, as in real life: one httpx pool shared by 250 concurrent requests spends
    about 10 ms of CPU per request on bookkeeping, which would be measured as server latency.
    """
    body = reserved_body if phase == "reserved" else ga_body
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=sale.base, verify=tls, timeout=REQUEST_TIMEOUT_SECONDS)
            )
            for _ in indices
        ]
        # Joining also opens the connection the hold then reuses: the measured time is the hold's.
        tokens = await asyncio.gather(
            *(
                _join(client, sale.event_id, f"{phase}-{k}")
                for client, k in zip(clients, indices, strict=True)
            )
        )
        in_flight = asyncio.Semaphore(sale.in_flight_per_process)

        async def bounded_hold(client: httpx.AsyncClient, token: str, k: int) -> Attempt:
            async with in_flight:
                return await _hold(client, sale.event_id, token, body(sale, k))

        barrier.wait(BARRIER_SECONDS)
        return list(
            await asyncio.gather(
                *(
                    bounded_hold(client, token, k)
                    for client, token, k in zip(clients, tokens, indices, strict=True)
                )
            )
        )


async def _attempts(sale: Sale, process: int, barrier: Barrier) -> dict[str, list[Attempt]]:
    first = process * ATTEMPTS_PER_PROCESS
    indices = range(first, first + ATTEMPTS_PER_PROCESS)
    tls = ssl.create_default_context()  # unused over plain HTTP, but built once instead of per client
    return {phase: await _phase(sale, phase, indices, barrier, tls) for phase in ("reserved", "ga")}


def attempt_in_own_process(
    sale: Sale, process: int, barrier: Barrier, results: multiprocessing.Queue[Any]
) -> None:
    """A worker process's entry point: its own event loop and client; results go back by queue."""
    try:
        results.put((process, asyncio.run(_attempts(sale, process, barrier))))
    except BaseException as exc:
        barrier.abort()
        results.put((process, f"{type(exc).__name__}: {exc}"))
        raise


def race(sale: Sale) -> dict[str, list[Attempt]]:
    """Run the attempts from PROCESSES spawned processes; all of each phase start together."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    queue: multiprocessing.Queue[Any] = context.Queue()
    workers = [
        context.Process(target=attempt_in_own_process, args=(sale, n, barrier, queue), daemon=True)
        for n in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    by_process: dict[int, dict[str, list[Attempt]]] = {}
    failures: list[str] = []
    try:
        for _ in workers:
            process, outcome = queue.get(timeout=120)
            if isinstance(outcome, str):
                failures.append(outcome)
            else:
                by_process[process] = outcome
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.kill()
    assert not failures, failures
    # In attempt order: attempt k is the (k mod 250)th of process k // 250.
    return {
        phase: [attempt for n in range(PROCESSES) for attempt in by_process[n][phase]]
        for phase in ("reserved", "ga")
    }


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def describe(backend: str, phase: str, attempts: Sequence[Attempt]) -> str:
    winners = [seconds for status, _, _, seconds in attempts if status == 201]
    losers = [seconds for status, _, _, seconds in attempts if status != 201]

    def figures(values: Sequence[float]) -> str:
        if not values:
            return "none"
        return (
            f"n={len(values)} p50={statistics.median(values) * 1000:.0f}ms "
            f"p95={percentile(values, 0.95) * 1000:.0f}ms max={max(values) * 1000:.0f}ms"
        )

    return f"{backend:7} {phase:8} winners {figures(winners)} | losers {figures(losers)}"


def assert_exactly_one_winner_per_unit(attempts: Sequence[Attempt], expected_units: set[int] | None) -> None:
    outcomes = Counter((status, error) for status, error, _, _ in attempts)
    assert outcomes == {(201, None): UNITS, (409, "seats_unavailable"): len(attempts) - UNITS}, outcomes
    held = [unit for status, _, units, _ in attempts if status == 201 for unit in units]
    assert len(held) == UNITS
    assert len(set(held)) == UNITS, "a unit went to more than one hold"
    if expected_units is not None:
        assert set(held) == expected_units


@pytest.mark.slow
async def test_a_thousand_buyers_race_for_a_hundred_seats_and_a_hundred_places(server: Server) -> None:
    sale = await open_sale(server.base, server.backend)

    started = time.perf_counter()
    results = await asyncio.to_thread(race, sale)
    elapsed = time.perf_counter() - started

    async with httpx.AsyncClient(base_url=server.base, timeout=REQUEST_TIMEOUT_SECONDS) as client:
        detail = (await client.get(f"/api/events/{sale.event_id}")).json()
        seat_map = (await client.get(f"/api/events/{sale.event_id}/seats")).json()["seats"]
    print(f"\n{server.backend}: {PROCESSES * ATTEMPTS_PER_PROCESS * 2} attempts in {elapsed:.1f}s")
    for phase in ("reserved", "ga"):
        print(describe(server.backend, phase, results[phase]))
    assert len(results["reserved"]) == len(results["ga"]) == PROCESSES * ATTEMPTS_PER_PROCESS
    assert_exactly_one_winner_per_unit(results["reserved"], set(sale.seat_ids))
    assert_exactly_one_winner_per_unit(results["ga"], None)
    assert all(
        units == [sale.seat_ids[k % UNITS]]
        for k, (status, _, units, _) in enumerate(results["reserved"])
        if status == 201
    ), "a reserved winner holds a seat other than the one it asked for"
    assert [(section["id"], section["held"], section["available"]) for section in detail["sections"]] == [
        (sale.reserved_section, UNITS, 0),
        (sale.ga_section, UNITS, 0),
    ]
    statuses = {seat["id"]: seat["status"] for seat in seat_map}
    assert statuses == dict.fromkeys(sale.seat_ids, "held")
