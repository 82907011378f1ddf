"""Small builders of request bodies and objects, instead of fixture files."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.conftest import ADMIN, USER_ASSERTION_SECRET
from tests.fakes import FakeClock
from ticketera.kit.http import CLOCK, components_of
from ticketera.queue.identity import UserAssertions

BUYER = {"email": "ana@example.com", "name": "Ana Pérez"}


def future(days: float = 30) -> str:
    return (
        (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    )


def reserved_section(
    name: str = "Platea", *, rows: int = 2, seats: int = 5, price: str = "15000.00"
) -> dict[str, Any]:
    labels = [chr(ord("A") + index) for index in range(rows)]
    return {"name": name, "price": price, "rows": [{"label": label, "seats": seats} for label in labels]}


def ga_section(name: str = "Campo", *, capacity: int = 10, price: str = "9000.00") -> dict[str, Any]:
    return {"name": name, "price": price, "capacity": capacity}


def event_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "Noche de Rock", "startsAt": future()}
    body.update(overrides)
    return body


async def create_event(client: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    response = await client.post("/api/events", json=event_body(**overrides), headers=ADMIN)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def known_user(client: httpx.AsyncClient, user_id: str) -> dict[str, str]:
    """A join body for `user_id` as the organizer's site vouches for them: a `userAssertion` valid
    for an hour on the clock of the app behind `client` (see `tests.conftest.serving`), or on the
    real clock for a server in another process."""
    app = getattr(client, "app", None)
    now = components_of(app).get(CLOCK)() if app is not None else datetime.now(UTC)
    assertion = UserAssertions(USER_ASSERTION_SECRET).sign(user_id, now + timedelta(hours=1))
    return {"userId": user_id, "userAssertion": assertion}


async def shopper_token(client: httpx.AsyncClient, event_id: int, user_id: str) -> str:
    """An access token for `user_id`, from the waiting room of an event whose queue is disabled."""
    response = await client.post(f"/api/queue/{event_id}/join", json=known_user(client, user_id))
    assert response.status_code in (200, 201), response.text
    token: str = response.json()["accessToken"]
    return token


async def open_sale(
    client: httpx.AsyncClient, clock: FakeClock | None = None, **overrides: Any
) -> dict[str, Any]:
    """A published event on sale now, no waiting room: a reserved section of 2 x 5 and 10 places.

    With `clock`, the event starts thirty days after the clock's now instead of the real one.
    """
    body: dict[str, Any] = {
        "sections": [reserved_section(rows=2, seats=5), ga_section(capacity=10)],
        "queue": {"enabled": False},
        "maxTicketsPerUser": 6,
    }
    if clock is not None:
        body["startsAt"] = (clock.now + timedelta(days=30)).isoformat().replace("+00:00", "Z")
    body.update(overrides)
    return await create_event(client, **body)


async def take_hold(client: httpx.AsyncClient, event: dict[str, Any], user: str, body: dict[str, Any]) -> str:
    """A hold for `user` (with their access token) of `body`'s seats or places; its id."""
    token = await shopper_token(client, event["id"], user)
    response = await client.post(
        f"/api/events/{event['id']}/holds", json=body, headers={"X-Access-Token": token}
    )
    assert response.status_code == 201, response.text
    hold_id: str = response.json()["holdId"]
    return hold_id


async def place_order(
    client: httpx.AsyncClient, hold_id: str, key: str | None = None, buyer: dict[str, str] | None = None
) -> httpx.Response:
    """POST /api/orders for this hold, by `buyer` (BUYER unless told), under the idempotency key
    `key` (`order-<hold id>` unless told); the response, whatever its status."""
    return await client.post(
        "/api/orders",
        json={"holdId": hold_id, "buyer": buyer or BUYER},
        headers={"Idempotency-Key": key or f"order-{hold_id}"},
    )
