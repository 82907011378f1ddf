"""Stand-ins for the outside world that tests control."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class FakeClock:
    """The app's clock, moved by tests instead of sleeping."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2030, 3, 1, 12, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    @property
    def ms(self) -> int:
        return int(self.now.timestamp() * 1000)


class FakeMonotonic:
    """A monotonic clock for a circuit breaker, moved by the test instead of waiting out its timeout."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
