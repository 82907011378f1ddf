"""A shop on real HTTP beside the MercadoPago simulator, both in the test's event loop (fixtures).

The simulator delivers signed webhooks to the shop's real port; tests steer the simulator through
its control API (`/_sim/...`) and run the worker's payment sweeps by hand.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.conftest import ACCESS_TOKEN, ADMIN_KEY, DatabaseUnderTest, make_settings, services_of
from tests.factories import open_sale, place_order, take_hold
from tests.fakes import FakeClock
from tests.mpsim_server import listening_socket, serving_asgi, socket_url
from ticketera.config import Settings
from ticketera.kit.audit import AuditEntry
from ticketera.main import create_app
from ticketera.payments.models import Payment
from ticketera.payments.tasks import PaymentProcessor


@dataclass
class Simulator:
    """The control API of the MercadoPago simulator."""

    http: httpx.AsyncClient

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self.http.request(method, path, **kwargs)
        except (httpx.ReadError, httpx.RemoteProtocolError):
            # A kept-alive connection the simulator closed as the call went out (its faults close
            # connections on purpose): the control calls are idempotent, so once more on a new one.
            response = await self.http.request(method, path, **kwargs)
        assert response.status_code < 300, response.text
        return response.json() if response.content else None

    async def configure(self, **switches: Any) -> None:
        await self.call("PATCH", "/_sim/config", json=switches)

    async def pay(self, preference_id: str, outcome: str = "APRO", **extra: Any) -> dict[str, Any]:
        payment: dict[str, Any] = await self.call(
            "POST", "/_sim/payments", json={"preferenceId": preference_id, "outcome": outcome, **extra}
        )
        return payment

    async def move(self, payment_id: int | str, status: str, **extra: Any) -> dict[str, Any]:
        moved: dict[str, Any] = await self.call(
            "POST", f"/_sim/payments/{payment_id}/status", json={"status": status, **extra}
        )
        return moved

    async def payment(self, payment_id: int | str) -> dict[str, Any]:
        found: dict[str, Any] = await self.call(
            "GET", f"/v1/payments/{payment_id}", headers={"Authorization": f"Bearer {ACCESS_TOKEN}"}
        )
        return found

    async def fail_next(self, count: int, *, status: int = 500, **match: Any) -> None:
        await self.call("POST", "/_sim/faults", json={"status": status, "count": count, **match})

    async def clear_faults(self) -> None:
        await self.call("DELETE", "/_sim/faults")

    async def drain(self) -> None:
        await self.call("POST", "/_sim/notifications/drain", params={"timeout": 10})

    async def notifications(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self.call("GET", "/_sim/notifications")
        return found

    async def requests(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self.call("GET", "/_sim/requests")
        return found


@pytest.fixture
async def sim(simulator_url: str) -> AsyncIterator[Simulator]:
    async with httpx.AsyncClient(base_url=simulator_url, timeout=30) as http:
        simulator = Simulator(http)
        await simulator.call("POST", "/_sim/reset")
        yield simulator
        # Delay faults still waiting would otherwise fire at the next test's first requests.
        await simulator.call("POST", "/_sim/reset")


@dataclass
class Shop:
    """Ticketera on a real port, with its clock, database and payment processor at hand."""

    http: httpx.AsyncClient
    app: Any
    clock: FakeClock
    settings: Settings

    @property
    def payments(self) -> PaymentProcessor:
        processor: PaymentProcessor = services_of(self.app).payments
        return processor

    async def event(self, **overrides: Any) -> dict[str, Any]:
        return await open_sale(self.http, self.clock, **overrides)

    async def hold(self, event: dict[str, Any], user: str, body: dict[str, Any]) -> str:
        return await take_hold(self.http, event, user, body)

    async def order(self, hold_id: str, *, key: str | None = None) -> httpx.Response:
        return await place_order(self.http, hold_id, key)

    async def buy(
        self,
        event: dict[str, Any],
        user: str = "ana",
        *,
        quantity: int = 1,
        seat_ids: list[int] | None = None,
    ) -> dict[str, Any]:
        """Hold and order; returns the order (with its token) awaiting payment."""
        body: dict[str, Any] = (
            {"seatIds": seat_ids}
            if seat_ids is not None
            else {"sectionId": ga_section_id(event), "quantity": quantity}
        )
        response = await self.order(await self.hold(event, user, body))
        assert response.status_code == 201, response.text
        order: dict[str, Any] = response.json()
        assert order["checkoutUrl"], order
        return order

    async def get_order(self, order_id: int) -> dict[str, Any]:
        response = await self.http.get(
            f"/api/orders/{order_id}", headers={"Authorization": "Bearer " + ADMIN_KEY}
        )
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    async def wait_for_status(self, order_id: int, status: str, *, within: float = 10) -> dict[str, Any]:
        """Webhooks arrive on their own schedule: poll the order until it gets there."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            order = await self.get_order(order_id)
            if order["status"] == status or asyncio.get_running_loop().time() > deadline:
                return order
            await asyncio.sleep(0.02)

    async def payment_rows(self, order_id: int) -> list[Payment]:
        async with services_of(self.app).database.read_session() as session:
            return list(
                (await session.execute(select(Payment).where(Payment.order_id == order_id))).scalars()
            )

    async def audit_transitions(self, order_id: int, to_status: str) -> int:
        async with services_of(self.app).database.read_session() as session:
            statement = select(func.count()).where(
                AuditEntry.entity == "order",
                AuditEntry.entity_id == order_id,
                AuditEntry.to_status == to_status,
            )
            return int((await session.execute(statement)).scalar_one())


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float = 10.0) -> None:
    """Wait until `check` holds, up to a deadline: for work done after an answer (the shop's
    background processing, a request the simulator has yet to receive)."""
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "the condition did not hold in time"
        await asyncio.sleep(0.02)


def ga_section_id(event: dict[str, Any]) -> int:
    return int(next(s["id"] for s in event["sections"] if s["kind"] == "general_admission"))


def preference_id_of(order: dict[str, Any]) -> str:
    """The preference id from a checkout URL (`.../checkout/v1/redirect?pref_id=<id>`)."""
    return str(httpx.URL(order["checkoutUrl"]).params["pref_id"])


@pytest.fixture
def shop_clock() -> FakeClock:
    # Real time: the simulator signs and dates with the wall clock, as MercadoPago does.
    return FakeClock(datetime.now(UTC).replace(microsecond=0))


@asynccontextmanager
async def serving_shop(
    db: DatabaseUnderTest, tmp_path: Path, simulator_url: str, clock: FakeClock, **settings: Any
) -> AsyncIterator[Shop]:
    """Ticketera on a real port beside the simulator, with time on `clock`; `settings` add to or
    override the shop's (for instance SMTP_URL)."""
    sock = listening_socket()
    base_url = socket_url(sock)
    values: dict[str, Any] = {
        "mp_base_url": simulator_url,
        "public_base_url": base_url,
        "worker_in_process": False,
    }
    values.update(settings)
    shop_settings = make_settings(db.url, tmp_path, **values)
    app = create_app(shop_settings, clock=clock)
    async with serving_asgi(app, sock), httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        http.app = app  # type: ignore[attr-defined]  # as `tests.conftest.serving` does
        yield Shop(http, app, clock, shop_settings)


@pytest.fixture
async def shop(
    db: DatabaseUnderTest, tmp_path: Path, sim: Simulator, simulator_url: str, shop_clock: FakeClock
) -> AsyncIterator[Shop]:
    async with serving_shop(db, tmp_path, simulator_url, shop_clock) as served:
        yield served
