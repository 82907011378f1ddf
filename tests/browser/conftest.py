"""The pages in a real browser: Debian's chromium driven by Playwright, against the real app.

One app per test module (uvicorn on a free 127.0.0.1 port, a fresh SQLite file migrated to head,
the MercadoPago simulator beside it, the waiting room's ticker running), served from a thread of
its own so the synchronous Playwright API drives the browser from the test's thread. Each test gets
a fresh browser context (no cookies, no localStorage) whose `page` fails the test on any console
error or uncaught exception, so a script error or a Content-Security-Policy violation is a failure.

`check_page(page, "name")` runs axe-core on what is on screen (no serious or critical violation)
and writes screenshots at phone and desktop sizes to artifacts/screenshots/ (CI keeps the folder).

Without chromium (or axe-core: `npm ci` in tests/browser) the module skips on a laptop, and fails
under CI=true, as the MariaDB and nginx tests do.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    Playwright,
    Response,
    ViewportSize,
    expect,
    sync_playwright,
)

from tests.conftest import ADMIN, SERVICES_REQUIRED, make_settings
from tests.mpsim_server import listening_socket, running_simulator, serving_asgi, socket_url
from ticketera.kit.db import create_engine
from ticketera.kit.migrate import upgrade
from ticketera.main import create_app

CHROMIUM = Path(os.environ.get("TICKETERA_CHROMIUM", "/usr/bin/chromium"))
AXE = Path(__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
PHONE: ViewportSize = {"width": 360, "height": 740}
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
# Generous: two cores shared with other work; every wait is on a condition, never a fixed time.
TIMEOUT_MS = 30_000
BLOCKING_IMPACTS = ("serious", "critical")
expect.set_options(timeout=TIMEOUT_MS)
# What a page loads to work: one of these missing is a broken page, whatever the test looks at.
SUBRESOURCES = ("script", "stylesheet", "image", "font")


def _missing(what: str) -> None:
    if SERVICES_REQUIRED:
        pytest.fail(f"{what} (required with CI=true)")
    pytest.skip(what)


@dataclass
class LiveApp:
    """The running app: its address, and an admin client to set the scene through the API."""

    base_url: str
    simulator_url: str
    admin: httpx.Client = field(repr=False)
    # The app's SQLite file, for the rare scene the API cannot set (time gone by).
    database: Path = field(repr=False)

    def create_event(self, **body: Any) -> dict[str, Any]:
        values: dict[str, Any] = {
            "name": f"Recital {uuid.uuid4().hex[:6]}",
            "venue": "Estadio de prueba, Buenos Aires",
            "startsAt": "2030-12-14T00:00:00Z",
            "queue": {"enabled": True, "admitPerMinute": 600, "maxActiveShoppers": 100, "accessMinutes": 10},
            "sections": [
                {"name": "Platea", "price": "15000.00", "rows": [{"label": r, "seats": 12} for r in "ABC"]},
                {"name": "Campo", "price": "9000.00", "capacity": 200},
            ],
        }
        values.update(body)
        response = self.admin.post("/api/events", json=values)
        assert response.status_code == 201, response.text
        event: dict[str, Any] = response.json()
        return event

    def set_queue(self, event_id: int, **settings: Any) -> dict[str, Any]:
        response = self.admin.patch(f"/api/queue/{event_id}", json=settings)
        assert response.status_code == 200, response.text
        stats: dict[str, Any] = response.json()
        return stats

    def queue_stats(self, event_id: int) -> dict[str, Any]:
        stats: dict[str, Any] = self.admin.get(f"/api/queue/{event_id}/stats").json()
        return stats


class _AppThread(threading.Thread):
    """The simulator and the app, served by one event loop in a thread of their own."""

    def __init__(self, folder: Path, settings_overrides: dict[str, Any]) -> None:
        super().__init__(name="browser-test-app", daemon=True)
        self.folder = folder
        self.overrides = settings_overrides
        self.ready = threading.Event()
        self.failure: BaseException | None = None
        self.base_url = ""
        self.simulator_url = ""
        self.database = folder / "pages.db"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to the test thread, which is waiting on `ready`
            self.failure = exc
            self.ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        url = f"sqlite+aiosqlite:///{self.database.resolve()}"
        engine = create_engine(url, pool_size=2)
        await upgrade(engine)
        await engine.dispose()
        sock = listening_socket()
        self.base_url = socket_url(sock)
        async with running_simulator() as simulator_url:
            self.simulator_url = simulator_url
            values: dict[str, Any] = {
                "mp_base_url": simulator_url,
                "public_base_url": self.base_url,
                # The line moves by itself, as in production, a step every fifth of a second.
                "queue_ticker": True,
                "queue_tick_seconds": 0.2,
                "log_level": "WARNING",
            }
            values.update(self.overrides)
            settings = make_settings(url, self.folder, **values)
            async with serving_asgi(create_app(settings), sock):
                self.ready.set()
                await self._stopping.wait()

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self.join(timeout=30)


def live_app_fixture(**settings_overrides: Any) -> Any:
    """A module-scoped fixture serving the app with these settings (e.g. a short hold time)."""

    @pytest.fixture(scope="module")
    def live_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
        thread = _AppThread(tmp_path_factory.mktemp("pages"), settings_overrides)
        thread.start()
        if not thread.ready.wait(60):
            raise AssertionError("the app did not start within 60 s")
        if thread.failure is not None:
            raise thread.failure
        with httpx.Client(base_url=thread.base_url, headers=ADMIN, timeout=30) as admin:
            try:
                yield LiveApp(thread.base_url, thread.simulator_url, admin, thread.database)
            finally:
                thread.stop()

    return live_app


live_app = live_app_fixture()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        _missing(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    if not AXE.exists():
        _missing(f"no axe-core at {AXE} (cd tests/browser && npm ci)")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
    try:
        yield chromium
    finally:
        chromium.close()


@dataclass
class Fan:
    """One person's browser: its own cookies and storage, tabs opened with `tab()`."""

    browser: Browser
    base_url: str
    language: str = "es-AR"
    errors: list[str] = field(default_factory=list)
    # More of Playwright's context options: a phone's viewport, has_touch=True...
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.context = self.browser.new_context(
            **{"base_url": self.base_url, "locale": self.language, "viewport": DESKTOP, **self.options}
        )
        self.context.set_default_timeout(TIMEOUT_MS)

    def tab(self) -> Page:
        tab = self.context.new_page()
        tab.on("console", self._console)
        tab.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        tab.on("response", self._response)
        return tab

    def _console(self, message: ConsoleMessage) -> None:
        # An answer's status is judged in `_response` (a page may be a deliberate 404; the
        # simulator has no favicon): the rest, script errors and CSP refusals, fail the test.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(f"console: {message.text} at {message.location}")

    def _response(self, response: Response) -> None:
        own = response.url.startswith(self.base_url)
        if own and response.status >= 400 and response.request.resource_type in SUBRESOURCES:
            self.errors.append(f"{response.status} for {response.request.resource_type} {response.url}")

    def close(self) -> None:
        self.context.close()
        assert not self.errors, "the pages logged errors:\n" + "\n".join(self.errors)


@pytest.fixture
def fans(browser: Browser, live_app: LiveApp) -> Iterator[Any]:
    """`fans()` opens a new person's browser (`fans(has_touch=True, viewport=PHONE)`: a phone's); each
    is closed (and checked for errors) after the test."""
    opened: list[Fan] = []

    def open_fan(language: str = "es-AR", **options: Any) -> Fan:
        fan = Fan(browser, live_app.base_url, language, options=options)
        opened.append(fan)
        return fan

    yield open_fan
    for fan in opened:
        fan.close()


@pytest.fixture
def page(fans: Any) -> Page:
    """A tab of one fan's browser, in Spanish."""
    tab: Page = fans().tab()
    return tab


def check_page(page: Page, name: str) -> None:
    """axe-core finds no serious or critical violation on the page as it is now; then screenshots
    at phone and desktop widths, `artifacts/screenshots/<name>-<width>x<height>.png`."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    original = page.viewport_size or DESKTOP
    for size in (PHONE, DESKTOP):
        page.set_viewport_size(size)
        # Evaluated through the DevTools protocol, which the page's Content-Security-Policy does not govern.
        if not page.evaluate("() => typeof window.axe === 'object'"):
            page.evaluate(AXE.read_text(encoding="utf-8"))
        results = page.evaluate(AXE_RUN)
        blocking = [violation for violation in results if violation["impact"] in BLOCKING_IMPACTS]
        assert not blocking, f"accessibility violations on {name} at {size}: {blocking}"
        page.screenshot(path=SCREENSHOTS / f"{name}-{size['width']}x{size['height']}.png", full_page=True)
    page.set_viewport_size(original)


AXE_RUN = """async () => (await axe.run(document, {resultTypes: ['violations']})).violations.map(
    v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(' '))}))"""
