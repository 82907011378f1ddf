"""The report's PNG charts, drawn from figures.json's "series" (so the figures and the pictures
cannot disagree). matplotlib is an optional dependency (`ticketera[loadtest]`): report.py writes
the rest of the report without it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server, and no GUI toolkit to load

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

# The steps with a latency panel of their own; the rest are in the throughput chart only.
LATENCY_STEPS = ("join", "status", "event", "seats", "hold", "order", "order_status", "tickets")
DPI = 110
LINE_STEPS = ("join", "status", "stream", "leave")


def draw_charts(figures: dict[str, Any], directory: Path) -> list[tuple[str, str]]:
    """Writes the PNGs into `directory`; returns (file name, title) of each."""
    series = figures["series"]
    drawn: list[tuple[str, str]] = []
    for name, title, draw in (
        ("throughput.png", "Successful requests per second, by step", _throughput),
        ("latency.png", "Latency per step over time: p50, p95, p99", _latency),
        ("line.png", "The line: fans waiting, and admissions", _line),
        ("seats.png", "Places: available, held, sold", _seats),
        ("errors.png", "Answers other than success, by code", _errors),
        ("target.png", "The target's CPU and memory (from its /metrics)", _target),
    ):
        figure = draw(series, figures)
        if figure is None:
            continue
        figure.suptitle(title, fontsize=12)
        figure.savefig(directory / name, dpi=DPI, bbox_inches="tight")
        plt.close(figure)
        drawn.append((name, title))
    return drawn


def _axes(rows: int = 1, cols: int = 1, height: float = 4.0) -> tuple[Figure, list[Axes]]:
    figure, axes = plt.subplots(rows, cols, figsize=(11, height * rows), squeeze=False)
    flat = [axis for row in axes for axis in row]
    for axis in flat:
        axis.grid(True, alpha=0.3)
        axis.set_xlabel("seconds since the first fan")
    return figure, flat


def _throughput(series: dict[str, Any], _figures: dict[str, Any]) -> Figure | None:
    if not series["steps"]:
        return None
    # The line's polls outnumber the purchase's steps tenfold: apart, so neither flattens the other.
    figure, axes = _axes(2, 1, height=3.2)
    colours = iter(f"C{index % 10}" for index in range(len(series["steps"])))  # the default cycle, one each
    for axis, steps, title in ((axes[0], LINE_STEPS, "the line"), (axes[1], None, "the purchase")):
        for step, values in series["steps"].items():
            if (steps is None) == (step in LINE_STEPS):
                continue
            axis.plot(series["t"], values["perSecond"], label=step, linewidth=1.5, color=next(colours))
        axis.set_title(title, fontsize=10)
        axis.set_ylabel(f"per second ({series['bucketSeconds']:g} s buckets)")
        axis.set_ylim(bottom=0)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(loc="upper right", ncol=4, fontsize=8)
    figure.tight_layout(rect=(0, 0, 1, 0.95))
    return figure


def _latency(series: dict[str, Any], figures: dict[str, Any]) -> Figure | None:
    steps = [step for step in LATENCY_STEPS if step in series["steps"]]
    if not steps:
        return None
    cols = 2
    rows = (len(steps) + cols - 1) // cols
    figure, axes = _axes(rows, cols, height=3.0)
    p95_target = next((t for t in figures.get("targets", []) if t["name"] == "p95 latency"), None)
    for axis, step in zip(axes, steps, strict=False):
        values = series["steps"][step]
        # Steps over each bucket (which may span several seconds), the last one drawn to its end.
        edges = [*values["latencyT"], values["latencyT"][-1] + values["latencyBucketSeconds"]]
        for key, style in (("p50Ms", "-"), ("p95Ms", "--"), ("p99Ms", ":")):
            heights = _gaps(values[key])
            axis.step(edges, [*heights, heights[-1]], style, where="post", label=key[:3], linewidth=1.5)
        if p95_target is not None:
            limit = float(p95_target["limit"].split()[1])
            axis.axhline(limit, color="red", linewidth=0.8, alpha=0.6, label=f"target {limit:g} ms")
        axis.set_title(f"{step} (buckets of {values['latencyBucketSeconds']:g} s)", fontsize=10)
        axis.set_ylabel("ms (log)")
        axis.set_yscale("log")
        # One time axis for every panel, so a slow moment lines up across the steps.
        axis.set_xlim(0, max(1.0, series["t"][-1] + series["bucketSeconds"]))
    for axis in axes[len(steps) :]:
        axis.set_visible(False)
    # One legend for all the panels, above them, where it hides no line.
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="upper center", ncol=4, fontsize=9, bbox_to_anchor=(0.5, 0.965))
    figure.tight_layout(rect=(0, 0, 1, 0.94))
    return figure


def _line(series: dict[str, Any], _figures: dict[str, Any]) -> Figure:
    samples = series["samples"]
    figure, (axis,) = _axes()
    axis.plot(samples["t"], samples["fans"].get("waiting", []), label="fans waiting (as they see it)")
    if any(v is not None for v in samples["lineWaiting"]):
        axis.plot(samples["t"], _gaps(samples["lineWaiting"]), "--", label="waiting (the target's /metrics)")
    if any(v is not None for v in samples["lineActive"]):
        axis.plot(
            samples["t"],
            _gaps(samples["lineActive"]),
            ":",
            label="admitted, turn not over (the target's /metrics)",
        )
    axis.plot(samples["t"], samples["fans"].get("shopping", []), label="fans shopping")
    axis.plot(samples["t"], samples["fans"].get("paying", []), label="fans paying")
    axis.set_ylabel("fans")
    bars = axis.twinx()
    width = series["bucketSeconds"]
    bars.bar(
        series["t"], series["admissionsPerBucket"], width=width * 0.8, align="edge", alpha=0.25, color="green"
    )
    bars.set_ylabel(f"admitted per {width:g} s (bars)")
    axis.legend(loc="upper right", fontsize=8)
    return figure


def _seats(series: dict[str, Any], figures: dict[str, Any]) -> Figure:
    samples = series["samples"]
    figure, (axis,) = _axes(height=3.5)
    axis.plot(samples["t"], _gaps(samples["seatsLeft"]), label="available")
    axis.plot(samples["t"], _gaps(samples["seatsHeld"]), "--", label="held (in someone's cart)")
    axis.plot(samples["t"], _gaps(samples["seatsSold"]), ":", label="sold")
    # Above the lines: the headroom of the y axis is kept for it.
    axis.legend(loc="upper center", ncol=3, fontsize=8)
    axis.set_ylim(bottom=0, top=max(1, figures["tickets"]["capacity"]) * 1.2)
    axis.set_ylabel("places")
    return figure


def _errors(series: dict[str, Any], _figures: dict[str, Any]) -> Figure:
    figure, (axis,) = _axes(height=3.5)
    width = series["bucketSeconds"]
    bottom = [0] * len(series["t"])
    for code, counts in sorted(series["errors"].items()):
        axis.bar(series["t"], counts, width=width * 0.8, align="edge", bottom=bottom, label=code)
        bottom = [a + b for a, b in zip(bottom, counts, strict=True)]
    if not series["errors"]:
        axis.text(0.5, 0.5, "none", transform=axis.transAxes, ha="center", va="center", fontsize=14)
    else:
        axis.legend(loc="upper right", fontsize=8)
    axis.set_ylabel(f"answers per {width:g} s")
    return figure


def _target(series: dict[str, Any], figures: dict[str, Any]) -> Figure:
    samples = series["samples"]
    figure, (cpu, rss) = _axes(2, 1, height=3.2)
    for pid, values in samples["cpuPercent"].items():
        cpu.plot(samples["t"], _gaps(values), label=f"pid {pid}")
    for pid, values in samples["rssMb"].items():
        rss.plot(samples["t"], _gaps(values), label=f"pid {pid}")
    # The load generator's own CPU beside the target's: when it nears 100%, it set the pace.
    cpu.plot(
        samples["t"], _gaps(samples["clientCpuPercent"]), color="grey", linestyle="--", label="load test"
    )
    for check in figures.get("targets", []):
        if check["name"].startswith("CPU"):
            cpu.axhline(float(check["limit"].split()[1]), color="red", linewidth=0.8, label="target")
        if check["name"].startswith("memory"):
            rss.axhline(float(check["limit"].split()[1]), color="red", linewidth=0.8, label="target")
    cpu.set_ylabel("CPU, % of one core")
    rss.set_ylabel("RSS, MB")
    cpu.set_ylim(bottom=0)
    rss.set_ylim(bottom=0)
    if not samples["cpuPercent"] and not samples["rssMb"]:
        cpu.text(0.5, 0.5, "the target's /metrics exports neither", transform=cpu.transAxes, ha="center")
    else:
        cpu.legend(loc="upper right", fontsize=7, ncol=3)
        rss.legend(loc="upper right", fontsize=7, ncol=3)
    figure.tight_layout(rect=(0, 0, 1, 0.95))
    return figure


def _gaps(values: list[float | None]) -> list[float]:
    """None as NaN: matplotlib leaves a gap there instead of failing."""
    return [float("nan") if value is None else value for value in values]
