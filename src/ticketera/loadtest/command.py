"""`ticketera loadtest` after its options are parsed (cli.py): run, display, report, verdict."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from rich.console import Console

from ticketera.loadtest.progress import LiveProgress
from ticketera.loadtest.report import write_report
from ticketera.loadtest.runner import LoadtestError, LoadtestOptions, run_in_fast_loop
from ticketera.loadtest.safety import TargetRefused

EXIT_PASSED = 0
EXIT_TARGETS_FAILED = 1
EXIT_REFUSED = 2


def parse_quantity(text: str) -> tuple[int, int]:
    """`"2"` or `"1-4"`: the places each fan asks for, at random within the range."""
    low, _, high = text.partition("-")
    bounds = (int(low), int(high or low))
    if bounds[0] < 1 or bounds[1] < bounds[0]:
        raise ValueError(f"--quantity {text!r}: give N or MIN-MAX, at least 1")
    return bounds


def default_report_dir() -> Path:
    return Path("loadtest-reports") / datetime.now().strftime("%Y%m%d-%H%M%S")


def run_command(options: LoadtestOptions, console: Console, *, live: bool = True) -> int:
    """The exit code: 0 every target met, 1 some failed (named), 2 the run could not start."""
    directory = options.report_dir or default_report_dir()
    progress = LiveProgress(console, options.fans, options.max_seconds) if live else None
    try:
        if progress is not None:
            with progress:
                result = run_in_fast_loop(options, progress.update)
        else:
            result = run_in_fast_loop(options)
    except (TargetRefused, LoadtestError) as exc:
        console.print(f"[red]Refused:[/red] {exc}" if isinstance(exc, TargetRefused) else f"[red]{exc}[/red]")
        return EXIT_REFUSED
    figures, checks = write_report(result, directory)
    if result.stopped_by == "max_seconds":
        console.print(
            f"[yellow]Stopped at --max-seconds {options.max_seconds:g}:"
            " unfinished fans are counted as such.[/yellow]"
        )
    if figures["client"]["saturated"]:
        console.print(
            f"[yellow]The load generator was held back by {figures['client']['saturatedBy']}: the"
            " latencies include its own delay; see report.md.[/yellow]"
        )
    for check in checks:
        mark = "[green]pass[/green]" if check.passed else "[red]FAIL[/red]"
        console.print(f"  {mark}  {check.name}: {check.value} (target {check.limit})")
    console.print(f"Report: {directory / 'report.md'}  ({len(figures['charts'])} charts, figures.json)")
    failed = [check.name for check in checks if not check.passed]
    if failed:
        console.print(f"[red]Targets not met: {', '.join(failed)}[/red]")
        return EXIT_TARGETS_FAILED
    return EXIT_PASSED
