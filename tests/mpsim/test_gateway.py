"""In front of the official API: idempotency, injected faults and the request log."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from tests.mpsim.conftest import AUTH, create_payment, create_preference, idempotency, notifications
from ticketera.mpsim.gateway import Gateway, OfficialApiMiddleware

PAYMENT = {
    "transaction_amount": 250,
    "payment_method_id": "visa",
    "payer": {"email": "buyer@example.com", "first_name": "APRO"},
    "external_reference": "order-1",
}


async def requests_log(mp: httpx.AsyncClient) -> list[dict[str, Any]]:
    log: list[dict[str, Any]] = (await mp.get("/_sim/requests")).json()
    return log


async def payments_total(mp: httpx.AsyncClient) -> int:
    total: int = (await mp.get("/v1/payments/search")).json()["paging"]["total"]
    return total


async def test_same_key_and_body_replays_the_first_answer(mp: httpx.AsyncClient) -> None:
    headers = idempotency("order-1:pay")
    first = await mp.post("/v1/payments", json=PAYMENT, headers=headers)
    # Same JSON, other spacing and key order: the same request.
    reordered = json.dumps(dict(reversed(list(PAYMENT.items()))), indent=2)
    second = await mp.post(
        "/v1/payments", content=reordered, headers={**headers, "Content-Type": "application/json"}
    )

    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert await payments_total(mp) == 1
    assert len(await notifications(mp)) == 0  # no notification_url: nothing to send, nothing twice
    log = [entry for entry in await requests_log(mp) if entry["path"] == "/v1/payments"]
    assert [(entry["idempotencyKey"], entry["replayed"]) for entry in log] == [
        ("order-1:pay", False),
        ("order-1:pay", True),
    ]


async def test_same_key_with_another_body_is_409(mp: httpx.AsyncClient) -> None:
    headers = idempotency()
    await mp.post("/v1/payments", json=PAYMENT, headers=headers)

    conflict = await mp.post("/v1/payments", json={**PAYMENT, "transaction_amount": 251}, headers=headers)

    assert conflict.status_code == 409
    assert set(conflict.json()) == {"message", "error", "status", "cause"}
    assert await payments_total(mp) == 1


async def test_keys_are_scoped_by_method_and_path(mp: httpx.AsyncClient) -> None:
    first = await create_payment(mp, key="shared-key")
    second_payment = await create_payment(mp, key="other-key")

    refund = await mp.post(f"/v1/payments/{first['id']}/refunds", json={}, headers=idempotency("shared-key"))
    other = await mp.post(
        f"/v1/payments/{second_payment['id']}/refunds", json={}, headers=idempotency("shared-key")
    )

    assert refund.status_code == other.status_code == 201
    assert refund.json()["payment_id"] != other.json()["payment_id"]


async def test_a_replayed_cancel_answers_as_the_first_time(mp: httpx.AsyncClient) -> None:
    payment = await create_payment(mp, "CONT")
    headers = idempotency()

    first = await mp.put(f"/v1/payments/{payment['id']}", json={"status": "cancelled"}, headers=headers)
    replay = await mp.put(f"/v1/payments/{payment['id']}", json={"status": "cancelled"}, headers=headers)
    without_key = await mp.put(f"/v1/payments/{payment['id']}", json={"status": "cancelled"})

    assert first.status_code == replay.status_code == 200
    assert replay.json() == first.json()
    assert without_key.status_code == 400


async def test_client_errors_are_remembered_too(mp: httpx.AsyncClient) -> None:
    headers = idempotency()
    bad = {**PAYMENT, "transaction_amount": -5}

    first = await mp.post("/v1/payments", json=bad, headers=headers)
    again = await mp.post("/v1/payments", json=bad, headers=headers)

    assert first.status_code == again.status_code == 400
    assert again.json() == first.json()


async def test_concurrent_requests_with_one_key_create_one_payment(mp: httpx.AsyncClient) -> None:
    await mp.post("/_sim/faults", json={"delaySeconds": 0.2, "pathPrefix": "/v1/payments", "count": 1})
    headers = idempotency()

    answers = await asyncio.gather(
        *(mp.post("/v1/payments", json=PAYMENT, headers=headers) for _ in range(3))
    )

    assert {answer.status_code for answer in answers} == {201}
    assert len({answer.json()["id"] for answer in answers}) == 1
    assert await payments_total(mp) == 1


async def test_a_key_in_use_is_locked_until_its_first_request_answers() -> None:
    release = asyncio.Event()

    async def slow_payment(scope: Scope, receive: Receive, send: Send) -> None:
        await release.wait()
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b'{"id": 1}'})

    gateway = OfficialApiMiddleware(slow_payment, gateway=Gateway(), access_token="t")
    transport = httpx.ASGITransport(app=gateway)
    headers = {"Authorization": "Bearer t", **idempotency()}
    async with httpx.AsyncClient(transport=transport, base_url="http://sim.test", headers=headers) as client:
        first = asyncio.create_task(client.post("/v1/payments", json=PAYMENT))
        await asyncio.sleep(0.05)
        locked = await client.post("/v1/payments", json=PAYMENT)
        release.set()
        answered = await first
        replayed = await client.post("/v1/payments", json=PAYMENT)

    assert locked.status_code == 423
    assert locked.json()["cause"][0]["code"] == "idempotency_key_locked"
    assert (answered.status_code, replayed.status_code) == (201, 201)
    assert replayed.json() == answered.json() == {"id": 1}


async def test_an_overlong_key_is_refused(mp: httpx.AsyncClient) -> None:
    response = await mp.post("/v1/payments", json=PAYMENT, headers=idempotency("k" * 65))

    assert response.status_code == 400


async def test_fault_answers_the_next_matching_requests(mp: httpx.AsyncClient) -> None:
    preference = await create_preference(mp)
    added = await mp.post("/_sim/faults", json={"status": 503, "count": 2, "pathPrefix": "/v1/payments"})

    statuses = [(await mp.get("/v1/payments/search")).status_code for _ in range(3)]
    elsewhere = await mp.get(f"/checkout/preferences/{preference['id']}")
    log = await requests_log(mp)

    assert added.status_code == 201
    assert added.json()["remaining"] == 2
    assert statuses == [503, 503, 200]
    assert elsewhere.status_code == 200
    searches = [entry for entry in log if entry["path"] == "/v1/payments/search"]
    assert [(entry["status"], entry["fault"]) for entry in searches] == [
        (503, True),
        (503, True),
        (200, False),
    ]


async def test_fault_body_is_in_mercadopago_shape(mp: httpx.AsyncClient) -> None:
    await mp.post("/_sim/faults", json={"status": 429})

    response = await mp.get("/v1/payments/search")

    assert response.status_code == 429
    assert response.json() == {
        "message": "Simulated error",
        "error": "too_many_requests",
        "status": 429,
        "cause": [],
    }


async def test_fault_by_method_and_cleared(mp: httpx.AsyncClient) -> None:
    await mp.post("/_sim/faults", json={"status": 500, "count": 5, "method": "POST"})
    key = idempotency()

    read = await mp.get("/v1/payments/search")
    failed = await mp.post("/v1/payments", json=PAYMENT, headers=key)
    listed = (await mp.get("/_sim/faults")).json()
    cleared = await mp.delete("/_sim/faults")
    # A failure is not remembered against the key: the retry with it runs.
    retried = await mp.post("/v1/payments", json=PAYMENT, headers=key)

    assert read.status_code == 200
    assert failed.status_code == 500
    assert failed.json()["error"] == "internal_error"
    assert [fault["remaining"] for fault in listed] == [4]
    assert cleared.status_code == 204
    assert (await mp.get("/_sim/faults")).json() == []
    assert retried.status_code == 201


async def test_a_delay_without_status_is_a_timeout_whose_request_still_happens(
    mp: httpx.AsyncClient, sim: str
) -> None:
    await mp.post("/_sim/faults", json={"delaySeconds": 0.5, "method": "POST", "pathPrefix": "/v1/payments"})
    headers = {**AUTH, **idempotency("order-9:pay")}

    async with httpx.AsyncClient(base_url=sim, timeout=0.1) as impatient:
        with pytest.raises(httpx.ReadTimeout):
            await impatient.post("/v1/payments", json=PAYMENT, headers=headers)
    retried = await mp.post("/v1/payments", json=PAYMENT, headers=headers)

    assert retried.status_code == 201
    assert await payments_total(mp) == 1
    log = [entry for entry in await requests_log(mp) if entry["path"] == "/v1/payments"]
    assert [(entry["fault"], entry["replayed"]) for entry in log] == [(True, False), (False, True)]


async def test_a_delayed_error(mp: httpx.AsyncClient) -> None:
    await mp.post("/_sim/faults", json={"status": 504, "delaySeconds": 0.2})
    loop = asyncio.get_running_loop()
    started = loop.time()

    response = await mp.get("/v1/payments/search")

    assert response.status_code == 504
    assert loop.time() - started >= 0.2


async def test_request_log_covers_only_the_official_api(mp: httpx.AsyncClient, sim: str) -> None:
    await mp.get("/_sim/config")
    async with httpx.AsyncClient(base_url=sim) as anonymous:
        await anonymous.get("/v1/payments/1")
    await mp.get("/v1/payments/search", params={"external_reference": "x"})

    log = await requests_log(mp)

    assert [(entry["method"], entry["path"], entry["status"]) for entry in log] == [
        ("GET", "/v1/payments/1", 401),
        ("GET", "/v1/payments/search", 200),
    ]
    assert log[1]["query"] == "external_reference=x"
    assert log[1]["idempotencyKey"] is None
