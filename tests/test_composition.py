"""The composition root: what the web app and the worker build, and the worker process at work."""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import DatabaseUnderTest, make_settings, serving
from tests.factories import open_sale, take_hold
from tests.fakes import FakeClock
from tests.shop import eventually, ga_section_id
from tests.test_cli import SECRETS, TICKETERA, cli_env
from ticketera.composition import SERVICES, WORKER_POOL_SIZE, Role, build_services
from ticketera.holds.models import Hold, HoldStatus
from ticketera.infra.ratelimit import RATE_LIMITER
from ticketera.infra.redis import REDIS
from ticketera.kit.clock import utc_now
from ticketera.kit.components import Component, Components
from ticketera.kit.db import Database, create_engine
from ticketera.kit.http import CLOCK, DATABASE, SETTINGS, SIGNER
from ticketera.orders.service import CHECKOUT
from ticketera.payments.tasks import NOTIFICATION_PUMP, PAYMENTS
from ticketera.queue.service import WAITING_ROOM
from ticketera.tickets.service import TICKET_KEYS

HANDLER_KEYS: list[Component[Any]] = [
    SETTINGS,
    CLOCK,
    DATABASE,
    REDIS,
    SIGNER,
    WAITING_ROOM,
    RATE_LIMITER,
    PAYMENTS,
    CHECKOUT,
    NOTIFICATION_PUMP,
    TICKET_KEYS,
    SERVICES,
]


async def test_the_web_app_hands_every_key_a_handler_names(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'web.db'}", tmp_path)
    services = build_services(settings, utc_now, role=Role.WEB)
    try:
        components = Components()
        services.register(components)
        assert all(key in components for key in HANDLER_KEYS)
        # One object, two names: orders place checkouts through the payment processor.
        assert components.get(CHECKOUT) is components.get(PAYMENTS)
        assert components.get(SIGNER) is services.waiting_room.signer
    finally:
        await services.close()


@pytest.mark.parametrize(("role", "frees_places"), [(Role.WEB, True), (Role.WORKER, False)])
async def test_without_redis_only_the_web_process_frees_places_in_line(
    tmp_path: Path, role: Role, frees_places: bool
) -> None:
    """The in-process waiting room lives in the web process: a worker's own has nobody in it."""
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'roles.db'}", tmp_path)
    services = build_services(settings, utc_now, role=role)
    try:
        wired = services.payments.on_paid == services.waiting_room.finish_shopping
        assert wired is frees_places
        pool = services.database.pool_status()["connectionLimit"]
        assert pool == (settings.db_pool_size if role is Role.WEB else WORKER_POOL_SIZE)
    finally:
        await services.close()


async def test_ticketera_worker_records_an_overdue_hold_as_expired(
    db: DatabaseUnderTest, tmp_path: Path, simulator_url: str
) -> None:
    """`ticketera worker` as its own process, on the same database as the web app."""
    # A hold taken an hour ago (the app's clock says so), overdue by now.
    an_hour_ago = FakeClock(datetime.now(UTC) - timedelta(hours=1))
    settings = make_settings(db.url, tmp_path, mp_base_url=simulator_url)
    async with serving(settings, clock=an_hour_ago) as client:
        event = await open_sale(client, an_hour_ago)
        hold_id = await take_hold(client, event, "ana", {"sectionId": ga_section_id(event), "quantity": 2})

    env = cli_env(tmp_path, **SECRETS, DATABASE_URL=db.url, MP_BASE_URL=simulator_url)
    worker = await asyncio.create_subprocess_exec(
        TICKETERA,
        "worker",
        "--interval",
        "0.2",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    database = Database(create_engine(db.url))
    try:

        async def hold_status() -> HoldStatus:
            async with database.read_session() as session:
                found = await session.scalar(select(Hold.status).where(Hold.public_id == hold_id))
                assert found is not None
                return found

        async def expired() -> bool:
            return await hold_status() == HoldStatus.EXPIRED

        await eventually(expired, within=60)
    finally:
        await database.dispose()
        worker.send_signal(signal.SIGTERM)  # as `docker stop` does
        out, _ = await asyncio.wait_for(worker.communicate(), timeout=30)
    output = out.decode()
    # Asked to stop, it ends the steps under way, then exits cleanly: no step cut off in the
    # middle of returning its connection to the pool.
    assert worker.returncode == 0, output
    assert "worker.stopping" in output
    assert "worker.stopped" in output
    assert "Traceback" not in output
