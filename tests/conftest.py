"""Test databases, apps and clients.

Every API test runs once per backend: SQLite (always) and MariaDB/MySQL (when a server answers at
TICKETERA_TEST_MYSQL_URL, default mysql://root@127.0.0.1:3306/). Each test session creates its own
databases, migrates them with Alembic to head, and empties every table after each test.
With CI=true a backend that cannot be reached fails the run instead of being skipped.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tests.fakes import FakeClock
from tests.mpsim_server import running_simulator
from ticketera.composition import SERVICES, Services
from ticketera.config import Settings, to_async_url
from ticketera.kit.clock import Clock, utc_now
from ticketera.kit.db import create_engine
from ticketera.kit.http import components_of
from ticketera.kit.migrate import upgrade
from ticketera.main import create_app
from ticketera.models import metadata

ADMIN_KEY = "test-admin-key"
SECRET_KEY = "test-secret-key"
ACCESS_TOKEN = "TEST-token"
WEBHOOK_SECRET = "test-webhook-secret"
USER_ASSERTION_SECRET = "test-user-assertion-secret"
# Notifications a receiver refuses are retried this fast here (MercadoPago: 15 minutes, growing).
FAST_RETRIES = [0.05, 0.1, 0.2, 0.4, 0.8]
STAFF_KEY = "test-staff-key"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}

MYSQL_SERVER_URL = os.environ.get("TICKETERA_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/")
SELECTED_BACKENDS = [
    name.strip() for name in os.environ.get("TICKETERA_TEST_BACKENDS", "sqlite,mariadb").split(",")
]
SERVICES_REQUIRED = os.environ.get("CI", "").lower() in ("1", "true", "yes")

_skipped_backends: dict[str, str] = {}


@dataclass(frozen=True)
class DatabaseUnderTest:
    backend: str
    url: str
    engine: AsyncEngine


def minute_boundary_delay(margin: float = 15.0) -> float:
    """How long a test that counts requests against an N/minute limit waits before it starts: until
    the next minute when this one ends within `margin` seconds, else not at all.

    The limiter's sliding window weighs the last minute's count by the part of it still inside the
    window and rounds down: just past a boundary, 5 requests of the last minute count as 4 and one
    more goes through. Inside one minute the count is exact, which is what those tests check."""
    into_the_minute = time.time() % 60
    return 60 - into_the_minute + 0.1 if into_the_minute > 60 - margin else 0.0


def make_settings(database_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "_env_file": None,
        "app_env": "test",
        "database_url": database_url,
        "redis_url": None,
        "redis_host": None,
        "admin_api_key": ADMIN_KEY,
        "staff_api_key": STAFF_KEY,
        "secret_key": SECRET_KEY,
        "mp_access_token": ACCESS_TOKEN,
        "mp_webhook_secret": WEBHOOK_SECRET,
        "user_assertion_secret": USER_ASSERTION_SECRET,
        "log_dir": tmp_path / "logs",
        "data_dir": tmp_path / "data",
        "log_level": "WARNING",
        # Tests step the admission ticker themselves, with an injected clock.
        "queue_ticker": False,
        # Tests fire many requests from one address; the limits have tests of their own.
        "app_rate_limit": "off",
        "queue_join_rate_limit": "off",
    }
    values.update(overrides)
    return Settings(**values)


def _backend_unavailable(backend: str, reason: str) -> None:
    if SERVICES_REQUIRED:
        pytest.fail(f"{backend} is required (CI=true) but unavailable: {reason}", pytrace=False)
    _skipped_backends[backend] = reason
    pytest.skip(f"{backend} unavailable: {reason}")


async def create_mysql_database(prefix: str = "ticketera_test") -> str:
    """A fresh, empty database on the test MySQL server; returns its async URL."""
    server_url = to_async_url(MYSQL_SERVER_URL)
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(server_url, pool_size=1)
    try:
        async with admin.begin() as connection:
            await connection.execute(
                text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
            )
    finally:
        await admin.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


async def drop_mysql_database(url: str) -> None:
    name = make_url(url).database
    admin = create_async_engine(make_url(url).set(database=None).render_as_string(hide_password=False))
    try:
        async with admin.begin() as connection:
            await connection.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
    finally:
        await admin.dispose()


@asynccontextmanager
async def fresh_database(backend: str, folder: Path, prefix: str = "ticketera_test") -> AsyncIterator[str]:
    """A new, empty database's async URL: a SQLite file in `folder`, or a database of its own on
    the MariaDB test server, dropped afterwards. A backend not selected is skipped; one that
    cannot be reached is skipped, or fails the run with CI=true."""
    if backend not in SELECTED_BACKENDS:
        pytest.skip(f"{backend} not selected by TICKETERA_TEST_BACKENDS")
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{(folder / f'{prefix}.db').resolve()}"
        return
    reason = await mysql_reachable()
    if reason is not None:
        _backend_unavailable("mariadb", reason)
    url = await create_mysql_database(prefix)
    try:
        yield url
    finally:
        await drop_mysql_database(url)


async def mysql_reachable() -> str | None:
    """None when the test MySQL server answers, else why not."""
    engine = create_async_engine(to_async_url(MYSQL_SERVER_URL), connect_args={"connect_timeout": 3})
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return None
    except Exception as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        return f"cannot connect to {MYSQL_SERVER_URL}: {first_line[:200]}"
    finally:
        await engine.dispose()


@pytest.fixture(scope="session", params=["sqlite", "mariadb"])
async def test_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[DatabaseUnderTest]:
    backend: str = request.param
    async with fresh_database(backend, tmp_path_factory.mktemp(backend)) as url:
        engine = create_engine(url, pool_size=5)
        await upgrade(engine)
        try:
            yield DatabaseUnderTest(backend, url, engine)
        finally:
            await engine.dispose()


async def empty_all_tables(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            await connection.execute(table.delete())


@pytest.fixture
async def db(test_database: DatabaseUnderTest) -> AsyncIterator[DatabaseUnderTest]:
    """The session's database for this backend, emptied after the test."""
    try:
        yield test_database
    finally:
        await empty_all_tables(test_database.engine)


@pytest.fixture(scope="session")
async def simulator_url() -> AsyncIterator[str]:
    """The MercadoPago simulator, serving over real HTTP for the whole session."""
    async with running_simulator(ACCESS_TOKEN, WEBHOOK_SECRET, retry_schedule=FAST_RETRIES) as base_url:
        yield base_url


@pytest.fixture
def settings(db: DatabaseUnderTest, tmp_path: Path, simulator_url: str) -> Settings:
    return make_settings(db.url, tmp_path, mp_base_url=simulator_url)


@asynccontextmanager
async def serving(settings: Settings, *, clock: Clock = utc_now) -> AsyncIterator[httpx.AsyncClient]:
    """An app built from these settings, started (lifespan), and a client talking to it in-process."""
    app = create_app(settings, clock=clock)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://ticketera.test") as http,
    ):
        http.app = app  # type: ignore[attr-defined]
        yield http


def services_of(app: Any) -> Services:
    """What a started app built (its database, waiting room, payment processor...), for tests that
    look behind its HTTP API."""
    return components_of(app).get(SERVICES)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(settings) as http:
        yield http


@pytest.fixture
def clock() -> FakeClock:
    """The app's clock for tests that move time (set apps up with `serving(..., clock=clock)`)."""
    return FakeClock()


@pytest.fixture
async def clocked_client(settings: Settings, clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    """Like `client`, with time on `clock`."""
    async with serving(settings, clock=clock) as http:
        yield http


@pytest.fixture(autouse=True)
def _no_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A developer's .env and environment must not leak into tests that build Settings() themselves."""
    monkeypatch.chdir(tmp_path)
    for name in ("APP_ENV", "NODE_ENV", "DATABASE_URL", "REDIS_URL", "REDIS_HOST", "DB_HOST"):
        monkeypatch.delenv(name, raising=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """No test may leave logging configured as production does (each logger cached on its first
    line): the loggers it reached would stay bound to that configuration for the rest of the
    session, and a later test capturing their lines would capture nothing, depending on the order.
    Checked as the test's body ends; the test that turned caching on fails, and caching is turned
    off again for the others."""
    cached_before = structlog.get_config()["cache_logger_on_first_use"]
    outcome = yield
    if structlog.get_config()["cache_logger_on_first_use"] and not cached_before:
        structlog.configure(cache_logger_on_first_use=False)
        raise AssertionError(
            f"{item.nodeid} left structlog caching loggers: configure logging with cache_loggers=False"
        )
    return outcome


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _skipped_backends:
        terminalreporter.section("backends skipped")
        for backend, reason in _skipped_backends.items():
            terminalreporter.write_line(f"{backend}: {reason}")
        terminalreporter.write_line("Set CI=true to make a missing backend fail the run.")
