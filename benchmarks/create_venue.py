"""Benchmark: creating a 50,000-seat venue and reading a 5,000-seat section map, per backend.

What it measures, against the real service (`ticketera serve`, one worker) over real HTTP:

* venue creation: seconds for `POST /api/events` with one reserved section of 100 rows x 500 seats
  (50,000 seats), repeated `--venue-runs` times; each run and the median are reported;
* section map: latency of `GET /api/events/{id}/seats?section=<id>` for a 5,000-seat section
  (50 rows x 100 seats; the event has a second, small section), `--map-reads` sequential reads on
  one keep-alive connection after 10 warm-up reads: p50, p95, p99, mean and response size.

A shared, noisy machine makes absolute figures drift, so every figure comes with a baseline taken
in the same run, and a ratio that should stay stable from machine to machine:

* `/health/live` read as often as the seat map, interleaved with it (no database, no payload);
  reported as p50/p95 and the ratio seat-map p50 / live p50;
* a raw in-process insert of 50,000 rows into a throwaway `bench_rows` table of the same database,
  with SQLAlchemy Core `executemany` in chunks of 5,000 on the same async driver the service uses;
  reported as seconds and the ratio venue-creation median / raw-insert median. The raw table has
  no secondary indexes, foreign keys or checks, so the ratio also prices the `seats` schema.

Backends (`--backends`, default `sqlite,mariadb`): SQLite uses a file in a temporary directory;
MariaDB/MySQL gets a fresh `ticketera_bench_<random>` database on the server at
TICKETERA_TEST_MYSQL_URL (default mysql://root@127.0.0.1:3306/), dropped at the end. When that
server does not answer, MariaDB is skipped with a note.

Run it from the project root:

    make bench                                   # runs .venv/bin/python benchmarks/create_venue.py
    .venv/bin/python benchmarks/create_venue.py --backends sqlite --venue-runs 5 --json bench.json

It only reports: it asserts that responses are correct (status codes, seat counts), never how long
anything took, so a slow machine cannot make it fail.
"""

from __future__ import annotations

import os
import sys

# The sibling benchmarks/queue.py shares its name with the standard library's `queue` (the issue
# names it so), and running this file as a script puts its folder first on sys.path, where
# `import queue` (aiosqlite, redis, asyncio's executor) would find that file. Drop the folder first.
if os.path.realpath(sys.path[0] or os.curdir) == os.path.dirname(os.path.realpath(__file__)):
    sys.path.pop(0)

# Then the project root, so the shared plumbing imports as `benchmarks.harness`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

import argparse
import asyncio
import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Column, Integer, MetaData, String, Table

from benchmarks import harness
from ticketera.config import to_async_url
from ticketera.kit.db import create_engine

BACKENDS = ("sqlite", "mariadb")

VENUE_ROWS = 100
VENUE_SEATS_PER_ROW = 500
VENUE_SEATS = VENUE_ROWS * VENUE_SEATS_PER_ROW  # 50,000
MAP_ROWS = 50
MAP_SEATS_PER_ROW = 100
MAP_SEATS = MAP_ROWS * MAP_SEATS_PER_ROW  # 5,000
RAW_CHUNK = 5000
WARM_UP_READS = 10
REQUEST_TIMEOUT_SECONDS = 300.0


@dataclass
class BackendResult:
    backend: str
    venue_seats: int = VENUE_SEATS
    venue_runs_s: list[float] = field(default_factory=list)
    venue_median_s: float = 0.0
    raw_insert_runs_s: list[float] = field(default_factory=list)
    raw_insert_median_s: float = 0.0
    venue_vs_raw_ratio: float = 0.0
    map_seats: int = MAP_SEATS
    map_ms: harness.Latency | None = None
    map_response_bytes: int = 0
    live_ms: harness.Latency | None = None
    map_vs_live_p50_ratio: float = 0.0
    service_problems: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Databases


async def _raw_insert(database_url: str, runs: int) -> list[float]:
    """Seconds to insert 50,000 plain rows with Core executemany, once per run (fresh table each)."""
    metadata = MetaData()
    table = Table(
        "bench_rows",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("section_id", Integer),
        Column("row_label", String(16)),
        Column("number", Integer),
        Column("status", String(16)),
    )
    rows = [
        {"section_id": 1, "row_label": f"R{row}", "number": number, "status": "available"}
        for row in range(VENUE_ROWS)
        for number in range(1, VENUE_SEATS_PER_ROW + 1)
    ]
    engine = create_engine(to_async_url(database_url), pool_size=1)
    durations: list[float] = []
    try:
        for _ in range(runs):
            async with engine.begin() as connection:
                await connection.run_sync(metadata.drop_all)
                await connection.run_sync(metadata.create_all)
            started = time.perf_counter()
            async with engine.begin() as connection:
                for start in range(0, len(rows), RAW_CHUNK):
                    await connection.execute(table.insert(), rows[start : start + RAW_CHUNK])
            durations.append(time.perf_counter() - started)
        async with engine.begin() as connection:
            await connection.run_sync(metadata.drop_all)
    finally:
        await engine.dispose()
    return durations


# --------------------------------------------------------------------------------------------
# The service


# --------------------------------------------------------------------------------------------
# Measurements


def _reserved_section(name: str, prefix: str, rows: int, seats_per_row: int, price: str) -> dict[str, Any]:
    return {
        "name": name,
        "price": price,
        "rows": [{"label": f"{prefix}{index}", "seats": seats_per_row} for index in range(rows)],
    }


def _create_event(client: httpx.Client, body: dict[str, Any], capacity: int) -> dict[str, Any]:
    response = client.post("/api/events", json=body, headers=harness.ADMIN_HEADERS)
    created = harness.expect(response, 201, "POST /api/events")
    if created.get("capacity") != capacity:
        raise harness.BenchmarkError(
            f"the event was created with capacity {created.get('capacity')}, not {capacity}"
        )
    return created


def measure_venue_creation(client: httpx.Client, runs: int) -> list[float]:
    durations: list[float] = []
    for run in range(1, runs + 1):
        body = {
            "name": f"Bench {run}",
            "startsAt": harness.starts_at(),
            "sections": [_reserved_section("Estadio", "R", VENUE_ROWS, VENUE_SEATS_PER_ROW, "20000.00")],
        }
        started = time.perf_counter()
        _create_event(client, body, VENUE_SEATS)
        durations.append(time.perf_counter() - started)
    return durations


def measure_section_map(client: httpx.Client, reads: int) -> tuple[harness.Latency, int, harness.Latency]:
    """Seat-map and /health/live latencies (interleaved, so both see the same machine load)."""
    body = {
        "name": "Bench map",
        "startsAt": harness.starts_at(),
        "sections": [
            _reserved_section("Platea", "P", MAP_ROWS, MAP_SEATS_PER_ROW, "30000.00"),
            _reserved_section("Palco", "V", 2, 10, "90000.00"),
        ],
    }
    event = _create_event(client, body, MAP_SEATS + 20)
    section_id = next(section["id"] for section in event["sections"] if section["name"] == "Platea")
    map_path = f"/api/events/{event['id']}/seats"
    params = {"section": str(section_id)}

    def read_map() -> tuple[float, httpx.Response]:
        started = time.perf_counter()
        response = client.get(map_path, params=params)
        return time.perf_counter() - started, response

    def read_live() -> float:
        started = time.perf_counter()
        response = client.get("/health/live")
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise harness.BenchmarkError(f"GET /health/live answered {response.status_code}")
        return elapsed

    for _ in range(WARM_UP_READS):
        read_map()
        read_live()
    map_seconds: list[float] = []
    live_seconds: list[float] = []
    size = 0
    for _ in range(reads):
        elapsed, response = read_map()
        map_seconds.append(elapsed)
        live_seconds.append(read_live())
        # Checked outside the timed part: the client's own JSON parsing is not the service's cost.
        if response.status_code != 200:
            raise harness.BenchmarkError(
                f"GET {map_path} answered {response.status_code}: {response.text[:500]}"
            )
        seats = response.json()["seats"]
        if len(seats) != MAP_SEATS or any(seat["section"] != section_id for seat in seats):
            raise harness.BenchmarkError(
                f"the section map has {len(seats)} seats, not {MAP_SEATS} of section {section_id}"
            )
        size = len(response.content)
    return harness.Latency.of(map_seconds), size, harness.Latency.of(live_seconds)


def run_backend(backend: str, database_url: str, workdir: Path, args: argparse.Namespace) -> BackendResult:
    result = BackendResult(backend)
    env = harness.service_environment(harness.scrubbed_environment(), database_url, workdir)
    try:
        with (
            harness.running_service(workdir, env) as (base_url, _, _),
            httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT_SECONDS) as client,
        ):
            result.venue_runs_s = measure_venue_creation(client, args.venue_runs)
            result.map_ms, result.map_response_bytes, result.live_ms = measure_section_map(
                client, args.map_reads
            )
    finally:
        result.service_problems = harness.service_problems(workdir)
    # After the service stopped, so the two never compete for the machine or the database.
    result.raw_insert_runs_s = asyncio.run(_raw_insert(database_url, args.venue_runs))
    result.venue_median_s = statistics.median(result.venue_runs_s)
    result.raw_insert_median_s = statistics.median(result.raw_insert_runs_s)
    result.venue_vs_raw_ratio = result.venue_median_s / result.raw_insert_median_s
    result.map_vs_live_p50_ratio = result.map_ms.p50 / result.live_ms.p50
    return result


# --------------------------------------------------------------------------------------------
# Report


def format_result(result: BackendResult) -> str:
    assert result.map_ms is not None
    assert result.live_ms is not None
    runs = ", ".join(f"{value:.2f}" for value in result.venue_runs_s)
    raw_runs = ", ".join(f"{value:.2f}" for value in result.raw_insert_runs_s)
    lines = [
        f"{result.backend}",
        f"  venue 50k seats (s):  runs [{runs}]  median {result.venue_median_s:.2f}"
        f" | raw insert [{raw_runs}] median {result.raw_insert_median_s:.2f} s"
        f" | ratio {result.venue_vs_raw_ratio:.1f}x",
        f"  seat map 5k (ms):     p50 {result.map_ms.p50:.1f}  p95 {result.map_ms.p95:.1f}"
        f"  p99 {result.map_ms.p99:.1f}  mean {result.map_ms.mean:.1f}"
        f"  size {result.map_response_bytes / 1024:.0f} KB  ({result.map_ms.samples} reads)"
        f" | /health/live p50 {result.live_ms.p50:.2f}  p95 {result.live_ms.p95:.2f}"
        f" | ratio {result.map_vs_live_p50_ratio:.0f}x",
    ]
    lines.extend(harness.problem_lines(result.service_problems))
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Venue creation (50,000 seats) and 5,000-seat section map, on SQLite and MariaDB."
    )
    parser.add_argument(
        "--backends",
        default="sqlite,mariadb",
        help="comma-separated: sqlite, mariadb (default: both; mariadb skipped if unreachable)",
    )
    parser.add_argument("--venue-runs", type=int, default=3, help="venue creations per backend (default 3)")
    parser.add_argument("--map-reads", type=int, default=200, help="timed seat-map reads (default 200)")
    harness.add_json_option(parser)
    args = parser.parse_args(argv)
    backends = harness.parse_backends(parser, args.backends, BACKENDS)
    if args.venue_runs < 1:
        parser.error("--venue-runs must be at least 1")
    if args.map_reads < 2:
        parser.error("--map-reads must be at least 2")
    args.backends = backends
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results: list[BackendResult] = []
    skipped: dict[str, str] = {}
    print(
        f"Ticketera benchmark: venue {VENUE_SEATS:,} seats x {args.venue_runs} runs, "
        f"section map {MAP_SEATS:,} seats x {args.map_reads} reads"
    )
    for backend in args.backends:
        try:
            result = harness.run_on_backend("venue", backend, partial(run_backend, args=args))
        except harness.DatabaseUnavailable as exc:
            skipped[backend] = exc.reason
            print(f"\nmariadb  skipped: {exc}")
            continue
        results.append(result)
        print()
        print(format_result(result))
    if args.json is not None:
        payload = {
            "settings": {"venue_runs": args.venue_runs, "map_reads": args.map_reads},
            "results": [asdict(result) for result in results],
            "skipped": skipped,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"\nFigures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
