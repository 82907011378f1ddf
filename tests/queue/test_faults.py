"""The waiting room when Redis goes away and comes back.

Every test runs its own redis-server on a free loopback port, with AOF fsynced on every write, and
stops, freezes or restarts it itself. Redis down must never hang a user: join and status answer
`503 queue_unavailable` within a second, /health reports it, the Redis breaker (3 failures -> open
30 s) then refuses at once, and once Redis is back admission goes on from the state it kept.
"""

from __future__ import annotations

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

from tests.conftest import ADMIN, DatabaseUnderTest, _backend_unavailable, make_settings, serving
from tests.fakes import FakeClock, FakeMonotonic
from tests.queue.conftest import free_cluster_ports, start_redis_server, tick
from tests.queue.test_endpoints import join, make_event, status_of
from ticketera.infra.redis import RedisConnection, is_redis_outage
from ticketera.kit.resilience import BreakerState, breaker_for

# The bound: with Redis gone, a user is answered within one second, never left hanging.
ANSWER_BOUND_SECONDS = 1.0
# With the breaker open nothing is sent to Redis; "at once" with room for a busy CI machine.
FAST_FAIL_SECONDS = 0.25

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
    connection: RedisConnection = client.app.state.redis  # type: ignore[attr-defined]
    return connection


async def timed(call: Awaitable[T]) -> tuple[T, float]:
    started = time.monotonic()
    result = await call
    return result, time.monotonic() - started


def assert_unavailable(response: httpx.Response, elapsed: float, bound: float) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "queue_unavailable"
    assert int(response.headers["retry-after"]) >= 1
    assert elapsed < bound, f"answered in {elapsed:.3f} s, more than {bound} s"


async def get_status(client: httpx.AsyncClient, event_id: int, token: str) -> httpx.Response:
    return await client.get(f"/api/queue/{event_id}/status", headers={"Authorization": f"Bearer {token}"})


async def health(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/health")
    assert response.status_code == 200, response.text  # the database is fine: stay in rotation
    body: dict[str, Any] = response.json()
    return body


async def test_redis_down_answers_503_at_once_and_admission_resumes_from_the_kept_state(
    room: httpx.AsyncClient, clock: FakeClock, private_redis: PrivateRedis
) -> None:
    event_id = await make_event(room, clock)  # 60/min: bursts of 5
    tokens = [(await join(room, event_id, f"user-{n}")).json()["queueToken"] for n in range(12)]
    assert await tick(room, clock) == 5
    shopping = await status_of(room, event_id, tokens[0])
    before = [await status_of(room, event_id, token) for token in tokens[5:]]
    assert [place["position"] for place in before] == list(range(1, 8))

    private_redis.stop()
    refused_join, join_seconds = await timed(join(room, event_id, "newcomer"))
    refused_status, status_seconds = await timed(get_status(room, event_id, tokens[6]))
    skipped, tick_seconds = await timed(tick(room, clock))  # the third failure: the breaker opens
    report = await health(room)
    open_join, open_join_seconds = await timed(join(room, event_id, "newcomer"))
    open_status, open_status_seconds = await timed(get_status(room, event_id, tokens[6]))
    skipped_while_open = await tick(room, clock)

    assert_unavailable(refused_join, join_seconds, ANSWER_BOUND_SECONDS)
    assert_unavailable(refused_status, status_seconds, ANSWER_BOUND_SECONDS)
    assert (skipped, tick_seconds < ANSWER_BOUND_SECONDS) == (0, True)  # the ticker goes on, unhurt
    assert report["status"] == "degraded"
    assert report["services"]["redis"]["status"] == "disconnected"
    assert report["services"]["redis"]["circuitBreaker"] == {"state": "OPEN", "failureCount": 3}
    assert report["services"]["queue"] == {"status": "enabled", "available": False, "backend": "redis"}
    assert report["services"]["database"]["status"] == "connected"
    assert_unavailable(open_join, open_join_seconds, FAST_FAIL_SECONDS)
    assert_unavailable(open_status, open_status_seconds, FAST_FAIL_SECONDS)
    assert 25 <= int(open_join.headers["retry-after"]) <= 30  # the rest of the breaker's open window
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


async def test_a_frozen_redis_still_gets_an_answer_within_a_second(
    room: httpx.AsyncClient, clock: FakeClock, private_redis: PrivateRedis
) -> None:
    event_id = await make_event(room, clock)
    token = (await join(room, event_id, "ana")).json()["queueToken"]

    private_redis.freeze()  # accepts connections, never replies: only timeouts can end a call
    try:
        refused_join, join_seconds = await timed(join(room, event_id, "beto"))
        refused_status, status_seconds = await timed(get_status(room, event_id, token))
        again, again_seconds = await timed(get_status(room, event_id, token))  # the third failure
        report, health_seconds = await timed(room.get("/health"))
    finally:
        private_redis.thaw()
    redis_of(room).breaker.reset()
    back = await status_of(room, event_id, token)
    # The refused join may or may not have reached Redis before the timeout: joining again is safe.
    retried = await join(room, event_id, "beto")

    assert_unavailable(refused_join, join_seconds, ANSWER_BOUND_SECONDS)
    assert_unavailable(refused_status, status_seconds, ANSWER_BOUND_SECONDS)
    assert_unavailable(again, again_seconds, ANSWER_BOUND_SECONDS)
    assert (report.status_code, report.json()["status"]) == (200, "degraded")
    assert report.json()["services"]["redis"]["circuitBreaker"]["state"] == "OPEN"
    assert health_seconds < FAST_FAIL_SECONDS
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
    almost, almost_seconds = await timed(join(room, event_id, "e"))
    breaker_clock.advance(0.5)
    failed_probe, failed_probe_seconds = await timed(join(room, event_id, "e"))  # Redis still down
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
    assert_unavailable(almost, almost_seconds, FAST_FAIL_SECONDS)
    assert int(almost.headers["retry-after"]) == 1
    assert_unavailable(failed_probe, failed_probe_seconds, ANSWER_BOUND_SECONDS)
    assert reopened == {"state": "OPEN", "failureCount": 4}
    assert still_open.status_code == 503
    assert half_open is BreakerState.HALF_OPEN
    assert (probe.status_code, probe.json()["position"]) == (201, 2)
    assert report["services"]["redis"] == {
        "status": "connected",
        "circuitBreaker": {"state": "CLOSED", "failureCount": 0},
    }
    assert (place["status"], place["position"]) == ("waiting", 1)
