"""The rules of payments (`payments.service`) and the webhook inbox, on each test database.

Payments are applied by calling the service directly with hand-made `ProviderPayment`s where a rule is
about what MercadoPago reports (stale reads, wrong amounts, unknown orders); notifications go through
the shop's real webhook endpoint, signed as MercadoPago signs them; the waiting room hook is followed
from admission to a payment made on the simulator.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from structlog.testing import capture_logs

from tests.conftest import ADMIN, WEBHOOK_SECRET, DatabaseUnderTest, make_settings, services_of
from tests.factories import reserved_section
from tests.shop import Shop, Simulator, eventually, ga_section_id, preference_id_of
from ticketera.infra.mercadopago import ProviderPayment
from ticketera.kit.resilience import BreakerState
from ticketera.orders import service as orders_service
from ticketera.orders.models import Order, OrderStatus
from ticketera.payments import service
from ticketera.payments.models import NotificationState, Payment, PaymentNotification, Settlement
from ticketera.payments.signature import manifest, sign
from ticketera.payments.tasks import build_payment_processor
from ticketera.queue.tasks import admission_tick

PUBLIC_URL = "https://tickets.example"
ORDER_TOKEN = "order-token-123"


def provider_payment(order: dict[str, Any], payment_id: str, **overrides: Any) -> ProviderPayment:
    """An approved payment of the order's total, as MercadoPago would report it."""
    values: dict[str, Any] = {
        "id": payment_id,
        "status": "approved",
        "status_detail": "accredited",
        "external_reference": str(order["id"]),
        "amount": Decimal(order["total"]),
        "refunded_amount": Decimal("0.00"),
        "currency": order["currency"],
        "payment_type": "credit_card",
        "last_updated": datetime.now(UTC),
        "raw": {},
    }
    values.update(overrides)
    return ProviderPayment(**values)


async def apply(shop: Shop, payment: ProviderPayment) -> service.Applied:
    return await services_of(shop.app).database.transaction(
        lambda session: service.apply_payment(
            session, payment, keyring=shop.payments.keyring, now=shop.clock()
        )
    )


async def payment_row(shop: Shop, provider_payment_id: str) -> Payment | None:
    async with services_of(shop.app).database.read_session() as session:
        statement = select(Payment).where(Payment.provider_payment_id == provider_payment_id)
        found: Payment | None = (await session.execute(statement)).scalar_one_or_none()
        return found


async def inbox(shop: Shop, resource_id: str) -> list[PaymentNotification]:
    async with services_of(shop.app).database.read_session() as session:
        statement = (
            select(PaymentNotification)
            .where(PaymentNotification.resource_id == resource_id)
            .order_by(PaymentNotification.id)
        )
        return list((await session.execute(statement)).scalars())


async def notify(shop: Shop, payment_id: int | str, request_id: str) -> httpx.Response:
    """A webhook as MercadoPago sends it, signed with the shop's secret at the current wall time."""
    data_id = str(payment_id)
    ts = str(int(time.time()))
    signature = sign(WEBHOOK_SECRET, manifest(data_id, request_id, ts))
    return await shop.http.post(
        f"/api/webhooks/mercadopago?data.id={data_id}&type=payment",
        json={
            "id": 120000000001,
            "live_mode": False,
            "type": "payment",
            "date_created": datetime.now(UTC).isoformat(),
            "user_id": 202809963,
            "api_version": "v1",
            "action": "payment.updated",
            "data": {"id": data_id},
        },
        headers={"x-signature": f"ts={ts},v1={signature}", "x-request-id": request_id},
    )


async def silent_payment(shop: Shop, sim: Simulator) -> tuple[dict[str, Any], dict[str, Any]]:
    """An order and its approved payment whose own notifications were dropped: the test sends them."""
    order = await shop.buy(await shop.event())
    await sim.configure(dropNotifications=True)
    payment = await sim.pay(preference_id_of(order))
    return order, payment


def gets_of(requests: list[dict[str, Any]], payment_id: int | str) -> list[dict[str, Any]]:
    return [r for r in requests if r["method"] == "GET" and r["path"] == f"/v1/payments/{payment_id}"]


# -- apply_payment ------------------------------------------------------------------------------------


async def test_a_stale_read_is_ignored_and_never_undoes_a_sale(shop: Shop) -> None:
    order = await shop.buy(await shop.event())
    approved_at = datetime.now(UTC).replace(microsecond=0)
    approved = provider_payment(order, "5001", last_updated=approved_at)
    assert (await apply(shop, approved)).effect is service.Effect.SOLD

    # Reads older than the stored one, as a lagging replica or a slow rival processor returns them.
    older_pending = replace(
        approved,
        status="pending",
        status_detail="pending_contingency",
        last_updated=approved_at - timedelta(minutes=1),
    )
    older_refund = replace(
        approved,
        status="refunded",
        status_detail="refunded",
        refunded_amount=approved.amount,
        last_updated=approved_at - timedelta(seconds=1),
    )
    for stale in (older_pending, older_refund):
        applied = await apply(shop, stale)
        assert (applied.effect, applied.order_id) == (service.Effect.NONE, order["id"])

    row = await payment_row(shop, "5001")
    assert row is not None
    assert (row.status, row.settlement) == ("approved", Settlement.SOLD.value)
    assert row.provider_updated_at == approved_at
    assert (await shop.get_order(order["id"]))["status"] == "paid"
    # The same refund reported as newer is applied: the timestamp, not the status, decided above.
    newer_refund = replace(older_refund, last_updated=approved_at + timedelta(seconds=1))
    assert (await apply(shop, newer_refund)).effect is service.Effect.REVERSED
    assert (await shop.get_order(order["id"]))["status"] == "refunded"


async def test_the_same_approval_applied_twice_sells_once(shop: Shop) -> None:
    order = await shop.buy(await shop.event())
    approved = provider_payment(order, "5002")

    first = await apply(shop, approved)
    again = await apply(shop, approved)

    assert (first.effect, again.effect) == (service.Effect.SOLD, service.Effect.NONE)
    assert await shop.audit_transitions(order["id"], "paid") == 1


@pytest.mark.parametrize("reference", ["999999999", "not-an-order", "", None])
async def test_a_payment_naming_no_order_of_ours_is_ignored(shop: Shop, reference: str | None) -> None:
    order = await shop.buy(await shop.event())
    stranger = provider_payment(order, "5003", external_reference=reference)

    applied = await apply(shop, stranger)

    assert applied == service.Applied(service.Effect.NONE, provider_payment_id="5003")
    assert await payment_row(shop, "5003") is None
    assert (await shop.get_order(order["id"]))["status"] == "pending_payment"


async def test_money_taken_for_an_order_we_do_not_have_is_logged_as_an_error(shop: Shop) -> None:
    """An approved payment whose order is gone (archived) must reach an operator: it is money
    without an order, which nothing here can refund (a refund is sent from a payment row)."""
    order = await shop.buy(await shop.event())
    orphan = provider_payment(order, "5004", external_reference="999999999")
    declined = provider_payment(order, "5005", external_reference="999999998", status="rejected")

    with capture_logs() as logs:
        applied = await apply(shop, orphan)
        await apply(shop, declined)

    assert applied == service.Applied(service.Effect.NONE, provider_payment_id="5004")
    unknown = [entry for entry in logs if entry["event"] == "payment.unknown_order"]
    assert [(entry["log_level"], entry["payment_id"], entry["order_id"]) for entry in unknown] == [
        ("error", "5004", 999999999),
        ("warning", "5005", 999999998),
    ]
    assert unknown[0]["amount"] == order["total"]


async def test_an_approval_short_of_the_total_or_in_another_currency_is_due_a_refund(shop: Shop) -> None:
    event = await shop.event()
    short_order = await shop.buy(event, "ana")
    dollar_order = await shop.buy(event, "beto")
    short = provider_payment(short_order, "5004", amount=Decimal(short_order["total"]) - Decimal("0.01"))
    dollars = provider_payment(dollar_order, "5005", currency="USD")

    for order, payment in ((short_order, short), (dollar_order, dollars)):
        applied = await apply(shop, payment)
        assert (applied.effect, applied.order_id) == (service.Effect.REFUND_DUE, order["id"])
        row = await payment_row(shop, payment.id)
        assert row is not None
        assert (row.settlement, row.refund_reason) == (Settlement.REFUND_DUE.value, "amount_mismatch")
        assert (await shop.get_order(order["id"]))["status"] == "pending_payment"
        assert await shop.audit_transitions(order["id"], "paid") == 0


# -- the checkout preference ----------------------------------------------------------------------------


def mp_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def two_section_order(shop: Shop) -> tuple[dict[str, Any], orders_service.OrderView]:
    """An order of two Platea seats at 15000 and one Pullman seat at 8000, and its view."""
    event = await shop.event(
        sections=[
            reserved_section("Platea", rows=1, seats=3, price="15000.00"),
            reserved_section("Pullman", rows=1, seats=3, price="8000.00"),
        ]
    )
    seats = (await shop.http.get(f"/api/events/{event['id']}/seats")).json()["seats"]
    platea = [seat["id"] for seat in seats if seat["sectionName"] == "Platea"][:2]
    pullman = [seat["id"] for seat in seats if seat["sectionName"] == "Pullman"][:1]
    # Seat ids out of section order: grouping must not depend on the order they were picked in.
    order = await shop.buy(event, seat_ids=[platea[0], *pullman, platea[1]])
    view = await services_of(shop.app).database.read(
        lambda session: orders_service.get_order(session, order["id"], shop.clock())
    )
    return order, view


async def test_the_preference_groups_items_by_section_and_price_and_describes_the_order(shop: Shop) -> None:
    order, view = await two_section_order(shop)

    body = service.checkout_preference(
        view.order,
        view.units,
        event_name="Noche de Rock",
        order_token=ORDER_TOKEN,
        options=service.CheckoutOptions(PUBLIC_URL),
    )

    labels = {
        name: [s["label"] for s in order["seats"] if s["sectionName"] == name]
        for name in ("Platea", "Pullman")
    }
    sections = {s["sectionName"]: s["section"] for s in order["seats"]}
    assert body["items"] == [
        {
            "id": f"section-{sections['Platea']}",
            "title": "Noche de Rock - Platea",
            "description": ", ".join(sorted(labels["Platea"])),
            "quantity": 2,
            "unit_price": 15000.0,
            "currency_id": "ARS",
        },
        {
            "id": f"section-{sections['Pullman']}",
            "title": "Noche de Rock - Pullman",
            "description": labels["Pullman"][0],
            "quantity": 1,
            "unit_price": 8000.0,
            "currency_id": "ARS",
        },
    ]
    # MercadoPago takes numbers, and a Decimal would not even serialise: floats that add up.
    assert all(isinstance(item["unit_price"], float) for item in body["items"])
    assert (
        sum(item["quantity"] * item["unit_price"] for item in body["items"])
        == float(order["total"])
        == 38000.0
    )
    assert body["payer"] == {"email": "ana@example.com", "name": "Ana", "surname": "Pérez"}
    # The buyer comes back to their order's page, readable with its token alone.
    order_page = f"{PUBLIC_URL}/orders/{order['id']}?token={ORDER_TOKEN}"
    assert body["back_urls"] == {
        "success": f"{order_page}&result=success",
        "pending": f"{order_page}&result=pending",
        "failure": f"{order_page}&result=failure",
    }
    assert body["auto_return"] == "approved"
    notification_url = httpx.URL(body["notification_url"])
    assert str(notification_url.copy_with(query=None)) == f"{PUBLIC_URL}/api/webhooks/mercadopago"
    # Without it MercadoPago also sends unsigned legacy IPN calls.
    assert notification_url.params["source_news"] == "webhooks"
    assert body["external_reference"] == str(order["id"])
    assert body["expires"] is True
    # A few minutes early, so a MercadoPago clock a little behind ours still finds it payable.
    assert mp_time(body["expiration_date_from"]) == mp_time(order["createdAt"]) - timedelta(minutes=5)
    assert mp_time(body["expiration_date_to"]) == mp_time(order["expiresAt"])
    assert mp_time(body["date_of_expiration"]) == mp_time(order["expiresAt"])
    assert body["payment_methods"] == {"excluded_payment_types": [{"id": "ticket"}, {"id": "atm"}]}
    assert body["binary_mode"] is False
    assert "statement_descriptor" not in body
    assert body["metadata"] == {"order_id": order["id"], "event_id": order["eventId"]}


async def test_the_preference_follows_the_cash_binary_and_descriptor_options(shop: Shop) -> None:
    _, view = await two_section_order(shop)
    options = service.CheckoutOptions(
        PUBLIC_URL, binary_mode=True, exclude_cash=False, statement_descriptor="NOCHE DE ROCK ENTRADAS 2030"
    )

    body = service.checkout_preference(
        view.order, view.units, event_name="Noche de Rock", order_token=ORDER_TOKEN, options=options
    )

    assert "payment_methods" not in body
    assert body["binary_mode"] is True
    assert body["statement_descriptor"] == "NOCHE DE ROCK ENTRADAS"  # MercadoPago's limit is 22


async def test_webhooks_can_be_sent_to_another_address_than_the_buyers_use(shop: Shop) -> None:
    """A development stack: buyers use https://localhost:8443, the simulator beside the app posts
    its webhooks to http://app:3000 on the stack's network."""
    _, view = await two_section_order(shop)
    options = service.CheckoutOptions(PUBLIC_URL, notification_base_url="http://app:3000")

    body = service.checkout_preference(
        view.order, view.units, event_name="Noche de Rock", order_token=ORDER_TOKEN, options=options
    )

    assert body["notification_url"] == "http://app:3000/api/webhooks/mercadopago?source_news=webhooks"
    assert body["back_urls"]["success"].startswith(PUBLIC_URL)


async def test_the_checkout_options_come_from_the_settings(
    shop: Shop, db: DatabaseUnderTest, tmp_path: Path
) -> None:
    assert shop.payments.checkout == service.CheckoutOptions(
        str(shop.http.base_url).rstrip("/"), binary_mode=False, exclude_cash=True, statement_descriptor=None
    )
    settings = make_settings(
        db.url,
        tmp_path,
        public_base_url=PUBLIC_URL,
        mp_allow_cash=True,
        mp_binary_mode=True,
        mp_statement_descriptor="TICKETERA",
    )
    processor = build_payment_processor(settings, services_of(shop.app).database, shop.clock)
    try:
        assert processor.checkout == service.CheckoutOptions(
            PUBLIC_URL, binary_mode=True, exclude_cash=False, statement_descriptor="TICKETERA"
        )
    finally:
        await processor.gateway.close()


# -- reconciliation schedule ------------------------------------------------------------------------------


def unpaid_order(created_at: datetime, *, status: OrderStatus = OrderStatus.PENDING_PAYMENT) -> Order:
    return Order(status=status.value, created_at=created_at, expires_at=created_at + timedelta(minutes=10))


def test_reconciliation_gaps_double_up_to_six_hours_then_stop_after_the_window() -> None:
    created = datetime(2030, 3, 1, 12, 0, tzinfo=UTC)
    order = unpaid_order(created)
    asks: list[datetime] = []
    moment = created
    while (upcoming := service.next_reconcile_at(order, moment)) is not None:
        asks.append(upcoming)
        moment = upcoming
        assert len(asks) < 100, "the reconciler never stops asking"

    gaps = [later - earlier for earlier, later in zip([created, *asks], asks, strict=False)]
    minutes = [gap / timedelta(minutes=1) for gap in gaps]
    assert minutes[:8] == [3, 3, 6, 12, 24, 48, 96, 192]
    assert set(minutes[8:]) == {360}  # capped at six hours
    window_end = order.expires_at + service.RECONCILE_WINDOW
    assert asks[-2] <= window_end < asks[-1]  # the last ask is the first one past the window
    assert service.next_reconcile_at(order, window_end + timedelta(seconds=1)) is None


@pytest.mark.parametrize("status", [OrderStatus.PAID, OrderStatus.REFUNDED])
def test_a_paid_or_refunded_order_is_not_asked_about(status: OrderStatus) -> None:
    created = datetime(2030, 3, 1, 12, 0, tzinfo=UTC)
    assert service.next_reconcile_at(unpaid_order(created, status=status), created) is None


def test_an_expired_order_is_still_asked_about_within_the_window() -> None:
    # A payment approved after the deadline may still come in: it is sold or refunded, never lost.
    created = datetime(2030, 3, 1, 12, 0, tzinfo=UTC)
    order = unpaid_order(created, status=OrderStatus.EXPIRED)
    assert service.next_reconcile_at(order, created + timedelta(hours=1)) == created + timedelta(hours=2)


# -- the webhook inbox ----------------------------------------------------------------------------------


async def test_the_inbox_keeps_one_row_per_delivery_and_one_per_request_id(
    shop: Shop, sim: Simulator
) -> None:
    order, payment = await silent_payment(shop, sim)

    answers = [
        await notify(shop, payment["id"], "request-1"),
        await notify(shop, payment["id"], "request-1"),  # MercadoPago delivering the same one again
        await notify(shop, payment["id"], "request-2"),  # another notification of the same payment
    ]

    assert [a.status_code for a in answers] == [200, 200, 200]
    assert all(a.json()["received"] is True for a in answers)

    async def both_processed() -> bool:
        rows = await inbox(shop, str(payment["id"]))
        return bool(rows) and all(row.state == NotificationState.DONE.value for row in rows)

    await eventually(both_processed)
    rows = await inbox(shop, str(payment["id"]))
    assert len(rows) == 2
    assert all(
        row.dedup_key.endswith(suffix) for row, suffix in zip(rows, ("request-1", "request-2"), strict=True)
    )
    assert all(
        (row.source, row.topic, row.action) == ("webhook", "payment", "payment.updated") for row in rows
    )
    # One read of the payment per stored row: the repeated delivery was not processed again.
    assert len(gets_of(await sim.requests(), payment["id"])) == 2
    assert (await shop.get_order(order["id"]))["status"] == "paid"
    assert await shop.audit_transitions(order["id"], "paid") == 1


async def test_a_notification_that_fails_is_retried_with_backoff_by_the_sweep(
    shop: Shop, sim: Simulator
) -> None:
    order, payment = await silent_payment(shop, sim)
    # Three failures: the client's retries, then its breaker opens (and refuses the fourth attempt).
    await sim.fail_next(3, status=500, method="GET", pathPrefix="/v1/payments/")
    received_at = shop.clock()

    assert (await notify(shop, payment["id"], str(uuid.uuid4()))).status_code == 200

    async def failed_once() -> bool:
        rows = await inbox(shop, str(payment["id"]))
        return bool(rows) and rows[0].last_error is not None

    await eventually(failed_once)
    (row,) = await inbox(shop, str(payment["id"]))
    assert (row.state, row.attempts) == (NotificationState.PENDING.value, 1)
    assert row.next_attempt_at == received_at + timedelta(seconds=10)
    assert row.last_error is not None
    assert row.last_error.startswith("PaymentsUnavailable")

    assert await shop.payments.process_due_notifications() == 0  # not due yet
    (row,) = await inbox(shop, str(payment["id"]))
    assert row.attempts == 1

    shop.clock.advance(10)
    sent_before = len(await sim.requests())
    assert await shop.payments.process_due_notifications() == 0  # due, but the breaker is still open
    (row,) = await inbox(shop, str(payment["id"]))
    assert (row.state, row.attempts) == (NotificationState.PENDING.value, 2)
    assert row.next_attempt_at == shop.clock() + timedelta(seconds=20)  # the gap doubled
    assert len(await sim.requests()) == sent_before  # the open breaker sent nothing

    shop.clock.advance(120)  # past the breaker's two minutes and the notification's 20 s
    assert await shop.payments.process_due_notifications() == 1
    (row,) = await inbox(shop, str(payment["id"]))
    assert (row.state, row.attempts, row.last_error) == (NotificationState.DONE.value, 3, None)
    assert row.processed_at == shop.clock()
    assert (await shop.get_order(order["id"]))["status"] == "paid"


async def test_a_valid_webhook_is_answered_200_while_mercadopago_is_down(shop: Shop, sim: Simulator) -> None:
    order, payment = await silent_payment(shop, sim)
    await sim.fail_next(100, status=503)

    first = await notify(shop, payment["id"], "down-1")

    assert first.status_code == 200
    assert first.json() == {"received": True, "processed": None}

    async def attempted(request_id: str) -> bool:
        rows = [r for r in await inbox(shop, str(payment["id"])) if r.dedup_key.endswith(request_id)]
        return bool(rows) and rows[0].last_error is not None

    await eventually(lambda: attempted("down-1"))
    assert shop.payments.gateway.breaker.state is BreakerState.OPEN
    # With the breaker open the answer is the same: the inbox row is what counts.
    second = await notify(shop, payment["id"], "down-2")
    assert second.status_code == 200
    await eventually(lambda: attempted("down-2"))
    rows = await inbox(shop, str(payment["id"]))
    assert [row.state for row in rows] == [NotificationState.PENDING.value] * 2
    assert (await shop.get_order(order["id"]))["status"] == "pending_payment"

    await sim.clear_faults()
    shop.clock.advance(130)
    assert await shop.payments.process_due_notifications() == 2
    assert (await shop.get_order(order["id"]))["status"] == "paid"
    assert await shop.audit_transitions(order["id"], "paid") == 1


async def test_a_stopping_worker_processes_the_notification_under_way_and_leaves_the_rest_due(
    shop: Shop, sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    order, payment = await silent_payment(shop, sim)
    await sim.fail_next(100, status=503)
    for request_id in ("stop-1", "stop-2"):
        assert (await notify(shop, payment["id"], request_id)).status_code == 200

    async def both_attempted() -> bool:
        rows = await inbox(shop, str(payment["id"]))
        return len(rows) == 2 and all(row.last_error is not None for row in rows)

    await eventually(both_attempted)
    await sim.clear_faults()
    shop.clock.advance(130)
    stop = asyncio.Event()
    real_process = shop.payments.process_notification

    async def process_then_stop(notification_id: int) -> bool:
        processed = await real_process(notification_id)
        stop.set()  # SIGTERM, while the first of the two was processed
        return processed

    monkeypatch.setattr(shop.payments, "process_notification", process_then_stop)
    swept = await shop.payments.run_pass(stop=stop)

    assert swept["notifications"] == 1
    states = sorted(row.state for row in await inbox(shop, str(payment["id"])))
    assert states == sorted([NotificationState.DONE.value, NotificationState.PENDING.value])
    assert (await shop.get_order(order["id"]))["status"] == "paid"
    monkeypatch.setattr(shop.payments, "process_notification", real_process)
    assert await shop.payments.process_due_notifications() == 1  # the next worker's


# -- the waiting room ---------------------------------------------------------------------------------------


async def active_shoppers(shop: Shop, event_id: int) -> int:
    response = await shop.http.get(f"/api/queue/{event_id}/stats", headers=ADMIN)
    assert response.status_code == 200, response.text
    count: int = response.json()["activeShoppers"]
    return count


async def admitted_access_tokens(shop: Shop, event_id: int, users: list[str]) -> dict[str, str]:
    """Join the line, let the admission ticker run once, and claim each user's access token."""
    queue_tokens = {}
    for user in users:
        joined = await shop.http.post(f"/api/queue/{event_id}/join", json={"userId": user})
        assert joined.status_code == 201, joined.text
        queue_tokens[user] = joined.json()["queueToken"]
    state = services_of(shop.app)
    assert await admission_tick(state.waiting_room, state.database, shop.clock, tick_seconds=1.0) == len(
        users
    )
    access: dict[str, str] = {}
    for user, queue_token in queue_tokens.items():
        status = await shop.http.get(
            f"/api/queue/{event_id}/status", headers={"Authorization": f"Bearer {queue_token}"}
        )
        assert status.json()["status"] == "admitted", status.text
        access[user] = status.json()["accessToken"]
    return access


async def test_a_paying_shopper_frees_their_place_in_the_waiting_room(shop: Shop, sim: Simulator) -> None:
    event = await shop.event(
        queue={"enabled": True, "admitPerMinute": 60, "maxActiveShoppers": 1000, "accessMinutes": 10}
    )
    tokens = await admitted_access_tokens(shop, event["id"], ["ana", "beto"])
    assert await active_shoppers(shop, event["id"]) == 2

    held = await shop.http.post(
        f"/api/events/{event['id']}/holds",
        json={"sectionId": ga_section_id(event), "quantity": 1},
        headers={"X-Access-Token": tokens["ana"]},
    )
    assert held.status_code == 201, held.text
    ordered = await shop.order(held.json()["holdId"])
    assert ordered.status_code == 201, ordered.text
    order = ordered.json()
    assert await active_shoppers(shop, event["id"]) == 2  # an order is not a purchase yet

    await sim.pay(preference_id_of(order))
    assert (await shop.wait_for_status(order["id"], "paid"))["status"] == "paid"

    # The slot is freed after the sale commits; poll for it rather than race the background work.
    async def ana_left() -> bool:
        return await active_shoppers(shop, event["id"]) == 1

    await eventually(ana_left)
    stats = (await shop.http.get(f"/api/queue/{event['id']}/stats", headers=ADMIN)).json()
    assert stats["admitted"] == 2  # beto, who has not paid, still holds his slot
