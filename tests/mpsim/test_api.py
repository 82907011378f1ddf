"""The official-shaped API: preferences, payments, search, cancellation and refunds."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.mpsim.conftest import create_payment, create_preference, idempotency

ITEM = {"title": "x", "quantity": 1, "unit_price": 10}


def assert_mp_error(response: httpx.Response, status: int, code: int | str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert response.status_code == status, response.text
    assert set(body) == {"message", "error", "status", "cause"}
    assert body["status"] == status
    if code is not None:
        assert [cause["code"] for cause in body["cause"]] == [code]
        assert all(set(cause) == {"code", "description"} for cause in body["cause"])
    return body


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic TEST-sim-token"}],
    ids=["missing", "wrong", "not-bearer"],
)
async def test_official_api_needs_the_access_token(sim: str, headers: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=sim, headers=headers) as anonymous:
        response = await anonymous.get("/v1/payments/search")

    body = assert_mp_error(response, 401)
    assert body["error"] == "unauthorized"


async def test_unknown_official_path_answers_in_mercadopago_shape(mp: httpx.AsyncClient) -> None:
    assert_mp_error(await mp.get("/v1/nothing/here"), 404)


async def test_preference_is_created_read_and_updated(mp: httpx.AsyncClient, sim: str) -> None:
    created = await create_preference(mp, notification_url="http://shop.test/hooks", metadata={"order": 42})

    read = (await mp.get(f"/checkout/preferences/{created['id']}")).json()
    updated = await mp.put(
        f"/checkout/preferences/{created['id']}",
        json={"external_reference": "order-43", "id": "ignored", "init_point": "http://evil.test"},
    )

    assert created["init_point"] == f"{sim}/checkout/v1/redirect?pref_id={created['id']}"
    assert created["sandbox_init_point"] == created["init_point"]
    assert created["id"].startswith(f"{created['collector_id']}-")
    assert created["date_created"].endswith("-03:00")
    assert created["items"][0]["unit_price"] == 1500.5
    assert created["metadata"] == {"order": 42}
    assert created["notification_url"] == "http://shop.test/hooks"
    assert read == created
    assert updated.status_code == 200
    assert updated.json()["external_reference"] == "order-43"
    assert updated.json()["id"] == created["id"]
    assert updated.json()["init_point"] == created["init_point"]


async def test_auto_return_needs_a_success_back_url(mp: httpx.AsyncClient) -> None:
    body = {"items": [{"title": "x", "quantity": 1, "unit_price": 10}], "auto_return": "approved"}

    missing = await mp.post("/checkout/preferences", json=body)
    empty = await mp.post("/checkout/preferences", json={**body, "back_urls": {"success": ""}})
    fine = await mp.post("/checkout/preferences", json={**body, "back_urls": {"success": "http://x.test/ok"}})

    assert assert_mp_error(missing, 400)["message"] == "auto_return invalid. back_url.success must be defined"
    assert_mp_error(empty, 400)
    assert fine.status_code == 201


@pytest.mark.parametrize(
    "item",
    [
        {"title": "x", "quantity": 0, "unit_price": 10},
        {"title": "x", "quantity": 1.5, "unit_price": 10},
        {"title": "x", "quantity": 1, "unit_price": 0},
        {"title": "x", "quantity": 1, "unit_price": "10.00"},
        {"title": "x", "quantity": 1, "unit_price": True},
        {"title": "x", "quantity": 1},
    ],
)
async def test_preference_items_are_validated(mp: httpx.AsyncClient, item: dict[str, Any]) -> None:
    response = await mp.post("/checkout/preferences", json={"items": [item]})

    assert_mp_error(response, 400, "invalid_items")


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        ({"items": []}, "invalid_items", "items must be a non-empty list"),
        ({"items": [ITEM, "seat"]}, "invalid_items", "items[1] must be an object"),
        (
            {"items": [ITEM, {**ITEM, "quantity": 0}]},
            "invalid_items",
            "items[1].quantity must be a positive integer",
        ),
        (
            {"items": [ITEM, {**ITEM, "currency_id": "USD"}]},
            "invalid_items",
            "all items must have the same currency_id",
        ),
        (
            {"items": [ITEM], "back_urls": {"success": 1}},
            "invalid_back_urls",
            "back_urls.success must be a string",
        ),
        (
            {"items": [ITEM], "expiration_date_to": "tomorrow"},
            "invalid_date",
            "expiration_date_to must be an ISO 8601 date",
        ),
        (
            {"items": [ITEM], "binary_mode": "sometimes"},
            "invalid_parameters",
            "binary_mode must be true or false",
        ),
    ],
)
async def test_a_bad_preference_is_answered_with_the_field_and_one_cause(
    mp: httpx.AsyncClient, body: dict[str, Any], code: str, message: str
) -> None:
    response = await mp.post("/checkout/preferences", json=body)

    assert assert_mp_error(response, 400, code)["message"] == message


async def test_unknown_preference_is_404(mp: httpx.AsyncClient) -> None:
    assert_mp_error(await mp.get("/checkout/preferences/1-nope"), 404)


@pytest.mark.parametrize(
    ("first_name", "status", "detail"),
    [
        ("APRO", "approved", "accredited"),
        ("CONT", "in_process", "pending_contingency"),
        ("OTHE", "rejected", "cc_rejected_other_reason"),
        ("CALL", "rejected", "cc_rejected_call_for_authorize"),
        ("FUND", "rejected", "cc_rejected_insufficient_amount"),
        ("SECU", "rejected", "cc_rejected_bad_filled_security_code"),
        ("EXPI", "rejected", "cc_rejected_bad_filled_date"),
        ("FORM", "rejected", "cc_rejected_bad_filled_other"),
    ],
)
async def test_card_holder_name_chooses_the_outcome(
    mp: httpx.AsyncClient, first_name: str, status: str, detail: str
) -> None:
    payment = await create_payment(mp, first_name)

    assert (payment["status"], payment["status_detail"]) == (status, detail)
    assert (payment["date_approved"] is not None) == (status == "approved")
    assert payment["payment_type_id"] == "credit_card"


@pytest.mark.parametrize("method", ["rapipago", "pagofacil"])
async def test_cash_methods_wait_for_payment(mp: httpx.AsyncClient, method: str) -> None:
    payment = await create_payment(mp, "APRO", payment_method_id=method)

    assert (payment["status"], payment["status_detail"]) == ("pending", "pending_waiting_payment")
    assert payment["payment_type_id"] == "ticket"
    assert payment["date_of_expiration"] is not None
    assert payment["date_approved"] is None


async def test_payment_reads_back_with_every_documented_field(mp: httpx.AsyncClient) -> None:
    created = await create_payment(mp, metadata={"order_id": 42})

    response = await mp.get(f"/v1/payments/{created['id']}")
    payment = response.json()

    assert response.status_code == 200
    assert payment == created
    assert payment["id"] >= 1300000001
    assert {
        "status",
        "status_detail",
        "external_reference",
        "transaction_amount",
        "transaction_amount_refunded",
        "currency_id",
        "date_created",
        "date_approved",
        "date_last_updated",
        "date_of_expiration",
        "payment_method_id",
        "payment_type_id",
        "payer",
        "refunds",
        "metadata",
    } <= set(payment)
    assert set(payment["payer"]) >= {"id", "email", "identification"}
    assert payment["transaction_amount"] == 3001
    assert payment["transaction_amount_refunded"] == 0
    assert payment["currency_id"] == "ARS"
    assert payment["metadata"] == {"order_id": 42}
    assert payment["refunds"] == []


@pytest.mark.parametrize("payment_id", ["999", "abc"])
async def test_unknown_payment_is_404_with_code_2000(mp: httpx.AsyncClient, payment_id: str) -> None:
    assert_mp_error(await mp.get(f"/v1/payments/{payment_id}"), 404, 2000)


async def test_payment_creation_needs_an_idempotency_key(mp: httpx.AsyncClient) -> None:
    body = {
        "transaction_amount": 10,
        "payment_method_id": "master",
        "payer": {"email": "a@example.com", "first_name": "APRO"},
    }

    response = await mp.post("/v1/payments", json=body)

    assert_mp_error(response, 400, 4292)


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"transaction_amount": 0}, 4037),
        ({"transaction_amount": "10"}, 4037),
        ({"payer": {"email": "not-an-email"}}, 4050),
        ({"notification_url": "ftp://x"}, 4020),
    ],
)
async def test_payment_body_is_validated(mp: httpx.AsyncClient, changes: dict[str, Any], code: int) -> None:
    body = {
        "transaction_amount": 10,
        "payment_method_id": "master",
        "payer": {"email": "a@example.com", "first_name": "APRO"},
        **changes,
    }

    response = await mp.post("/v1/payments", json=body, headers=idempotency())

    assert_mp_error(response, 400, code)


async def test_search_filters_sorts_and_pages(mp: httpx.AsyncClient) -> None:
    ids = [(await create_payment(mp, external_reference="order-7"))["id"] for _ in range(5)]
    await create_payment(mp, external_reference="order-8")

    newest_first = (
        await mp.get(
            "/v1/payments/search",
            params={"external_reference": "order-7", "sort": "date_created", "criteria": "desc"},
        )
    ).json()
    oldest_page = (
        await mp.get(
            "/v1/payments/search",
            params={"external_reference": "order-7", "criteria": "asc", "limit": 2, "offset": 2},
        )
    ).json()
    bad_sort = await mp.get("/v1/payments/search", params={"sort": "amount"})

    assert newest_first["paging"] == {"total": 5, "limit": 30, "offset": 0}
    assert [payment["id"] for payment in newest_first["results"]] == ids[::-1]
    assert oldest_page["paging"] == {"total": 5, "limit": 2, "offset": 2}
    assert [payment["id"] for payment in oldest_page["results"]] == ids[2:4]
    assert_mp_error(bad_sort, 400)


async def test_pending_payment_can_be_cancelled_once(mp: httpx.AsyncClient) -> None:
    pending = await create_payment(mp, "CONT")
    approved = await create_payment(mp, "APRO")

    cancelled = await mp.put(f"/v1/payments/{pending['id']}", json={"status": "cancelled"})
    again = await mp.put(f"/v1/payments/{pending['id']}", json={"status": "cancelled"})
    not_pending = await mp.put(f"/v1/payments/{approved['id']}", json={"status": "cancelled"})

    assert cancelled.status_code == 200
    assert (cancelled.json()["status"], cancelled.json()["status_detail"]) == ("cancelled", "by_collector")
    assert_mp_error(again, 400, 2063)
    assert_mp_error(not_pending, 400, 2063)


async def test_full_refund(mp: httpx.AsyncClient) -> None:
    payment = await create_payment(mp)

    response = await mp.post(f"/v1/payments/{payment['id']}/refunds", json={}, headers=idempotency())
    after = (await mp.get(f"/v1/payments/{payment['id']}")).json()

    refund = response.json()
    assert response.status_code == 201
    assert {"id", "payment_id", "amount", "status", "date_created"} <= set(refund)
    assert (refund["payment_id"], refund["amount"], refund["status"]) == (payment["id"], 3001, "approved")
    assert (after["status"], after["status_detail"]) == ("refunded", "refunded")
    assert after["transaction_amount_refunded"] == 3001
    assert [item["id"] for item in after["refunds"]] == [refund["id"]]


async def test_partial_refunds_until_nothing_is_left(mp: httpx.AsyncClient) -> None:
    payment = await create_payment(mp, transaction_amount=100)
    refunds = f"/v1/payments/{payment['id']}/refunds"

    first = await mp.post(refunds, json={"amount": 30.5}, headers=idempotency())
    after_first = (await mp.get(f"/v1/payments/{payment['id']}")).json()
    too_much = await mp.post(refunds, json={"amount": 70}, headers=idempotency())
    rest = await mp.post(refunds, json={"amount": 69.5}, headers=idempotency())
    after_rest = (await mp.get(f"/v1/payments/{payment['id']}")).json()
    listed = (await mp.get(refunds)).json()

    assert first.status_code == 201
    assert (after_first["status"], after_first["status_detail"]) == ("approved", "partially_refunded")
    assert after_first["transaction_amount_refunded"] == 30.5
    assert_mp_error(too_much, 400, 2063)
    assert rest.status_code == 201
    assert (after_rest["status"], after_rest["status_detail"]) == ("refunded", "refunded")
    assert after_rest["transaction_amount_refunded"] == 100
    assert [refund["amount"] for refund in listed] == [30.5, 69.5]


async def test_refund_rules(mp: httpx.AsyncClient) -> None:
    rejected = await create_payment(mp, "OTHE")
    approved = await create_payment(mp)

    not_approved = await mp.post(f"/v1/payments/{rejected['id']}/refunds", json={}, headers=idempotency())
    unknown = await mp.post("/v1/payments/42/refunds", json={}, headers=idempotency())
    no_key = await mp.post(f"/v1/payments/{approved['id']}/refunds", json={})
    negative = await mp.post(
        f"/v1/payments/{approved['id']}/refunds", json={"amount": -1}, headers=idempotency()
    )

    assert_mp_error(not_approved, 400, 2063)
    assert_mp_error(unknown, 404, 2000)
    assert_mp_error(no_key, 400, 4292)
    assert_mp_error(negative, 400)
    assert (await mp.get(f"/v1/payments/{approved['id']}")).json()["status"] == "approved"


async def test_refund_of_a_refunded_payment_is_2063(mp: httpx.AsyncClient) -> None:
    payment = await create_payment(mp)
    await mp.post(f"/v1/payments/{payment['id']}/refunds", headers=idempotency())

    again = await mp.post(f"/v1/payments/{payment['id']}/refunds", headers=idempotency())

    assert_mp_error(again, 400, 2063)
