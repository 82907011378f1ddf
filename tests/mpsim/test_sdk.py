"""The official SDK (mercadopago 3.6, sync, requests-based) works against the simulator unchanged.

The SDK's base URL is a private constant (`Config.__api_base_url`), so the only seam is the HTTP client:
a subclass of its own `HttpClient` that rewrites the base URL and changes nothing else. Calls run in a
thread because the simulator is served by the test's event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import mercadopago
import pytest
from mercadopago.config import RequestOptions
from mercadopago.errors.exceptions import MPNotFoundError
from mercadopago.http import HttpClient

from tests.mpsim.conftest import SIM_TOKEN

MERCADOPAGO_API = "https://api.mercadopago.com"
T = TypeVar("T")


class SimulatorHttpClient(HttpClient):  # type: ignore[misc]  # the SDK ships no type hints
    """The SDK's own requests-based client, pointed at the simulator instead of MercadoPago."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def request(
        self,
        method: str,
        url: str,
        maxretries: int | None = None,
        retry_on: list[int] | None = None,
        backoff_factor: float | None = None,
        **kwargs: Any,
    ) -> Any:
        assert url.startswith(MERCADOPAGO_API), url
        return super().request(
            method,
            self.base_url + url.removeprefix(MERCADOPAGO_API),
            maxretries,
            retry_on,
            backoff_factor,
            **kwargs,
        )


async def call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(function, *args, **kwargs)


@pytest.fixture
def sdk(sim: str) -> Any:
    return mercadopago.SDK(SIM_TOKEN, http_client=SimulatorHttpClient(sim))


async def test_preference_create_and_get(sdk: Any, sim: str) -> None:
    created = await call(
        sdk.preference().create,
        {
            "items": [{"title": "Campo", "quantity": 3, "unit_price": 9000, "currency_id": "ARS"}],
            "back_urls": {"success": "http://shop.test/ok"},
            "auto_return": "approved",
            "external_reference": "order-sdk",
        },
    )
    read = await call(sdk.preference().get, created["response"]["id"])
    bad = await call(sdk.preference().create, {"items": [], "auto_return": "approved"})

    assert created["status"] == 201
    assert created["response"]["init_point"].startswith(f"{sim}/checkout/v1/redirect?pref_id=")
    assert read["status"] == 200
    assert read["response"]["external_reference"] == "order-sdk"
    assert bad["status"] == 400
    assert bad.error_message


async def test_payment_create_get_search_refund_and_cancel(sdk: Any) -> None:
    body = {
        "transaction_amount": 1200,
        "description": "2 tickets",
        "payment_method_id": "master",
        "payer": {"email": "sdk@example.com", "first_name": "APRO"},
        "external_reference": "order-sdk",
    }
    created = await call(sdk.payment().create, body)
    payment_id = created["response"]["id"]
    read = await call(sdk.payment().get, payment_id)
    found = await call(
        sdk.payment().search, {"external_reference": "order-sdk", "sort": "date_created", "criteria": "desc"}
    )
    partial = await call(sdk.refund().create, payment_id, {"amount": 200})
    full = await call(sdk.refund().create, payment_id)  # no body at all: a full refund of what is left
    refunds = await call(sdk.refund().list_all, payment_id)
    one_refund = await call(sdk.refund().get, payment_id, partial["response"]["id"])
    after = await call(sdk.payment().get, payment_id)
    pending = await call(
        sdk.payment().create, {**body, "payer": {"email": "sdk@example.com", "first_name": "CONT"}}
    )
    cancelled = await call(sdk.payment().update, pending["response"]["id"], {"status": "cancelled"})

    assert created["status"] == 201
    assert read["status"] == 200
    assert read["response"]["status"] == "approved"
    assert found["response"]["paging"]["total"] == 1
    assert [result["id"] for result in found["response"]["results"]] == [payment_id]
    assert (partial["status"], partial["response"]["amount"]) == (201, 200)
    assert (full["status"], full["response"]["amount"]) == (201, 1000)
    assert [refund["amount"] for refund in refunds["response"]] == [200, 1000]
    assert one_refund["response"]["id"] == partial["response"]["id"]
    assert (after["response"]["status"], after["response"]["transaction_amount_refunded"]) == (
        "refunded",
        1200,
    )
    assert cancelled["status"] == 200
    assert cancelled["response"]["status"] == "cancelled"


async def test_an_application_idempotency_key_makes_a_retry_safe(sdk: Any, sim: str) -> None:
    options = RequestOptions(custom_headers={"x-idempotency-key": "order-77:pay"})
    body = {
        "transaction_amount": 500,
        "payment_method_id": "visa",
        "payer": {"email": "sdk@example.com", "first_name": "APRO"},
    }

    first = await call(sdk.payment().create, body, options)
    retry = await call(sdk.payment().create, body, options)
    other_body = await call(sdk.payment().create, {**body, "transaction_amount": 501}, options)

    assert first["status"] == retry["status"] == 201
    assert retry["response"]["id"] == first["response"]["id"]
    assert other_body["status"] == 409
    async with httpx.AsyncClient(base_url=sim) as control:
        log = (await control.get("/_sim/requests")).json()
    assert [entry["replayed"] for entry in log] == [False, True, False]


async def test_errors_reach_the_sdk_typed(sdk: Any, sim: str) -> None:
    missing = await call(sdk.payment().get, 42)
    anonymous = mercadopago.SDK("wrong-token", http_client=SimulatorHttpClient(sim))
    unauthorized = await call(anonymous.payment().get, 42)

    assert missing["status"] == 404
    assert [cause["code"] for cause in missing.error_causes] == [2000]
    assert unauthorized["status"] == 401
    with pytest.raises(MPNotFoundError):
        missing.raise_for_status()
