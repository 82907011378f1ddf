"""Setting the scene through the API for the browser tests: places held, and paid for."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx

from tests.browser.conftest import LiveApp

# Within a browser test's own patience (see conftest's TIMEOUT_MS).
WAIT_SECONDS = 30


def hold(app: LiveApp, event_id: int, **items: Any) -> dict[str, Any]:
    """A hold as someone let in by an open line makes it (`seatIds`, or `sectionId` and `quantity`)."""
    joined = httpx.post(f"{app.base_url}/api/queue/{event_id}/join", json={}, timeout=30).json()
    held = app.admin.post(
        f"/api/events/{event_id}/holds", headers={"X-Access-Token": joined["accessToken"]}, json=items
    )
    assert held.status_code == 201, held.text
    body: dict[str, Any] = held.json()
    return body


def pay(app: LiveApp, hold_id: int) -> dict[str, Any]:
    """The hold ordered and paid with the simulator's APRO; back once the webhook sold it."""
    order: dict[str, Any] = app.admin.post(
        "/api/orders",
        headers={"Idempotency-Key": uuid.uuid4().hex},
        json={"holdId": hold_id, "buyer": {"email": "ana@example.com", "name": "Ana Pérez"}},
    ).json()
    preference = httpx.URL(order["checkoutUrl"]).params["pref_id"]
    paid = httpx.post(
        f"{app.simulator_url}/_sim/payments", json={"preferenceId": preference, "outcome": "APRO"}, timeout=30
    )
    assert paid.status_code < 300, paid.text
    deadline = time.monotonic() + WAIT_SECONDS
    while app.admin.get(f"/api/orders/{order['id']}").json()["status"] != "paid":
        assert time.monotonic() < deadline, "still waiting for the payment"
        time.sleep(0.05)
    return order
