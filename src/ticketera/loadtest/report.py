"""The figures of a run, the targets met or not, and the report directory:

report.md      what an operator reads first: the verdict, then the figures and the charts
figures.json   the same figures for a machine (keys documented in README's "Load test")
*.png          the charts (charts.py), when matplotlib is installed
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ticketera.loadtest.recorder import OUTCOMES, RequestSample, percentile
from ticketera.loadtest.runner import RunResult

# The fans' steps in the order they take them (the charts and tables list them so).
STEPS = (
    "join",
    "status",
    "stream",
    "leave",
    "event",
    "seats",
    "hold",
    "order",
    "pay",
    "order_status",
    "tickets",
)
# Steps on the simulator: shown, but not the target's latency.
SIMULATOR_STEPS = frozenset({"pay"})


@dataclass(frozen=True)
class TargetCheck:
    name: str
    limit: str
    value: str
    passed: bool
    why: str = ""


def bucket_seconds(duration: float) -> float:
    """Chart resolution: about 60 points over the run, never under a second."""
    return float(max(1, math.ceil(duration / 60)))


def compute_figures(result: RunResult) -> dict[str, Any]:
    recorder = result.recorder
    target_requests = [r for r in recorder.requests if r.step not in SIMULATOR_STEPS]
    duration = max(result.duration_s, 1e-9)
    steps: dict[str, Any] = {}
    for step in STEPS:
        samples = [r for r in recorder.requests if r.step == step]
        if not samples:
            continue
        ok = [r.ms for r in samples if 200 <= r.status < 300]
        steps[step] = {
            "requests": len(samples),
            "ok": len(ok),
            "per_second": round(len(ok) / duration, 2),
            "p50_ms": _round(percentile(ok, 50)),
            "p95_ms": _round(percentile(ok, 95)),
            "p99_ms": _round(percentile(ok, 99)),
        }
    all_ms = [r.ms for r in target_requests if r.status != 0]
    by_code = Counter(r.label for r in recorder.requests if r.label)
    failures = sum(1 for r in target_requests if r.failed)
    capacity = result.plan.capacity
    sold = _sold(result.final_event)
    rss_peak: dict[str, float] = defaultdict(float)
    for snapshot in recorder.snapshots:
        for pid, mb in snapshot.rss_mb.items():
            rss_peak[pid] = max(rss_peak[pid], mb)
    cpu_by_pid: dict[str, list[float]] = defaultdict(list)
    for snapshot in recorder.snapshots:
        for pid, percent in snapshot.cpu_percent.items():
            cpu_by_pid[pid].append(percent)
    cpu_mean = {pid: sum(values) / len(values) for pid, values in cpu_by_pid.items() if values}
    cpu_peak = {pid: max(values) for pid, values in cpu_by_pid.items() if values}
    return {
        "run": {
            "url": result.url,
            "simulatorUrl": result.simulator_url,
            "eventId": result.plan.event_id,
            "eventName": result.plan.name,
            "queueEnabled": result.plan.queue_enabled,
            "fans": result.options.fans,
            "concurrency": result.options.concurrency,
            "rampSeconds": result.options.ramp_seconds,
            "thinkSeconds": result.options.think_seconds,
            "abandonRate": result.options.abandon_rate,
            "pay": result.options.pay,
            "seed": result.seed,
            "startedAt": result.started_at.isoformat(),
            "durationSeconds": round(result.duration_s, 2),
            "maxSeconds": result.options.max_seconds,
            "stoppedBy": result.stopped_by,
            "notes": result.notes,
        },
        "fans": {outcome: recorder.outcomes[outcome] for outcome in OUTCOMES},
        "requests": {
            "total": len(target_requests),
            "perMinute": round(len(target_requests) / duration * 60, 1),
            "p50Ms": _round(percentile(all_ms, 50)),
            "p95Ms": _round(percentile(all_ms, 95)),
            "p99Ms": _round(percentile(all_ms, 99)),
            "failures": failures,
            "errorRate": round(failures / len(target_requests), 4) if target_requests else 0.0,
            "byCode": dict(by_code.most_common()),
            # Mean time a request waited for one of the load test's own connections before it was
            # sent (not part of its latency): large, and --concurrency set the pace, not the target.
            "clientWaitMeanMs": round(recorder.client_wait_s / len(recorder.requests) * 1000, 1)
            if recorder.requests
            else 0.0,
        },
        "steps": steps,
        "tickets": {
            "capacity": capacity,
            "availableAtStart": result.plan.available,
            "availableAtEnd": result.final_event.get("available"),
            "soldAtEnd": sold,
            "placesOrdered": recorder.places_ordered,
            "ordersPaid": recorder.orders_paid,
            "ticketsIssued": recorder.tickets_issued,
            "paidWithoutAllTickets": recorder.outcomes["tickets_missing"],
            "oversold": sold is not None and sold > capacity,
        },
        "target": {
            "metricsExported": result.metrics_exported,
            "processes": len(rss_peak),
            "rssPeakMb": {pid or "main": round(mb, 1) for pid, mb in rss_peak.items()},
            "cpuMeanPercent": {pid or "main": round(v, 1) for pid, v in cpu_mean.items()},
            "cpuPeakPercent": {pid or "main": round(v, 1) for pid, v in cpu_peak.items()},
        },
        "client": _client(result),
        "series": _series(result),
    }


# Past these the load generator, not the target, may be what the latencies show.
CLIENT_CPU_SATURATED_PERCENT = 80.0
CLIENT_LAG_SATURATED_MS = 50.0


def _client(result: RunResult) -> dict[str, Any]:
    """The load generator's own state: its CPU, its event loop's delay, the machine's load."""
    snapshots = result.recorder.snapshots
    cpu = [s.client_cpu_percent for s in snapshots if s.client_cpu_percent is not None]
    lag = [s.loop_lag_ms for s in snapshots if s.loop_lag_ms is not None]
    load = [s.load_average for s in snapshots if s.load_average is not None]
    cpu_mean = sum(cpu) / len(cpu) if cpu else None
    lag_p95 = percentile(lag, 95) if lag else None
    busy = cpu_mean is not None and cpu_mean > CLIENT_CPU_SATURATED_PERCENT
    late = lag_p95 is not None and lag_p95 > CLIENT_LAG_SATURATED_MS
    # Late but not busy: something else had the cores (the target on the same machine, other work).
    why = "its own CPU" if busy else "the machine's other work (it ran late, not busy)" if late else ""
    return {
        "cpuMeanPercent": None if cpu_mean is None else round(cpu_mean, 1),
        "loopLagP95Ms": None if lag_p95 is None else round(lag_p95, 1),
        "loopLagMaxMs": round(max(lag), 1) if lag else None,
        "loadAverageMax": round(max(load), 2) if load else None,
        "cores": os.cpu_count(),
        "saturated": busy or late,
        "saturatedBy": why,
    }


def _sold(event: dict[str, Any]) -> int | None:
    sections = event.get("sections")
    if not isinstance(sections, list):
        return None
    return sum(int(s.get("sold", 0)) for s in sections)


def _round(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 1)


def _series(result: RunResult) -> dict[str, Any]:
    """Over time, for the charts: per bucket of bucket_seconds."""
    recorder = result.recorder
    width = bucket_seconds(result.duration_s)
    count = max(1, math.ceil(result.duration_s / width))
    by_step: dict[str, list[list[RequestSample]]] = defaultdict(lambda: [[] for _ in range(count)])
    errors: dict[str, list[int]] = defaultdict(lambda: [0] * count)
    for sample in recorder.requests:
        index = min(count - 1, int(sample.at // width))
        by_step[sample.step][index].append(sample)
        if sample.label:
            errors[sample.label][index] += 1
    steps: dict[str, Any] = {}
    for step in STEPS:
        if step not in by_step:
            continue
        ok = [[r.ms for r in bucket if 200 <= r.status < 300] for bucket in by_step[step]]
        # Latency in buckets wide enough for a percentile to mean something: a p99 of six
        # requests is their maximum. About LATENCY_SAMPLES_PER_BUCKET requests each, at the
        # step's average rate, and never fewer than five buckets over the run.
        merge = _latency_merge(sum(len(values) for values in ok), count)
        merged = [list(itertools.chain.from_iterable(ok[i : i + merge])) for i in range(0, count, merge)]
        steps[step] = {
            "perSecond": [round(len(values) / width, 2) for values in ok],
            "latencyBucketSeconds": width * merge,
            "latencyT": [round(i * width, 1) for i in range(0, count, merge)],
            "requestsPerLatencyBucket": [len(values) for values in merged],
            "p50Ms": [_round(percentile(values, 50)) for values in merged],
            "p95Ms": [_round(percentile(values, 95)) for values in merged],
            "p99Ms": [_round(percentile(values, 99)) for values in merged],
        }
    admissions = [0] * count
    for at in recorder.admissions:
        admissions[min(count - 1, int(at // width))] += 1
    snapshots = recorder.snapshots
    return {
        "bucketSeconds": width,
        "t": [round(i * width, 1) for i in range(count)],
        "steps": steps,
        "errors": dict(errors),
        "admissionsPerBucket": admissions,
        "samples": {
            "t": [round(s.at, 1) for s in snapshots],
            "fans": {state: [s.fans.get(state, 0) for s in snapshots] for state in recorder.snapshot_fans()},
            "lineWaiting": [s.line_waiting for s in snapshots],
            "lineActive": [s.line_active for s in snapshots],
            "admittedTotal": [s.admitted_total for s in snapshots],
            "seatsLeft": [s.seats_left for s in snapshots],
            "seatsHeld": [s.seats_held for s in snapshots],
            "seatsSold": [s.seats_sold for s in snapshots],
            "cpuPercent": _by_pid([s.cpu_percent for s in snapshots]),
            "clientCpuPercent": [_round_opt(s.client_cpu_percent) for s in snapshots],
            "loopLagMs": [_round_opt(s.loop_lag_ms) for s in snapshots],
            "loadAverage": [s.load_average for s in snapshots],
            "rssMb": _by_pid([s.rss_mb for s in snapshots]),
        },
    }


LATENCY_SAMPLES_PER_BUCKET = 50


def _latency_merge(requests: int, buckets: int) -> int:
    """How many throughput buckets make one latency bucket."""
    if requests == 0:
        return 1
    wanted = math.ceil(LATENCY_SAMPLES_PER_BUCKET * buckets / requests)
    return max(1, min(wanted, buckets // 5 or 1))


def _by_pid(values: list[dict[str, float]]) -> dict[str, list[float | None]]:
    pids = sorted({pid for value in values for pid in value})
    return {pid or "main": [_round_opt(value.get(pid)) for value in values] for pid in pids}


def _round_opt(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def check_targets(figures: dict[str, Any], result: RunResult) -> list[TargetCheck]:
    targets = result.options.targets
    requests = figures["requests"]
    checks: list[TargetCheck] = []
    if targets.p95_ms > 0:
        p95 = requests["p95Ms"]
        checks.append(
            TargetCheck(
                "p95 latency",
                f"< {targets.p95_ms:g} ms",
                f"{p95} ms",
                p95 is not None and p95 < targets.p95_ms,
            )
        )
    if targets.requests_per_minute > 0:
        rate = requests["perMinute"]
        checks.append(
            TargetCheck(
                "throughput",
                f">= {targets.requests_per_minute:g} req/min",
                f"{rate:g} req/min",
                rate >= targets.requests_per_minute,
                ""
                if rate >= targets.requests_per_minute
                else "more fans or a shorter --ramp-seconds offer more",
            )
        )
    if targets.rss_mb > 0:
        checks.append(
            _exported_peak_check(
                "memory (RSS per process, peak)", figures["target"]["rssPeakMb"], targets.rss_mb, "MB", "RSS"
            )
        )
    if targets.cpu_percent > 0:
        checks.append(
            _exported_peak_check(
                "CPU (busiest process, mean over the run, % of one core)",
                figures["target"]["cpuMeanPercent"],
                targets.cpu_percent,
                "%",
                "CPU time",
            )
        )
    if targets.error_rate >= 0:
        rate = requests["errorRate"]
        checks.append(
            TargetCheck(
                "failed requests", f"<= {targets.error_rate:.2%}", f"{rate:.2%}", rate <= targets.error_rate
            )
        )
    tickets = figures["tickets"]
    # Not options: a sale that oversells or leaves a paid order without its tickets fails, always.
    checks.append(
        TargetCheck(
            "oversold",
            "none",
            f"{tickets['soldAtEnd']} sold of {tickets['capacity']}",
            not tickets["oversold"],
        )
    )
    checks.append(
        TargetCheck(
            "paid orders with every ticket",
            "all",
            f"{tickets['paidWithoutAllTickets']} without",
            tickets["paidWithoutAllTickets"] == 0,
        )
    )
    not_paid = figures["fans"]["not_paid"]
    checks.append(
        TargetCheck(
            "approved payments paid",
            f"within {result.options.paid_timeout_seconds:g} s",
            f"{not_paid} not paid",
            not_paid == 0,
        )
    )
    return checks


def write_report(
    result: RunResult, directory: Path, *, charts: bool = True
) -> tuple[dict[str, Any], list[TargetCheck]]:
    """Writes the report directory; returns the figures and the checks."""
    directory.mkdir(parents=True, exist_ok=True)
    figures = compute_figures(result)
    checks = check_targets(figures, result)
    figures["targets"] = [asdict(check) for check in checks]
    figures["passed"] = all(check.passed for check in checks)
    images: list[tuple[str, str]] = []
    chart_note = ""
    if charts:
        try:
            from ticketera.loadtest.charts import draw_charts
        except ImportError:
            chart_note = "No charts: matplotlib is not installed (pip install 'ticketera[loadtest]')."
        else:
            images = draw_charts(figures, directory)
    figures["charts"] = [name for name, _ in images]
    (directory / "figures.json").write_text(json.dumps(figures, indent=2) + "\n")
    (directory / "report.md").write_text(_markdown(figures, checks, images, chart_note))
    return figures, checks


def _markdown(
    figures: dict[str, Any], checks: list[TargetCheck], images: list[tuple[str, str]], chart_note: str
) -> str:
    run, requests, tickets, fans = figures["run"], figures["requests"], figures["tickets"], figures["fans"]
    client = figures["client"]
    verdict = "PASSED" if figures["passed"] else "FAILED"
    lines = [
        f"# Load test of {run['url']}: {verdict}",
        "",
        f"Event {run['eventId']} ({run['eventName']}), {run['fans']} fans"
        f" arriving over {run['rampSeconds']:g} s,"
        f" at most {run['concurrency']} requests in flight, think time {run['thinkSeconds']:g} s,"
        f" abandon rate {run['abandonRate']:g}, {'paying in the simulator' if run['pay'] else 'not paying'}."
        f" Started {run['startedAt']}, ran {run['durationSeconds']:g} s"
        + (
            f" and was stopped at --max-seconds {run['maxSeconds']:g}."
            if run["stoppedBy"] == "max_seconds"
            else "."
        ),
        f"Seed {run['seed']} (--seed replays the fans' choices).",
        "",
        *[f"> {note}" for note in run["notes"]],
        "## Targets",
        "",
        "| target | limit | measured | |",
        "|---|---|---|---|",
        *[f"| {c.name} | {c.limit} | {c.value} | {_verdict(c)} |" for c in checks],
        "",
        "## Fans",
        "",
        "| outcome | fans |",
        "|---|---|",
        *[f"| {outcome} | {count} |" for outcome, count in fans.items() if count],
        "",
        "## Tickets",
        "",
        f"Capacity {tickets['capacity']}, {tickets['availableAtStart']} available at the start,"
        f" {tickets['availableAtEnd']} at the end, {tickets['soldAtEnd']} sold."
        f" {tickets['placesOrdered']} places ordered by the fans, {tickets['ordersPaid']} orders paid,"
        f" {tickets['ticketsIssued']} tickets issued and read back.",
        "",
        "## Requests",
        "",
        f"{requests['total']} requests to the target ({requests['perMinute']:g} per minute), p50"
        f" {requests['p50Ms']} ms, p95 {requests['p95Ms']} ms, p99 {requests['p99Ms']} ms;"
        f" {requests['failures']} failed ({requests['errorRate']:.2%}). Before being sent, a request waited"
        f" {requests['clientWaitMeanMs']:g} ms on average for one of the load test's own connections"
        " (--concurrency; not counted in its latency): when that is large, the load test set the pace.",
        "",
        "| step | requests | ok | ok/s | p50 ms | p95 ms | p99 ms |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| {step} | {s['requests']} | {s['ok']} | {s['per_second']:g}"
            f" | {s['p50_ms']} | {s['p95_ms']} | {s['p99_ms']} |"
            for step, s in figures["steps"].items()
        ],
        "",
        "Answers other than success, by code (409 seats_unavailable, 429 and 503 queue_full are the API"
        " working as designed under load; anything else counts as failed):",
        "",
        *([f"- {code}: {count}" for code, count in requests["byCode"].items()] or ["- none"]),
        "",
        "## The load generator",
        "",
        f"This process used {client['cpuMeanPercent']}% of a core on average; its event loop woke up to"
        f" {client['loopLagMaxMs']} ms late (p95 of the samples {client['loopLagP95Ms']} ms); this machine's"
        f" load average reached {client['loadAverageMax']} on {client['cores']} cores.",
        "",
        *(
            [
                f"> **The load generator was held back by {client['saturatedBy']}**: the latencies above"
                " include its own delay in reading the answers. A load generator on a machine of its own"
                " (several for many fans, or a larger --poll-min-seconds) measures the target instead.",
                "",
            ]
            if client["saturated"]
            else []
        ),
        "## The target",
        "",
        f"Processes seen in /metrics: {figures['target']['processes']}. Peak RSS (MB):"
        f" {_pairs(figures['target']['rssPeakMb'])}. CPU % of one core, mean:"
        f" {_pairs(figures['target']['cpuMeanPercent'])};"
        f" peak: {_pairs(figures['target']['cpuPeakPercent'])}.",
        "",
    ]
    if images or chart_note:
        lines += ["## Charts", ""]
        lines += [chart_note] if chart_note else []
        for name, title in images:
            lines += [f"### {title}", "", f"![{title}]({name})", ""]
    return "\n".join(lines) + "\n"


def _verdict(check: TargetCheck) -> str:
    return ("pass" if check.passed else "FAIL") + (f": {check.why}" if check.why else "")


def _pairs(values: dict[str, float]) -> str:
    return ", ".join(f"{pid} {value:g}" for pid, value in values.items()) or "not exported"


def _exported_peak_check(
    name: str, by_process: dict[str, float], bound: float, unit: str, what: str
) -> TargetCheck:
    """The highest of the target's processes against `bound`; passed, with a note, when the
    target's /metrics does not export `what` (nothing to check)."""
    peak = max(by_process.values(), default=None)
    return TargetCheck(
        name,
        f"< {bound:g} {unit}",
        f"{peak} {unit}" if peak is not None else "not exported",
        peak is None or peak < bound,
        "" if peak is not None else f"the target's /metrics has no {what}: not checked",
    )
