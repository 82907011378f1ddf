from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from structlog.testing import capture_logs

from tests.shop import eventually
from ticketera.kit.resilience import (
    BREAKER_DEFAULTS,
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
    RetryPolicy,
    breaker_for,
    call_with_resilience,
)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


class Dependency:
    """Stand-in for a remote service: counts calls and fails with whatever `error` is set to."""

    def __init__(self, error: BaseException | None = None, value: str = "ok") -> None:
        self.error = error
        self.value = value
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self.value


class HeldProbe:
    """A call that stays in flight until released, to observe the breaker meanwhile."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.error: BaseException | None = None

    async def __call__(self) -> str:
        self.started.set()
        await self.release.wait()
        if self.error is not None:
            raise self.error
        return "probe"


async def fail_times(breaker: CircuitBreaker, n: int) -> None:
    dep = Dependency(ConnectionError("down"))
    for _ in range(n):
        with pytest.raises(ConnectionError):
            await breaker.call(dep)


def state_of(breaker: CircuitBreaker) -> BreakerState:
    # A call, not the property, so mypy doesn't narrow the state across awaits that change it.
    return breaker.state


async def open_breaker(clock: FakeClock, threshold: int = 3, open_for: float = 60.0) -> CircuitBreaker:
    breaker = CircuitBreaker("dep", threshold, open_for, clock=clock)
    await fail_times(breaker, threshold)
    assert state_of(breaker) is BreakerState.OPEN
    return breaker


# -- circuit breaker ---------------------------------------------------------------------------------


def test_defaults_match_deployment_guide() -> None:
    assert {name: (s.failure_threshold, s.reset_timeout) for name, s in BREAKER_DEFAULTS.items()} == {
        "database": (5, 60.0),
        "redis": (3, 30.0),
        "mercadopago": (3, 120.0),
    }


def test_breaker_for_unknown_name_is_rejected() -> None:
    with pytest.raises(ValueError, match="nope"):
        breaker_for("nope")


@pytest.mark.parametrize(("name", "threshold"), [("database", 5), ("redis", 3), ("mercadopago", 3)])
async def test_opens_after_exactly_threshold_consecutive_failures(name: str, threshold: int) -> None:
    breaker = breaker_for(name, clock=FakeClock())
    assert breaker.name == name

    await fail_times(breaker, threshold - 1)
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.failure_count == threshold - 1

    await fail_times(breaker, 1)
    assert state_of(breaker) is BreakerState.OPEN
    assert breaker.failure_count == threshold


async def test_a_tripped_breaker_is_open_at_once_and_its_probe_closes_it() -> None:
    breaker = breaker_for("database", clock=FakeClock())
    answered = asyncio.Event()

    async def probe() -> None:
        answered.set()

    breaker.probe_in_background(probe, interval=0.01)
    breaker.trip()

    assert state_of(breaker) is BreakerState.OPEN
    assert breaker.failure_count == breaker.failure_threshold
    with pytest.raises(CircuitOpenError):
        await breaker.call(Dependency(value="never"))
    await answered.wait()
    await eventually(lambda: _closed(breaker))


async def _closed(breaker: CircuitBreaker) -> bool:
    return breaker.state is BreakerState.CLOSED


async def test_success_resets_failure_count() -> None:
    breaker = breaker_for("database", clock=FakeClock())
    await fail_times(breaker, 4)

    assert await breaker.call(Dependency(value="fine")) == "fine"
    assert breaker.failure_count == 0

    await fail_times(breaker, 4)
    assert state_of(breaker) is BreakerState.CLOSED


async def test_call_passes_arguments_through() -> None:
    async def add(a: int, b: int, *, scale: int) -> int:
        return (a + b) * scale

    breaker = CircuitBreaker("dep", 3, 10.0, clock=FakeClock())
    assert await breaker.call(add, 1, 2, scale=10) == 30


async def test_open_fails_fast_without_calling_and_reports_retry_after() -> None:
    clock = FakeClock()
    breaker = await open_breaker(clock, open_for=60.0)
    dep = Dependency()

    with pytest.raises(CircuitOpenError) as caught:
        await breaker.call(dep)
    assert caught.value.breaker == "dep"
    assert caught.value.retry_after == pytest.approx(60.0)

    clock.advance(45.0)
    with pytest.raises(CircuitOpenError) as caught:
        await breaker.call(dep)
    assert caught.value.retry_after == pytest.approx(15.0)
    assert dep.calls == 0
    assert state_of(breaker) is BreakerState.OPEN


async def test_half_open_after_timeout_lets_exactly_one_probe_through() -> None:
    clock = FakeClock()
    breaker = await open_breaker(clock, open_for=60.0)
    clock.advance(60.0)
    assert state_of(breaker) is BreakerState.HALF_OPEN

    probe = HeldProbe()
    probe_task = asyncio.create_task(breaker.call(probe))
    await probe.started.wait()

    other = Dependency()
    with pytest.raises(CircuitOpenError):
        await breaker.call(other)
    assert other.calls == 0
    assert state_of(breaker) is BreakerState.HALF_OPEN

    probe.release.set()
    assert await probe_task == "probe"
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.failure_count == 0
    assert await breaker.call(other) == "ok"


async def test_probe_failure_reopens_for_a_full_timeout() -> None:
    clock = FakeClock()
    breaker = await open_breaker(clock, open_for=60.0)
    clock.advance(61.0)

    with pytest.raises(ConnectionError):
        await breaker.call(Dependency(ConnectionError("still down")))
    assert state_of(breaker) is BreakerState.OPEN

    clock.advance(59.0)
    dep = Dependency()
    with pytest.raises(CircuitOpenError) as caught:
        await breaker.call(dep)
    assert caught.value.retry_after == pytest.approx(1.0)
    assert dep.calls == 0

    clock.advance(1.0)
    assert state_of(breaker) is BreakerState.HALF_OPEN
    assert await breaker.call(dep) == "ok"
    assert state_of(breaker) is BreakerState.CLOSED


async def test_non_failure_exceptions_pass_through_and_count_as_success() -> None:
    breaker = CircuitBreaker(
        "mp", 3, 30.0, clock=FakeClock(), counts_as_failure=lambda e: not isinstance(e, LookupError)
    )
    await fail_times(breaker, 2)

    not_found = Dependency(KeyError("payment 42"))
    for _ in range(5):
        with pytest.raises(KeyError):
            await breaker.call(not_found)
    assert not_found.calls == 5
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.failure_count == 0


async def test_non_failure_exception_from_probe_closes_the_breaker() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        "mp", 1, 30.0, clock=clock, counts_as_failure=lambda e: not isinstance(e, KeyError)
    )
    await fail_times(breaker, 1)
    clock.advance(30.0)

    with pytest.raises(KeyError):
        await breaker.call(Dependency(KeyError("missing")))
    assert state_of(breaker) is BreakerState.CLOSED


async def test_cancellation_while_closed_does_not_count() -> None:
    breaker = breaker_for("database", clock=FakeClock())
    await fail_times(breaker, 4)

    held = HeldProbe()
    task = asyncio.create_task(breaker.call(held))
    await held.started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert breaker.failure_count == 4
    assert state_of(breaker) is BreakerState.CLOSED
    await fail_times(breaker, 1)
    assert state_of(breaker) is BreakerState.OPEN


async def test_cancelled_probe_frees_the_slot_without_counting() -> None:
    clock = FakeClock()
    breaker = await open_breaker(clock, open_for=60.0)
    clock.advance(60.0)

    probe = HeldProbe()
    task = asyncio.create_task(breaker.call(probe))
    await probe.started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert state_of(breaker) is BreakerState.HALF_OPEN
    assert breaker.failure_count == 3
    assert await breaker.call(Dependency()) == "ok"
    assert state_of(breaker) is BreakerState.CLOSED


async def test_late_results_of_calls_admitted_before_opening_are_ignored() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("dep", 2, 60.0, clock=clock)
    slow = HeldProbe()
    task = asyncio.create_task(breaker.call(slow))
    await slow.started.wait()

    await fail_times(breaker, 2)
    assert state_of(breaker) is BreakerState.OPEN
    clock.advance(30.0)
    slow.release.set()
    assert await task == "probe"

    # Neither closed early nor restarted the 60 s wait.
    assert state_of(breaker) is BreakerState.OPEN
    clock.advance(30.0)
    assert state_of(breaker) is BreakerState.HALF_OPEN


async def test_snapshot_shape() -> None:
    clock = FakeClock()
    breaker = breaker_for("redis", clock=clock)
    assert breaker.snapshot() == {"state": "CLOSED", "failureCount": 0}

    await fail_times(breaker, 3)
    assert breaker.snapshot() == {"state": "OPEN", "failureCount": 3}

    clock.advance(30.0)
    snapshot = breaker.snapshot()
    assert snapshot == {"state": "HALF_OPEN", "failureCount": 3}
    assert type(snapshot["state"]) is str


async def test_context_manager_form_does_the_same_accounting() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("db", 2, 10.0, clock=clock)

    async def fail_in_block() -> None:
        async with breaker:
            raise ConnectionError("down")

    for _ in range(2):
        with pytest.raises(ConnectionError):
            await fail_in_block()
    assert state_of(breaker) is BreakerState.OPEN

    entered = False

    async def enter_block() -> None:
        nonlocal entered
        async with breaker:
            entered = True

    with pytest.raises(CircuitOpenError):
        await enter_block()
    assert entered is False

    clock.advance(10.0)
    async with breaker as same:
        assert same is breaker
        assert state_of(breaker) is BreakerState.HALF_OPEN
    assert state_of(breaker) is BreakerState.CLOSED


async def test_context_manager_probe_refuses_concurrent_callers() -> None:
    clock = FakeClock()
    breaker = await open_breaker(clock, open_for=5.0)
    clock.advance(5.0)
    release = asyncio.Event()
    inside = asyncio.Event()

    async def probe() -> None:
        async with breaker:
            inside.set()
            await release.wait()
            raise TimeoutError

    task = asyncio.create_task(probe())
    await inside.wait()
    with pytest.raises(CircuitOpenError):
        await breaker.call(Dependency())
    release.set()
    with pytest.raises(TimeoutError):
        await task
    assert state_of(breaker) is BreakerState.OPEN


def test_record_success_and_failure_without_calling_through() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("db", 2, 10.0, clock=clock)
    breaker.record_failure()
    breaker.record_success()
    assert breaker.failure_count == 0

    breaker.record_failure()
    breaker.record_failure()
    assert state_of(breaker) is BreakerState.OPEN

    clock.advance(10.0)
    breaker.record_failure()
    assert state_of(breaker) is BreakerState.OPEN
    clock.advance(10.0)
    breaker.record_success()
    assert breaker.snapshot() == {"state": "CLOSED", "failureCount": 0}


async def test_reset_closes_and_clears() -> None:
    breaker = await open_breaker(FakeClock())
    breaker.reset()
    assert breaker.snapshot() == {"state": "CLOSED", "failureCount": 0}
    assert await breaker.call(Dependency()) == "ok"


async def test_transitions_are_logged() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("db", 1, 10.0, clock=clock)
    with capture_logs() as logs:
        await fail_times(breaker, 1)
        clock.advance(10.0)
        await breaker.call(Dependency())

    events = [(entry["event"], entry.get("breaker")) for entry in logs]
    assert events == [("breaker.opened", "db"), ("breaker.half_open", "db"), ("breaker.closed", "db")]


def test_invalid_breaker_settings_rejected() -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker("x", 0, 1.0)
    with pytest.raises(ValueError, match="reset_timeout"):
        CircuitBreaker("x", 1, -1.0)


# -- retry policy ------------------------------------------------------------------------------------


async def test_retry_makes_at_most_max_attempts_and_reraises_last_error_unchanged() -> None:
    sleep = FakeSleep()
    errors = [ConnectionError("1"), ConnectionError("2"), ConnectionError("3"), ConnectionError("4")]
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        raise errors[calls - 1]

    with pytest.raises(ConnectionError) as caught:
        await RetryPolicy(sleep=sleep).run(flaky)
    assert calls == 3
    assert caught.value is errors[2]
    assert len(sleep.delays) == 2


async def test_non_retryable_error_is_raised_after_one_attempt() -> None:
    sleep = FakeSleep()
    dep = Dependency(ValueError("bad input"))
    with pytest.raises(ValueError, match="bad input"):
        await RetryPolicy(sleep=sleep).run(dep)
    assert dep.calls == 1
    assert sleep.delays == []


@pytest.mark.parametrize("error", [ConnectionError(), TimeoutError(), OSError()])
async def test_default_policy_retries_transient_errors(error: Exception) -> None:
    sleep = FakeSleep()
    dep = Dependency(error)
    with pytest.raises(type(error)):
        await RetryPolicy(sleep=sleep).run(dep)
    assert dep.calls == 3


async def test_success_on_second_attempt_returns_value() -> None:
    sleep = FakeSleep()
    outcomes: list[Callable[[], Awaitable[str]]] = [Dependency(TimeoutError()), Dependency(value="second")]

    async def fn() -> str:
        return await outcomes.pop(0)()

    assert await RetryPolicy(sleep=sleep).run(fn) == "second"
    assert len(sleep.delays) == 1


@pytest.mark.parametrize(
    ("unit", "expected"),
    [(1.0, [0.1, 0.2, 0.4, 0.5, 0.5]), (0.5, [0.05, 0.1, 0.2, 0.25, 0.25]), (0.0, [0.0] * 5)],
)
async def test_delays_follow_full_jitter_with_capped_exponential_bound(
    unit: float, expected: list[float]
) -> None:
    sleep = FakeSleep()
    policy = RetryPolicy(max_attempts=6, base_delay=0.1, max_delay=0.5, sleep=sleep, random=lambda: unit)
    with pytest.raises(ConnectionError):
        await policy.run(Dependency(ConnectionError()))
    assert sleep.delays == pytest.approx(expected)


def test_delay_bound_does_not_overflow_for_huge_retry_numbers() -> None:
    policy = RetryPolicy(base_delay=0.1, max_delay=2.0, random=lambda: 1.0)
    assert policy.delay(5000) == 2.0


def test_default_policy_values() -> None:
    policy = RetryPolicy()
    assert (policy.max_attempts, policy.base_delay, policy.max_delay) == (3, 0.1, 2.0)
    assert policy.is_retryable(ConnectionError())
    assert not policy.is_retryable(ValueError())


def test_invalid_retry_settings_rejected() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


async def test_circuit_open_error_is_never_retried() -> None:
    sleep = FakeSleep()
    dep = Dependency(CircuitOpenError("db", 12.0))
    with pytest.raises(CircuitOpenError):
        await RetryPolicy(sleep=sleep, is_retryable=lambda e: True).run(dep)
    assert dep.calls == 1
    assert sleep.delays == []


async def test_retry_logs_scheduled_attempts() -> None:
    sleep = FakeSleep()
    with capture_logs() as logs, pytest.raises(TimeoutError):
        await RetryPolicy(max_attempts=2, sleep=sleep, random=lambda: 1.0).run(Dependency(TimeoutError()))
    assert logs == [
        {
            "event": "retry.scheduled",
            "log_level": "warning",
            "attempt": 1,
            "max_attempts": 2,
            "delay": 0.1,
            "error": "TimeoutError",
        }
    ]


async def test_cancellation_is_never_retried_whatever_the_predicate() -> None:
    sleep = FakeSleep()
    dep = Dependency(asyncio.CancelledError())
    with pytest.raises(asyncio.CancelledError):
        await RetryPolicy(sleep=sleep, is_retryable=lambda e: True).run(dep)
    assert dep.calls == 1
    assert sleep.delays == []


async def test_one_policy_serves_concurrent_callers_independently() -> None:
    # One policy object is shared process-wide (DEADLOCK_RETRY): each run must keep its own count.
    policy = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.001, random=lambda: 1.0)

    def failing_twice(name: str) -> Callable[[], Awaitable[str]]:
        calls = 0

        async def fn() -> str:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0)
            if calls < 3:
                raise ConnectionError(name)
            return f"{name}:{calls}"

        return fn

    names = [f"caller-{n}" for n in range(10)]
    results = await asyncio.gather(*(policy.run(failing_twice(name)) for name in names))
    assert results == [f"{name}:3" for name in names]


# -- composition -------------------------------------------------------------------------------------


async def test_call_with_resilience_stops_retrying_once_breaker_opens() -> None:
    sleep = FakeSleep()
    breaker = CircuitBreaker("db", 2, 60.0, clock=FakeClock())
    dep = Dependency(ConnectionError("down"))

    with pytest.raises(CircuitOpenError):
        await call_with_resilience(breaker, RetryPolicy(max_attempts=5, sleep=sleep), dep)
    assert dep.calls == 2
    assert len(sleep.delays) == 2
    assert state_of(breaker) is BreakerState.OPEN


async def test_call_with_resilience_retries_through_a_closed_breaker() -> None:
    sleep = FakeSleep()
    breaker = CircuitBreaker("db", 5, 60.0, clock=FakeClock())
    outcomes = [ConnectionError(), None]

    async def fn() -> str:
        error = outcomes.pop(0)
        if error is not None:
            raise error
        return "row"

    assert await call_with_resilience(breaker, RetryPolicy(sleep=sleep), fn) == "row"
    assert breaker.failure_count == 0
    assert len(sleep.delays) == 1


async def test_an_open_breaker_probing_in_the_background_closes_once_the_dependency_answers() -> None:
    """The way back in seconds, not reset_timeout: the probe fails while the dependency is down (the
    breaker stays open) and the first that answers closes it. Opening still takes the threshold."""
    breaker = CircuitBreaker("dep", failure_threshold=2, reset_timeout=3600)
    back = asyncio.Event()
    probes = 0

    async def probe() -> None:
        nonlocal probes
        probes += 1
        if not back.is_set():
            raise ConnectionError("still down")

    breaker.probe_in_background(probe, interval=0.01)
    breaker.record_failure()
    assert breaker.snapshot()["state"] == "CLOSED"
    breaker.record_failure()
    assert breaker.snapshot()["state"] == "OPEN"

    async def probed_thrice() -> bool:
        return probes >= 3

    async def closed() -> bool:
        return breaker.state is BreakerState.CLOSED

    await eventually(probed_thrice)
    assert breaker.state is BreakerState.OPEN
    back.set()
    await eventually(closed)
    assert breaker.failure_count == 0
    await breaker.stop_probing()


async def test_stopping_the_probe_leaves_the_breaker_as_it_is() -> None:
    breaker = CircuitBreaker("dep", failure_threshold=1, reset_timeout=3600)

    async def never() -> None:
        raise ConnectionError("down")

    breaker.probe_in_background(never, interval=0.01)
    breaker.record_failure()
    await breaker.stop_probing()
    assert breaker.state is BreakerState.OPEN
