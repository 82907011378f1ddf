"""Express purchase: `POST /api/orders` with the waiting room's access token and a hold's items holds
and orders in one request and one transaction, with the answers, limits and idempotency of a hold
followed by an order."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text

from tests.conftest import DatabaseUnderTest, services_of
from tests.factories import BUYER, ga_section, open_sale, shopper_token
from tests.fakes import FakeClock
from tests.shop import eventually
from ticketera.holds.models import Hold, HoldStatus
from ticketera.orders import service as orders_service


async def test_a_retry_sent_while_its_first_attempt_holds_the_last_places_gets_that_order(
    client: httpx.AsyncClient, db: DatabaseUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first attempt has taken the section's last places and not committed yet when its retry
    comes (the client timed out): the retry's pick passes the locked places by (SKIP LOCKED) and
    finds none. It waits for the buyer's purchase in flight, and answers its order, not sold out."""
    if db.backend != "mariadb":
        pytest.skip("SQLite serialises whole writers: a retry cannot overlap its first attempt's take")
    event = await open_sale(client, sections=[ga_section(capacity=2)])
    token = await shopper_token(client, event["id"], "impatient")
    items = {"sectionId": event["sections"][0]["id"], "quantity": 2}
    holding, release = asyncio.Event(), asyncio.Event()
    order_hold = orders_service._order_hold

    async def first_attempt_pauses(*args: Any, **kwargs: Any) -> Any:
        if not holding.is_set():
            holding.set()
            await release.wait()
        return await order_hold(*args, **kwargs)

    monkeypatch.setattr(orders_service, "_order_hold", first_attempt_pauses)
    first = asyncio.create_task(express(client, token, items, "express-impatient-1"))
    await asyncio.wait_for(holding.wait(), timeout=30)
    retry = asyncio.create_task(express(client, token, items, "express-impatient-1"))
    try:
        # The retry is waiting on the buyer's lock, which the first attempt holds until it commits.
        await eventually(lambda: retry_waits_for_the_buyer(db), within=30)
    finally:
        release.set()
    answers = await asyncio.gather(first, retry)

    assert [answer.status_code for answer in answers] == [201, 201], [answer.text for answer in answers]
    assert answers[0].json()["id"] == answers[1].json()["id"]
    assert answers[1].headers["Idempotent-Replayed"] == "true"
    assert (await availability(client, event["id"]))["held"] == 2


async def retry_waits_for_the_buyer(db: DatabaseUnderTest) -> bool:
    """A statement waiting on the buyer's row (InnoDB waits for a row lock met in a primary-key
    lookup in the optimizer's "Statistics" state, and lists no LOCK WAIT for it)."""
    async with db.engine.connect() as connection:
        waiting = await connection.execute(
            text(
                "SELECT COUNT(*) FROM information_schema.processlist"
                " WHERE info LIKE '%FROM shoppers%' AND info LIKE '%LOCK IN SHARE MODE%'"
                " AND id <> CONNECTION_ID()"
            )
        )
        return int(waiting.scalar_one()) > 0


async def express(
    client: httpx.AsyncClient, token: str | None, items: dict[str, Any], key: str
) -> httpx.Response:
    headers = {"Idempotency-Key": key} | ({"X-Access-Token": token} if token else {})
    return await client.post("/api/orders", json={**items, "buyer": BUYER}, headers=headers)


async def availability(client: httpx.AsyncClient, event_id: int) -> dict[str, int]:
    sections = (await client.get(f"/api/events/{event_id}")).json()["sections"]
    return {key: sum(section[key] for section in sections) for key in ("available", "held", "sold")}


async def holds_by_status(client: httpx.AsyncClient) -> dict[str, int]:
    database = services_of(client.app).database  # type: ignore[attr-defined]
    async with database.read_session() as session:
        rows = await session.execute(select(Hold.status, func.count()).group_by(Hold.status))
        return {str(status): int(count) for status, count in rows.all()}


async def test_general_admission_is_held_and_ordered_in_one_request(
    clocked_client: httpx.AsyncClient, clock: FakeClock
) -> None:
    event = await open_sale(clocked_client, clock)
    token = await shopper_token(clocked_client, event["id"], "ana")
    section_id = event["sections"][1]["id"]

    response = await express(clocked_client, token, {"sectionId": section_id, "quantity": 3}, "express-ana-1")

    assert response.status_code == 201, response.text
    order = response.json()
    assert (order["status"], order["quantity"], order["total"]) == ("pending_payment", 3, "27000.00")
    assert order["eventId"] == event["id"]
    assert "/checkout/v1/redirect?pref_id=" in order["checkoutUrl"]
    assert order["orderToken"]
    assert len(order["seats"]) == 3
    # The order's own deadline (ten minutes), not a hold's that an order then extends.
    assert order["expiresAt"] == clock.now.isoformat().replace("+00:00", "Z").replace("12:00:00", "12:10:00")
    assert (await availability(clocked_client, event["id"]))["held"] == 3
    assert await holds_by_status(clocked_client) == {HoldStatus.ORDERED: 1}
    read = await clocked_client.get(
        f"/api/orders/{order['id']}", headers={"Authorization": f"Bearer {order['orderToken']}"}
    )
    assert read.json()["status"] == "pending_payment"


async def test_reserved_seats_by_id_and_a_retry_gets_the_same_order(
    clocked_client: httpx.AsyncClient, clock: FakeClock
) -> None:
    event = await open_sale(clocked_client, clock)
    token = await shopper_token(clocked_client, event["id"], "beto")
    seats = (await clocked_client.get(f"/api/events/{event['id']}/seats")).json()["seats"]
    items = {"seatIds": [seats[0]["id"], seats[1]["id"]]}

    first = await express(clocked_client, token, items, "express-beto-1")
    again = await express(clocked_client, token, items, "express-beto-1")
    other_body = await express(clocked_client, token, {"seatIds": [seats[2]["id"]]}, "express-beto-1")

    assert first.status_code == 201, first.text
    assert sorted(seat["id"] for seat in first.json()["seats"]) == sorted(items["seatIds"])
    assert again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert (other_body.status_code, other_body.json()["error"]) == (409, "idempotency_mismatch")
    assert (await availability(clocked_client, event["id"]))["held"] == 2  # nothing taken twice


async def test_a_general_admission_retry_gets_the_same_order_and_takes_nothing_more(
    clocked_client: httpx.AsyncClient, clock: FakeClock
) -> None:
    # The retry is not looked up first: it meets its order at the key's unique index, and what it
    # took on its way there goes back with its rolled-back transaction.
    event = await open_sale(clocked_client, clock)
    token = await shopper_token(clocked_client, event["id"], "eva")
    items = {"sectionId": event["sections"][1]["id"], "quantity": 2}

    first = await express(clocked_client, token, items, "express-eva-1")
    again = await express(clocked_client, token, items, "express-eva-1")
    other_body = await express(clocked_client, token, {**items, "quantity": 1}, "express-eva-1")

    assert first.status_code == 201, first.text
    assert (again.status_code, again.json()["id"]) == (201, first.json()["id"])
    assert again.headers["Idempotent-Replayed"] == "true"
    assert (other_body.status_code, other_body.json()["error"]) == (409, "idempotency_mismatch")
    assert (await availability(clocked_client, event["id"]))["held"] == 2
    assert await holds_by_status(clocked_client) == {HoldStatus.ORDERED: 1}


async def test_it_answers_as_a_hold_would(clocked_client: httpx.AsyncClient, clock: FakeClock) -> None:
    event = await open_sale(clocked_client, clock, maxTicketsPerUser=4)
    section_id = event["sections"][1]["id"]
    token = await shopper_token(clocked_client, event["id"], "carla")
    seats = (await clocked_client.get(f"/api/events/{event['id']}/seats")).json()["seats"]
    taken = await express(clocked_client, token, {"seatIds": [seats[0]["id"]]}, "express-carla-1")
    assert taken.status_code == 201

    no_token = await express(clocked_client, None, {"sectionId": section_id, "quantity": 1}, "express-x-1")
    forged = await express(
        clocked_client, "not-a-token", {"sectionId": section_id, "quantity": 1}, "express-x-2"
    )
    past_limit = await express(
        clocked_client, token, {"sectionId": section_id, "quantity": 4}, "express-carla-2"
    )
    dani = await shopper_token(clocked_client, event["id"], "dani")
    seat_gone = await express(clocked_client, dani, {"seatIds": [seats[0]["id"]]}, "express-dani-1")
    too_many = await express(
        clocked_client, token, {"sectionId": section_id, "quantity": 101}, "express-carla-3"
    )
    mixed = await express(
        clocked_client,
        token,
        {"sectionId": section_id, "quantity": 1, "seatIds": [seats[1]["id"]]},
        "express-c-4",
    )

    assert (no_token.status_code, no_token.json()["error"]) == (403, "access_required")
    assert (forged.status_code, forged.json()["error"]) == (403, "access_required")
    assert (past_limit.status_code, past_limit.json()["error"]) == (409, "limit_exceeded")
    assert (seat_gone.status_code, seat_gone.json()["error"]) == (409, "seats_unavailable")
    assert too_many.status_code == 422
    assert mixed.status_code == 422
    # Whatever was refused took nothing: one hold, the one ordered.
    assert await holds_by_status(clocked_client) == {HoldStatus.ORDERED: 1}


async def test_express_buyers_racing_for_the_last_places_never_oversell(client: httpx.AsyncClient) -> None:
    event = await open_sale(client)
    section_id = event["sections"][1]["id"]  # ten places
    tokens = [await shopper_token(client, event["id"], f"fan-{index}") for index in range(16)]

    answers = await asyncio.gather(
        *(
            express(client, token, {"sectionId": section_id, "quantity": 1}, f"express-race-{index}")
            for index, token in enumerate(tokens)
        )
    )

    codes = sorted(answer.status_code for answer in answers)
    assert codes.count(201) == 10
    assert all(
        answer.json()["error"] == "seats_unavailable" for answer in answers if answer.status_code == 409
    )
    assert codes.count(409) == 6
    figures = await availability(client, event["id"])
    assert (figures["available"], figures["held"]) == (10, 10)


async def test_a_retry_that_overlaps_its_first_attempt_gets_the_same_order(client: httpx.AsyncClient) -> None:
    """Sent twice at once (a client's timeout and retry): the second looks for the order before the
    first commits, then meets the first's hold, at the buyer's limit; it answers the first's order."""
    event = await open_sale(client, maxTicketsPerUser=2)
    section_id = event["sections"][1]["id"]  # ten places: never all taken by a first attempt
    for attempt in range(4):
        token = await shopper_token(client, event["id"], f"twice-{attempt}")
        items = {"sectionId": section_id, "quantity": 2}

        first, second = await asyncio.gather(
            express(client, token, items, f"express-twice-{attempt}"),
            express(client, token, items, f"express-twice-{attempt}"),
        )

        assert (first.status_code, second.status_code) == (201, 201), (first.text, second.text)
        assert first.json()["id"] == second.json()["id"]
    assert (await availability(client, event["id"]))["held"] == 8


async def test_a_new_buyers_two_purchases_at_once_are_counted_one_after_the_other(
    client: httpx.AsyncClient,
) -> None:
    """Both are the buyer's first in the event: the one that makes the buyer's row skips the count
    (nothing held yet), and the other waits for that row, finds it, and counts the first's places."""
    event = await open_sale(client, maxTicketsPerUser=2)
    section_id = event["sections"][1]["id"]  # ten places
    for attempt in range(4):
        token = await shopper_token(client, event["id"], f"new-{attempt}")
        items = {"sectionId": section_id, "quantity": 2}

        answers = await asyncio.gather(
            express(client, token, items, f"express-new-{attempt}-a"),
            express(client, token, items, f"express-new-{attempt}-b"),
        )

        assert sorted(answer.status_code for answer in answers) == [201, 409]
        (refused,) = [answer for answer in answers if answer.status_code == 409]
        assert refused.json()["error"] == "limit_exceeded"
    assert (await availability(client, event["id"]))["held"] == 8
