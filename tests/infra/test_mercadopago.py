"""Our MercadoPago client against the simulator over real HTTP: calls, errors, retries and the breaker.

The simulator is the session's server (`simulator_url`), reset before each test; faults are injected
through its control API and every request that reached it is read back from `/_sim/requests`. Retry
delays are shrunk with `retry=` wherever waiting would only slow the test down, except in the test
that proves what the default policy does.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.conftest import ACCESS_TOKEN
from tests.fakes import FakeMonotonic
from tests.shop import Simulator, eventually
from tests.test_cli import free_port
from ticketera.infra.mercadopago import (
    MAX_ATTEMPTS,
    MercadoPagoClient,
    MercadoPagoError,
    PaymentsUnavailable,
    is_dependency_failure,
)
from ticketera.kit.resilience import BreakerState, CircuitBreaker, CircuitOpenError, RetryPolicy

# Retries a millisecond apart: the number of attempts is what these tests look at, not the waits.
QUICK_RETRY = RetryPolicy(
    max_attempts=MAX_ATTEMPTS, base_delay=0.001, max_delay=0.001, is_retryable=is_dependency_failure
)
OPEN_SECONDS = 120.0


ClientFactory = Callable[..., MercadoPagoClient]


@pytest.fixture
async def make_client(simulator_url: str) -> AsyncIterator[ClientFactory]:
    """Builds clients pointed at the simulator (quick retries unless told otherwise); closes them all."""
    made: list[MercadoPagoClient] = []

    def build(**options: Any) -> MercadoPagoClient:
        options.setdefault("base_url", simulator_url)
        options.setdefault("retry", QUICK_RETRY)
        client = MercadoPagoClient(options.pop("access_token", ACCESS_TOKEN), **options)
        made.append(client)
        return client

    yield build
    for client in made:
        await client.close()


def preference_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "items": [
            {"id": "section-1", "title": "Noche de Rock - Campo", "quantity": 2, "unit_price": 1500.5},
        ],
        "payer": {"email": "ana@example.com", "name": "Ana", "surname": "Pérez"},
        "external_reference": f"ref-{uuid.uuid4().hex[:12]}",
    }
    body.update(overrides)
    return body


async def official_requests(sim: Simulator, path: str | None = None) -> list[dict[str, Any]]:
    return [request for request in await sim.requests() if path is None or request["path"] == path]


async def paid_payment(client: MercadoPagoClient, sim: Simulator, outcome: str = "APRO") -> dict[str, Any]:
    """A payment of 3001.00 ARS made on the simulator's checkout, with its external reference."""
    body = preference_body()
    preference = await client.create_preference(body, idempotency_key=uuid.uuid4().hex)
    payment = await sim.pay(preference.id, outcome)
    payment["reference"] = body["external_reference"]
    return payment


async def open_the_breaker(client: MercadoPagoClient, sim: Simulator) -> None:
    await sim.fail_next(3, status=503)
    with pytest.raises(PaymentsUnavailable):
        await client.search_payments("anything")
    assert state_of(client) is BreakerState.OPEN


def state_of(client: MercadoPagoClient) -> BreakerState:
    # Read through a call: mypy would otherwise narrow the property after the first assertion.
    return client.breaker.state


# -- calls and their answers ---------------------------------------------------------------------


async def test_a_wrong_token_is_a_401_that_is_neither_retried_nor_counted(
    make_client: ClientFactory, sim: Simulator
) -> None:
    client = make_client(access_token="TEST-not-our-token")

    with pytest.raises(MercadoPagoError) as refused:
        await client.search_payments("ref-1")

    assert refused.value.status == 401
    assert len(await official_requests(sim)) == 1
    # A 401 is our configuration, not MercadoPago failing: the breaker must not count it.
    assert state_of(client) is BreakerState.CLOSED
    assert client.breaker.failure_count == 0


async def test_a_preference_is_created_with_our_idempotency_key_and_replayed_for_it(
    make_client: ClientFactory, sim: Simulator, simulator_url: str
) -> None:
    client = make_client()
    body = preference_body()

    first = await client.create_preference(body, idempotency_key="ticketera-checkout-1-abc")
    again = await client.create_preference(body, idempotency_key="ticketera-checkout-1-abc")
    other = await client.create_preference(body, idempotency_key="ticketera-checkout-2-def")

    assert first.id
    assert first.init_point == f"{simulator_url}/checkout/v1/redirect?pref_id={first.id}"
    assert again == first
    assert other.id != first.id
    sent = await official_requests(sim, "/checkout/preferences")
    assert [(r["method"], r["idempotencyKey"], r["replayed"]) for r in sent] == [
        ("POST", "ticketera-checkout-1-abc", False),
        ("POST", "ticketera-checkout-1-abc", True),
        ("POST", "ticketera-checkout-2-def", False),
    ]
    assert (await sim.call("GET", "/_sim/health"))["preferences"] == 2


async def test_a_payment_is_read_and_searched_with_typed_fields(
    make_client: ClientFactory, sim: Simulator
) -> None:
    client = make_client()
    payment = await paid_payment(client, sim)

    read = await client.get_payment(str(payment["id"]))
    found = await client.search_payments(payment["reference"])
    nothing = await client.search_payments("ref-that-nobody-used")

    assert read.id == str(payment["id"])
    assert (read.status, read.status_detail) == ("approved", "accredited")
    assert read.external_reference == payment["reference"]
    assert read.amount == Decimal("3001.00")
    assert isinstance(read.amount, Decimal)
    assert read.refunded_amount == Decimal("0.00")
    assert read.currency == "ARS"
    assert read.payment_type == "credit_card"
    assert isinstance(read.last_updated, datetime)
    assert read.last_updated.utcoffset() is not None
    assert read.last_updated == datetime.fromisoformat(payment["date_last_updated"])
    assert read.raw["id"] == payment["id"]
    assert [p.id for p in found] == [read.id]
    assert found[0].amount == read.amount
    assert nothing == []


async def test_search_lists_every_payment_of_a_reference_newest_first(
    make_client: ClientFactory, sim: Simulator
) -> None:
    client = make_client()
    body = preference_body()
    preference = await client.create_preference(body, idempotency_key=uuid.uuid4().hex)
    rejected = await sim.pay(preference.id, "OTHE")
    approved = await sim.pay(preference.id, "APRO")

    found = await client.search_payments(body["external_reference"])

    assert [(p.id, p.status) for p in found] == [
        (str(approved["id"]), "approved"),
        (str(rejected["id"]), "rejected"),
    ]


async def test_refunds_partial_then_full_then_refused_with_cause_2063(
    make_client: ClientFactory, sim: Simulator
) -> None:
    client = make_client()
    payment_id = str((await paid_payment(client, sim))["id"])

    partial = await client.refund_payment(
        payment_id, idempotency_key="refund-part", amount=Decimal("1000.50")
    )
    after_partial = await client.get_payment(payment_id)
    full = await client.refund_payment(payment_id, idempotency_key="refund-rest")
    after_full = await client.get_payment(payment_id)
    with pytest.raises(MercadoPagoError) as refused:
        await client.refund_payment(payment_id, idempotency_key="refund-again")

    assert (partial.payment_id, partial.amount, partial.status) == (
        payment_id,
        Decimal("1000.50"),
        "approved",
    )
    assert (after_partial.status, after_partial.status_detail) == ("approved", "partially_refunded")
    assert after_partial.refunded_amount == Decimal("1000.50")
    assert full.amount == Decimal("2000.50")
    assert full.id != partial.id
    assert (after_full.status, after_full.refunded_amount) == ("refunded", Decimal("3001.00"))
    assert refused.value.status == 400
    assert refused.value.cause_codes == {"2063"}
    refunds = await official_requests(sim, f"/v1/payments/{payment_id}/refunds")
    assert [r["idempotencyKey"] for r in refunds] == ["refund-part", "refund-rest", "refund-again"]
    assert client.breaker.failure_count == 0


async def test_a_pending_payment_is_cancelled_and_an_approved_one_cannot_be(
    make_client: ClientFactory, sim: Simulator
) -> None:
    client = make_client()
    pending = str((await paid_payment(client, sim, "CONT"))["id"])
    cancelled = await client.cancel_payment(pending, idempotency_key=f"cancel-{pending}")
    assert cancelled.status == "cancelled"
    assert (await client.get_payment(pending)).status == "cancelled"
    approved = str((await paid_payment(client, sim))["id"])
    with pytest.raises(MercadoPagoError) as refused:
        await client.cancel_payment(approved, idempotency_key=f"cancel-{approved}")
    assert refused.value.status == 400
    assert client.breaker.failure_count == 0


async def test_a_refund_sent_again_with_its_key_is_replayed_not_repeated(
    make_client: ClientFactory, sim: Simulator
) -> None:
    client = make_client()
    payment_id = str((await paid_payment(client, sim))["id"])

    first = await client.refund_payment(payment_id, idempotency_key="refund-once", amount=Decimal("100"))
    again = await client.refund_payment(payment_id, idempotency_key="refund-once", amount=Decimal("100"))

    assert again == first
    assert (await client.get_payment(payment_id)).refunded_amount == Decimal("100.00")


async def test_an_unknown_payment_is_a_404_with_cause_2000(
    make_client: ClientFactory, sim: Simulator
) -> None:
    client = make_client()

    with pytest.raises(MercadoPagoError) as missing:
        await client.get_payment("987654321")

    assert missing.value.status == 404
    assert missing.value.cause_codes == {"2000"}
    assert len(await official_requests(sim)) == 1
    assert client.breaker.failure_count == 0


# -- retries ---------------------------------------------------------------------------------------


async def test_two_503s_then_success_is_three_requests_and_a_closed_breaker(
    make_client: ClientFactory, sim: Simulator
) -> None:
    client = make_client()
    await sim.fail_next(2, status=503, pathPrefix="/checkout/preferences")

    preference = await client.create_preference(preference_body(), idempotency_key="checkout-retried")

    sent = await official_requests(sim, "/checkout/preferences")
    assert [(r["status"], r["fault"]) for r in sent] == [(503, True), (503, True), (201, False)]
    # Every retry is the same business step: the same key, so MercadoPago could recognise it.
    assert {r["idempotencyKey"] for r in sent} == {"checkout-retried"}
    assert preference.id
    assert state_of(client) is BreakerState.CLOSED
    assert client.breaker.failure_count == 0  # the success wiped the two failures


async def test_a_429_is_retried(make_client: ClientFactory, sim: Simulator) -> None:
    client = make_client()
    await sim.fail_next(1, status=429, pathPrefix="/v1/payments/search")

    assert await client.search_payments("ref-1") == []

    assert [r["status"] for r in await official_requests(sim)] == [429, 200]
    assert state_of(client) is BreakerState.CLOSED


async def test_a_400_is_not_retried_and_not_counted(make_client: ClientFactory, sim: Simulator) -> None:
    client = make_client()
    await sim.fail_next(1, status=400, pathPrefix="/checkout/preferences")

    with pytest.raises(MercadoPagoError) as refused:
        await client.create_preference(preference_body(), idempotency_key="checkout-400")

    assert refused.value.status == 400
    assert len(await official_requests(sim)) == 1
    assert state_of(client) is BreakerState.CLOSED
    assert client.breaker.failure_count == 0


async def test_the_default_policy_makes_four_attempts_at_most(
    make_client: ClientFactory, sim: Simulator
) -> None:
    # Real backoff (0.2 s doubling, full jitter: at most 1.4 s in all). The real breaker opens at the
    # third failure and so hides the fourth attempt; a breaker that never opens lets every attempt the
    # policy makes reach the simulator.
    client = make_client(retry=None)
    client.breaker = CircuitBreaker(
        "mercadopago",
        failure_threshold=100,
        reset_timeout=OPEN_SECONDS,
        counts_as_failure=is_dependency_failure,
    )
    await sim.fail_next(10, status=503)

    with pytest.raises(PaymentsUnavailable) as unavailable:
        await client.search_payments("ref-1")

    assert len(await official_requests(sim)) == MAX_ATTEMPTS == 4
    # Given up by the policy on MercadoPago's own answer, not cut short by a breaker.
    assert str(unavailable.value.__cause__) == "MercadoPago answered 503"


async def test_with_the_real_breaker_the_fourth_default_attempt_is_refused(
    make_client: ClientFactory, sim: Simulator
) -> None:
    client = make_client(retry=None)
    await sim.fail_next(10, status=500)

    with pytest.raises(PaymentsUnavailable) as unavailable:
        await client.search_payments("ref-1")

    assert len(await official_requests(sim)) == 3
    # The default policy did try a fourth time: the breaker, open by then, refused it.
    assert isinstance(unavailable.value.__cause__, CircuitOpenError)
    assert state_of(client) is BreakerState.OPEN


# -- timeouts and the breaker ----------------------------------------------------------------------


async def test_timeouts_are_retried_until_the_breaker_opens(
    make_client: ClientFactory, sim: Simulator
) -> None:
    client = make_client(timeout=0.3)
    # No status: the request runs, its answer comes a second later, long after the client gave up.
    await sim.call(
        "POST", "/_sim/faults", json={"count": 10, "delaySeconds": 1.0, "pathPrefix": "/v1/payments/search"}
    )

    with pytest.raises(PaymentsUnavailable) as unavailable:
        await client.search_payments("ref-slow")

    assert len(await official_requests(sim, "/v1/payments/search")) == 3
    assert state_of(client) is BreakerState.OPEN
    assert client.breaker.failure_count == 3
    # The fourth attempt never left: the breaker refused it and said when to come back.
    assert isinstance(unavailable.value.__cause__, CircuitOpenError)
    assert unavailable.value.retry_after is not None
    assert 0 < unavailable.value.retry_after <= OPEN_SECONDS


async def test_while_open_calls_fail_fast_without_a_request(
    make_client: ClientFactory, sim: Simulator
) -> None:
    client = make_client()
    await open_the_breaker(client, sim)
    sent_before = len(await official_requests(sim))

    with pytest.raises(PaymentsUnavailable):
        await client.get_payment("123")
    with pytest.raises(PaymentsUnavailable):
        await client.create_preference(preference_body(), idempotency_key="checkout-while-open")
    with pytest.raises(PaymentsUnavailable) as unavailable:
        client.ensure_available()

    assert len(await official_requests(sim)) == sent_before
    assert unavailable.value.retry_after is not None
    assert 0 < unavailable.value.retry_after <= OPEN_SECONDS


async def test_after_two_minutes_one_probe_goes_through_and_its_success_closes_the_breaker(
    make_client: ClientFactory, sim: Simulator
) -> None:
    clock = FakeMonotonic()
    client = make_client(breaker_clock=clock)
    await open_the_breaker(client, sim)
    sent_before = len(await official_requests(sim))

    clock.advance(OPEN_SECONDS - 1)
    with pytest.raises(PaymentsUnavailable) as early:
        client.ensure_available()
    assert early.value.retry_after == pytest.approx(1.0)
    clock.advance(1)
    assert state_of(client) is BreakerState.HALF_OPEN
    client.ensure_available()  # half-open: a caller may try

    # The probe's answer is held back a second, so a second caller surely arrives while it is in flight.
    await sim.call("POST", "/_sim/faults", json={"count": 1, "delaySeconds": 1.0})
    probe = asyncio.create_task(client.search_payments("ref-probe"))

    async def probe_arrived() -> bool:
        return len(await official_requests(sim)) > sent_before

    await eventually(probe_arrived)
    with pytest.raises(PaymentsUnavailable) as refused:
        await client.search_payments("ref-second")
    assert await probe == []

    assert refused.value.retry_after == 0.0  # another probe may go as soon as this one ends
    assert len(await official_requests(sim)) == sent_before + 1
    assert state_of(client) is BreakerState.CLOSED
    assert client.breaker.failure_count == 0
    assert await client.search_payments("ref-after") == []


async def test_a_failing_probe_reopens_the_breaker_for_another_two_minutes(
    make_client: ClientFactory, sim: Simulator
) -> None:
    clock = FakeMonotonic()
    client = make_client(breaker_clock=clock)
    await open_the_breaker(client, sim)
    clock.advance(OPEN_SECONDS)
    await sim.fail_next(5, status=503)
    sent_before = len(await official_requests(sim))

    with pytest.raises(PaymentsUnavailable) as failed:
        await client.search_payments("ref-probe")

    # One probe, and its retry is refused by the breaker it reopened.
    assert len(await official_requests(sim)) == sent_before + 1
    assert isinstance(failed.value.__cause__, CircuitOpenError)
    assert state_of(client) is BreakerState.OPEN
    assert client.breaker.seconds_until_probe == pytest.approx(OPEN_SECONDS)
    clock.advance(OPEN_SECONDS - 1)
    with pytest.raises(PaymentsUnavailable):
        await client.search_payments("ref-still-open")
    assert len(await official_requests(sim)) == sent_before + 1
    clock.advance(1)
    await sim.clear_faults()
    assert await client.search_payments("ref-recovered") == []
    assert state_of(client) is BreakerState.CLOSED


async def test_a_connection_error_counts_as_a_failure(make_client: ClientFactory) -> None:
    # A loopback port bound a moment ago and released: nothing listens there.
    client = make_client(base_url=f"http://127.0.0.1:{free_port()}", retry=RetryPolicy(max_attempts=1))

    with pytest.raises(PaymentsUnavailable) as unavailable:
        await client.search_payments("ref-1")

    assert isinstance(unavailable.value.__cause__, httpx.ConnectError)
    assert client.breaker.failure_count == 1
    assert state_of(client) is BreakerState.CLOSED
    for _ in range(2):
        with pytest.raises(PaymentsUnavailable):
            await client.get_payment("1")
    assert state_of(client) is BreakerState.OPEN


async def test_connection_errors_are_retried_until_the_breaker_opens(make_client: ClientFactory) -> None:
    client = make_client(base_url=f"http://127.0.0.1:{free_port()}")

    with pytest.raises(PaymentsUnavailable) as unavailable:
        await client.search_payments("ref-1")

    assert isinstance(unavailable.value.__cause__, CircuitOpenError)
    assert client.breaker.failure_count == 3
    assert state_of(client) is BreakerState.OPEN
