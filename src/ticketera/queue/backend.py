"""The waiting room's storage: one interface, two backends (Redis, in-process).

Each method is one atomic step on one event's line, so replicas and concurrent requests can never
interleave inside it. The rules those steps apply are written once here, as the reference for both
implementations, and pinned by one contract test suite run against each:

- A user is in exactly one state per event: `prequeue` (joined before the on-sale, unordered),
  `waiting` (in line, ordered by sequence number), `admitted` (let in, must claim before the claim
  deadline), `shopping` (claimed; access until the access deadline), `expired` (missed the claim
  window or ran out of access), `left`, or `done` (finished buying).
- Sequence numbers: the pre-queue, when released, takes 1..N in the random order it is given;
  anyone joining after the on-sale takes `LATE_JOIN_BASE + n` (n counts arrivals), so the whole
  pre-queue stands ahead of everyone who came later and arrival order holds after that.
- Joining again while `prequeue`, `waiting`, `admitted` or `shopping` changes nothing (same place);
  after `expired`, `left` or `done` it is a fresh join at the back. At most `max_waiting` users wait
  (pre-queue plus line); a user already waiting is never refused.
- Admission takes the first users of the line, as many as the token bucket (`admit_per_minute`,
  bursting at most `burst_of(...)`), the cap on active users (`max_active`, counting `admitted` and
  `shopping` users whose deadline has not passed) and the line allow; nothing while paused. One
  step per event per tick number, however many replicas ask.
- An event's line is forgotten at the moment `expire_at` names (some days after the event starts),
  so past events hold no memory.
- Deadlines are checked against the `now` each call is given (milliseconds since the epoch, from the
  app's clock), so time-dependent rules are tested by moving the clock, never by sleeping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

LATE_JOIN_BASE = 1 << 40
# Admissions in the last minute measure the real outflow for wait estimates.
RATE_WINDOW_MS = 60_000


class UserState(StrEnum):
    PREQUEUE = "prequeue"
    WAITING = "waiting"
    ADMITTED = "admitted"
    SHOPPING = "shopping"
    EXPIRED = "expired"
    LEFT = "left"
    DONE = "done"


ACTIVE_STATES = frozenset({UserState.ADMITTED, UserState.SHOPPING})
FINISHED_STATES = frozenset({UserState.EXPIRED, UserState.LEFT, UserState.DONE})


def burst_of(admit_per_minute: int) -> float:
    """The most admissions one step can release after an idle spell: five seconds' worth, at least one."""
    return max(1.0, admit_per_minute / 12)


@dataclass(frozen=True)
class QueueEntry:
    """One user's place as stored: state, sequence number (0 in the pre-queue), deadline (ms, or 0)."""

    state: UserState
    sequence: int = 0
    deadline_ms: int = 0


@dataclass(frozen=True)
class JoinOutcome:
    entry: QueueEntry
    created: bool
    full: bool = False
    ahead: int | None = None  # users in line before this one, when waiting


@dataclass(frozen=True)
class UserView:
    """A user's entry with the figures a status answer needs."""

    entry: QueueEntry
    ahead: int | None  # users in line before this one, when waiting


@dataclass(frozen=True)
class AdmissionPolicy:
    admit_per_minute: int
    max_active: int
    claim_ms: int
    paused: bool = False


@dataclass(frozen=True)
class LineFigures:
    waiting: int
    prequeue: int
    active: int
    admitted_total: int
    admitted_last_minute: int
    released: bool
    measured_at_ms: int = 0
    recent_admissions: list[tuple[int, int]] = field(default_factory=list)

    def admission_rate_per_second(self, configured_per_minute: float) -> float:
        """The outflow measured over the last minute (or since admissions began, if sooner), never
        above the configured rate: an opening burst must not promise a short wait. The configured
        rate until anything was measured."""
        configured = configured_per_minute / 60
        if not self.recent_admissions:
            return configured
        earliest = min(at for at, _ in self.recent_admissions)
        span_seconds = max((self.measured_at_ms - earliest) / 1000, 1.0)
        return min(self.admitted_last_minute / span_seconds, configured)


def eta_seconds(ahead: int, rate_per_second: float) -> int | None:
    if rate_per_second <= 0:
        return None
    return math.ceil((ahead + 1) / rate_per_second)


# How often a waiting user asks for their place, at most (near the front: the stream's old fixed
# pace) and at least (far back); the slowest is also held to half the claim window.
CHECK_AGAIN_MIN_SECONDS = 2
CHECK_AGAIN_MAX_SECONDS = 60


def check_again_seconds(earliest_turn_seconds: float, *, claim_seconds: int) -> int:
    """When a waiting user should next ask for their place (the status' `checkAgainSeconds`, the
    stream's next push): not before their turn could come, every 2 s near the front, and at least
    once a minute so that a pause, a resumption or the sell-out reaches everybody soon.

    `earliest_turn_seconds` is the soonest the turn can come: the people ahead over the line's
    configured rate (admission never goes faster; a measured rate only goes slower, so asking then
    makes nobody late), or the time left before the sale opens. A user let in between two asks
    still has their turn: the slowest pace is at most half of the claim window. Asking by place, not
    on one clock for all, is what keeps the line cheaper than the sale: 50,000 fans asking every 2 s
    are 25,000 requests a second; paced by place, at 200 admissions a second, about 1,500."""
    slowest = max(CHECK_AGAIN_MIN_SECONDS, min(CHECK_AGAIN_MAX_SECONDS, claim_seconds // 2))
    return int(min(max(earliest_turn_seconds, CHECK_AGAIN_MIN_SECONDS), slowest))


class QueueBackend(Protocol):
    name: str

    async def join(
        self, event_id: int, user_id: str, *, now_ms: int, on_sale_ms: int | None, max_waiting: int
    ) -> JoinOutcome: ...

    async def view(self, event_id: int, user_id: str, *, now_ms: int) -> UserView | None:
        """The user's entry (deadlines that passed already shown as `expired`), or None if never joined."""
        ...

    async def prequeue_members(self, event_id: int) -> list[str]: ...

    async def release_prequeue(self, event_id: int, ordered: list[str], *, now_ms: int) -> bool:
        """Give the pre-queue its order. False when `ordered` is not exactly the pre-queue (retry)."""
        ...

    async def is_released(self, event_id: int) -> bool: ...

    async def admit(self, event_id: int, policy: AdmissionPolicy, *, now_ms: int, tick: int) -> list[str]:
        """One admission step; the users admitted, in line order. Empty for a tick already stepped."""
        ...

    async def claim(self, event_id: int, user_id: str, *, now_ms: int, access_ms: int) -> QueueEntry | None:
        """An admitted user takes their turn (now shopping until the access deadline); idempotent."""
        ...

    async def leave(self, event_id: int, user_id: str, *, now_ms: int) -> bool: ...

    async def finish(self, event_id: int, user_id: str, *, now_ms: int) -> bool:
        """The shopper completed their order: they no longer count as active."""
        ...

    async def figures(self, event_id: int, *, now_ms: int) -> LineFigures: ...

    async def expire_at(self, event_id: int, *, at_ms: int) -> None:
        """Forget the event's whole line at `at_ms`, after its event is over (set again each time it
        is asked, so keys made since get the same deadline)."""
        ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...
