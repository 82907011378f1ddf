"""Holds over HTTP on every backend: all or nothing, limits, access tokens, release and expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN
from tests.factories import open_sale, shopper_token


async def seat_ids(client: httpx.AsyncClient, event: dict[str, Any]) -> list[int]:
    seats = (await client.get(f"/api/events/{event['id']}/seats")).json()["seats"]
    return [seat["id"] for seat in seats]


async def hold(client: httpx.AsyncClient, event_id: int, token: str, body: dict[str, Any]) -> httpx.Response:
    return await client.post(f"/api/events/{event_id}/holds", json=body, headers={"X-Access-Token": token})


async def test_holding_reserved_seats_and_general_admission(client: httpx.AsyncClient) -> None:
    event = await open_sale(client)
    platea, campo = event["sections"]
    ids = await seat_ids(client, event)
    token = await shopper_token(client, event["id"], "ana")

    before = datetime.now(UTC)
    seats = await hold(client, event["id"], token, {"seatIds": [ids[3], ids[1]]})
    after = datetime.now(UTC)
    places = await hold(client, event["id"], token, {"sectionId": campo["id"], "quantity": 3})

    assert seats.status_code == 201, seats.text
    body = seats.json()
    assert body["holdId"].startswith("h_")
    assert [seat["label"] for seat in body["seats"]] == ["A-2", "A-4"]
    assert (body["total"], body["currency"], body["quantity"]) == ("30000.00", "ARS", 2)
    expires = datetime.fromisoformat(body["expiresAt"].replace("Z", "+00:00"))
    # Ten minutes from when the server took the hold, however long the request took (a second of
    # slack either side for a database that stores whole seconds).
    ten_minutes, second = timedelta(minutes=10), timedelta(seconds=1)
    assert before + ten_minutes - second <= expires <= after + ten_minutes + second
    assert places.status_code == 201
    assert (places.json()["total"], places.json()["quantity"]) == ("27000.00", 3)
    assert {seat["label"] for seat in places.json()["seats"]} == {None}
    detail = (await client.get(f"/api/events/{event['id']}")).json()
    assert [(s["held"], s["available"]) for s in detail["sections"]] == [(2, 8), (3, 7)]
    assert platea["id"] == body["seats"][0]["section"]


async def test_reserved_holds_are_all_or_nothing_and_name_the_taken_seats(client: httpx.AsyncClient) -> None:
    event = await open_sale(client)
    ids = await seat_ids(client, event)
    first = await hold(
        client, event["id"], await shopper_token(client, event["id"], "ana"), {"seatIds": ids[:2]}
    )

    clash = await hold(
        client,
        event["id"],
        await shopper_token(client, event["id"], "beto"),
        {"seatIds": [ids[1], ids[2], ids[3]]},
    )

    assert first.status_code == 201
    assert clash.status_code == 409
    assert clash.json()["error"] == "seats_unavailable"
    assert clash.json()["seats"] == [ids[1]]
    statuses = {
        s["id"]: s["status"] for s in (await client.get(f"/api/events/{event['id']}/seats")).json()["seats"]
    }
    assert [statuses[i] for i in ids[:4]] == ["held", "held", "available", "available"]


async def test_general_admission_runs_out_cleanly(client: httpx.AsyncClient) -> None:
    event = await open_sale(client)
    campo = event["sections"][1]
    tokens = [await shopper_token(client, event["id"], f"u{n}") for n in range(4)]

    results = [
        await hold(client, event["id"], token, {"sectionId": campo["id"], "quantity": 3}) for token in tokens
    ]

    assert [r.status_code for r in results] == [201, 201, 201, 409]
    assert results[3].json()["error"] == "seats_unavailable"
    detail = (await client.get(f"/api/events/{event['id']}")).json()
    assert detail["sections"][1]["available"] == 1


async def test_max_tickets_per_user_counts_live_holds(client: httpx.AsyncClient) -> None:
    event = await open_sale(client, maxTicketsPerUser=4)
    campo = event["sections"][1]
    token = await shopper_token(client, event["id"], "ana")

    first = await hold(client, event["id"], token, {"sectionId": campo["id"], "quantity": 3})
    too_many = await hold(client, event["id"], token, {"sectionId": campo["id"], "quantity": 2})
    released = await client.delete(f"/api/holds/{first.json()['holdId']}")
    again = await hold(client, event["id"], token, {"sectionId": campo["id"], "quantity": 4})

    assert first.status_code == 201
    assert too_many.status_code == 409
    assert too_many.json() | {"message": ""} == {
        "error": "limit_exceeded",
        "message": "",
        "limit": 4,
        "alreadyHeldOrBought": 3,
        "requested": 2,
    }
    assert released.status_code == 204
    assert again.status_code == 201


@pytest.mark.parametrize("token", [None, "garbage"])
async def test_holds_need_a_valid_access_token(client: httpx.AsyncClient, token: str | None) -> None:
    event = await open_sale(client)
    headers = {"X-Access-Token": token} if token else {}

    response = await client.post(f"/api/events/{event['id']}/holds", json={"seatIds": [1]}, headers=headers)

    assert response.status_code == 403
    assert response.json()["error"] == "access_required"


async def test_a_token_for_another_event_is_refused(client: httpx.AsyncClient) -> None:
    event = await open_sale(client)
    other = await open_sale(client, name="Otro")
    token = await shopper_token(client, other["id"], "ana")

    response = await hold(
        client, event["id"], token, {"sectionId": event["sections"][1]["id"], "quantity": 1}
    )

    assert response.status_code == 403


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body"),
        ({"seatIds": []}, "seatIds"),
        ({"seatIds": [1, 1]}, "body"),
        ({"sectionId": 1}, "body"),
        ({"seatIds": [1], "quantity": 2}, "body"),
        ({"sectionId": 1, "quantity": 0}, "quantity"),
    ],
)
async def test_bad_hold_requests_are_422(client: httpx.AsyncClient, body: dict[str, Any], field: str) -> None:
    event = await open_sale(client)
    token = await shopper_token(client, event["id"], "ana")

    response = await hold(client, event["id"], token, body)

    assert response.status_code == 422
    assert response.json()["fields"][0]["field"] == field


async def test_unknown_seats_and_wrong_section_kinds_are_422(client: httpx.AsyncClient) -> None:
    event = await open_sale(client)
    platea, campo = event["sections"]
    token = await shopper_token(client, event["id"], "ana")
    campo_place = (await hold(client, event["id"], token, {"sectionId": campo["id"], "quantity": 1})).json()[
        "seats"
    ][0]["id"]

    unknown = await hold(client, event["id"], token, {"seatIds": [999_999]})
    place_as_seat = await hold(client, event["id"], token, {"seatIds": [campo_place + 1]})
    reserved_by_quantity = await hold(client, event["id"], token, {"sectionId": platea["id"], "quantity": 1})
    missing_section = await hold(client, event["id"], token, {"sectionId": 999_999, "quantity": 1})

    assert (unknown.status_code, unknown.json()["fields"][0]["field"]) == (422, "seatIds")
    assert place_as_seat.status_code == 422
    assert reserved_by_quantity.status_code == 422
    assert missing_section.status_code == 404


async def test_no_holds_when_sales_are_closed(client: httpx.AsyncClient) -> None:
    event = await open_sale(client)
    token = await shopper_token(client, event["id"], "ana")
    await client.patch(f"/api/events/{event['id']}", json={"status": "paused"}, headers=ADMIN)

    paused = await hold(client, event["id"], token, {"sectionId": event["sections"][1]["id"], "quantity": 1})

    assert (paused.status_code, paused.json()["error"], paused.json()["reason"]) == (
        409,
        "sales_closed",
        "paused",
    )


async def test_release_frees_at_once_and_is_idempotent(client: httpx.AsyncClient) -> None:
    event = await open_sale(client)
    ids = await seat_ids(client, event)
    held = await hold(
        client, event["id"], await shopper_token(client, event["id"], "ana"), {"seatIds": ids[:3]}
    )
    hold_id = held.json()["holdId"]

    first = await client.delete(f"/api/holds/{hold_id}")
    second = await client.delete(f"/api/holds/{hold_id}")
    shown = await client.get(f"/api/holds/{hold_id}")
    retaken = await hold(
        client, event["id"], await shopper_token(client, event["id"], "beto"), {"seatIds": ids[:3]}
    )

    assert (first.status_code, second.status_code) == (204, 204)
    assert shown.json()["status"] == "released"
    assert retaken.status_code == 201
    assert (await client.delete("/api/holds/h_doesnotexist")).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"seatIds": [2**63]},
        {"seatIds": [1, 2**70]},
        {"sectionId": 2**63, "quantity": 1},
    ],
)
async def test_ids_past_what_the_database_holds_are_refused_as_input(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    """An id no BIGINT can hold is a 422 naming the field, not a 500 from the driver's overflow."""
    event = await open_sale(client)
    refused = await hold(client, event["id"], await shopper_token(client, event["id"], "ana"), body)
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"] == "validation_error"


@pytest.mark.parametrize("quantity", [True, "2", 1.5])
async def test_a_quantity_is_a_whole_number_not_anything_like_one(
    client: httpx.AsyncClient, quantity: object
) -> None:
    event = await open_sale(client)
    campo = event["sections"][1]
    token = await shopper_token(client, event["id"], "ana")
    refused = await hold(client, event["id"], token, {"sectionId": campo["id"], "quantity": quantity})
    assert refused.status_code == 422, refused.text


async def test_a_whole_number_written_with_a_decimal_point_is_that_number(client: httpx.AsyncClient) -> None:
    # To JSON Schema, and so to the OpenAPI document and the clients made from it, 2.0 is the integer 2.
    event = await open_sale(client)
    campo = event["sections"][1]
    token = await shopper_token(client, event["id"], "ana")
    held = await hold(client, event["id"], token, {"sectionId": float(campo["id"]), "quantity": 2.0})
    assert held.status_code == 201, held.text
    assert held.json()["quantity"] == 2


async def test_the_other_form_s_keys_as_null_are_left_out(client: httpx.AsyncClient) -> None:
    event = await open_sale(client)
    campo = event["sections"][1]
    token = await shopper_token(client, event["id"], "ana")
    body = {"sectionId": campo["id"], "quantity": 1, "seatIds": None}

    held = await hold(client, event["id"], token, body)

    assert held.status_code == 201, held.text


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"seatIds": [1], "sectionId": 2}, "body", "send either seatIds, or sectionId with quantity"),
        ({"quantity": 2}, "body", "sectionId and quantity go together"),
        ({"seatIds": [1, 1]}, "body", "seatIds must not repeat"),
        ({"seatIds": [1], "color": "red"}, "color", "unknown field"),
        ({"sectionId": 1, "quantity": 0}, "quantity", "Input should be greater than or equal to 1"),
        ([1], "body", "the request body must be a JSON object"),
    ],
)
async def test_a_hold_is_one_of_two_forms_and_says_what_is_wrong(
    client: httpx.AsyncClient, body: Any, field: str, message: str
) -> None:
    event = await open_sale(client)
    token = await shopper_token(client, event["id"], "ana")

    refused = await hold(client, event["id"], token, body)

    assert refused.status_code == 422, refused.text
    assert refused.json()["fields"] == [{"field": field, "message": message}]


async def test_the_document_shows_the_two_forms_of_a_hold(client: httpx.AsyncClient) -> None:
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]

    assert schemas["HoldRequest"]["oneOf"] == [
        {"$ref": "#/components/schemas/SeatHold"},
        {"$ref": "#/components/schemas/QuantityHold"},
    ]
    assert schemas["SeatHold"]["required"] == ["seatIds"]
    assert schemas["SeatHold"]["properties"]["seatIds"]["uniqueItems"] is True
    assert schemas["QuantityHold"]["required"] == ["sectionId", "quantity"]
    assert schemas["QuantityHold"]["additionalProperties"] is False
