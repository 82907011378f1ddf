"""The waiting-room contract, run against every backend: in-process, Redis and Redis Cluster."""

from __future__ import annotations

import asyncio

import pytest
import uvloop
from hypothesis import given
from hypothesis import strategies as st

from tests.fakes import FakeClock
from ticketera.infra.redis import REDIS_POOL_SIZE
from ticketera.queue.backend import (
    CHECK_AGAIN_MAX_SECONDS,
    CHECK_AGAIN_MIN_SECONDS,
    LATE_JOIN_BASE,
    AdmissionPolicy,
    JoinOutcome,
    QueueBackend,
    UserState,
    check_again_seconds,
)

EVENT = 42
BIG = 1_000_000


def policy(rate: int = 600, cap: int = BIG, claim_ms: int = 60_000, paused: bool = False) -> AdmissionPolicy:
    return AdmissionPolicy(admit_per_minute=rate, max_active=cap, claim_ms=claim_ms, paused=paused)


async def join(
    backend: QueueBackend, user: str, clock: FakeClock, *, on_sale_ms: int | None = None, limit: int = BIG
) -> JoinOutcome:
    return await backend.join(EVENT, user, now_ms=clock.ms, on_sale_ms=on_sale_ms, max_waiting=limit)


async def positions(backend: QueueBackend, users: list[str], clock: FakeClock) -> list[int | None]:
    views = [await backend.view(EVENT, user, now_ms=clock.ms) for user in users]
    return [view.ahead + 1 if view and view.ahead is not None else None for view in views]


async def test_arrivals_after_the_sale_are_served_in_order(
    queue_backend: QueueBackend, clock: FakeClock
) -> None:
    outcomes = [await join(queue_backend, f"u{index}", clock) for index in range(5)]

    assert [outcome.created for outcome in outcomes] == [True] * 5
    assert [outcome.entry.state for outcome in outcomes] == [UserState.WAITING] * 5
    assert [outcome.entry.sequence for outcome in outcomes] == [LATE_JOIN_BASE + n for n in range(1, 6)]
    assert await positions(queue_backend, [f"u{index}" for index in range(5)], clock) == [1, 2, 3, 4, 5]


async def test_joining_again_keeps_the_place(queue_backend: QueueBackend, clock: FakeClock) -> None:
    first = await join(queue_backend, "ana", clock)
    await join(queue_backend, "beto", clock)
    clock.advance(30)

    again = await join(queue_backend, "ana", clock)

    assert (again.created, again.entry) == (False, first.entry)
    assert await positions(queue_backend, ["ana", "beto"], clock) == [1, 2]


async def test_the_line_is_bounded_but_those_in_it_are_never_refused(
    queue_backend: QueueBackend, clock: FakeClock
) -> None:
    for user in ("a", "b", "c"):
        assert not (await join(queue_backend, user, clock, limit=3)).full

    refused = await join(queue_backend, "d", clock, limit=3)
    rejoin = await join(queue_backend, "b", clock, limit=3)

    assert refused.full
    assert await queue_backend.view(EVENT, "d", now_ms=clock.ms) is None
    assert not rejoin.full
    assert rejoin.entry.state is UserState.WAITING


async def test_prequeue_is_released_in_the_given_order_ahead_of_late_arrivals(
    queue_backend: QueueBackend, clock: FakeClock
) -> None:
    on_sale = clock.ms + 60_000
    for user in ("p1", "p2", "p3"):
        outcome = await join(queue_backend, user, clock, on_sale_ms=on_sale)
        assert outcome.entry.state is UserState.PREQUEUE
    clock.advance(61)
    late = await join(queue_backend, "late", clock, on_sale_ms=on_sale)  # after the sale, before release
    assert late.entry.state is UserState.WAITING

    assert sorted(await queue_backend.prequeue_members(EVENT)) == ["p1", "p2", "p3"]
    assert not await queue_backend.release_prequeue(EVENT, ["p3", "p1"], now_ms=clock.ms)  # not the whole set
    assert await queue_backend.release_prequeue(EVENT, ["p3", "p1", "p2"], now_ms=clock.ms)
    assert await queue_backend.release_prequeue(EVENT, ["p1", "p2", "p3"], now_ms=clock.ms)  # already done
    after = await join(queue_backend, "after", clock, on_sale_ms=on_sale)

    assert await queue_backend.is_released(EVENT)
    assert await positions(queue_backend, ["p3", "p1", "p2", "late", "after"], clock) == [1, 2, 3, 4, 5]
    assert after.entry.state is UserState.WAITING


async def test_admission_follows_the_rate_with_a_bounded_burst(
    queue_backend: QueueBackend, clock: FakeClock
) -> None:
    for index in range(40):
        await join(queue_backend, f"u{index:02}", clock)

    first = await queue_backend.admit(EVENT, policy(rate=60), now_ms=clock.ms, tick=1)
    clock.advance(1)
    second = await queue_backend.admit(EVENT, policy(rate=60), now_ms=clock.ms, tick=2)
    clock.advance(10)
    third = await queue_backend.admit(EVENT, policy(rate=60), now_ms=clock.ms, tick=3)

    assert first == ["u00", "u01", "u02", "u03", "u04"]  # the burst: five seconds' worth at 60/min
    assert second == ["u05"]
    assert len(third) == 5  # ten seconds accrued, capped at the burst
    view = await queue_backend.view(EVENT, "u00", now_ms=clock.ms)
    assert view is not None
    assert view.entry.state is UserState.ADMITTED
    assert await positions(queue_backend, ["u11", "u39"], clock) == [1, 29]


async def test_one_step_per_tick_however_many_replicas_ask(
    queue_backend: QueueBackend, clock: FakeClock
) -> None:
    for index in range(50):
        await join(queue_backend, f"u{index:02}", clock)

    results = await asyncio.gather(
        *(queue_backend.admit(EVENT, policy(rate=600), now_ms=clock.ms, tick=7) for _ in range(8))
    )

    assert sorted(len(result) for result in results) == [0] * 7 + [50]  # burst at 600/min is 50
    admitted = [user for result in results for user in result]
    assert admitted == [f"u{index:02}" for index in range(50)]


async def test_the_cap_counts_admitted_and_shopping_users(
    queue_backend: QueueBackend, clock: FakeClock
) -> None:
    for index in range(10):
        await join(queue_backend, f"u{index}", clock)

    first = await queue_backend.admit(EVENT, policy(cap=3), now_ms=clock.ms, tick=1)
    claimed = await queue_backend.claim(EVENT, "u0", now_ms=clock.ms, access_ms=600_000)
    clock.advance(5)
    blocked = await queue_backend.admit(EVENT, policy(cap=3), now_ms=clock.ms, tick=2)
    assert await queue_backend.finish(EVENT, "u0", now_ms=clock.ms)
    assert await queue_backend.leave(EVENT, "u1", now_ms=clock.ms)
    clock.advance(5)
    refilled = await queue_backend.admit(EVENT, policy(cap=3), now_ms=clock.ms, tick=3)
    figures = await queue_backend.figures(EVENT, now_ms=clock.ms)

    assert first == ["u0", "u1", "u2"]
    assert claimed is not None
    assert claimed.state is UserState.SHOPPING
    assert blocked == []
    assert refilled == ["u3", "u4"]
    assert (figures.active, figures.waiting, figures.admitted_total) == (3, 5, 5)


async def test_unclaimed_turns_expire_and_free_their_slot(
    queue_backend: QueueBackend, clock: FakeClock
) -> None:
    for index in range(4):
        await join(queue_backend, f"u{index}", clock)
    await queue_backend.admit(EVENT, policy(cap=2, claim_ms=30_000), now_ms=clock.ms, tick=1)
    clock.advance(29)
    assert await queue_backend.claim(EVENT, "u0", now_ms=clock.ms, access_ms=600_000) is not None

    clock.advance(2)  # u1's claim window has passed
    late_claim = await queue_backend.claim(EVENT, "u1", now_ms=clock.ms, access_ms=600_000)
    next_in = await queue_backend.admit(EVENT, policy(cap=2, claim_ms=30_000), now_ms=clock.ms, tick=2)
    view = await queue_backend.view(EVENT, "u1", now_ms=clock.ms)

    assert late_claim is None
    assert next_in == ["u2"]
    assert view is not None
    assert view.entry.state is UserState.EXPIRED


async def test_access_expires_and_an_expired_user_can_join_again_at_the_back(
    queue_backend: QueueBackend, clock: FakeClock
) -> None:
    await join(queue_backend, "ana", clock)
    await join(queue_backend, "beto", clock)
    await queue_backend.admit(EVENT, policy(), now_ms=clock.ms, tick=1)
    claimed = await queue_backend.claim(EVENT, "ana", now_ms=clock.ms, access_ms=600_000)
    again = await queue_backend.claim(EVENT, "ana", now_ms=clock.ms + 1000, access_ms=600_000)
    assert claimed is not None
    assert again == claimed  # claiming twice keeps the first deadline

    clock.advance(600)
    expired = await queue_backend.view(EVENT, "ana", now_ms=clock.ms)
    await join(queue_backend, "carla", clock)
    rejoined = await join(queue_backend, "ana", clock)

    assert expired is not None
    assert expired.entry.state is UserState.EXPIRED
    assert rejoined.created
    assert rejoined.entry.state is UserState.WAITING
    assert await positions(queue_backend, ["carla", "ana"], clock) == [1, 2]


async def test_leaving_removes_the_user_from_the_line(queue_backend: QueueBackend, clock: FakeClock) -> None:
    for user in ("a", "b", "c"):
        await join(queue_backend, user, clock)

    assert await queue_backend.leave(EVENT, "b", now_ms=clock.ms)
    assert not await queue_backend.leave(EVENT, "b", now_ms=clock.ms)
    assert not await queue_backend.leave(EVENT, "nobody", now_ms=clock.ms)

    assert await positions(queue_backend, ["a", "c"], clock) == [1, 2]
    view = await queue_backend.view(EVENT, "b", now_ms=clock.ms)
    assert view is not None
    assert view.entry.state is UserState.LEFT
    assert (await queue_backend.figures(EVENT, now_ms=clock.ms)).waiting == 2


async def test_paused_admission_lets_nobody_in_and_does_not_bank_a_flood(
    queue_backend: QueueBackend, clock: FakeClock
) -> None:
    for index in range(30):
        await join(queue_backend, f"u{index:02}", clock)

    paused = await queue_backend.admit(EVENT, policy(rate=60, paused=True), now_ms=clock.ms, tick=1)
    clock.advance(600)  # ten paused minutes
    resumed = await queue_backend.admit(EVENT, policy(rate=60), now_ms=clock.ms, tick=2)

    assert paused == []
    assert len(resumed) == 5  # the burst, not ten minutes of backlog


async def test_measured_rate_counts_the_last_minute(queue_backend: QueueBackend, clock: FakeClock) -> None:
    for index in range(20):
        await join(queue_backend, f"u{index:02}", clock)
    await queue_backend.admit(EVENT, policy(rate=60), now_ms=clock.ms, tick=1)
    clock.advance(3)
    await queue_backend.admit(EVENT, policy(rate=60), now_ms=clock.ms, tick=2)

    recent = await queue_backend.figures(EVENT, now_ms=clock.ms)
    clock.advance(61)
    later = await queue_backend.figures(EVENT, now_ms=clock.ms)

    assert recent.admitted_last_minute == 8
    assert recent.admission_rate_per_second(configured_per_minute=60) == pytest.approx(
        1.0
    )  # 8 in 3 s, capped
    assert recent.admission_rate_per_second(configured_per_minute=600) == pytest.approx(8 / 3)
    assert later.admitted_last_minute == 0
    assert later.admitted_total == 8


async def test_events_do_not_share_a_line(queue_backend: QueueBackend, clock: FakeClock) -> None:
    await join(queue_backend, "ana", clock)
    other = await queue_backend.join(43, "ana", now_ms=clock.ms, on_sale_ms=None, max_waiting=BIG)

    assert other.created
    assert (await queue_backend.figures(43, now_ms=clock.ms)).waiting == 1
    assert (await queue_backend.figures(EVENT, now_ms=clock.ms)).waiting == 1


async def test_a_line_is_forgotten_when_its_event_is_long_over(
    queue_backend: QueueBackend, clock: FakeClock
) -> None:
    """Redis gives the keys a deadline (PEXPIREAT); the in-process line is dropped on the next
    admission step past it. A deadline still ahead changes nothing."""
    await join(queue_backend, "ana", clock)
    await queue_backend.join(43, "beto", now_ms=clock.ms, on_sale_ms=None, max_waiting=BIG)

    await queue_backend.expire_at(43, at_ms=clock.ms + 86_400_000)
    await queue_backend.expire_at(EVENT, at_ms=1)  # long past, on any clock
    await queue_backend.admit(43, policy(rate=1, cap=1), now_ms=clock.ms, tick=1)

    assert (await queue_backend.figures(EVENT, now_ms=clock.ms)).waiting == 0
    assert await queue_backend.view(EVENT, "ana", now_ms=clock.ms) is None
    assert (await queue_backend.figures(43, now_ms=clock.ms)).active == 1


async def test_concurrent_joins_get_unique_dense_positions(
    queue_backend: QueueBackend, clock: FakeClock
) -> None:
    users = [f"user-{index}" for index in range(500)]
    # As many in flight as one process keeps Redis connections (more would queue for a connection
    # slot and, on a loaded machine, be shed with 503 by design: not what this test is about).
    in_flight = asyncio.Semaphore(REDIS_POOL_SIZE)

    async def join_one(user: str) -> None:
        async with in_flight:
            await join(queue_backend, user, clock)

    await asyncio.gather(*(join_one(user) for user in users + users[:100]))

    found = await positions(queue_backend, users, clock)
    assert sorted(position for position in found if position is not None) == list(range(1, 501))


async def test_a_replica_with_a_lagging_clock_never_admits_extra(
    queue_backend: QueueBackend, clock: FakeClock
) -> None:
    for index in range(100):
        await join(queue_backend, f"u{index:03}", clock)
    admitted = 0
    for second in range(1, 31):
        now = clock.ms + second * 1000
        ahead = await queue_backend.admit(EVENT, policy(rate=60), now_ms=now, tick=now // 1000)
        lagging = await queue_backend.admit(
            EVENT, policy(rate=60), now_ms=now - 500, tick=(now - 500) // 1000
        )
        assert lagging == []
        admitted += len(ahead)

    assert admitted <= 5 + 30  # the burst plus one a second at 60/min


def test_only_redis_own_failures_count_against_its_breaker() -> None:
    from redis.exceptions import (
        ClusterDownError,
        MasterDownError,
        MaxConnectionsError,
        ResponseError,
        SlotNotCoveredError,
        TryAgainError,
    )
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeout

    from ticketera.infra.redis import is_redis_outage

    assert is_redis_outage(RedisConnectionError("Connection refused"))
    assert is_redis_outage(RedisTimeout("Timeout reading from socket"))
    assert is_redis_outage(ResponseError("CLUSTERDOWN The cluster is down"))
    # As redis-py raises them during a failover: the prefix gone from the message, or not a RedisError.
    assert is_redis_outage(ClusterDownError("The cluster is down"))
    assert is_redis_outage(MasterDownError("Link with MASTER is down"))
    assert is_redis_outage(TryAgainError("Multiple keys request during rehashing of slot"))
    assert is_redis_outage(SlotNotCoveredError("Slot 42 not covered by the cluster"))
    assert not is_redis_outage(TimeoutError())  # our own deadline: this process was busy
    assert not is_redis_outage(MaxConnectionsError("Too many connections"))
    assert not is_redis_outage(ResponseError("ERR wrong number of arguments"))
    assert not is_redis_outage(RuntimeError("a mistake of ours"))


def test_a_write_on_a_connection_the_server_dropped_is_an_outage_under_uvloop() -> None:
    """The served app runs on uvloop, which refuses such a write with a RuntimeError that redis-py
    lets out (seen as a 500 when a Cluster master was killed under joins, benchmarks/failover.py)."""
    from ticketera.infra.redis import is_redis_outage

    async def write_after_the_server_dropped_us() -> BaseException:
        server = await asyncio.start_server(lambda reader, writer: writer.transport.abort(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await reader.read()  # the server's end is gone
            writer.transport.abort()
            await asyncio.sleep(0)
            try:
                writer.writelines([b"PING\r\n"])
            except RuntimeError as exc:
                return exc
            raise AssertionError("uvloop took a write on a closed connection")
        finally:
            server.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        refused = runner.run(write_after_the_server_dropped_us())
    assert is_redis_outage(refused)


@given(
    ahead=st.integers(min_value=0, max_value=10_000_000),
    per_minute=st.integers(min_value=1, max_value=1_000_000),
    claim_seconds=st.integers(min_value=5, max_value=3600),
)
def test_the_pace_never_asks_after_the_turn_could_come_nor_past_half_the_claim_window(
    ahead: int, per_minute: int, claim_seconds: int
) -> None:
    earliest_turn = ahead / (per_minute / 60)
    pace = check_again_seconds(earliest_turn, claim_seconds=claim_seconds)

    assert CHECK_AGAIN_MIN_SECONDS <= pace <= max(CHECK_AGAIN_MIN_SECONDS, claim_seconds // 2)
    assert pace <= max(earliest_turn, CHECK_AGAIN_MIN_SECONDS)
    assert pace <= CHECK_AGAIN_MAX_SECONDS
