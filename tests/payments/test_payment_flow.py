"""From order to paid, refunded or charged back, over real HTTP with the MercadoPago simulator.

The simulator runs as a server and delivers signed webhooks to the shop's real port; nothing in the
shop is stubbed. Time moves on the shop's injected clock where a deadline matters.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from sqlalchemy import select

from tests.conftest import ADMIN, WEBHOOK_SECRET, services_of
from tests.shop import Shop, Simulator, eventually, preference_id_of
from tests.waiting import notifications_processed
from ticketera.payments.models import PaymentNotification, Settlement
from ticketera.payments.signature import manifest, sign

# The order page speaks Spanish unless asked otherwise; these assertions read its English.
ENGLISH = {"Accept-Language": "en"}


async def test_a_buyer_pays_through_the_checkout_page_and_the_order_is_paid(
    shop: Shop, sim: Simulator
) -> None:
    event = await shop.event()
    order = await shop.buy(event, quantity=2)
    assert order["status"] == "pending_payment"

    async with httpx.AsyncClient(timeout=30) as browser:
        page = await browser.get(order["checkoutUrl"])
        assert page.status_code == 200
        assert "18000" in page.text.replace(".", "").replace(",", "")  # two places at 9000.00
        assert 'action="/checkout/v1/redirect"' in page.text
        form = {"pref_id": preference_id_of(order), "outcome": "APRO"}
        paid = await browser.post(str(page.url.copy_with(query=None)), data=form)
    assert paid.status_code in (302, 303), paid.text
    back_url = httpx.URL(paid.headers["location"])
    assert back_url.path == f"/orders/{order['id']}"
    assert back_url.params["status"] == "approved"
    assert back_url.params["external_reference"] == str(order["id"])

    final = await shop.wait_for_status(order["id"], "paid")
    assert final["status"] == "paid"
    assert final["checkoutUrl"] is None
    async with httpx.AsyncClient(timeout=30) as browser:
        page = await browser.get(str(back_url), headers=ENGLISH)
        assert page.status_code == 200
        assert "Paid: here are your tickets" in page.text
        assert page.text.count("/qr.svg") == 2
        assert (await browser.get(str(back_url.copy_set_param("token", "forged")))).status_code == 404
    (row,) = await shop.payment_rows(order["id"])
    assert row.settlement == Settlement.SOLD.value
    assert row.status == "approved"
    sections = (await shop.http.get(f"/api/events/{event['id']}")).json()["sections"]
    assert ga_section_of(sections)["sold"] == 2


async def test_the_preference_describes_the_order(shop: Shop, sim: Simulator) -> None:
    event = await shop.event()
    order = await shop.buy(event, seat_ids=[await first_seat(shop, event)])
    preference = await sim.call(
        "GET",
        f"/checkout/preferences/{preference_id_of(order)}",
        headers={"Authorization": "Bearer TEST-token"},
    )
    assert preference["external_reference"] == str(order["id"])
    assert (
        preference["notification_url"]
        == f"{shop.http.base_url}/api/webhooks/mercadopago?source_news=webhooks"
    )
    assert preference["back_urls"]["success"].startswith(f"{shop.http.base_url}/orders/{order['id']}")
    assert preference["expires"] is True
    assert {"id": "ticket"} in preference["payment_methods"]["excluded_payment_types"]
    assert sum(item["quantity"] * item["unit_price"] for item in preference["items"]) == float(order["total"])
    assert all(item["currency_id"] == "ARS" for item in preference["items"])


async def test_order_creation_is_idempotent_and_reuses_its_preference(shop: Shop, sim: Simulator) -> None:
    event = await shop.event()
    hold_id = await shop.hold(
        event, "ana", {"sectionId": ga_section_of(event["sections"])["id"], "quantity": 1}
    )
    first = await shop.order(hold_id, key="same-key-123")
    again = await shop.order(hold_id, key="same-key-123")
    assert first.status_code == 201
    assert again.status_code == 201
    assert again.json()["checkoutUrl"] == first.json()["checkoutUrl"]
    created = [
        r for r in await sim.requests() if r["method"] == "POST" and r["path"] == "/checkout/preferences"
    ]
    assert len(created) == 1


async def test_missing_or_bad_signatures_are_refused_and_change_nothing(shop: Shop, sim: Simulator) -> None:
    event = await shop.event()
    order = await shop.buy(event)
    unsigned = await shop.http.post(
        "/api/webhooks/mercadopago?data.id=1&type=payment",
        json={"type": "payment", "action": "payment.updated", "data": {"id": "1"}},
    )
    assert unsigned.status_code == 401
    assert unsigned.json()["error"] == "invalid_signature"

    await sim.configure(webhookSecret="not-the-shop-secret")
    await sim.pay(preference_id_of(order))
    await sim.drain()
    deliveries = await sim.notifications()
    assert deliveries
    assert all(attempt["status"] == 401 for d in deliveries for attempt in d["attempts"])
    assert (await shop.get_order(order["id"]))["status"] == "pending_payment"
    assert await shop.payment_rows(order["id"]) == []


async def test_a_replayed_signature_for_another_payment_is_refused(shop: Shop, sim: Simulator) -> None:
    ts = str(int(shop.clock().timestamp()))
    request_id = str(uuid.uuid4())
    header = f"ts={ts},v1={sign(WEBHOOK_SECRET, manifest('111', request_id, ts))}"
    response = await shop.http.post(
        "/api/webhooks/mercadopago?data.id=222&type=payment",
        json={"type": "payment", "data": {"id": "222"}},
        headers={"x-signature": header, "x-request-id": request_id},
    )
    assert response.status_code == 401


async def test_duplicates_with_the_same_or_new_request_ids_are_applied_once(
    shop: Shop, sim: Simulator
) -> None:
    event = await shop.event()
    for same_request_id in (True, False):
        await sim.configure(duplicates=3, duplicateSameRequestId=same_request_id)
        order = await shop.buy(event, f"buyer-{same_request_id}")
        await sim.pay(preference_id_of(order))
        await notifications_processed(shop, sim)  # every duplicate too, before counting
        assert (await shop.wait_for_status(order["id"], "paid"))["status"] == "paid"
        assert await shop.audit_transitions(order["id"], "paid") == 1
        (row,) = await shop.payment_rows(order["id"])
        assert row.settlement == Settlement.SOLD.value
    refunds = [r for r in await sim.requests() if r["path"].endswith("/refunds")]
    assert refunds == []


async def test_a_stale_pending_notification_after_approval_leaves_the_order_paid(
    shop: Shop, sim: Simulator
) -> None:
    event = await shop.event()
    order = await shop.buy(event)
    await sim.configure(outOfOrder=True)
    pending = await sim.pay(preference_id_of(order), "CONT")
    await sim.move(pending["id"], "approved")
    # Held notifications go out newest first: the approval, then the stale "created" (pending).
    await sim.call("POST", "/_sim/notifications/release")
    await notifications_processed(shop, sim)  # the stale one included
    final = await shop.wait_for_status(order["id"], "paid")
    assert final["status"] == "paid"
    async with services_of(shop.app).database.read_session() as session:
        inbox = list(
            (
                await session.execute(
                    select(PaymentNotification.state).where(
                        PaymentNotification.resource_id == str(pending["id"])
                    )
                )
            ).scalars()
        )
    # Both handled, the approval and then the stale one, and the order is still paid.
    assert len(inbox) >= 2
    assert set(inbox) == {"done"}
    assert await shop.audit_transitions(order["id"], "paid") == 1


async def test_a_pending_payment_waits_and_a_rejected_one_leaves_the_order_payable(
    shop: Shop, sim: Simulator
) -> None:
    event = await shop.event()
    order = await shop.buy(event)
    await sim.pay(preference_id_of(order), "OTHE")
    await notifications_processed(shop, sim)
    await shop.payments.process_due_notifications()
    assert (await shop.get_order(order["id"]))["status"] == "pending_payment"
    second = await sim.pay(preference_id_of(order), "CONT")
    await notifications_processed(shop, sim)
    assert (await shop.get_order(order["id"]))["status"] == "pending_payment"
    await sim.move(second["id"], "approved")
    assert (await shop.wait_for_status(order["id"], "paid"))["status"] == "paid"


async def test_a_dropped_webhook_is_found_by_reconciliation(shop: Shop, sim: Simulator) -> None:
    event = await shop.event()
    order = await shop.buy(event)
    await sim.configure(dropNotifications=True)
    await sim.pay(preference_id_of(order))
    await sim.drain()
    assert (await shop.get_order(order["id"]))["status"] == "pending_payment"
    assert await shop.payments.reconcile() == 0  # not due yet: webhooks get a few minutes first
    shop.clock.advance(181)
    assert await shop.payments.reconcile() == 1
    assert (await shop.get_order(order["id"]))["status"] == "paid"
    assert await shop.payments.reconcile() == 0  # a paid order is not asked about again


async def test_reconciliation_keeps_asking_with_growing_gaps_then_stops(shop: Shop, sim: Simulator) -> None:
    event = await shop.event()
    order = await shop.buy(event)
    asked = 0
    for _ in range(40):
        shop.clock.advance(600)
        asked += await shop.payments.reconcile()
    # 400 minutes: gaps of 3, 6, 12 ... minutes, so a handful of searches rather than 40.
    assert 3 <= asked <= 8
    searches = [r for r in await sim.requests() if r["path"] == "/v1/payments/search"]
    assert len(searches) == asked
    shop.clock.advance(3 * 24 * 3600)
    await shop.payments.reconcile()
    assert await shop.payments.reconcile() == 0
    assert (await shop.get_order(order["id"]))["status"] == "expired"


async def test_mercadopago_down_never_costs_an_order_its_checkout_follows_when_it_is_back(
    shop: Shop, sim: Simulator
) -> None:
    """The probe's 'three orders committed while their buyers were told 503': an order is placed
    whatever MercadoPago does, and its checkout is made by the worker once MercadoPago answers."""
    event = await shop.event()
    hold_id = await shop.hold(
        event, "ana", {"sectionId": ga_section_of(event["sections"])["id"], "quantity": 1}
    )
    await sim.fail_next(100, status=503)

    placed = await shop.order(hold_id, key="breaker-key-1")
    assert placed.status_code == 201, placed.text
    assert (placed.json()["status"], placed.json()["checkoutUrl"]) == ("pending_payment", None)
    attempts = [r for r in await sim.requests() if r["path"] == "/checkout/preferences"]
    # Three failures open the breaker (3 -> open), which also ends the retries.
    assert len(attempts) == 3
    assert all(r["idempotencyKey"] == attempts[0]["idempotencyKey"] for r in attempts)
    health = (await shop.http.get("/health")).json()
    assert health["services"]["mercadopago"]["circuitBreaker"]["state"] == "OPEN"
    assert health["status"] == "degraded"

    # While open: placed at once, nothing sent to MercadoPago, the hold became the order.
    other_hold = await shop.hold(
        event, "bob", {"sectionId": ga_section_of(event["sections"])["id"], "quantity": 1}
    )
    fast = await shop.order(other_hold, key="breaker-key-2")
    assert (fast.status_code, fast.json()["checkoutUrl"]) == (201, None)
    assert len([r for r in await sim.requests() if r["path"] == "/checkout/preferences"]) == 3
    assert (await shop.http.get(f"/api/holds/{other_hold}")).json()["status"] == "ordered"
    # The worker leaves a MercadoPago that is known to be down alone.
    assert await shop.payments.make_missing_checkouts() == 0
    page_url = f"/orders/{placed.json()['id']}?token={placed.json()['orderToken']}"
    waiting = (await shop.http.get(page_url, headers=ENGLISH)).text
    assert "payment link is being prepared" in waiting
    assert 'http-equiv="refresh"' in waiting

    await sim.clear_faults()
    shop.clock.advance(121)  # two minutes open: the worker's first call probes and closes the breaker
    assert await shop.payments.make_missing_checkouts() == 2
    for order in (placed.json(), fast.json()):
        shown = await shop.get_order(order["id"])
        assert shown["checkoutUrl"], shown
    ready = (await shop.http.get(page_url, headers=ENGLISH)).text
    assert "Pay with MercadoPago" in ready
    assert 'http-equiv="refresh"' not in ready
    assert (await shop.http.get("/health")).json()["services"]["mercadopago"]["circuitBreaker"][
        "state"
    ] == "CLOSED"
    # The buyer's retry (same key) gets the same order and the checkout the worker made.
    again = await shop.order(hold_id, key="breaker-key-1")
    assert again.json()["checkoutUrl"] == (await shop.get_order(placed.json()["id"]))["checkoutUrl"]
    assert await shop.payments.make_missing_checkouts() == 0


async def test_client_errors_are_not_retried(shop: Shop, sim: Simulator) -> None:
    await sim.fail_next(1, status=400, pathPrefix="/checkout/preferences")
    event = await shop.event()
    hold_id = await shop.hold(
        event, "ana", {"sectionId": ga_section_of(event["sections"])["id"], "quantity": 1}
    )
    response = await shop.order(hold_id)
    # The order stands (its checkout is left to the worker), and a 400 was asked once, not retried.
    assert (response.status_code, response.json()["checkoutUrl"]) == (201, None)
    assert len([r for r in await sim.requests() if r["path"] == "/checkout/preferences"]) == 1
    health = (await shop.http.get("/health")).json()
    assert health["services"]["mercadopago"]["circuitBreaker"]["state"] == "CLOSED"
    # The refusal was one-off: the worker's next pass makes the checkout.
    assert await shop.payments.make_missing_checkouts() == 1
    assert (await shop.get_order(response.json()["id"]))["checkoutUrl"]


async def test_a_late_approval_whose_seats_were_sold_again_is_refunded(shop: Shop, sim: Simulator) -> None:
    event = await shop.event()
    seat_id = await first_seat(shop, event)
    late = await shop.buy(event, "ana", seat_ids=[seat_id])
    shop.clock.advance(11 * 60)  # ten minutes to pay, then the seat is free again
    rival = await shop.buy(event, "bob", seat_ids=[seat_id])

    await sim.pay(preference_id_of(late))
    refunded = await shop.wait_for_status(late["id"], "refunded")
    assert refunded["status"] == "refunded"
    assert refunded["statusReason"] == "seats_lost"
    (row,) = await shop.payment_rows(late["id"])
    assert row.settlement == Settlement.REFUNDED.value
    assert (await sim.payment(row.provider_payment_id))["status"] == "refunded"
    # The rival's order still holds the seat and can pay (its link opens on the shop's moved clock).
    await sim.pay(preference_id_of(rival), ignoreExpiry=True)
    assert (await shop.wait_for_status(rival["id"], "paid"))["status"] == "paid"


async def test_a_late_approval_that_would_pass_the_ticket_limit_is_refunded(
    shop: Shop, sim: Simulator
) -> None:
    event = await shop.event(maxTicketsPerUser=2)
    late = await shop.buy(event, "ana", quantity=2)
    shop.clock.advance(11 * 60)
    again = await shop.buy(event, "ana", quantity=2)  # allowed: the first order's places lapsed
    await sim.pay(preference_id_of(late))
    refunded = await shop.wait_for_status(late["id"], "refunded")
    assert refunded["statusReason"] == "limit_exceeded"
    (row,) = await shop.payment_rows(late["id"])
    assert (await sim.payment(row.provider_payment_id))["status"] == "refunded"
    assert (await shop.get_order(again["id"]))["status"] == "pending_payment"


async def test_a_late_approval_whose_seats_are_still_free_is_sold(shop: Shop, sim: Simulator) -> None:
    event = await shop.event()
    order = await shop.buy(event)
    shop.clock.advance(11 * 60)
    await sim.pay(preference_id_of(order))
    paid = await shop.wait_for_status(order["id"], "paid")
    assert paid["status"] == "paid"
    assert paid["statusReason"] == "paid_after_expiry"


async def test_a_second_payment_for_a_paid_order_is_refunded(shop: Shop, sim: Simulator) -> None:
    event = await shop.event()
    order = await shop.buy(event)
    await sim.pay(preference_id_of(order))
    await shop.wait_for_status(order["id"], "paid")
    duplicate = await sim.pay(preference_id_of(order), ignoreExpiry=True)

    async def duplicate_refunded() -> bool:
        return bool((await sim.payment(duplicate["id"]))["status"] == "refunded")

    await eventually(duplicate_refunded)
    await notifications_processed(shop, sim)  # the refund's own notification too
    assert (await shop.get_order(order["id"]))["status"] == "paid"


async def test_a_payment_for_a_cancelled_order_is_refunded_and_the_order_stays_cancelled(
    shop: Shop, sim: Simulator
) -> None:
    event = await shop.event()
    order = await shop.buy(event)
    cancelled = await shop.http.post(f"/api/orders/{order['id']}/cancel", headers=ADMIN)
    assert cancelled.status_code == 200
    payment = await sim.pay(preference_id_of(order))

    async def payment_refunded() -> bool:
        return bool((await sim.payment(payment["id"]))["status"] == "refunded")

    await eventually(payment_refunded)
    await notifications_processed(shop, sim)  # the refund's own notification too
    final = await shop.get_order(order["id"])
    assert final["status"] == "cancelled"
    (row,) = await shop.payment_rows(order["id"])
    assert (row.settlement, row.refund_reason) == (Settlement.REFUNDED.value, "order_closed")


async def test_an_admin_refund_returns_the_money_and_the_seats_once(shop: Shop, sim: Simulator) -> None:
    event = await shop.event()
    order = await shop.buy(event, quantity=2)
    await sim.pay(preference_id_of(order))
    await shop.wait_for_status(order["id"], "paid")

    not_admin = await shop.http.post(f"/api/orders/{order['id']}/refund")
    assert not_admin.status_code == 401
    refunded = await shop.http.post(f"/api/orders/{order['id']}/refund", headers=ADMIN)
    assert refunded.status_code == 200, refunded.text
    assert refunded.json()["status"] == "refunded"
    assert refunded.json()["statusReason"] == "admin"
    again = await shop.http.post(f"/api/orders/{order['id']}/refund", headers=ADMIN)
    assert again.status_code == 200
    assert again.json()["status"] == "refunded"

    (row,) = await shop.payment_rows(order["id"])
    assert (await sim.payment(row.provider_payment_id))["status"] == "refunded"
    assert len([r for r in await sim.requests() if r["path"].endswith("/refunds")]) == 1
    sections = (await shop.http.get(f"/api/events/{event['id']}")).json()["sections"]
    assert ga_section_of(sections)["sold"] == 0
    assert ga_section_of(sections)["available"] == 10
    await notifications_processed(shop, sim)  # the refund's own notification changes nothing more
    assert (await shop.get_order(order["id"]))["statusReason"] == "admin"


async def test_refunding_an_unpaid_order_is_refused(shop: Shop, sim: Simulator) -> None:
    order = await shop.buy(await shop.event())
    response = await shop.http.post(f"/api/orders/{order['id']}/refund", headers=ADMIN)
    assert response.status_code == 409
    assert response.json()["error"] == "order_not_refundable"


async def test_a_refund_while_mercadopago_is_down_is_sent_later_by_the_worker(
    shop: Shop, sim: Simulator
) -> None:
    event = await shop.event()
    order = await shop.buy(event)
    await sim.pay(preference_id_of(order))
    await shop.wait_for_status(order["id"], "paid")
    await sim.fail_next(3, status=500, pathPrefix="/v1/payments")
    failed = await shop.http.post(f"/api/orders/{order['id']}/refund", headers=ADMIN)
    assert failed.status_code == 503
    assert (await shop.get_order(order["id"]))["status"] == "paid"
    shop.clock.advance(121)
    assert await shop.payments.send_due_refunds() == 1
    assert (await shop.get_order(order["id"]))["status"] == "refunded"


async def test_a_refund_mercadopago_refuses_is_a_502_and_stays_due(shop: Shop, sim: Simulator) -> None:
    event = await shop.event()
    order = await shop.buy(event)
    await sim.pay(preference_id_of(order))
    await shop.wait_for_status(order["id"], "paid")
    await sim.fail_next(1, status=400, pathPrefix="/v1/payments/", method="POST")
    refused = await shop.http.post(f"/api/orders/{order['id']}/refund", headers=ADMIN)
    assert refused.status_code == 502
    assert refused.json()["error"] == "payment_provider_error"
    assert (await shop.get_order(order["id"]))["status"] == "paid"
    assert await shop.payments.send_due_refunds() == 0  # not before its backoff (30 s)
    shop.clock.advance(31)
    assert await shop.payments.send_due_refunds() == 1
    assert (await shop.get_order(order["id"]))["status"] == "refunded"


async def test_a_late_refund_never_undoes_a_sale_another_payment_made_since(
    shop: Shop, sim: Simulator
) -> None:
    event = await shop.event(maxTicketsPerUser=2)
    late = await shop.buy(event, "ana", quantity=2)
    shop.clock.advance(11 * 60)
    other = await shop.buy(event, "ana", quantity=2)
    # The refund of the late payment (over the limit) is refused once, so it stays due.
    await sim.fail_next(1, status=400, pathPrefix="/v1/payments/", method="POST")
    await sim.pay(preference_id_of(late), ignoreExpiry=True)

    async def refund_due() -> bool:
        rows = await shop.payment_rows(late["id"])
        return bool(rows) and rows[0].settlement == Settlement.REFUND_DUE.value

    await eventually(refund_due)
    assert (await shop.http.post(f"/api/orders/{other['id']}/cancel", headers=ADMIN)).status_code == 200
    await sim.pay(preference_id_of(late), ignoreExpiry=True)  # now within the limit: sold
    assert (await shop.wait_for_status(late["id"], "paid"))["status"] == "paid"
    shop.clock.advance(31)
    assert await shop.payments.send_due_refunds() == 1
    final = await shop.get_order(late["id"])
    assert final["status"] == "paid"
    assert {ticket["status"] for ticket in final["tickets"]} == {"valid"}


async def test_a_refund_mercadopago_keeps_refusing_does_not_hold_up_the_others(
    shop: Shop, sim: Simulator
) -> None:
    event = await shop.event()
    stuck, fine = await shop.buy(event, "ana"), await shop.buy(event, "bob")
    for order in (stuck, fine):
        await sim.pay(preference_id_of(order))
        await shop.wait_for_status(order["id"], "paid")
    (stuck_payment,) = await shop.payment_rows(stuck["id"])
    (fine_payment,) = await shop.payment_rows(fine["id"])
    refunds = "/v1/payments/{}/refunds"
    await sim.fail_next(
        1000, status=400, method="POST", pathPrefix=refunds.format(stuck_payment.provider_payment_id)
    )
    await sim.fail_next(
        1, status=400, method="POST", pathPrefix=refunds.format(fine_payment.provider_payment_id)
    )
    for order in (stuck, fine):
        assert (await shop.http.post(f"/api/orders/{order['id']}/refund", headers=ADMIN)).status_code == 502
    for _ in range(3):
        shop.clock.advance(3600)
        await shop.payments.send_due_refunds(limit=1)  # a batch of one: the stuck refund comes first
    assert (await shop.get_order(fine["id"]))["status"] == "refunded"
    assert (await shop.get_order(stuck["id"]))["status"] == "paid"
    (stuck_payment,) = await shop.payment_rows(stuck["id"])
    assert stuck_payment.refund_attempts >= 2


async def test_a_charge_back_undoes_the_order_and_flags_it(shop: Shop, sim: Simulator) -> None:
    event = await shop.event()
    order = await shop.buy(event)
    payment = await sim.pay(preference_id_of(order))
    await shop.wait_for_status(order["id"], "paid")
    await sim.move(payment["id"], "charged_back")
    undone = await shop.wait_for_status(order["id"], "refunded")
    assert undone["statusReason"] == "charged_back"
    # The organizer finds the charge-backs to look into.
    flagged = await shop.http.get(
        f"/api/events/{event['id']}/orders", params={"reason": "charged_back"}, headers=ADMIN
    )
    assert [o["id"] for o in flagged.json()["orders"]] == [order["id"]]
    sections = (await shop.http.get(f"/api/events/{event['id']}")).json()["sections"]
    assert ga_section_of(sections)["sold"] == 0


async def test_legacy_ipn_calls_read_the_payment_back(shop: Shop, sim: Simulator) -> None:
    event = await shop.event()
    order = await shop.buy(event)
    await sim.configure(dropNotifications=True)
    payment = await sim.pay(preference_id_of(order))
    response = await shop.http.post(f"/api/webhooks/mercadopago?topic=payment&id={payment['id']}")
    assert response.status_code == 200
    assert (await shop.wait_for_status(order["id"], "paid"))["status"] == "paid"
    # An unsigned call naming a payment MercadoPago does not know costs one read, not a day of them.
    unknown = await shop.http.post("/api/webhooks/mercadopago?topic=payment&id=999999123")
    assert unknown.status_code == 200
    await services_of(shop.app).notification_pump.drained()
    async with services_of(shop.app).database.read_session() as session:
        stored = (
            await session.execute(
                select(PaymentNotification).where(PaymentNotification.resource_id == "999999123")
            )
        ).scalar_one()
    assert (stored.state, stored.attempts) == ("failed", 1)
    ignored = await shop.http.post("/api/webhooks/mercadopago?topic=merchant_order&id=5")
    assert ignored.status_code == 200
    assert ignored.json()["processed"] is False


async def test_a_notification_for_an_unreadable_payment_is_retried_by_the_worker(
    shop: Shop, sim: Simulator
) -> None:
    event = await shop.event()
    order = await shop.buy(event)
    await sim.fail_next(2, status=500, pathPrefix="/v1/payments/", method="GET")
    await sim.pay(preference_id_of(order))
    await notifications_processed(shop, sim)  # its first attempt over before the clock moves
    shop.clock.advance(130)  # past the breaker's two minutes and the notification's backoff
    await shop.payments.process_due_notifications()
    assert (await shop.wait_for_status(order["id"], "paid"))["status"] == "paid"


async def test_fifty_orders_paid_with_concurrent_duplicate_notifications_are_each_applied_once(
    shop: Shop, sim: Simulator
) -> None:
    event = await shop.event(
        sections=[{"name": "Campo", "price": "5000.00", "capacity": 60}], maxTicketsPerUser=2
    )
    orders = await asyncio.gather(*(shop.buy(event, f"fan-{n}") for n in range(50)))
    await sim.configure(duplicates=1, duplicateSameRequestId=False)
    await asyncio.gather(*(sim.pay(preference_id_of(order)) for order in orders))
    await notifications_processed(shop, sim)  # every duplicate too, before counting
    for order in orders:
        assert (await shop.wait_for_status(order["id"], "paid"))["status"] == "paid"
        assert await shop.audit_transitions(order["id"], "paid") == 1
        (row,) = await shop.payment_rows(order["id"])
        assert row.settlement == Settlement.SOLD.value
    delivered = [d for d in await sim.notifications() if d["state"] == "delivered"]
    assert len(delivered) >= 100
    assert [r for r in await sim.requests() if r["path"].endswith("/refunds")] == []
    sections = (await shop.http.get(f"/api/events/{event['id']}")).json()["sections"]
    assert ga_section_of(sections)["sold"] == 50


def ga_section_of(sections: list[dict[str, Any]]) -> dict[str, Any]:
    return next(section for section in sections if section["kind"] == "general_admission")


async def first_seat(shop: Shop, event: dict[str, Any]) -> int:
    seats = (await shop.http.get(f"/api/events/{event['id']}/seats")).json()["seats"]
    return int(seats[0]["id"])


async def test_mercadopago_back_closes_its_breaker_in_seconds_not_minutes(shop: Shop, sim: Simulator) -> None:
    """The probe's 152 s of refused orders: the open breaker asks MercadoPago itself every second
    and closes as soon as it answers, with the breaker's own two minutes not yet run (the clock of
    the breaker does not move in this test)."""
    event = await shop.event()
    hold_id = await shop.hold(
        event, "ana", {"sectionId": ga_section_of(event["sections"])["id"], "quantity": 1}
    )
    await sim.fail_next(1000, status=503)
    placed = await shop.order(hold_id, key="probe-key-1")
    assert placed.json()["checkoutUrl"] is None

    async def breaker_state() -> str:
        health = (await shop.http.get("/health")).json()
        return str(health["services"]["mercadopago"]["circuitBreaker"]["state"])

    assert await breaker_state() == "OPEN"
    await sim.clear_faults()

    async def closed() -> bool:
        return await breaker_state() == "CLOSED"

    await eventually(closed, within=30)
    searches = [r for r in await sim.requests() if r["path"] == "/v1/payments/search"]
    assert searches, "the breaker asked MercadoPago itself"
    assert await shop.payments.make_missing_checkouts() == 1
