"""Orders over HTTP and the payment confirmation they await, with time on an injected clock."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.conftest import ADMIN, services_of
from tests.factories import BUYER, open_sale, place_order, shopper_token, take_hold
from tests.fakes import FakeClock
from ticketera.kit.audit import AuditEntry
from ticketera.ops.tasks import expire_overdue
from ticketera.orders import service as orders_service
from ticketera.orders.service import PaymentOutcome


async def ga_order(
    client: httpx.AsyncClient, clock: FakeClock, quantity: int = 2, user: str = "ana"
) -> dict[str, Any]:
    event = await open_sale(client, clock)
    hold_id = await take_hold(
        client, event, user, {"sectionId": event["sections"][1]["id"], "quantity": quantity}
    )
    response = await place_order(client, hold_id, f"order-{hold_id}")
    assert response.status_code == 201, response.text
    return {"event": event, "hold_id": hold_id, **response.json()}


async def confirm(client: httpx.AsyncClient, order_id: int, clock: FakeClock) -> PaymentOutcome:
    database = services_of(client.app).database  # type: ignore[attr-defined]
    async with database.write_session() as session:
        return await orders_service.confirm_payment(session, order_id, actor="test", now=clock())


async def statuses(client: httpx.AsyncClient, event_id: int) -> dict[str, int]:
    sections = (await client.get(f"/api/events/{event_id}")).json()["sections"]
    return {key: sum(section[key] for section in sections) for key in ("available", "held", "sold")}


async def test_an_order_turns_a_hold_into_a_payable_purchase(
    clocked_client: httpx.AsyncClient, clock: FakeClock
) -> None:
    order = await ga_order(clocked_client, clock, quantity=3)

    assert order["status"] == "pending_payment"
    assert (order["total"], order["currency"], order["quantity"]) == ("27000.00", "ARS", 3)
    assert order["expiresAt"] == (
        clock.now.isoformat().replace("+00:00", "Z").replace("12:00:00", "12:10:00")
    )
    assert order["orderToken"]
    assert order["buyer"] == {"email": "ana@example.com", "name": "Ana Pérez"}
    assert len(order["seats"]) == 3
    assert "/checkout/v1/redirect?pref_id=" in order["checkoutUrl"]  # MercadoPago's checkout
    clock.advance(9 * 60)  # past the hold's own ten minutes, within the order's
    assert (await statuses(clocked_client, order["event"]["id"]))["held"] == 3


async def test_the_same_key_and_body_return_the_same_order(
    clocked_client: httpx.AsyncClient, clock: FakeClock
) -> None:
    order = await ga_order(clocked_client, clock)
    key = f"order-{order['hold_id']}"

    again = await place_order(clocked_client, order["hold_id"], key)
    other_body = await place_order(
        clocked_client, order["hold_id"], key, {"email": "x@example.com", "name": "X"}
    )
    other_key = await place_order(clocked_client, order["hold_id"], "another-key-1")
    no_key = await clocked_client.post("/api/orders", json={"holdId": order["hold_id"], "buyer": BUYER})

    assert again.status_code == 201
    assert again.json()["id"] == order["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert (other_body.status_code, other_body.json()["error"]) == (409, "idempotency_mismatch")
    assert (other_key.status_code, other_key.json()["error"]) == (409, "hold_ordered")
    assert (no_key.status_code, no_key.json()["fields"][0]["field"]) == (422, "idempotency-key")


@pytest.mark.parametrize(
    ("buyer", "field"),
    [
        ({"email": "not-an-email", "name": "A"}, "buyer.email"),
        ({"email": "a@example.com", "name": ""}, "buyer.name"),
    ],
)
async def test_buyer_details_are_validated(
    clocked_client: httpx.AsyncClient, clock: FakeClock, buyer: dict[str, str], field: str
) -> None:
    event = await open_sale(clocked_client, clock)
    hold_id = await take_hold(
        clocked_client, event, "ana", {"sectionId": event["sections"][1]["id"], "quantity": 1}
    )

    response = await place_order(clocked_client, hold_id, "key-validation", buyer)

    assert response.status_code == 422
    assert response.json()["fields"][0]["field"] == field


async def test_orders_are_read_with_their_token_or_the_admin_key(
    clocked_client: httpx.AsyncClient, clock: FakeClock
) -> None:
    first = await ga_order(clocked_client, clock, user="ana")
    second = await ga_order(clocked_client, clock, user="beto")
    url = f"/api/orders/{first['id']}"

    with_token = await clocked_client.get(url, headers={"Authorization": f"Bearer {first['orderToken']}"})
    as_admin = await clocked_client.get(url, headers=ADMIN)
    other_token = await clocked_client.get(url, headers={"Authorization": f"Bearer {second['orderToken']}"})
    no_token = await clocked_client.get(url)
    missing = await clocked_client.get("/api/orders/999999", headers=ADMIN)

    assert with_token.status_code == 200
    assert with_token.json()["id"] == first["id"]
    assert "orderToken" not in with_token.json() or with_token.json()["orderToken"] is None
    assert as_admin.status_code == 200
    assert (other_token.status_code, no_token.status_code, missing.status_code) == (401, 401, 404)


async def test_unpaid_orders_expire_by_query_and_free_their_seats(
    clocked_client: httpx.AsyncClient, clock: FakeClock
) -> None:
    order = await ga_order(clocked_client, clock, quantity=2)
    event_id = order["event"]["id"]

    clock.advance(10 * 60 + 1)
    shown = await clocked_client.get(f"/api/orders/{order['id']}", headers=ADMIN)
    counts = await statuses(clocked_client, event_id)
    retaken = await take_hold(
        clocked_client,
        order["event"],
        "beto",
        {"sectionId": order["event"]["sections"][1]["id"], "quantity": 6},
    )

    assert shown.json()["status"] == "expired"
    assert counts == {"available": 20, "held": 0, "sold": 0}
    assert retaken.startswith("h_")


async def test_an_expired_hold_cannot_become_an_order(
    clocked_client: httpx.AsyncClient, clock: FakeClock
) -> None:
    event = await open_sale(clocked_client, clock)
    hold_id = await take_hold(
        clocked_client, event, "ana", {"sectionId": event["sections"][1]["id"], "quantity": 1}
    )
    clock.advance(10 * 60)

    response = await place_order(clocked_client, hold_id, "late-order-1")

    assert (response.status_code, response.json()["error"]) == (409, "hold_expired")


async def test_paying_sells_the_seats_once(clocked_client: httpx.AsyncClient, clock: FakeClock) -> None:
    order = await ga_order(clocked_client, clock, quantity=2)

    first = await confirm(clocked_client, order["id"], clock)
    second = await confirm(clocked_client, order["id"], clock)
    shown = (await clocked_client.get(f"/api/orders/{order['id']}", headers=ADMIN)).json()
    cancel = await clocked_client.post(f"/api/orders/{order['id']}/cancel", headers=ADMIN)

    assert (first, second) == (PaymentOutcome.SOLD, PaymentOutcome.ALREADY_PAID)
    assert (shown["status"], shown["statusReason"]) == ("paid", None)
    assert shown["paidAt"] is not None
    assert (await statuses(clocked_client, order["event"]["id"]))["sold"] == 2
    assert (cancel.status_code, cancel.json()["error"]) == (409, "order_not_cancellable")
    clock.advance(3600)  # sold seats stay sold whatever the clock says
    assert (await statuses(clocked_client, order["event"]["id"]))["sold"] == 2


@pytest.mark.parametrize("worker_ran", [True, False], ids=["after_the_worker", "before_the_worker"])
async def test_a_late_payment_sells_if_the_seats_are_still_free(
    clocked_client: httpx.AsyncClient, clock: FakeClock, worker_ran: bool
) -> None:
    order = await ga_order(clocked_client, clock, quantity=2)
    clock.advance(11 * 60)  # expired by query; until the worker runs, the stored status is pending_payment
    if worker_ran:
        await expire_overdue(services_of(clocked_client.app).database, clock)  # type: ignore[attr-defined]

    outcome = await confirm(clocked_client, order["id"], clock)
    shown = (await clocked_client.get(f"/api/orders/{order['id']}", headers=ADMIN)).json()

    assert outcome is PaymentOutcome.SOLD
    assert (shown["status"], shown["statusReason"]) == ("paid", "paid_after_expiry")


async def test_a_late_payment_never_sells_a_seat_someone_else_took(
    clocked_client: httpx.AsyncClient, clock: FakeClock
) -> None:
    event = await open_sale(clocked_client, clock)
    seats = (await clocked_client.get(f"/api/events/{event['id']}/seats")).json()["seats"]
    ids = [seat["id"] for seat in seats[:2]]
    hold_id = await take_hold(clocked_client, event, "ana", {"seatIds": ids})
    order = (await place_order(clocked_client, hold_id, "seat-order-1")).json()
    clock.advance(11 * 60)
    await take_hold(clocked_client, event, "beto", {"seatIds": [ids[1]]})

    outcome = await confirm(clocked_client, order["id"], clock)
    shown = (await clocked_client.get(f"/api/orders/{order['id']}", headers=ADMIN)).json()
    seat_statuses = {
        s["id"]: s["status"]
        for s in (await clocked_client.get(f"/api/events/{event['id']}/seats")).json()["seats"]
    }

    assert outcome is PaymentOutcome.SEATS_LOST
    assert shown["status"] == "expired"
    assert [seat_statuses[i] for i in ids] == ["available", "held"]  # nothing sold, beto keeps his


async def test_admins_cancel_unpaid_orders_and_the_seats_return(
    clocked_client: httpx.AsyncClient, clock: FakeClock
) -> None:
    order = await ga_order(clocked_client, clock, quantity=4)

    cancelled = await clocked_client.post(f"/api/orders/{order['id']}/cancel", headers=ADMIN)
    again = await clocked_client.post(f"/api/orders/{order['id']}/cancel", headers=ADMIN)
    refused = await clocked_client.post(f"/api/orders/{order['id']}/cancel")
    late_payment = await confirm(clocked_client, order["id"], clock)

    assert cancelled.json()["status"] == "cancelled"
    assert again.status_code == 200
    assert refused.status_code == 401
    assert late_payment is PaymentOutcome.NOT_PAYABLE
    assert await statuses(clocked_client, order["event"]["id"]) == {"available": 20, "held": 0, "sold": 0}


async def test_paid_orders_count_toward_the_ticket_limit(
    clocked_client: httpx.AsyncClient, clock: FakeClock
) -> None:
    order = await ga_order(clocked_client, clock, quantity=6)  # the limit of open_sale
    await confirm(clocked_client, order["id"], clock)
    token = await shopper_token(clocked_client, order["event"]["id"], "ana")

    more = await clocked_client.post(
        f"/api/events/{order['event']['id']}/holds",
        json={"sectionId": order["event"]["sections"][1]["id"], "quantity": 1},
        headers={"X-Access-Token": token},
    )

    assert (more.status_code, more.json()["error"]) == (409, "limit_exceeded")


async def test_the_worker_records_expiries_once_with_an_audit_trail(
    clocked_client: httpx.AsyncClient, clock: FakeClock
) -> None:
    order = await ga_order(clocked_client, clock, quantity=1, user="ana")
    event = order["event"]
    lone_hold = await take_hold(
        clocked_client, event, "beto", {"sectionId": event["sections"][1]["id"], "quantity": 1}
    )
    database = services_of(clocked_client.app).database  # type: ignore[attr-defined]
    clock.advance(11 * 60)

    import asyncio

    passes = await asyncio.gather(*(expire_overdue(database, clock) for _ in range(3)))
    hold_shown = (await clocked_client.get(f"/api/holds/{lone_hold}")).json()
    async with database.read_session() as session:
        trail = (
            await session.execute(
                select(AuditEntry.entity, AuditEntry.to_status, func.count()).group_by(
                    AuditEntry.entity, AuditEntry.to_status
                )
            )
        ).all()

    assert sum(p.holds for p in passes) == 1
    assert sum(p.orders for p in passes) == 1
    assert hold_shown["status"] == "expired"
    assert sorted((entity, status, count) for entity, status, count in trail) == [
        ("hold", "active", 2),
        ("hold", "expired", 1),
        ("hold", "ordered", 1),
        ("order", "expired", 1),
        ("order", "pending_payment", 1),
    ]


async def test_admins_list_an_events_orders_by_shown_status_and_reason_in_pages(
    clocked_client: httpx.AsyncClient, clock: FakeClock
) -> None:
    event = await open_sale(clocked_client, clock)
    section = event["sections"][1]["id"]
    ids = []
    for user in ("ana", "bob", "eva"):
        hold_id = await take_hold(clocked_client, event, user, {"sectionId": section, "quantity": 1})
        response = await place_order(clocked_client, hold_id, f"list-{hold_id}")
        ids.append(response.json()["id"])
    cancelled = await clocked_client.post(f"/api/orders/{ids[0]}/cancel", headers=ADMIN)
    assert cancelled.status_code == 200
    url = f"/api/events/{event['id']}/orders"

    assert (await clocked_client.get(url)).status_code == 401
    everything = (await clocked_client.get(url, headers=ADMIN)).json()
    assert [order["id"] for order in everything["orders"]] == ids
    assert everything["nextAfter"] is None
    pending = (await clocked_client.get(url, params={"status": "pending_payment"}, headers=ADMIN)).json()
    assert [order["id"] for order in pending["orders"]] == ids[1:]
    by_reason = (await clocked_client.get(url, params={"reason": "admin"}, headers=ADMIN)).json()
    assert [(order["id"], order["status"]) for order in by_reason["orders"]] == [(ids[0], "cancelled")]

    clock.advance(11 * 60)  # the unpaid ones are expired now, before any worker has run
    expired = (await clocked_client.get(url, params={"status": "expired"}, headers=ADMIN)).json()
    assert [order["id"] for order in expired["orders"]] == ids[1:]
    assert (await clocked_client.get(url, params={"status": "pending_payment"}, headers=ADMIN)).json()[
        "orders"
    ] == []

    first = (await clocked_client.get(url, params={"limit": 2}, headers=ADMIN)).json()
    assert [order["id"] for order in first["orders"]] == ids[:2]
    rest = (await clocked_client.get(url, params={"after": first["nextAfter"]}, headers=ADMIN)).json()
    assert [order["id"] for order in rest["orders"]] == ids[2:]
    bad = await clocked_client.get(url, params={"status": "lost"}, headers=ADMIN)
    assert bad.status_code == 422


async def test_a_buyer_s_address_is_taken_as_sent(
    clocked_client: httpx.AsyncClient, clock: FakeClock
) -> None:
    # The document's `email` format refuses spaces around an address; email-validator alone trims them.
    event = await open_sale(clocked_client, clock)
    hold_id = await take_hold(
        clocked_client, event, "ana", {"sectionId": event["sections"][1]["id"], "quantity": 1}
    )

    refused = await place_order(clocked_client, hold_id, buyer={**BUYER, "email": " ana@example.com"})

    assert refused.status_code == 422, refused.text
    assert refused.json()["fields"][0]["field"] == "buyer.email"
