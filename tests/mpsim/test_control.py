"""The control API: config, reset, simulated checkouts and admin moves."""

from __future__ import annotations

import httpx
import pytest

from tests.mpsim.conftest import (
    SIM_SECRET,
    WebhookReceiver,
    create_payment,
    create_preference,
    drain,
    notifications,
)
from tests.mpsim_server import FAST_RETRY_SCHEDULE

DEFAULT_CONFIG = {
    "idCasing": "original",
    "tsUnit": "s",
    "duplicates": 0,
    "duplicateSameRequestId": True,
    "outOfOrder": False,
    "dropNotifications": False,
    "notificationDelaySeconds": 0.0,
    "retrySchedule": list(FAST_RETRY_SCHEDULE),
    "webhookSecret": SIM_SECRET,
    "notificationUrl": None,
}


async def test_config_reads_patches_and_refuses_nonsense(mp: httpx.AsyncClient) -> None:
    before = (await mp.get("/_sim/config")).json()
    patched = await mp.patch("/_sim/config", json={"tsUnit": "ms", "duplicates": 1})
    unknown = await mp.patch("/_sim/config", json={"colour": "blue"})
    bad = await mp.patch("/_sim/config", json={"idCasing": "upper"})
    negative = await mp.patch("/_sim/config", json={"retrySchedule": [1, -1]})
    after = (await mp.get("/_sim/config")).json()

    assert before == DEFAULT_CONFIG
    assert patched.status_code == 200
    assert patched.json() == {**DEFAULT_CONFIG, "tsUnit": "ms", "duplicates": 1}
    assert unknown.status_code == bad.status_code == negative.status_code == 422
    assert after == patched.json()


async def test_reset_forgets_everything_but_keeps_counting(mp: httpx.AsyncClient) -> None:
    preference = await create_preference(mp)
    old = await create_payment(mp, notification_url="http://127.0.0.1:9/hooks")
    await mp.patch("/_sim/config", json={"outOfOrder": True})
    await mp.post("/_sim/faults", json={"status": 500, "pathPrefix": "/nowhere"})

    reset = await mp.post("/_sim/reset")
    state = {
        "preference": (await mp.get(f"/checkout/preferences/{preference['id']}")).status_code,
        "payment": (await mp.get(f"/v1/payments/{old['id']}")).status_code,
        "config": (await mp.get("/_sim/config")).json(),
        "faults": (await mp.get("/_sim/faults")).json(),
        "notifications": await notifications(mp),
    }
    requests_after_reset = (await mp.get("/_sim/requests")).json()
    new = await create_payment(mp)

    assert reset.status_code == 204
    assert state == {
        "preference": 404,
        "payment": 404,
        "config": DEFAULT_CONFIG,
        "faults": [],
        "notifications": [],
    }
    assert [entry["path"] for entry in requests_after_reset] == [
        f"/checkout/preferences/{preference['id']}",
        f"/v1/payments/{old['id']}",
    ]
    assert new["id"] > old["id"]


async def test_health(mp: httpx.AsyncClient) -> None:
    await create_payment(mp)

    health = (await mp.get("/_sim/health")).json()

    assert health == {"status": "ok", "payments": 1, "preferences": 0, "notifications": 0}


async def test_simulated_payment_is_what_the_checkout_does(
    mp: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    preference = await create_preference(
        mp, notification_url=f"{receiver.url}?source_news=webhooks", metadata={"order": 42}
    )

    response = await mp.post(
        "/_sim/payments", json={"preferenceId": preference["id"], "outcome": "APRO", "payerEmail": "x@y.test"}
    )
    payment = response.json()
    (delivery,) = await receiver.wait_for(1)

    assert response.status_code == 201
    assert payment == (await mp.get(f"/v1/payments/{payment['id']}")).json()
    assert (payment["status"], payment["transaction_amount"], payment["currency_id"]) == (
        "approved",
        3001,
        "ARS",
    )
    assert payment["external_reference"] == "order-42"
    assert payment["preference_id"] == preference["id"]
    assert payment["metadata"] == {"order": 42}
    assert payment["payer"]["email"] == "x@y.test"
    assert delivery.body["action"] == "payment.created"


async def test_simulated_payment_refusals(mp: httpx.AsyncClient) -> None:
    expired = await create_preference(mp, expires=True, expiration_date_to="2020-01-01T00:00:00Z")

    unknown = await mp.post("/_sim/payments", json={"preferenceId": "nope"})
    bad_outcome = await mp.post("/_sim/payments", json={"preferenceId": expired["id"], "outcome": "WHAT"})
    refused = await mp.post("/_sim/payments", json={"preferenceId": expired["id"]})
    forced = await mp.post("/_sim/payments", json={"preferenceId": expired["id"], "ignoreExpiry": True})

    assert unknown.status_code == 404
    assert bad_outcome.status_code == 400
    assert refused.status_code == 410
    assert "expired" in refused.json()["message"]
    assert forced.status_code == 201


async def test_cash_payment_approved_later_by_an_admin_move(
    mp: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    preference = await create_preference(mp, notification_url=f"{receiver.url}?source_news=webhooks")
    pending = (
        await mp.post("/_sim/payments", json={"preferenceId": preference["id"], "outcome": "CASH"})
    ).json()

    moved = await mp.post(f"/_sim/payments/{pending['id']}/status", json={"status": "approved"})
    deliveries = await receiver.wait_for(2)

    payment = moved.json()
    assert (pending["status"], pending["status_detail"], pending["date_approved"]) == (
        "pending",
        "pending_waiting_payment",
        None,
    )
    assert moved.status_code == 200
    assert (payment["status"], payment["status_detail"]) == ("approved", "accredited")
    assert payment["date_approved"] is not None
    assert payment["date_last_updated"] >= pending["date_last_updated"]
    assert [delivery.body["action"] for delivery in deliveries] == ["payment.created", "payment.updated"]


@pytest.mark.parametrize(
    ("first_name", "move", "expected"),
    [
        ("CONT", {"status": "cancelled"}, ("cancelled", "expired")),
        ("CONT", {"status": "expired"}, ("cancelled", "expired")),
        ("APRO", {"status": "cancelled"}, ("cancelled", "by_collector")),
        ("APRO", {"status": "canceled", "statusDetail": "by_payer"}, ("cancelled", "by_payer")),
        ("APRO", {"status": "charged_back"}, ("charged_back", "settled")),
        ("APRO", {"status": "charged_back", "statusDetail": "reimbursed"}, ("charged_back", "reimbursed")),
        ("APRO", {"status": "in_mediation"}, ("in_mediation", None)),
        ("CONT", {"status": "rejected"}, ("rejected", "cc_rejected_other_reason")),
    ],
)
async def test_admin_moves(
    mp: httpx.AsyncClient, first_name: str, move: dict[str, str], expected: tuple[str, str | None]
) -> None:
    payment = await create_payment(mp, first_name)

    moved = await mp.post(f"/_sim/payments/{payment['id']}/status", json=move)

    assert moved.status_code == 200
    assert (moved.json()["status"], moved.json()["status_detail"]) == expected


async def test_admin_refund_refunds_what_is_left(mp: httpx.AsyncClient) -> None:
    payment = await create_payment(mp, transaction_amount=100)
    await mp.post(
        f"/v1/payments/{payment['id']}/refunds", json={"amount": 40}, headers={"X-Idempotency-Key": "r1"}
    )

    moved = (await mp.post(f"/_sim/payments/{payment['id']}/status", json={"status": "refunded"})).json()

    assert (moved["status"], moved["status_detail"]) == ("refunded", "by_admin")
    assert moved["transaction_amount_refunded"] == 100
    assert [refund["amount"] for refund in moved["refunds"]] == [40, 60]


async def test_admin_move_refusals(mp: httpx.AsyncClient) -> None:
    payment = await create_payment(mp)

    unknown_status = await mp.post(f"/_sim/payments/{payment['id']}/status", json={"status": "lost"})
    unknown_payment = await mp.post("/_sim/payments/1/status", json={"status": "approved"})

    assert unknown_status.status_code == 400
    assert unknown_payment.status_code == 404


async def test_admin_moves_are_notified(mp: httpx.AsyncClient, receiver: WebhookReceiver) -> None:
    payment = await create_payment(mp, notification_url=f"{receiver.url}?source_news=webhooks")

    await mp.post(f"/_sim/payments/{payment['id']}/status", json={"status": "charged_back"})
    await drain(mp)

    records = await notifications(mp, paymentId=payment["id"])
    assert [record["action"] for record in records] == ["payment.created", "payment.updated"]
    assert {record["state"] for record in records} == {"delivered"}
    assert await notifications(mp, paymentId=1) == []
