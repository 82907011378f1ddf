"""Tickets sold and scanned over the shop's real HTTP: the steps most tickets tests start from.

A ticket exists only once its order is paid, so every test buys, pays through the MercadoPago
simulator and waits for the webhook to sell the order, as a buyer's checkout would.
"""

from __future__ import annotations

from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.conftest import STAFF_KEY
from tests.shop import Shop, Simulator, preference_id_of
from ticketera.tickets.codes import SIGNATURE_BYTES, TicketClaim, b64, read_code, sign_code, unb64

STAFF = {"Authorization": f"Bearer {STAFF_KEY}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def paid_order(
    shop: Shop,
    sim: Simulator,
    event: dict[str, Any],
    user: str = "ana",
    *,
    quantity: int = 1,
    seat_ids: list[int] | None = None,
) -> dict[str, Any]:
    """Buy, pay (approved) and wait until the webhook has sold the order; returns the order as
    created, with its `orderToken`."""
    order = await shop.buy(event, user, quantity=quantity, seat_ids=seat_ids)
    await sim.pay(preference_id_of(order))
    paid = await shop.wait_for_status(order["id"], "paid")
    assert paid["status"] == "paid", paid
    return order


async def tickets_of(shop: Shop, order: dict[str, Any]) -> list[dict[str, Any]]:
    """The order's tickets, as its buyer reads them (with the order token)."""
    response = await shop.http.get(f"/api/orders/{order['id']}/tickets", headers=bearer(order["orderToken"]))
    assert response.status_code == 200, response.text
    tickets: list[dict[str, Any]] = response.json()["tickets"]
    return tickets


async def seat_ids(shop: Shop, event: dict[str, Any], count: int) -> list[int]:
    """The first `count` seats of the event's seat map."""
    seats = (await shop.http.get(f"/api/events/{event['id']}/seats")).json()["seats"]
    return [int(seat["id"]) for seat in seats[:count]]


async def checkin_key(http: httpx.AsyncClient, event_id: int) -> str:
    """The event's public key, base64url, as a scanner downloads it before the doors open."""
    response = await http.get(f"/api/events/{event_id}/checkin-key")
    assert response.status_code == 200, response.text
    key: str = response.json()["publicKey"]
    return key


async def scan(http: httpx.AsyncClient, code: str, **body: Any) -> httpx.Response:
    """One scan at the door, by staff."""
    return await http.post("/api/checkin", json={"code": code, **body}, headers=STAFF)


def with_flipped_signature_byte(code: str, *, index: int = 10) -> str:
    """The same code with one byte of its signature flipped: well-formed, no longer signed."""
    raw = bytearray(unb64(code))
    raw[len(raw) - SIGNATURE_BYTES + index] ^= 0x01
    return b64(bytes(raw))


def signed_by_a_stranger(claim: TicketClaim) -> str:
    """A well-formed code for `claim`, signed with a key the shop never made (a forger's)."""
    return sign_code(Ed25519PrivateKey.generate(), claim)


def claim_of(code: str) -> TicketClaim:
    """What a code says, without checking who signed it."""
    return read_code(code)[0]
