"""What the run saw, as it happened: every request to the target, every fan's outcome, and the
figures sampled every few seconds (the fans' states, the line, what is left, the target's CPU and RSS).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field

# Answers the API gives by design under load, each with a Retry-After or a reason: the fans
# wait and try again, or stop. They are shown by code, but are not failures of the target.
EXPECTED_ANSWERS = frozenset(
    {
        "409 seats_unavailable",
        "409 limit_exceeded",
        "429 rate_limited",
        "503 queue_full",
    }
)

# Fans' states while the run goes on (the live display and the chart of the line).
FAN_STATES = ("arriving", "waiting", "shopping", "paying", "done")
# How a fan's visit ended.
OUTCOMES = (
    "bought",  # paid, and every ticket issued
    "ordered",  # an order created and not paid (--no-pay)
    "sold_out",  # nothing left when their turn came, or while choosing
    "abandoned_line",
    "abandoned_hold",
    "abandoned_checkout",
    "access_expired",  # the waiting room's access ran out before they ordered
    "not_paid",  # approved in the simulator but the order was not paid within --paid-timeout
    "tickets_missing",  # paid, but fewer tickets than places
    "failed",  # an answer the fan could not get past
    "unfinished",  # still going when --max-seconds ran out
)


@dataclass(frozen=True)
class RequestSample:
    """One request: when it ended (seconds since the start), its step, how long it took, and its answer."""

    at: float
    step: str
    ms: float
    status: int  # 0: no answer (transport error)
    code: str  # the API's error code, the transport error's name, or "" for a success

    @property
    def label(self) -> str:
        """`"409 seats_unavailable"`, `"500"`, `"transport ReadTimeout"`; "" for a success."""
        if self.status == 0:
            return f"transport {self.code}"
        if self.status < 300:
            return ""
        return f"{self.status} {self.code}".strip()

    @property
    def failed(self) -> bool:
        """An answer the target should not give (server errors, unexpected refusals, no answer)."""
        label = self.label
        return bool(label) and label not in EXPECTED_ANSWERS


@dataclass
class Snapshot:
    """The figures sampled at one moment of the run."""

    at: float
    fans: dict[str, int]
    line_waiting: float | None = None  # the target's own count (its /metrics), when it has one
    line_active: float | None = None
    admitted_total: float | None = None
    seats_left: int | None = None
    seats_held: int | None = None
    seats_sold: int | None = None
    cpu_percent: dict[str, float] = field(default_factory=dict)  # by process (pid), this interval
    rss_mb: dict[str, float] = field(default_factory=dict)  # by process (pid)
    # The load generator itself: when it is saturated, the latencies are partly its own.
    client_cpu_percent: float | None = None  # this process, % of one core, this interval
    loop_lag_ms: float | None = None  # the worst delay of its event loop this interval
    load_average: float | None = None  # this machine's 1-minute load average


@dataclass
class Recorder:
    started: float = field(default_factory=time.monotonic)
    requests: list[RequestSample] = field(default_factory=list)
    states: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    admissions: list[float] = field(default_factory=list)  # when each fan got in
    snapshots: list[Snapshot] = field(default_factory=list)
    # Orders and their places, checked at the end against the tickets.
    places_ordered: int = 0
    orders_paid: int = 0
    tickets_issued: int = 0
    # Time fans waited for a free connection (the load test's own limit, --concurrency).
    client_wait_s: float = 0.0

    def now(self) -> float:
        return time.monotonic() - self.started

    def request(self, step: str, started: float, status: int, code: str = "") -> None:
        ended = time.monotonic()
        self.requests.append(
            RequestSample(ended - self.started, step, (ended - started) * 1000, status, code)
        )

    def move(self, old: str | None, new: str | None) -> None:
        if old is not None:
            self.states[old] -= 1
        if new is not None:
            self.states[new] += 1

    def snapshot_fans(self) -> dict[str, int]:
        return {state: self.states[state] for state in FAN_STATES}


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile `q` (0-100) of `values`; NaN when there are none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]
