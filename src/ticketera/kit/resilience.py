"""Circuit breaker and retry policy shared by every outbound dependency.

The retry loop comes from tenacity (``AsyncRetrying``): attempts bounded by ``stop_after_attempt``,
the retryable predicate through ``retry_if_exception``, the last error re-raised unchanged
(``reraise=True``), the injectable sleep through its ``sleep=`` hook and the ``retry.scheduled`` log
line from a ``before_sleep`` callback. What stays ours in ``RetryPolicy`` is the policy itself: the
full-jitter delay is drawn from ``backoff_seconds`` (shared with the work kept in tables) with an
injectable random, which tenacity's ``wait_random_exponential`` cannot take, so tests can pin every
delay; and the rule that a ``CircuitOpenError`` or a cancellation is never retried, whatever the
caller's predicate says.

The circuit breaker is hand-written: it must be async-native, take an injected clock and the
per-dependency thresholds of the deployment guide, work as an ``async with`` block around a session,
and give /health a ``snapshot()``. pybreaker is sync-first (its async support goes through Tornado)
and aiobreaker, its asyncio fork, is unmaintained; neither exposes that shape for less code than this.

Composition rule: retries wrap breaker calls (see ``call_with_resilience``), so every attempt is
counted by the breaker and an opened breaker ends the retry loop at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from random import random as _unit_random
from types import MappingProxyType, TracebackType
from typing import Any, ParamSpec, Self, TypeVar

import structlog
import tenacity

from ticketera.kit.errors import ServiceUnavailable

log = structlog.get_logger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

_MonotonicClock = Callable[[], float]
_FailurePredicate = Callable[[BaseException], bool]


class BreakerState(StrEnum):
    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


class CircuitOpenError(Exception):
    """Raised instead of calling a dependency whose breaker is open."""

    def __init__(self, breaker: str, retry_after: float) -> None:
        # Both values go to Exception.args so the error survives pickling (e.g. across processes).
        super().__init__(breaker, retry_after)
        self.breaker = breaker
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"circuit {self.breaker!r} is open; retry after {self.retry_after:.1f}s"


def _always(_: BaseException) -> bool:
    return True


class CircuitBreaker:
    """Async circuit breaker: CLOSED -> OPEN after N consecutive failures -> HALF_OPEN after a timeout.

    Hand-written rather than pybreaker (sync-first) or aiobreaker (unmaintained): see the module
    docstring. Not thread-safe: it relies on asyncio's single-threaded scheduling (no await between
    check and update), which is all the app needs.
    """

    def __init__(
        self,
        name: str,
        failure_threshold: int,
        reset_timeout: float,
        *,
        clock: _MonotonicClock = time.monotonic,
        counts_as_failure: _FailurePredicate = _always,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        if reset_timeout < 0:
            raise ValueError("reset_timeout must be >= 0")
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self._clock = clock
        self._counts_as_failure = counts_as_failure
        # Stored state; an OPEN breaker whose timeout elapsed is *reported* HALF_OPEN by `state`
        # but only switched here when a caller actually asks to go through.
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False
        # The context-manager form has no per-entry handle, so the probe is identified by its task.
        self._probe_owner: asyncio.Task[Any] | None = None
        # While open, this asks the dependency itself every `probe_interval` seconds (see
        # `probe_in_background`), so it closes seconds after the dependency is back instead of
        # waiting out `reset_timeout` for a request to try.
        self._background_probe: Callable[[], Awaitable[object]] | None = None
        self.probe_interval = 1.0
        self._prober: asyncio.Task[None] | None = None

    # -- introspection -------------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._remaining_open() <= 0:
            return BreakerState.HALF_OPEN
        return self._state

    @property
    def failure_count(self) -> int:
        return self._failures

    @property
    def seconds_until_probe(self) -> float:
        """While open, how long until a half-open probe may go through; 0 otherwise."""
        return max(0.0, self._remaining_open()) if self._state is BreakerState.OPEN else 0.0

    def snapshot(self) -> dict[str, object]:
        return {"state": self.state.value, "failureCount": self._failures}

    # -- calling through -----------------------------------------------------------------------

    async def call(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        async with self:
            return await fn(*args, **kwargs)

    async def __aenter__(self) -> Self:
        self._admit()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        is_probe = self._probe_in_flight and self._probe_owner is _current_task()
        if is_probe:
            self._release_probe()
        if exc is not None and not isinstance(exc, Exception):
            # Cancellation (and KeyboardInterrupt & co.) says nothing about the dependency's health;
            # the probe slot was released above so the next caller can probe instead.
            return
        failed = exc is not None and self._counts_as_failure(exc)
        if is_probe:
            if failed:
                self._probe_failed()
            else:
                self._close()
        elif self._state is BreakerState.CLOSED:
            if failed:
                self._closed_failure()
            else:
                self._closed_success()
        # Otherwise this call was admitted before the breaker opened; its late result must neither
        # close the breaker early nor extend the wait.

    # -- outcomes reported from outside (e.g. a health ping) -----------------------------------

    def record_success(self) -> None:
        state = self.state
        if state is BreakerState.CLOSED:
            self._closed_success()
        elif state is BreakerState.HALF_OPEN:
            self._release_probe()
            self._close()

    def record_failure(self) -> None:
        state = self.state
        if state is BreakerState.CLOSED:
            self._closed_failure()
        elif state is BreakerState.HALF_OPEN:
            self._release_probe()
            self._probe_failed()

    def trip(self) -> None:
        """Open now, whatever the count: the caller knows the dependency is gone (a watchdog saw it
        stop answering), so nobody should wait for the threshold's worth of failures to learn it."""
        if self._state is not BreakerState.OPEN:
            self._release_probe()
            self._failures = max(self._failures, self.failure_threshold)
            self._open()

    def reset(self) -> None:
        self._release_probe()
        if self._state is not BreakerState.CLOSED:
            self._close()
        self._failures = 0

    # -- internals -----------------------------------------------------------------------------

    def _remaining_open(self) -> float:
        return self._opened_at + self.reset_timeout - self._clock()

    def _admit(self) -> None:
        if self._state is BreakerState.CLOSED:
            return
        if self._state is BreakerState.OPEN:
            remaining = self._remaining_open()
            if remaining > 0:
                raise CircuitOpenError(self.name, remaining)
            self._state = BreakerState.HALF_OPEN
            log.info("breaker.half_open", breaker=self.name)
        if self._probe_in_flight:
            # A probe may be allowed as soon as the in-flight one finishes, hence 0.
            raise CircuitOpenError(self.name, 0.0)
        self._probe_in_flight = True
        self._probe_owner = _current_task()

    def _release_probe(self) -> None:
        self._probe_in_flight = False
        self._probe_owner = None

    def _closed_success(self) -> None:
        self._failures = 0

    def _closed_failure(self) -> None:
        self._failures += 1
        if self._failures >= self.failure_threshold:
            self._open()

    def _probe_failed(self) -> None:
        self._failures += 1
        self._open()

    def probe_in_background(self, probe: Callable[[], Awaitable[object]], *, interval: float = 1.0) -> None:
        """While open, call `probe` (a cheap request to the dependency, bypassing this breaker) every
        `interval` seconds; the first that returns closes the breaker. The thresholds that open it
        are unchanged: this only shortens the way back."""
        self._background_probe = probe
        self.probe_interval = interval

    async def stop_probing(self) -> None:
        prober, self._prober = self._prober, None
        if prober is not None and not prober.done():
            prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await prober

    async def _probe_until_closed(self, probe: Callable[[], Awaitable[object]]) -> None:
        while not self._is_closed():
            await asyncio.sleep(self.probe_interval)
            if self._is_closed():  # a request's half-open probe got there first
                return
            try:
                async with asyncio.timeout(max(self.probe_interval, 2.0)):
                    await probe()
            except Exception as exc:
                log.debug("breaker.probe_failed", breaker=self.name, error=type(exc).__name__)
                continue
            self._release_probe()
            log.info("breaker.probe_succeeded", breaker=self.name)
            self._close()
            return

    def _is_closed(self) -> bool:
        return self._state is BreakerState.CLOSED

    def _start_probing(self) -> None:
        if self._background_probe is None or (self._prober is not None and not self._prober.done()):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # opened from synchronous code: the next request's half-open probe will do
            return
        self._prober = loop.create_task(
            self._probe_until_closed(self._background_probe), name=f"breaker-probe-{self.name}"
        )

    def _open(self) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = self._clock()
        self._start_probing()
        log.warning(
            "breaker.opened",
            breaker=self.name,
            failures=self._failures,
            reset_timeout=self.reset_timeout,
        )

    def _close(self) -> None:
        self._state = BreakerState.CLOSED
        self._failures = 0
        log.info("breaker.closed", breaker=self.name)


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop, e.g. record_* called from sync code
        return None


@dataclass(frozen=True)
class BreakerSettings:
    failure_threshold: int
    reset_timeout: float


# Numbers from the deployment guide; one entry per external dependency.
BREAKER_DEFAULTS: Mapping[str, BreakerSettings] = MappingProxyType(
    {
        "database": BreakerSettings(failure_threshold=5, reset_timeout=60.0),
        "redis": BreakerSettings(failure_threshold=3, reset_timeout=30.0),
        "mercadopago": BreakerSettings(failure_threshold=3, reset_timeout=120.0),
    }
)


def breaker_for(
    name: str,
    *,
    clock: _MonotonicClock = time.monotonic,
    counts_as_failure: _FailurePredicate = _always,
) -> CircuitBreaker:
    try:
        settings = BREAKER_DEFAULTS[name]
    except KeyError:
        known = ", ".join(sorted(BREAKER_DEFAULTS))
        raise ValueError(f"no breaker defaults for {name!r} (known: {known})") from None
    return CircuitBreaker(
        name,
        settings.failure_threshold,
        settings.reset_timeout,
        clock=clock,
        counts_as_failure=counts_as_failure,
    )


def _is_transient(exc: BaseException) -> bool:
    # ConnectionError and TimeoutError are OSError subclasses; listed for the reader.
    return isinstance(exc, (ConnectionError, TimeoutError, OSError))


def backoff_seconds(attempt: int, *, base: float, cap: float) -> float:
    """Seconds before retry number `attempt` (1 = the first): base, doubling, capped. Work kept in a
    table uses it as it is (its retries are spread by when their rows fell due); RetryPolicy draws
    a full-jitter delay below it."""
    # Exponent capped so absurd attempt counts can't overflow the float; the cap wins anyway.
    return min(cap, math.ldexp(base, min(max(0, attempt - 1), 64)))


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with full-jitter exponential backoff, run by tenacity.

    ``max_attempts`` counts every attempt including the first. One policy is shared by concurrent
    callers (``DEADLOCK_RETRY``, a client's policy), so it holds settings only: a ``run`` whose first
    attempt fails builds its own ``AsyncRetrying``, because tenacity keeps a loop's progress on it.
    """

    max_attempts: int = 3
    base_delay: float = 0.1
    max_delay: float = 2.0
    is_retryable: _FailurePredicate = _is_transient
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    random: Callable[[], float] = _unit_random

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("delays must be >= 0")

    def delay(self, retry: int) -> float:
        """Delay before retry number ``retry`` (1 = first retry)."""
        return self.random() * backoff_seconds(retry, base=self.base_delay, cap=self.max_delay)

    async def run(self, fn: Callable[[], Awaitable[T]]) -> T:
        # The first attempt runs bare: nearly every call succeeds at once, and tenacity's bookkeeping
        # (a state object and a Future with its own lock per attempt, about 14 us) would otherwise be
        # paid by every transaction, three per ticket sold. Retries, the rare case, go to tenacity.
        try:
            return await fn()
        except Exception as exc:
            if self.max_attempts == 1 or not self._should_retry(exc):
                raise
            first_error = exc
        delay = self.delay(1)
        self._log(attempt=1, delay=delay, error=first_error)
        await self.sleep(delay)
        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(self.max_attempts - 1),
            wait=self._wait,
            retry=tenacity.retry_if_exception(self._should_retry),
            sleep=self.sleep,
            before_sleep=self._log_scheduled,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await fn()
        # With reraise=True the loop only ends by the return above or by raising the last error.
        raise AssertionError("tenacity ended a retry loop without a result or an error")

    def _wait(self, state: tenacity.RetryCallState) -> float:
        # tenacity counts from the second attempt (the first ran bare): its attempt 1 failing
        # schedules retry number 2.
        return self.delay(state.attempt_number + 1)

    def _should_retry(self, exc: BaseException) -> bool:
        if not isinstance(exc, Exception):
            # Cancellation (and KeyboardInterrupt & co.) must end the loop, whatever the predicate.
            return False
        if isinstance(exc, CircuitOpenError):
            # The breaker already knows the dependency is down; waiting here only adds latency.
            return False
        return self.is_retryable(exc)

    def _log_scheduled(self, state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        self._log(attempt=state.attempt_number + 1, delay=state.upcoming_sleep, error=error)

    def _log(self, *, attempt: int, delay: float, error: BaseException | None) -> None:
        log.warning(
            "retry.scheduled",
            attempt=attempt,
            max_attempts=self.max_attempts,
            delay=delay,
            error=type(error).__name__,
        )


async def call_with_resilience(
    breaker: CircuitBreaker, retry: RetryPolicy, fn: Callable[[], Awaitable[T]]
) -> T:
    return await retry.run(lambda: breaker.call(fn))


class OutageNotice:
    """What a background loop says about a dependency's outage: one line when its work stops for
    one, one when it runs again; not a traceback every pass. The outage itself is logged where it
    was met, and shown by /health."""

    def __init__(self, stopped_event: str, resumed_event: str) -> None:
        self._stopped_event = stopped_event
        self._resumed_event = resumed_event
        self._waiting_for: str | None = None

    def stopped(self, exc: ServiceUnavailable) -> None:
        if self._waiting_for is None:
            log.warning(self._stopped_event, error=exc.code)
        self._waiting_for = exc.code

    def ran(self) -> None:
        if self._waiting_for is not None:
            log.info(self._resumed_event, after=self._waiting_for)
            self._waiting_for = None
