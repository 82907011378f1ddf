"""Benchmark: replica fallback time, how long from a read replica going wrong until the public reads
are served by the primary, and how long until they come back to the replica once it is well.

A MariaDB primary and its replica of our own (GTID replication, `harness.replicated_mariadb`) and
`ticketera serve` with DATABASE_REPLICA_URL pointing at the replica. One event is renamed on the
replica alone, so every public read of it says which server answered. A reader asks for it every
READ_INTERVAL seconds, while a writer changes another row on the primary every WRITE_INTERVAL
seconds (a sale in progress: without writes a replica lacks nothing and never lags). Each round:

- lagging: `STOP SLAVE SQL_THREAD` on the replica; the replica keeps answering, but falls behind;
- stopped: the replica's mariadbd is killed (SIGKILL), as a crash;
- frozen: the replica's mariadbd is stopped (SIGSTOP), as a hung host.

Reported per case: seconds from the fault until the first read answered by the primary, the reads
that failed meanwhile, and seconds from the repair until the reads are the replica's again. Never
asserted.

    .venv/bin/python benchmarks/replicas.py                      # make bench-replicas
    .venv/bin/python benchmarks/replicas.py --rounds 5 --max-lag 0.5
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
import contextlib
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import text

from benchmarks import harness
from ticketera.config import to_async_url
from ticketera.kit.db import create_engine

READ_INTERVAL = 0.01
WRITE_INTERVAL = 0.05
ON_REPLICA = "served by the replica"
# How long a case may take to settle before it counts as never having happened.
SETTLE_SECONDS = 60.0


@dataclass
class Read:
    at: float
    status: int
    name: str | None


@dataclass
class Reader:
    """Reads the event every READ_INTERVAL seconds and keeps every answer."""

    http: httpx.AsyncClient
    event_id: int
    reads: list[Read] = field(default_factory=list)

    async def run(self) -> None:
        while True:
            try:
                response = await self.http.get(f"/api/events/{self.event_id}")
                name = response.json().get("name") if response.status_code == 200 else None
                self.reads.append(Read(time.monotonic(), response.status_code, name))
            except httpx.HTTPError:
                self.reads.append(Read(time.monotonic(), 0, None))
            await asyncio.sleep(READ_INTERVAL)

    async def first_after(self, since: float, served_by_replica: bool) -> float:
        """Seconds from `since` to the first good read by the replica (or not by it)."""
        deadline = time.monotonic() + SETTLE_SECONDS
        while time.monotonic() < deadline:
            for read in self.reads:
                if read.at > since and read.status == 200 and (read.name == ON_REPLICA) is served_by_replica:
                    return read.at - since
            await asyncio.sleep(0.05)
        raise harness.BenchmarkError(f"no read {'by' if served_by_replica else 'off'} the replica in time")

    def failed_between(self, start: float, end: float) -> int:
        return sum(1 for read in self.reads if start < read.at <= end and read.status != 200)


@dataclass
class Case:
    name: str
    fallback_seconds: list[float] = field(default_factory=list)
    failed_reads: list[int] = field(default_factory=list)
    back_seconds: list[float] = field(default_factory=list)

    def line(self) -> str:
        def spread(values: list[float]) -> str:
            return f"median {statistics.median(values):5.2f} s, worst {max(values):5.2f} s"

        return (
            f"  {self.name:<8} on the primary after: {spread(self.fallback_seconds)}; "
            f"reads failed meanwhile: {sum(self.failed_reads)}; "
            f"back on the replica after: {spread(self.back_seconds)}"
        )


@contextlib.asynccontextmanager
async def writing_on(primary_url: str, event_id: int) -> AsyncIterator[None]:
    """A row of the primary changed every WRITE_INTERVAL seconds, as sales would."""
    engine = create_engine(to_async_url(primary_url), pool_size=1)

    async def write_forever() -> None:
        for count in range(10**9):
            async with engine.begin() as connection:
                await connection.execute(
                    text("UPDATE events SET venue = :venue WHERE id = :id"),
                    {"venue": f"v{count}", "id": event_id},
                )
            await asyncio.sleep(WRITE_INTERVAL)

    task = asyncio.create_task(write_forever())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await engine.dispose()


async def measure(
    case: Case,
    reader: Reader,
    fault: Callable[[], object],
    repair: Callable[[], object],
) -> None:
    await reader.first_after(time.monotonic(), served_by_replica=True)
    faulted_at = time.monotonic()
    await asyncio.to_thread(fault)
    fallback = await reader.first_after(faulted_at, served_by_replica=False)
    case.fallback_seconds.append(fallback)
    case.failed_reads.append(reader.failed_between(faulted_at, faulted_at + fallback))
    repaired_at = time.monotonic()
    await asyncio.to_thread(repair)
    case.back_seconds.append(await reader.first_after(repaired_at, served_by_replica=True))


def restart(pair: harness.ReplicatedMariaDB) -> None:
    pair.replica.kill()
    pair.replica.start()


async def run(args: argparse.Namespace, workdir: Path) -> list[Case]:
    cases = [Case("lagging"), Case("stopped"), Case("frozen")]
    with harness.replicated_mariadb(workdir) as pair:
        env = harness.service_environment(
            harness.passed_environment(),
            pair.primary.url,
            workdir,
            extra={
                "DATABASE_REPLICA_URL": pair.replica_url,
                "DB_REPLICA_MAX_LAG_SECONDS": str(args.max_lag),
                "WORKER_IN_PROCESS": "false",
                "QUEUE_TICKER": "false",
            },
        )
        with harness.running_service(workdir, env) as (base_url, _process, _output):
            async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
                events = []
                for name in ("Medido", "Escrito"):
                    body: dict[str, object] = {
                        "name": name,
                        "startsAt": "2030-01-01T21:00:00Z",
                        "queue": {"enabled": False},
                        "sections": [{"name": "Campo", "price": "9000.00", "capacity": 10}],
                    }
                    response = await http.post("/api/events", json=body, headers=harness.ADMIN_HEADERS)
                    events.append(harness.expect(response, 201, "creating an event")["id"])
                measured, written = events
                await asyncio.to_thread(pair.wait_caught_up)
                await asyncio.to_thread(
                    pair.replica.sql,
                    f"UPDATE ticketera.events SET name = '{ON_REPLICA}' WHERE id = {measured}",
                )
                reader = Reader(http, measured)
                reading = asyncio.create_task(reader.run())
                try:
                    async with writing_on(pair.primary.url, written):
                        for round_ in range(args.rounds):
                            print(f"round {round_ + 1} of {args.rounds}", flush=True)
                            await measure(
                                cases[0],
                                reader,
                                lambda: pair.replica.sql("STOP SLAVE SQL_THREAD"),
                                lambda: pair.replica.sql("START SLAVE SQL_THREAD"),
                            )
                            await measure(cases[1], reader, pair.replica.kill, pair.replica.start)
                            await measure(cases[2], reader, pair.replica.freeze, pair.replica.thaw)
                finally:
                    reading.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await reading
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="faults of each kind (default 3)")
    parser.add_argument(
        "--max-lag", type=float, default=1.0, help="DB_REPLICA_MAX_LAG_SECONDS of the service (default 1)"
    )
    harness.add_json_option(parser)
    args = parser.parse_args()
    load = harness.start("Replica fallback: a primary and a replica of our own, one service worker")
    with tempfile.TemporaryDirectory(prefix="ticketera-replicas-") as folder:
        cases = asyncio.run(run(args, Path(folder)))
    print(
        f"\nReplica fallback time (DB_REPLICA_MAX_LAG_SECONDS={args.max_lag}, DB_UNRESPONSIVE_SECONDS=1, "
        f"{args.rounds} rounds, a read every {READ_INTERVAL * 1000:.0f} ms, a write every "
        f"{WRITE_INTERVAL * 1000:.0f} ms):"
    )
    for case in cases:
        print(case.line())
    harness.write_figures(args, load, cases=[asdict(case) for case in cases])


if __name__ == "__main__":
    main()
