"""Benchmark: how soon a fan sees the event page, idle and while an on-sale runs.

A fan on on-sale day opens `/events/{id}` while thousands of others buy. What they feel is the time
to first paint: the browser's `first-contentful-paint` (Paint Timing API) in Debian's Chromium,
driven by Playwright, a fresh browser context per load (no cache: the first visit, the worst case),
and the navigation's response start (time to first byte) beside it, so a slow paint can be told from
a slow server. Each sample is one load of the page; the figures are the median and the worst.

`bench-onsale --first-paint` measures it during its general-admission run (the loaded figure) and
before it (the idle baseline, same service, same run). On its own it measures a running service:

    .venv/bin/python benchmarks/first_paint.py --url http://127.0.0.1:3000 --event 1 --samples 10

It only reports; nothing here asserts a time.
"""

from __future__ import annotations

import os
import sys

# As in the sibling scripts: this folder must not shadow the standard library's `queue`.
if os.path.realpath(sys.path[0] or os.curdir) == os.path.dirname(os.path.realpath(__file__)):
    sys.path.pop(0)
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

import argparse
import asyncio
import shutil
import statistics
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

CHROMIUM = "/usr/bin/chromium"
# A phone of the 360-px kind the pages are designed for, on-sale day's most common visitor.
VIEWPORT_WIDTH, VIEWPORT_HEIGHT = 360, 740
PAINT_SCRIPT = """() => new Promise((resolve) => {
  const found = () => performance.getEntriesByName('first-contentful-paint')[0];
  const done = () => {
    const paint = found();
    const nav = performance.getEntriesByType('navigation')[0];
    resolve({paint: paint ? paint.startTime : null, ttfb: nav ? nav.responseStart : null});
  };
  if (found()) { done(); return; }
  new PerformanceObserver(() => { if (found()) done(); }).observe({type: 'paint', buffered: true});
  setTimeout(done, 15000);
})"""


@dataclass
class FirstPaint:
    samples: int
    paint_ms: list[float]
    ttfb_ms: list[float]
    failed: int

    @property
    def median_ms(self) -> float | None:
        return statistics.median(self.paint_ms) if self.paint_ms else None

    @property
    def worst_ms(self) -> float | None:
        return max(self.paint_ms) if self.paint_ms else None

    @property
    def median_ttfb_ms(self) -> float | None:
        return statistics.median(self.ttfb_ms) if self.ttfb_ms else None

    def line(self, label: str) -> str:
        if not self.paint_ms:
            return f"{label}: no page painted ({self.failed} of {self.samples} loads failed)"
        return (
            f"{label}: first paint median {self.median_ms:.0f} ms, worst {self.worst_ms:.0f} ms"
            f" (time to first byte median {self.median_ttfb_ms:.0f} ms; {len(self.paint_ms)} loads,"
            f" {self.failed} failed)"
        )

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "samples": self.samples,
            "medianMs": self.median_ms,
            "worstMs": self.worst_ms,
            "medianTtfbMs": self.median_ttfb_ms,
            "failed": self.failed,
        }


def available() -> str | None:
    """Why first paint cannot be measured here, or None when it can."""
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed (make install)"
    return None


async def _one_visit(browser: Any, url: str, result: FirstPaint) -> None:
    """A first visit of `url` in a new browser context (nothing cached), its timings added to `result`."""
    context = await browser.new_context(
        viewport={"width": VIEWPORT_WIDTH, "height": VIEWPORT_HEIGHT}, locale="es-AR"
    )
    result.samples += 1
    try:
        page = await context.new_page()
        await page.goto(url, wait_until="commit", timeout=30_000)
        timing = await page.evaluate(PAINT_SCRIPT)
        if timing["paint"] is None:
            result.failed += 1
        else:
            result.paint_ms.append(float(timing["paint"]))
            if timing["ttfb"] is not None:
                result.ttfb_ms.append(float(timing["ttfb"]))
    except Exception:  # a load that failed is counted, not raised: it is a figure
        result.failed += 1
    finally:
        await context.close()


@asynccontextmanager
async def _chromium() -> AsyncIterator[Any]:
    """One Chromium for all the visits of a measurement: starting Playwright's driver and a browser
    for each visit cost most of a core, and so slowed the very sale being measured."""
    from playwright.async_api import async_playwright

    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            await browser.close()


async def measure(url: str, samples: int, *, pause_seconds: float = 0.2) -> FirstPaint:
    """`samples` first visits of `url`, one after another, each in a new browser context."""
    result = FirstPaint(0, [], [], 0)
    async with _chromium() as browser:
        for _ in range(samples):
            await _one_visit(browser, url, result)
            await asyncio.sleep(pause_seconds)
    return result


async def measure_while(url: str, load: asyncio.Task[object], *, pause_seconds: float = 5.0) -> FirstPaint:
    """First visits of `url` for as long as `load` runs (at least one), one every 5 s: a fan opening
    the page now and then, not a browser hammering it beside the sale (each first visit starts a
    renderer of Chromium's, about a third of a second of CPU)."""
    result = FirstPaint(0, [], [], 0)
    async with _chromium() as browser:
        while True:
            await _one_visit(browser, url, result)
            if load.done():
                return result
            await asyncio.wait({load}, timeout=pause_seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="http://127.0.0.1:3000", help="the service's base URL")
    parser.add_argument("--event", type=int, default=1, help="the event whose page is loaded")
    parser.add_argument("--samples", type=int, default=10, help="page loads (default 10)")
    args = parser.parse_args(argv)
    missing = available()
    if missing is not None:
        print(f"first paint cannot be measured: {missing}", file=sys.stderr)
        return 2
    result = asyncio.run(measure(f"{args.url.rstrip('/')}/events/{args.event}", args.samples))
    print(result.line(f"/events/{args.event}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
