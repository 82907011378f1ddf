"""The in-process waiting room: the embedded default, for a single process.

It follows the rules written in `ticketera.queue.backend` step by step, as the Redis scripts do.
No `await` happens inside a step, so each step is atomic on asyncio's one thread.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from sortedcontainers import SortedList

from ticketera.queue.backend import (
    ACTIVE_STATES,
    FINISHED_STATES,
    LATE_JOIN_BASE,
    RATE_WINDOW_MS,
    AdmissionPolicy,
    JoinOutcome,
    LineFigures,
    QueueEntry,
    UserState,
    UserView,
    burst_of,
)


@dataclass
class _Line:
    entries: dict[str, QueueEntry] = field(default_factory=dict)
    line: SortedList = field(default_factory=SortedList)  # (sequence, user_id) of waiting users
    prequeue: set[str] = field(default_factory=set)
    active: dict[str, int] = field(default_factory=dict)  # user_id -> deadline_ms
    late_joins: int = 0
    released: bool = False
    tokens: float = 0.0
    tokens_at_ms: int | None = None
    last_tick: int | None = None
    admitted_total: int = 0
    admissions: deque[tuple[int, int]] = field(default_factory=lambda: deque(maxlen=600))


class MemoryQueueBackend:
    name = "memory"

    def __init__(self) -> None:
        self._lines: dict[int, _Line] = {}
        self._forget_at: dict[int, int] = {}  # event id -> ms

    def _line(self, event_id: int) -> _Line:
        return self._lines.setdefault(event_id, _Line())

    async def join(
        self, event_id: int, user_id: str, *, now_ms: int, on_sale_ms: int | None, max_waiting: int
    ) -> JoinOutcome:
        line = self._line(event_id)
        self._expire_overdue(line, now_ms)
        current = line.entries.get(user_id)
        if current is not None and current.state not in FINISHED_STATES:
            return JoinOutcome(current, created=False, ahead=self._ahead(line, user_id, current))
        if len(line.line) + len(line.prequeue) >= max_waiting:
            return JoinOutcome(current or QueueEntry(UserState.LEFT), created=False, full=True)
        if not line.released and on_sale_ms is not None and now_ms < on_sale_ms:
            entry = QueueEntry(UserState.PREQUEUE)
            line.prequeue.add(user_id)
        else:
            line.late_joins += 1
            entry = QueueEntry(UserState.WAITING, LATE_JOIN_BASE + line.late_joins)
            line.line.add((entry.sequence, user_id))
        line.entries[user_id] = entry
        return JoinOutcome(entry, created=True, ahead=self._ahead(line, user_id, entry))

    @staticmethod
    def _ahead(line: _Line, user_id: str, entry: QueueEntry) -> int | None:
        return line.line.index((entry.sequence, user_id)) if entry.state is UserState.WAITING else None

    async def view(self, event_id: int, user_id: str, *, now_ms: int) -> UserView | None:
        line = self._line(event_id)
        entry = line.entries.get(user_id)
        if entry is None:
            return None
        if entry.state in ACTIVE_STATES and entry.deadline_ms <= now_ms:
            entry = QueueEntry(UserState.EXPIRED, entry.sequence, entry.deadline_ms)
        return UserView(entry, self._ahead(line, user_id, entry))

    async def prequeue_members(self, event_id: int) -> list[str]:
        return sorted(self._line(event_id).prequeue)

    async def release_prequeue(self, event_id: int, ordered: list[str], *, now_ms: int) -> bool:
        line = self._line(event_id)
        if line.released:
            return True
        if len(ordered) != len(line.prequeue) or set(ordered) != line.prequeue:
            return False
        for position, user_id in enumerate(ordered, start=1):
            line.entries[user_id] = QueueEntry(UserState.WAITING, position)
            line.line.add((position, user_id))
        line.prequeue.clear()
        line.released = True
        return True

    async def is_released(self, event_id: int) -> bool:
        return self._line(event_id).released

    async def admit(self, event_id: int, policy: AdmissionPolicy, *, now_ms: int, tick: int) -> list[str]:
        self._forget_past(now_ms)
        line = self._line(event_id)
        self._expire_overdue(line, now_ms)
        # One step per tick; an older tick number (a replica whose clock lags) never steps again.
        if line.last_tick is not None and tick <= line.last_tick:
            return []
        line.last_tick = tick
        burst = burst_of(policy.admit_per_minute)
        if line.tokens_at_ms is None:
            line.tokens = burst
            line.tokens_at_ms = now_ms
        else:
            elapsed = max(0, now_ms - line.tokens_at_ms)
            line.tokens = min(burst, line.tokens + elapsed * policy.admit_per_minute / 60_000)
            # The bucket's time never moves back, so no stretch of time is refilled twice.
            line.tokens_at_ms = max(line.tokens_at_ms, now_ms)
        if policy.paused:
            return []
        count = min(int(line.tokens), policy.max_active - len(line.active), len(line.line))
        if count <= 0:
            return []
        admitted: list[str] = []
        deadline = now_ms + policy.claim_ms
        for _ in range(count):
            sequence, user_id = line.line.pop(0)
            line.entries[user_id] = QueueEntry(UserState.ADMITTED, sequence, deadline)
            line.active[user_id] = deadline
            admitted.append(user_id)
        line.tokens -= count
        line.admitted_total += count
        line.admissions.append((now_ms, count))
        return admitted

    async def claim(self, event_id: int, user_id: str, *, now_ms: int, access_ms: int) -> QueueEntry | None:
        line = self._line(event_id)
        entry = line.entries.get(user_id)
        if entry is None or entry.state not in ACTIVE_STATES or entry.deadline_ms <= now_ms:
            return None
        if entry.state is UserState.SHOPPING:
            return entry
        claimed = QueueEntry(UserState.SHOPPING, entry.sequence, now_ms + access_ms)
        line.entries[user_id] = claimed
        line.active[user_id] = claimed.deadline_ms
        return claimed

    async def leave(self, event_id: int, user_id: str, *, now_ms: int) -> bool:
        return self._end(event_id, user_id, UserState.LEFT)

    async def finish(self, event_id: int, user_id: str, *, now_ms: int) -> bool:
        return self._end(event_id, user_id, UserState.DONE)

    def _end(self, event_id: int, user_id: str, state: UserState) -> bool:
        line = self._line(event_id)
        entry = line.entries.get(user_id)
        if entry is None or entry.state in FINISHED_STATES:
            return False
        if entry.state is UserState.WAITING:
            line.line.remove((entry.sequence, user_id))
        line.prequeue.discard(user_id)
        line.active.pop(user_id, None)
        line.entries[user_id] = QueueEntry(state, entry.sequence)
        return True

    async def figures(self, event_id: int, *, now_ms: int) -> LineFigures:
        line = self._line(event_id)
        self._expire_overdue(line, now_ms)
        recent = [(at, count) for at, count in line.admissions if at > now_ms - RATE_WINDOW_MS]
        return LineFigures(
            waiting=len(line.line),
            prequeue=len(line.prequeue),
            active=len(line.active),
            admitted_total=line.admitted_total,
            admitted_last_minute=sum(count for _, count in recent),
            released=line.released,
            measured_at_ms=now_ms,
            recent_admissions=recent,
        )

    def _expire_overdue(self, line: _Line, now_ms: int) -> None:
        overdue = [user_id for user_id, deadline in line.active.items() if deadline <= now_ms]
        for user_id in overdue:
            del line.active[user_id]
            entry = line.entries[user_id]
            line.entries[user_id] = QueueEntry(UserState.EXPIRED, entry.sequence, entry.deadline_ms)

    async def expire_at(self, event_id: int, *, at_ms: int) -> None:
        self._forget_at[event_id] = at_ms

    def _forget_past(self, now_ms: int) -> None:
        """Lines whose moment to be forgotten has come (looked at on every admission step)."""
        for event_id in [event for event, at in self._forget_at.items() if at <= now_ms]:
            self._lines.pop(event_id, None)
            del self._forget_at[event_id]

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._lines.clear()
