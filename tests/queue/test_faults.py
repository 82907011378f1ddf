"""The waiting room when Redis goes away and comes back.

Every test runs its own redis-server on a free loopback port, with AOF fsynced on every write, and
stops, freezes or restarts it itself. Redis down must never hang a user: join and status answer
`503 queue_unavailable`, /health reports it, the Redis breaker (3 failures -> open 30 s) then
refuses without calling Redis (its Retry-After is the rest of the open window), and once Redis is
back admission goes on from the state it kept. Every call to the app here must answer before a
generous deadline, so a hang fails the test; how fast it answers is not asserted (on a busy machine
that would measure the machine).
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import redis
from benchmarks.harness import free_cluster_ports, start_redis_server

from tests.conftest import ADMIN, DatabaseUnderTest, _backend_unavailable, make_settings, services_of, serving
from tests.fakes import FakeClock, FakeMonotonic
from tests.queue.conftest import tick
from tests.queue.test_endpoints import join, make_event, status_of
from ticketera.infra.redis import RedisConnection, is_redis_outage
from ticketera.kit.resilience import BreakerState, breaker_for

# With Redis gone or frozen a user is answered, never left hanging: a call still running after this
# long has hung (the app's own Redis timeouts are half a second).
HANG_SECONDS = 30.0

T = TypeVar("T")


class PrivateRedis:
    """A redis-server owned by one test: same port and directory across restarts, AOF always fsynced."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_cluster_ports(1)[0]
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None
        self.frozen = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.process is None, "already running"
        self.process = start_redis_server(
            self.port, self.workdir, "--appendonly", "yes", "--appendfsync", "always"
        )
        self._wait_until_loaded()

    def stop(self) -> None:
        """A clean shutdown (SIGTERM), as an operator or orchestrator would do it."""
        if self.process is None:
            return
        if self.frozen:
            self.thaw()
        self.process.terminate()
        self.process.wait(timeout=10)
        self.process = None

    def freeze(self) -> None:
        """The server stops answering but keeps its socket open: connections hang instead of failing."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)
        self.frozen = False

    def _wait_until_loaded(self) -> None:
        """The port opens before the AOF is loaded (PING answers LOADING meanwhile)."""
        probe = redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    if probe.ping():
                        return
                except redis.RedisError:
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.05)
        finally:
            probe.close()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        _backend_unavailable("redis", "redis-server is not installed")
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def room(
    db: DatabaseUnderTest, tmp_path: Path, clock: FakeClock, request: pytest.FixtureRequest
) -> AsyncIterator[httpx.AsyncClient]:
    if db.backend != "sqlite":
        pytest.skip("Redis faults do not depend on the database; run once, on SQLite")
    private_redis: PrivateRedis = request.getfixturevalue("private_redis")  # only once not skipped
    async with serving(make_settings(db.url, tmp_path, redis_url=private_redis.url), clock=clock) as client:
        yield client


def redis_of(client: httpx.AsyncClient) -> RedisConnection:
    connection = services_of(client.app).redis  # type: ignore[attr-defined]
    assert connection is not None, "this app has no Redis configured"
    return connection


async def answered(call: Awaitable[T]) -> T:
    """The call's result; a call still running after HANG_SECONDS fails the test (TimeoutError)."""
    async with asyncio.timeout(HANG_SECONDS):
        return await call


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "queue_unavailable"
    assert int(response.headers["retry-after"]) >= 1


async def get_status(client: httpx.AsyncClient, event_id: int, token: str) -> httpx.Response:
    return await client.get(f"/api/queue/{event_id}/status", headers={"Authorization": f"Bearer {token}"})


async def health(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/health")
    assert response.status_code == 200, response.text  # the database is fine: stay in rotation
    body: dict[str, Any] = response.json()
    return body


async def test_redis_down_answers_503_and_admission_resumes_from_the_kept_state(
    room: httpx.AsyncClient, clock: FakeClock, private_redis: PrivateRedis
) -> None:
    # The app's breaker (same settings and predicate) on a clock that stands still: while it is open,
    # a refusal that sent nothing to Redis says Retry-After: 30, the whole open window, wherever the
    # wall clock is (a failed call to Redis says 1 or 2).
    redis_of(room).breaker = breaker_for("redis", clock=FakeMonotonic(), counts_as_failure=is_redis_outage)
    event_id = await make_event(room, clock)  # 60/min: bursts of 5
    tokens = [(await join(room, event_id, f"user-{n}")).json()["queueToken"] for n in range(12)]
    assert await tick(room, clock) == 5
    shopping = await status_of(room, event_id, tokens[0])
    before = [await status_of(room, event_id, token) for token in tokens[5:]]
    assert [place["position"] for place in before] == list(range(1, 8))

    private_redis.stop()
    refused_join = await answered(join(room, event_id, "newcomer"))
    refused_status = await answered(get_status(room, event_id, tokens[6]))
    skipped = await answered(tick(room, clock))  # the third failure: the breaker opens
    report = await answered(health(room))
    open_join = await answered(join(room, event_id, "newcomer"))
    open_status = await answered(get_status(room, event_id, tokens[6]))
    skipped_while_open = await answered(tick(room, clock))

    assert_unavailable(refused_join)
    assert_unavailable(refused_status)
    assert skipped == 0  # the ticker goes on, unhurt
    assert report["status"] == "degraded"
    assert report["services"]["redis"]["status"] == "disconnected"
    assert report["services"]["redis"]["circuitBreaker"] == {"state": "OPEN", "failureCount": 3}
    assert report["services"]["queue"] == {"status": "enabled", "available": False, "backend": "redis"}
    assert report["services"]["database"]["status"] == "connected"
    assert_unavailable(open_join)
    assert_unavailable(open_status)
    # Refused by the open breaker, Redis not called: the rest of the breaker's open window.
    assert [int(open_join.headers["retry-after"]), int(open_status.headers["retry-after"])] == [30, 30]
    assert skipped_while_open == 0

    private_redis.start()  # same port and directory: the AOF is loaded again
    redis_of(room).breaker.reset()  # instead of waiting out the 30 s (see the probe test below)
    recovered = await health(room)
    after = [await status_of(room, event_id, token) for token in tokens[5:]]
    still_shopping = await status_of(room, event_id, tokens[0])
    clock.advance(3)
    admitted = await tick(room, clock)  # 3 s of tokens after an empty bucket: the bucket was kept too
    newly_admitted = [await status_of(room, event_id, token) for token in tokens[5:8]]
    next_in_line = await status_of(room, event_id, tokens[8])
    newcomer = await join(room, event_id, "newcomer")
    stats = await room.get(f"/api/queue/{event_id}/stats", headers=ADMIN)

    assert recovered["status"] == "ok"
    assert recovered["services"]["redis"] == {
        "status": "connected",
        "circuitBreaker": {"state": "CLOSED", "failureCount": 0},
    }
    assert after == before
    assert still_shopping == shopping
    assert admitted == 3
    assert [place["status"] for place in newly_admitted] == ["admitted"] * 3
    assert (next_in_line["status"], next_in_line["position"]) == ("waiting", 1)
    assert (newcomer.status_code, newcomer.json()["position"]) == (201, 5)
    assert (stats.json()["admitted"], stats.json()["waiting"]) == (8, 5)


async def test_a_frozen_redis_still_gets_an_answer(
    room: httpx.AsyncClient, clock: FakeClock, private_redis: PrivateRedis
) -> None:
    event_id = await make_event(room, clock)
    token = (await join(room, event_id, "ana")).json()["queueToken"]

    private_redis.freeze()  # accepts connections, never replies: only timeouts can end a call
    try:
        refused_join = await answered(join(room, event_id, "beto"))
        refused_status = await answered(get_status(room, event_id, token))
        again = await answered(get_status(room, event_id, token))  # the third failure
        report = await answered(room.get("/health"))
    finally:
        private_redis.thaw()
    redis_of(room).breaker.reset()
    back = await status_of(room, event_id, token)
    # The refused join may or may not have reached Redis before the timeout: joining again is safe.
    retried = await join(room, event_id, "beto")

    assert_unavailable(refused_join)
    assert_unavailable(refused_status)
    assert_unavailable(again)
    assert (report.status_code, report.json()["status"]) == (200, "degraded")
    assert report.json()["services"]["redis"]["circuitBreaker"]["state"] == "OPEN"
    assert (back["status"], back["position"]) == ("waiting", 1)
    assert retried.status_code in (200, 201)
    assert retried.json()["position"] == 2


async def test_the_breaker_probes_redis_again_after_its_open_window(
    room: httpx.AsyncClient, clock: FakeClock, private_redis: PrivateRedis
) -> None:
    connection = redis_of(room)
    breaker_clock = FakeMonotonic()
    # The app's breaker, with a clock the test moves: same settings (3 failures, 30 s) and predicate.
    connection.breaker = breaker_for("redis", clock=breaker_clock, counts_as_failure=is_redis_outage)
    event_id = await make_event(room, clock)
    token = (await join(room, event_id, "ana")).json()["queueToken"]

    private_redis.stop()
    for user in ("b", "c", "d"):
        assert (await join(room, event_id, user)).status_code == 503
    opened = connection.breaker.state
    breaker_clock.advance(29.5)
    almost = await answered(join(room, event_id, "e"))
    breaker_clock.advance(0.5)
    failed_probe = await answered(join(room, event_id, "e"))  # Redis still down
    reopened = connection.breaker.snapshot()

    private_redis.start()
    breaker_clock.advance(29.9)
    still_open = await get_status(room, event_id, token)
    breaker_clock.advance(0.1)
    half_open = connection.breaker.state
    probe = await join(room, event_id, "e")  # the probe goes through, succeeds, and closes the breaker
    report = await health(room)
    place = await status_of(room, event_id, token)

    assert opened is BreakerState.OPEN
    assert_unavailable(almost)
    assert int(almost.headers["retry-after"]) == 1  # refused by the open breaker: half a second left
    assert_unavailable(failed_probe)
    assert reopened == {"state": "OPEN", "failureCount": 4}
    assert still_open.status_code == 503
    assert half_open is BreakerState.HALF_OPEN
    assert (probe.status_code, probe.json()["position"]) == (201, 2)
    assert report["services"]["redis"] == {
        "status": "connected",
        "circuitBreaker": {"state": "CLOSED", "failureCount": 0},
    }
    assert (place["status"], place["position"]) == ("waiting", 1)
