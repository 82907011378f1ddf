"""Benchmark: the waiting room while a Redis Cluster master dies, and how long until it serves again.

The test (`tests/queue/test_cluster_failover.py`) proves what happens when a master is killed: 201 or
503 `queue_unavailable`, never another answer, then service again without a restart, and nobody loses
a place or an access. This script measures how long that takes, under joins arriving all the time,
round after round, against the real service (`ticketera serve`, SQLite) and a private cluster of the
guide's shape (3 masters, 3 replicas: `--cluster-replicas 1`) on loopback ports:

1. fans join and the line admits some of them, who claim their access token;
2. the master that holds the event's keys is made to `WAIT` for its replica (replication is
   asynchronous: what the fans were told must be on the replica), then killed with SIGKILL while
   `--joiners` clients join without pause;
3. measured: from the kill to the first join answered 201, and to the last answer that was not a
   201 (every client served again); the answers in between by status; how long a 503 took;
4. checked: every fan from before has the same status, place and access token, and each admitted fan
   can still hold a place with that token.

The window is mostly the cluster's own: `cluster-node-timeout` (1 s here, `--node-timeout-ms`; Redis'
default is 15 s) before the replicas vote, then the promotion, then the app's cluster client learning
the new map. Reported, never asserted.

    .venv/bin/python benchmarks/failover.py                  # make bench-failover
    .venv/bin/python benchmarks/failover.py --rounds 5 --node-timeout-ms 5000 --json failover.json
"""

from __future__ import annotations

import os
import sys

# Running this file puts its folder first on sys.path, where benchmarks/queue.py would shadow the
# standard library's `queue` (which redis-py and asyncio's executor import): drop it, then add the
# project root so the shared plumbing imports as `benchmarks.harness`.
if os.path.realpath(sys.path[0] or os.curdir) == os.path.dirname(os.path.realpath(__file__)):
    sys.path.pop(0)
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

import argparse
import asyncio
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks import harness
from ticketera.queue.redis_backend import EventKeys

CLIENT_TIMEOUT_SECONDS = 30.0
# However the cluster behaves, a round never waits longer than this for the line to serve again.
RECOVERY_LIMIT_SECONDS = 90.0
# Joins are answered 201 for this long in a row before a round calls the line served again.
STEADY_SECONDS = 2.0
ADMITTED = 20
WAITING = 20


@dataclass
class Answer:
    started: float
    answered: float
    answer: str  # "201", "503 queue_unavailable", or the client's exception


def failover_window(answers: list[Answer], killed_at: float) -> tuple[float, float] | None:
    """Seconds from the kill to the first join asked after it and answered 201, and to the first
    201 after the last answer that was not (every client served again); None before then."""
    after_kill = [entry for entry in answers if entry.started > killed_at]
    first = next((entry.answered for entry in after_kill if entry.answer == "201"), None)
    failed_until = max((entry.answered for entry in after_kill if entry.answer != "201"), default=killed_at)
    served = min(
        (entry.answered for entry in after_kill if entry.answer == "201" and entry.answered > failed_until),
        default=None,
    )
    if first is None or served is None:
        return None
    return first - killed_at, served - killed_at


@dataclass
class Round:
    master_port: int
    first_201_after_s: float | None = None
    all_served_after_s: float | None = None
    answers_meanwhile: dict[str, int] = field(default_factory=dict)
    unavailable_answer_ms: harness.Latency = field(default_factory=harness.Latency)
    fans_checked: int = 0
    fans_changed: int = 0
    admitted_who_could_hold: int = 0
    admitted: int = 0


@dataclass
class Report:
    node_timeout_ms: int
    joiners: int
    rounds: list[Round] = field(default_factory=list)
    first_201_median_s: float | None = None
    all_served_median_s: float | None = None
    all_served_worst_s: float | None = None
    unexpected_answers: int = 0
    service_problems: list[str] = field(default_factory=list)


async def create_event(client: httpx.AsyncClient) -> tuple[int, int]:
    body = {
        "name": "Bench failover",
        "startsAt": harness.starts_at(),
        # Admission as fast as the ticker goes, until ADMITTED are shopping: the rest wait.
        "queue": {"enabled": True, "admitPerMinute": 6000, "maxActiveShoppers": ADMITTED},
        "sections": [{"name": "Campo", "price": "9000.00", "capacity": 1000}],
    }
    event = harness.expect(
        await client.post("/api/events", json=body, headers=harness.ADMIN_HEADERS), 201, "event"
    )
    return int(event["id"]), int(event["sections"][0]["id"])


async def status_of(client: httpx.AsyncClient, event_id: int, token: str) -> dict[str, Any]:
    answer = await client.get(f"/api/queue/{event_id}/status", headers={"Authorization": f"Bearer {token}"})
    return harness.expect(answer, 200, "queue status")


async def settled_status(client: httpx.AsyncClient, event_id: int, token: str) -> dict[str, Any]:
    """A fan's status once the service's cluster client has caught up (a read may still meet the
    dead master's last connection, and answer 503, for a moment)."""
    deadline = time.monotonic() + RECOVERY_LIMIT_SECONDS
    while True:
        answer = await client.get(
            f"/api/queue/{event_id}/status", headers={"Authorization": f"Bearer {token}"}
        )
        if answer.status_code != 503 or time.monotonic() > deadline:
            return harness.expect(answer, 200, "queue status after the failover")
        await asyncio.sleep(0.1)


async def line_with_fans(client: httpx.AsyncClient, event_id: int) -> list[str]:
    """ADMITTED + WAITING fans in line, the first ADMITTED admitted and holding their access token."""
    tokens = []
    for number in range(ADMITTED + WAITING):
        joined = harness.expect(
            await client.post(f"/api/queue/{event_id}/join", json={"userId": f"fan-{number}"}), 201, "join"
        )
        tokens.append(str(joined["queueToken"]))

    async def all_admitted_claimed() -> bool:
        statuses = [await status_of(client, event_id, token) for token in tokens[:ADMITTED]]
        return all(entry.get("accessToken") for entry in statuses)

    if await harness.seconds_until(all_admitted_claimed, limit=RECOVERY_LIMIT_SECONDS, interval=0.2) is None:
        raise harness.BenchmarkError(
            f"the line did not admit {ADMITTED} fans within {RECOVERY_LIMIT_SECONDS:.0f} s"
        )
    return tokens


async def one_round(base_url: str, cluster: harness.Cluster, joiners: int) -> Round:
    async with httpx.AsyncClient(base_url=base_url, timeout=CLIENT_TIMEOUT_SECONDS) as client:
        event_id, section_id = await create_event(client)
        tokens = await line_with_fans(client, event_id)
        before = [await status_of(client, event_id, token) for token in tokens]
        master = cluster.master_of(EventKeys(event_id).users)
        result = Round(master_port=master)
        if cluster.cli(master, "wait", "1", "10000").strip() != "1":
            raise harness.BenchmarkError("the master's replica did not acknowledge its writes within 10 s")

        answers: list[Answer] = []
        stop = asyncio.Event()

        async def joiner(number: int) -> None:
            count = 0
            while not stop.is_set():
                count += 1
                started = time.monotonic()
                try:
                    response = await client.post(
                        f"/api/queue/{event_id}/join", json={"userId": f"joiner-{number}-{count}"}
                    )
                    code = response.json().get("error", "") if response.status_code >= 400 else ""
                    answer = f"{response.status_code} {code}".strip()
                except httpx.HTTPError as exc:
                    answer = type(exc).__name__
                answers.append(Answer(started, time.monotonic(), answer))
                await asyncio.sleep(0.02)

        running = [asyncio.create_task(joiner(number)) for number in range(joiners)]
        await asyncio.sleep(0.5)
        cluster.processes[master].kill()
        killed_at = time.monotonic()
        try:
            while time.monotonic() - killed_at < RECOVERY_LIMIT_SECONDS:
                await asyncio.sleep(0.1)
                window = failover_window(answers, killed_at)
                if window is not None and time.monotonic() - (killed_at + window[1]) >= STEADY_SECONDS:
                    break
        finally:
            stop.set()
            await asyncio.gather(*running)

        # Asked after the kill: a join in flight at the kill may still be answered by the old master.
        after_kill = [entry for entry in answers if entry.started > killed_at]
        window = failover_window(answers, killed_at)
        if window is not None:
            result.first_201_after_s, result.all_served_after_s = (round(value, 3) for value in window)
            served_at = killed_at + window[1]
            result.answers_meanwhile = dict(Counter(e.answer for e in after_kill if e.answered <= served_at))
        result.unavailable_answer_ms = harness.Latency.of(
            [e.answered - e.started for e in after_kill if e.answer == "503 queue_unavailable"]
        )

        after = [await settled_status(client, event_id, token) for token in tokens]
        result.fans_checked = len(tokens)
        result.fans_changed = sum(
            1
            for old, new in zip(before, after, strict=True)
            if (old["status"], old.get("position"), old.get("accessToken"))
            != (new["status"], new.get("position"), new.get("accessToken"))
        )
        admitted = [entry["accessToken"] for entry in after if entry.get("accessToken")]
        result.admitted = len(admitted)
        for access_token in admitted:
            hold = await client.post(
                f"/api/events/{event_id}/holds",
                headers={"X-Access-Token": access_token},
                json={"sectionId": section_id, "quantity": 1},
            )
            result.admitted_who_could_hold += hold.status_code == 201
        return result


def summarize(report: Report) -> None:
    first = [r.first_201_after_s for r in report.rounds if r.first_201_after_s is not None]
    served = [r.all_served_after_s for r in report.rounds if r.all_served_after_s is not None]
    report.first_201_median_s = statistics.median(first) if first else None
    report.all_served_median_s = statistics.median(served) if served else None
    report.all_served_worst_s = max(served) if served else None
    report.unexpected_answers = sum(
        count
        for r in report.rounds
        for answer, count in r.answers_meanwhile.items()
        if answer not in ("201", "503 queue_unavailable")
    )


def format_report(report: Report) -> str:
    lines = [
        "",
        f"{'round':<6} {'master':>6} {'first 201':>10} {'all served':>11}  {'answers meanwhile':<40}"
        f" {'503 took':<28} {'fans kept':>10} {'could hold':>11}",
    ]
    for number, r in enumerate(report.rounds, 1):
        answers = ", ".join(f"{count} x {answer}" for answer, count in sorted(r.answers_meanwhile.items()))
        first = "-" if r.first_201_after_s is None else f"{r.first_201_after_s:.2f} s"
        served = "-" if r.all_served_after_s is None else f"{r.all_served_after_s:.2f} s"
        lines.append(
            f"{number:<6} {r.master_port:>6} {first:>10} {served:>11}  {answers:<40}"
            f" {r.unavailable_answer_ms.summary(p99=False):<28}"
            f" {r.fans_checked - r.fans_changed:>4} / {r.fans_checked:<3}"
            f" {r.admitted_who_could_hold:>4} / {r.admitted:<3}"
        )
    lines.append("")
    if report.all_served_median_s is not None and report.first_201_median_s is not None:
        lines.append(
            f"Failover window with cluster-node-timeout {report.node_timeout_ms} ms and {report.joiners}"
            f" clients joining: first 201 after a median {report.first_201_median_s:.2f} s; every client"
            f" served again after a median {report.all_served_median_s:.2f} s"
            f" (worst {report.all_served_worst_s:.2f} s)."
        )
    lines.append(
        f"Answers other than 201 and 503 queue_unavailable: {report.unexpected_answers}."
        " Reported, never asserted."
    )
    if report.service_problems:
        lines.append("The service's warnings below are expected: a Redis master was killed on purpose.")
    lines.extend(harness.problem_lines(report.service_problems))
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="The waiting room while a Redis Cluster master is killed.")
    parser.add_argument("--rounds", type=int, default=3, help="kills, each on a fresh cluster (default 3)")
    parser.add_argument("--joiners", type=int, default=10, help="clients joining without pause (default 10)")
    parser.add_argument(
        "--node-timeout-ms", type=int, default=1000, help="the cluster's cluster-node-timeout (default 1000)"
    )
    harness.add_json_option(parser)
    args = parser.parse_args(argv)
    harness.check_at_least_one(parser, args, ["rounds", "joiners", "node_timeout_ms"])
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load = harness.start(
        f"Ticketera failover benchmark: a Redis Cluster master (3 masters, 3 replicas) killed under"
        f" {args.joiners} clients joining, {args.rounds} rounds,"
        f" cluster-node-timeout {args.node_timeout_ms} ms"
    )
    report = Report(node_timeout_ms=args.node_timeout_ms, joiners=args.joiners)
    for number in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="ticketera-bench-failover-") as tmp:
            workdir = Path(tmp)
            with harness.running_cluster(
                workdir / "cluster", node_timeout_ms=args.node_timeout_ms
            ) as cluster:
                env = harness.service_environment(
                    harness.passed_environment(),
                    f"sqlite:///{workdir / 'bench.db'}",
                    workdir,
                    extra={
                        "REDIS_URL": cluster.url,
                        "REDIS_CLUSTER": "true",
                        "QUEUE_TICKER": "true",
                        "QUEUE_TICK_SECONDS": "0.2",
                        # Joins arrive without pause for the whole round: a line that never fills.
                        "QUEUE_MAX_SIZE": "10000000",
                    },
                )
                try:
                    with harness.running_service(workdir, env) as (base_url, _service, _output):
                        result = asyncio.run(one_round(base_url, cluster, args.joiners))
                finally:
                    report.service_problems.extend(harness.service_problems(workdir))
        report.rounds.append(result)
        print(
            f"round {number + 1}: every client served again after {result.all_served_after_s} s", flush=True
        )
    summarize(report)
    print(format_report(report))
    harness.write_figures(args, load, result=asdict(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
