"""Orders bought through the service and paid on the MercadoPago simulator: the set-up of the
benchmarks that need sold orders (`checkin.py`, `webhooks.py`).

A buyer walks join -> hold -> order on an event whose waiting room is off; the order's checkout URL
names its MercadoPago preference, which the simulator's control API (POST /_sim/payments) pays as a
buyer approving it on the checkout would. The scripts import it as `from benchmarks import shop`,
like `benchmarks.harness`, which is all it needs.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from benchmarks import harness

SETUP_CONCURRENCY = 10


@dataclass
class Order:
    """An order bought for a benchmark, and what the later steps learn of it."""

    id: int
    token: str  # the buyer's order token
    preference_id: str
    payment_id: int = 0
    codes: list[str] = field(default_factory=list)


async def create_event(
    base_url: str, name: str, capacity: int, *, max_tickets_per_user: int | None = None
) -> tuple[int, int]:
    """An event with its waiting room off and one general-admission section of `capacity` places:
    (event id, section id)."""
    body: dict[str, Any] = {
        "name": name,
        "startsAt": harness.starts_at(),
        "queue": {"enabled": False},
        "sections": [{"name": "Campo", "price": "9000.00", "capacity": capacity}],
    }
    if max_tickets_per_user is not None:
        body["maxTicketsPerUser"] = max_tickets_per_user
    async with harness.one_connection_client(base_url) as admin:
        response = await admin.post("/api/events", json=body, headers=harness.ADMIN_HEADERS)
    event = harness.expect(response, 201, "POST /api/events")
    return int(event["id"]), int(event["sections"][0]["id"])


async def buy(client: httpx.AsyncClient, event_id: int, section_id: int, quantity: int, user: str) -> Order:
    """Buyer `user` walks join -> hold -> order for `quantity` places: the order, pending payment."""
    joined = await client.post(f"/api/queue/{event_id}/join", json={"userId": user})
    token = str(harness.expect(joined, 201, "join")["accessToken"])
    held = harness.expect(
        await client.post(
            f"/api/events/{event_id}/holds",
            json={"sectionId": section_id, "quantity": quantity},
            headers={"X-Access-Token": token},
        ),
        201,
        "hold",
    )
    ordered = harness.expect(
        await client.post(
            "/api/orders",
            json={"holdId": held["holdId"], "buyer": {"email": f"{user}@example.com", "name": "Bench"}},
            headers={"Idempotency-Key": f"bench-{user}"},
        ),
        201,
        "order",
    )
    checkout = httpx.URL(str(ordered["checkoutUrl"]))
    return Order(int(ordered["id"]), str(ordered["orderToken"]), str(checkout.params["pref_id"]))


async def buy_orders(
    base_url: str,
    event_id: int,
    section_id: int,
    sizes: list[int],
    *,
    then: Callable[[Order], Awaitable[None]] | None = None,
) -> list[Order]:
    """One order per entry of `sizes`, of that many places, each by a new buyer on a connection of
    its own, SETUP_CONCURRENCY at a time; `then(order)` right after each purchase."""
    run_tag = uuid.uuid4().hex[:8]
    orders: list[Order | None] = [None] * len(sizes)

    async def one(index: int) -> None:
        async with harness.one_connection_client(base_url) as buyer:
            order = await buy(buyer, event_id, section_id, sizes[index], f"{run_tag}-{index}")
        if then is not None:
            await then(order)
        orders[index] = order

    await harness.in_parallel(len(sizes), SETUP_CONCURRENCY, one)
    return [order for order in orders if order is not None]


def simulator_client(simulator_url: str, connections: int) -> httpx.AsyncClient:
    """A client of the simulator's control API, up to `connections` requests in flight."""
    return httpx.AsyncClient(
        base_url=simulator_url,
        limits=httpx.Limits(max_connections=connections),
        timeout=harness.REQUEST_TIMEOUT_SECONDS,
    )


async def pay(simulator: httpx.AsyncClient, order: Order) -> None:
    """The buyer approves the payment on MercadoPago's checkout (the control API does what it does)."""
    payment = harness.expect(
        await simulator.post("/_sim/payments", json={"preferenceId": order.preference_id, "outcome": "APRO"}),
        201,
        "POST /_sim/payments",
    )
    order.payment_id = int(payment["id"])


async def order_status(client: httpx.AsyncClient, order_id: int) -> str:
    """The order's status, as the box office (the admin key) reads it."""
    response = await client.get(f"/api/orders/{order_id}", headers=harness.ADMIN_HEADERS)
    return str(harness.expect(response, 200, f"GET /api/orders/{order_id}")["status"])


async def order_tickets(client: httpx.AsyncClient, order: Order) -> tuple[str, list[str]]:
    """The order's status and its tickets' codes, as the buyer reads them (with the order token)."""
    response = await client.get(
        f"/api/orders/{order.id}/tickets", headers={"Authorization": f"Bearer {order.token}"}
    )
    body = harness.expect(response, 200, f"GET /api/orders/{order.id}/tickets")
    return str(body["status"]), [str(ticket["code"]) for ticket in body["tickets"]]
