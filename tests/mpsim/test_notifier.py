"""Notifications: signatures a receiver can verify, retries, and every way MercadoPago misbehaves."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import httpx
import pytest
from mercadopago.webhook import WebhookSignatureValidator

from tests.mpsim.conftest import (
    SIM_SECRET,
    Delivery,
    WebhookReceiver,
    create_payment,
    drain,
    idempotency,
    notifications,
)
from tests.mpsim_server import listening_socket, socket_url
from ticketera.mpsim.notifier import signature_header, signature_manifest, with_query


def webhooks_only(receiver: WebhookReceiver) -> str:
    return f"{receiver.url}?source_news=webhooks"


def verify_with_sdk(delivery: Delivery, secret: str = SIM_SECRET) -> None:
    WebhookSignatureValidator.validate(
        delivery.headers["x-signature"],
        delivery.request_id,
        delivery.query["data.id"],
        secret,
        tolerance_seconds=300,
    )


async def test_webhook_is_signed_and_shaped_like_mercadopago(
    mp: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    payment = await create_payment(mp, notification_url=webhooks_only(receiver))

    (delivery,) = await receiver.wait_for(1)

    assert delivery.query == {"source_news": "webhooks", "data.id": str(payment["id"]), "type": "payment"}
    assert delivery.headers["content-type"] == "application/json"
    assert uuid.UUID(delivery.request_id).version == 4
    assert "x-retry" not in delivery.headers
    assert delivery.signed_with(SIM_SECRET) == "original"
    verify_with_sdk(delivery)
    assert abs(delivery.ts - datetime.now(UTC).timestamp()) < 60
    body = delivery.body
    assert set(body) == {
        "id",
        "live_mode",
        "type",
        "date_created",
        "user_id",
        "api_version",
        "action",
        "data",
    }
    assert isinstance(body["id"], int)
    assert (body["live_mode"], body["type"], body["api_version"]) == (False, "payment", "v1")
    assert body["action"] == "payment.created"
    assert body["data"] == {"id": str(payment["id"])}
    assert receiver.of_kind("ipn") == []


async def test_every_change_is_notified(mp: httpx.AsyncClient, receiver: WebhookReceiver) -> None:
    payment = await create_payment(mp, notification_url=webhooks_only(receiver))
    await mp.post(f"/v1/payments/{payment['id']}/refunds", json={"amount": 1}, headers=idempotency())
    await mp.post(f"/v1/payments/{payment['id']}/refunds", json={}, headers=idempotency())

    deliveries = await receiver.wait_for(3)

    assert [delivery.body["action"] for delivery in deliveries] == [
        "payment.created",
        "payment.updated",
        "payment.updated",
    ]
    assert len({delivery.body["id"] for delivery in deliveries}) == 3


@pytest.mark.parametrize(("unit", "low", "high"), [("s", 1e9, 1e11), ("ms", 1e12, 1e14)])
async def test_ts_unit_is_switchable(
    mp: httpx.AsyncClient, receiver: WebhookReceiver, unit: str, low: float, high: float
) -> None:
    await mp.patch("/_sim/config", json={"tsUnit": unit})
    await create_payment(mp, notification_url=webhooks_only(receiver))

    (delivery,) = await receiver.wait_for(1)

    assert low < delivery.ts < high
    assert delivery.signed_with(SIM_SECRET) == "original"


@pytest.mark.parametrize("casing", ["original", "lower"])
async def test_numeric_ids_verify_under_either_casing(
    mp: httpx.AsyncClient, receiver: WebhookReceiver, casing: str
) -> None:
    await mp.patch("/_sim/config", json={"idCasing": casing})
    await create_payment(mp, notification_url=webhooks_only(receiver))

    (delivery,) = await receiver.wait_for(1)

    # A numeric id reads the same lowercased: both ways of verifying must accept it.
    assert delivery.signed_with(SIM_SECRET) is not None
    verify_with_sdk(delivery)


def test_id_casing_decides_what_is_signed_for_alphanumeric_ids() -> None:
    moment = datetime(2030, 1, 1, tzinfo=UTC)
    original = signature_header(SIM_SECRET, "ORD01ABC", "req-1", moment, id_casing="original")
    lower = signature_header(SIM_SECRET, "ORD01ABC", "req-1", moment, id_casing="lower", ts_unit="ms")
    as_query = {"data.id": "ORD01ABC"}

    def signed_with(header: str) -> str | None:
        delivery = Delivery(as_query, {"x-signature": header, "x-request-id": "req-1"}, {}, 200)
        return delivery.signed_with(SIM_SECRET)

    assert signed_with(original) == "original"
    assert signed_with(lower) == "lower"
    assert lower.startswith("ts=1893456000000,")
    assert signature_manifest("ORD01ABC", "req-1", "1") == "id:ORD01ABC;request-id:req-1;ts:1;"
    assert signature_manifest(None, None, "1") == "ts:1;"


async def test_a_wrong_secret_fails_verification(mp: httpx.AsyncClient, receiver: WebhookReceiver) -> None:
    await mp.patch("/_sim/config", json={"webhookSecret": "not-the-secret"})
    await create_payment(mp, notification_url=webhooks_only(receiver))

    (delivery,) = await receiver.wait_for(1)

    assert delivery.signed_with(SIM_SECRET) is None
    assert delivery.signed_with("not-the-secret") == "original"


@pytest.mark.parametrize("same_request_id", [True, False])
async def test_duplicates(mp: httpx.AsyncClient, receiver: WebhookReceiver, same_request_id: bool) -> None:
    await mp.patch("/_sim/config", json={"duplicates": 2, "duplicateSameRequestId": same_request_id})
    await create_payment(mp, notification_url=webhooks_only(receiver))

    deliveries = await receiver.wait_for(3)
    await drain(mp)

    assert len({delivery.body["id"] for delivery in deliveries}) == 1
    assert len({delivery.request_id for delivery in deliveries}) == (1 if same_request_id else 3)
    assert all(delivery.signed_with(SIM_SECRET) for delivery in deliveries)
    assert len(await notifications(mp)) == 3


async def test_out_of_order_holds_then_releases_newest_first(
    mp: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    await mp.patch("/_sim/config", json={"outOfOrder": True})
    payment = await create_payment(mp, "CONT", notification_url=webhooks_only(receiver))
    await mp.post(f"/_sim/payments/{payment['id']}/status", json={"status": "approved"})
    await asyncio.sleep(0.1)
    held = await notifications(mp)
    before_release = list(receiver.deliveries)

    released = (await mp.post("/_sim/notifications/release")).json()
    await drain(mp)

    assert before_release == []
    assert [record["state"] for record in held] == ["held", "held"]
    assert [record["action"] for record in released] == ["payment.updated", "payment.created"]
    assert [delivery.body["action"] for delivery in receiver.deliveries] == [
        "payment.updated",
        "payment.created",
    ]
    assert {record["state"] for record in await notifications(mp)} == {"delivered"}


async def test_held_notifications_are_not_sent_before_release(
    mp: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    await mp.patch("/_sim/config", json={"outOfOrder": True})
    await create_payment(mp, notification_url=webhooks_only(receiver))

    await drain(mp)

    assert receiver.deliveries == []


async def test_dropped_notifications_are_recorded_and_never_sent(
    mp: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    await mp.patch("/_sim/config", json={"dropNotifications": True})
    payment = await create_payment(mp, notification_url=webhooks_only(receiver))

    await drain(mp)
    await asyncio.sleep(0.1)
    (record,) = await notifications(mp)

    assert receiver.deliveries == []
    assert (record["paymentId"], record["state"], record["attempts"]) == (payment["id"], "dropped", [])


async def test_failed_deliveries_are_retried_with_x_retry(
    mp: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    receiver.answers = [500, 503]
    await create_payment(mp, notification_url=webhooks_only(receiver))

    deliveries = await receiver.wait_for(3)
    await drain(mp)
    (record,) = await notifications(mp)

    assert [delivery.answered for delivery in deliveries] == [500, 503, 200]
    assert [delivery.headers.get("x-retry") for delivery in deliveries] == [None, "1", "2"]
    assert len({delivery.request_id for delivery in deliveries}) == 1
    assert all(delivery.signed_with(SIM_SECRET) == "original" for delivery in deliveries)
    assert record["state"] == "delivered"
    assert [(attempt["retry"], attempt["status"]) for attempt in record["attempts"]] == [
        (0, 500),
        (1, 503),
        (2, 200),
    ]


async def test_retries_stop_after_the_schedule(mp: httpx.AsyncClient, receiver: WebhookReceiver) -> None:
    receiver.answers = [500] * 10
    await create_payment(mp, notification_url=webhooks_only(receiver))

    await drain(mp)
    (record,) = await notifications(mp)

    assert record["state"] == "failing"
    assert [attempt["status"] for attempt in record["attempts"]] == [500, 500, 500, 500]
    assert record["nextAttemptAt"] is None


async def test_an_unreachable_receiver_counts_as_a_failure(mp: httpx.AsyncClient) -> None:
    closed = listening_socket()
    url = f"{socket_url(closed)}/hooks?source_news=webhooks"
    closed.close()
    await create_payment(mp, notification_url=url)

    await drain(mp)
    (record,) = await notifications(mp)

    assert record["state"] == "failing"
    assert [attempt["error"] for attempt in record["attempts"]] == ["ConnectError"] * 4


async def test_drain_reports_deliveries_still_waiting_for_a_retry(
    mp: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    await mp.patch("/_sim/config", json={"retrySchedule": [30]})
    receiver.answers = [500]
    await create_payment(mp, notification_url=webhooks_only(receiver))
    await receiver.wait_for(1)

    response = await mp.post("/_sim/notifications/drain", params={"timeout": 0.2})
    (record,) = await notifications(mp)

    assert response.status_code == 504
    assert response.json() == {"drained": False, "outstanding": [record["id"]]}
    assert record["state"] == "failing"
    assert record["nextAttemptAt"] is not None


async def test_notification_delay(mp: httpx.AsyncClient, receiver: WebhookReceiver) -> None:
    await mp.patch("/_sim/config", json={"notificationDelaySeconds": 0.3})
    await create_payment(mp, notification_url=webhooks_only(receiver))

    early = await notifications(mp)
    await receiver.wait_for(1)

    assert [record["state"] for record in early] == ["pending"]


async def test_legacy_ipn_unless_source_news_is_webhooks(
    mp: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    payment = await create_payment(mp, notification_url=f"{receiver.url}?shop=7")

    (webhook,) = await receiver.wait_for(1)
    (ipn,) = await receiver.wait_for(1, kind="ipn")

    assert webhook.query == {"shop": "7", "data.id": str(payment["id"]), "type": "payment"}
    assert ipn.query == {"shop": "7", "topic": "payment", "id": str(payment["id"])}
    assert "x-signature" not in ipn.headers
    assert {record["kind"] for record in await notifications(mp)} == {"webhook", "ipn"}


async def test_resend_repeats_the_request_id(mp: httpx.AsyncClient, receiver: WebhookReceiver) -> None:
    await create_payment(mp, notification_url=webhooks_only(receiver))
    (first,) = await receiver.wait_for(1)
    (record,) = await notifications(mp)

    resent = await mp.post(f"/_sim/notifications/{record['id']}/resend")
    deliveries = await receiver.wait_for(2)
    unknown = await mp.post("/_sim/notifications/999/resend")

    assert resent.status_code == 201
    assert resent.json()["resendOf"] == record["id"]
    assert deliveries[1].request_id == first.request_id
    assert deliveries[1].body == first.body
    assert deliveries[1].signed_with(SIM_SECRET) == "original"
    assert unknown.status_code == 404


async def test_configured_notification_url_serves_payments_without_one(
    mp: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    await mp.patch("/_sim/config", json={"notificationUrl": webhooks_only(receiver)})
    payment = await create_payment(mp)

    (delivery,) = await receiver.wait_for(1)

    assert delivery.query["data.id"] == str(payment["id"])


def test_with_query_appends_to_an_existing_query() -> None:
    assert with_query("http://x.test/h", [("a", "1")]) == "http://x.test/h?a=1"
    assert with_query("http://x.test/h?t=z", [("data.id", "5")]) == "http://x.test/h?t=z&data.id=5"
