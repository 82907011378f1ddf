"""The target's own figures, read from its `GET /metrics` (Prometheus text): what a client outside
the host can know of its CPU and memory, and of the line it keeps.

The names are the service's (src/ticketera/ops/metrics.py); with several workers the per-process
gauges carry a `pid` label, one series per worker. A deployment that exports none of them (an older
version, /metrics closed to this client) leaves those charts empty; the run goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

CPU_SECONDS = "ticketera_process_cpu_seconds"
RESIDENT_MEMORY = "ticketera_process_resident_memory_bytes"
QUEUE_USERS = "ticketera_queue_users"
QUEUE_ADMITTED = "ticketera_queue_admitted"


@dataclass
class TargetFigures:
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # by pid ("" for a single process)
    rss_bytes: dict[str, float] = field(default_factory=dict)
    line: dict[str, float] = field(default_factory=dict)  # this event's line by state
    admitted_total: float | None = None


def parse_metrics(text: str, event_id: int) -> TargetFigures:
    figures = TargetFigures()
    event = str(event_id)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            # By the sample's name: the family's depends on whether a TYPE line came first.
            name, labels = sample.name, sample.labels
            if name == CPU_SECONDS:
                figures.cpu_seconds[labels.get("pid", "")] = sample.value
            elif name == RESIDENT_MEMORY:
                figures.rss_bytes[labels.get("pid", "")] = sample.value
            elif name == QUEUE_USERS and labels.get("event_id") == event:
                figures.line[labels.get("state", "")] = sample.value
            elif name == QUEUE_ADMITTED + "_total" and labels.get("event_id") == event:
                figures.admitted_total = sample.value
    return figures


def cpu_percent(before: TargetFigures, after: TargetFigures, seconds: float) -> dict[str, float]:
    """Each process's CPU over the interval, as a percentage of one core (a worker's ceiling is 100)."""
    if seconds <= 0:
        return {}
    return {
        pid: max(0.0, (used - before.cpu_seconds[pid]) / seconds * 100)
        for pid, used in after.cpu_seconds.items()
        if pid in before.cpu_seconds
    }
