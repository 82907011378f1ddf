"""The live display while the run goes on (rich): fans by state, requests, latency, answers by code."""

from __future__ import annotations

from collections import Counter

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ticketera.loadtest.recorder import FAN_STATES, OUTCOMES, Recorder, percentile
from ticketera.loadtest.runner import RunResult

RECENT_SECONDS = 10.0


class LiveProgress:
    def __init__(self, console: Console, fans: int, max_seconds: float) -> None:
        self.fans = fans
        self.max_seconds = max_seconds
        self.live = Live(console=console, refresh_per_second=2, transient=False)
        self._seen = 0
        self._codes: Counter[str] = Counter()

    def __enter__(self) -> LiveProgress:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(None, None, None)

    def update(self, recorder: Recorder, result: RunResult | None) -> None:
        self.live.update(self.render(recorder, result))

    def render(self, recorder: Recorder, result: RunResult | None) -> Group:
        now = recorder.now()
        requests = recorder.requests
        for sample in requests[self._seen :]:
            if sample.label:
                self._codes[sample.label] += 1
        self._seen = len(requests)
        recent = [r for r in requests[-5000:] if r.at >= now - RECENT_SECONDS and 200 <= r.status < 300]
        fans = Table.grid(padding=(0, 2))
        fans.add_row(*[Text(state, style="bold") for state in FAN_STATES])
        fans.add_row(*[str(recorder.states[state]) for state in FAN_STATES])
        ended = Table.grid(padding=(0, 2))
        shown = [o for o in OUTCOMES if recorder.outcomes[o]]
        ended.add_row(*[Text(o, style="bold") for o in shown] or [Text("(none yet)")])
        ended.add_row(*[str(recorder.outcomes[o]) for o in shown] or [""])
        snapshot = recorder.snapshots[-1] if recorder.snapshots else None
        target = "target: not sampled yet"
        if snapshot is not None:
            cpu = " ".join(f"{v:.0f}%" for v in snapshot.cpu_percent.values()) or "-"
            rss = " ".join(f"{v:.0f}" for v in snapshot.rss_mb.values()) or "-"
            target = f"places left {snapshot.seats_left}   target CPU {cpu}   RSS MB {rss}"
        status = "done" if result is not None else f"{now:5.0f} s of at most {self.max_seconds:g}"
        lines: list[Text | Table] = [
            Text(f"ticketera loadtest: {self.fans} fans, {status}", style="bold cyan"),
            fans,
            ended,
            Text(
                f"requests {len(requests)}   last {RECENT_SECONDS:g} s:"
                f" {len(recent) / RECENT_SECONDS:.0f}/s ok,"
                f" p95 {percentile([r.ms for r in recent], 95):.0f} ms"
            ),
            Text(target),
            Text("answers: " + (", ".join(f"{c} x{n}" for c, n in self._codes.most_common(5)) or "all ok")),
        ]
        return Group(*lines)
