"""The events and inventory API, on every backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import update

from tests.conftest import ADMIN, DatabaseUnderTest, services_of
from tests.factories import create_event, event_body, future, ga_section, reserved_section
from ticketera.events.models import Seat


async def test_the_guides_bare_body_creates_a_published_event(client: httpx.AsyncClient) -> None:
    starts_at = future(days=10)
    response = await client.post(
        "/api/events", json={"name": "Test Event", "startsAt": starts_at}, headers=ADMIN
    )

    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "Test Event"
    assert body["startsAt"] == starts_at
    assert body["status"] == "published"
    assert body["sections"] == []
    assert body["currency"] == "ARS"
    assert body["queue"] == {
        "enabled": True,
        "admitPerMinute": 100,
        "maxActiveShoppers": 500,
        "accessMinutes": 10,
        "paused": False,
    }
    assert isinstance(body["id"], int)


async def test_sections_create_labelled_seats_and_general_admission_places(client: httpx.AsyncClient) -> None:
    created = await create_event(
        client,
        venue="Estadio Unico",
        sections=[reserved_section(rows=3, seats=4), ga_section(capacity=25)],
    )

    platea, campo = created["sections"]
    assert platea | {"id": 0} == {
        "id": 0,
        "name": "Platea",
        "kind": "reserved",
        "price": "15000.00",
        "currency": "ARS",
        "capacity": 12,
        "available": 12,
        "held": 0,
        "sold": 0,
    }
    assert (campo["kind"], campo["capacity"], campo["available"], campo["price"]) == (
        "general_admission",
        25,
        25,
        "9000.00",
    )
    assert created["capacity"] == 37
    seats = (await client.get(f"/api/events/{created['id']}/seats")).json()["seats"]
    assert [seat["label"] for seat in seats] == [f"{row}-{number}" for row in "ABC" for number in range(1, 5)]
    assert {seat["section"] for seat in seats} == {platea["id"]}
    assert len({seat["id"] for seat in seats}) == 12
    assert seats[0] | {"id": 0} == {
        "id": 0,
        "section": platea["id"],
        "sectionName": "Platea",
        "row": "A",
        "number": 1,
        "label": "A-1",
        "status": "available",
    }


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key"},
        {"Authorization": "test-admin-key"},
        {"Authorization": "Basic x"},
    ],
)
async def test_admin_calls_refuse_missing_or_wrong_keys(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    created = await create_event(client)
    calls = [
        client.post("/api/events", json=event_body(), headers=headers),
        client.patch(f"/api/events/{created['id']}", json={"name": "x"}, headers=headers),
        client.post(f"/api/events/{created['id']}/sections", json=ga_section(), headers=headers),
    ]
    for call in calls:
        response = await call
        assert response.status_code == 401
        assert response.json()["error"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"


def _past() -> str:
    return (datetime.now(UTC) - timedelta(days=1)).isoformat()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"startsAt": "2024-12-31T20:00:00Z"}, "startsAt"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        # Taken as sent, as the document describes it: no spaces around a name, a label, a price.
        ({"name": " Noche de Rock "}, "name"),
        (
            {"sections": [{"name": "P", "price": "1.00", "rows": [{"label": " A", "seats": 1}]}]},
            "sections[0].rows[0].label",
        ),
        ({"sections": [ga_section(price="")]}, "sections[0].price"),
        ({"startsAt": "2030-01-01T20:00:00"}, "startsAt"),  # no offset
        ({"startsAt": "not a date"}, "startsAt"),
        ({"sections": [reserved_section(price="-1.00")]}, "sections[0].price"),
        ({"sections": [ga_section(price="10.001")]}, "sections[0].price"),
        (
            {"sections": [{"name": "P", "price": "1.00", "rows": [{"label": "A", "seats": 0}]}]},
            "sections[0].rows[0].seats",
        ),
        ({"sections": [ga_section(capacity=0)]}, "sections[0].capacity"),
        ({"sections": [{"name": "P", "price": "1.00", "rows": []}]}, "sections[0].rows"),
        (
            {
                "sections": [
                    {"name": "P", "price": "1.00", "capacity": 5, "rows": [{"label": "A", "seats": 1}]}
                ]
            },
            "sections[0]",
        ),
        ({"sections": [{"name": "P", "price": "1.00"}]}, "sections[0]"),
        ({"sections": [reserved_section("X"), ga_section("X")]}, "sections[1].name"),
        ({"sections": [ga_section("A", capacity=60_000), ga_section("B", capacity=40_001)]}, "sections"),
        ({"sections": [ga_section(capacity=100_001)]}, "sections[0].capacity"),
        (
            {"sections": [{"name": "P", "price": "1", "rows": [{"label": "A-1", "seats": 2}]}]},
            "sections[0].rows[0].label",
        ),
        ({"maxTicketsPerUser": 0}, "maxTicketsPerUser"),
        ({"onSaleAt": future(days=90), "startsAt": future(days=30)}, "onSaleAt"),
        ({"unknownKey": 1}, "unknownKey"),
        ({"queue": {"admitPerMinute": 0}}, "queue.admitPerMinute"),
        ({"currency": "pesos"}, "currency"),
        ({"status": "cancelled"}, "status"),
    ],
)
async def test_bad_event_input_is_422_naming_the_field(
    client: httpx.AsyncClient, overrides: dict[str, Any], field: str
) -> None:
    response = await client.post("/api/events", json=event_body(**overrides), headers=ADMIN)

    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "validation_error"
    assert field in [error["field"] for error in body["fields"]]
    assert body["message"]


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b"{not json", {"Content-Type": "application/json"}),
        (b"", {"Content-Type": "application/json"}),
        (b"name=x", {"Content-Type": "application/x-www-form-urlencoded"}),
        (b"[1, 2]", {"Content-Type": "application/json"}),
    ],
)
async def test_non_json_bodies_are_422(
    client: httpx.AsyncClient, content: bytes, headers: dict[str, str]
) -> None:
    response = await client.post("/api/events", content=content, headers=ADMIN | headers)

    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"
    assert response.json()["fields"][0]["field"] == "body"


async def test_unknown_ids_are_404(client: httpx.AsyncClient) -> None:
    created = await create_event(client, sections=[reserved_section()])
    missing = created["id"] + 1000
    responses = [
        await client.get(f"/api/events/{missing}"),
        await client.get(f"/api/events/{missing}/seats"),
        await client.patch(f"/api/events/{missing}", json={"name": "x"}, headers=ADMIN),
        await client.post(f"/api/events/{missing}/sections", json=ga_section(), headers=ADMIN),
        await client.get(f"/api/events/{created['id']}/seats", params={"section": 999_999}),
    ]
    assert [response.status_code for response in responses] == [404] * 5
    assert [response.json()["error"] for response in responses] == ["event_not_found"] * 4 + [
        "section_not_found"
    ]


async def test_adding_sections_to_an_existing_event(client: httpx.AsyncClient) -> None:
    created = await create_event(client, sections=[ga_section("Campo")])

    added = await client.post(
        f"/api/events/{created['id']}/sections", json=reserved_section("Pullman"), headers=ADMIN
    )
    duplicate = await client.post(
        f"/api/events/{created['id']}/sections", json=ga_section("Campo"), headers=ADMIN
    )
    too_big = await client.post(
        f"/api/events/{created['id']}/sections",
        json={
            "name": "Big",
            "price": "1.00",
            "rows": [{"label": "A", "seats": 60_000}, {"label": "B", "seats": 40_001}],
        },
        headers=ADMIN,
    )

    assert added.status_code == 201
    assert added.json()["kind"] == "reserved"
    assert added.json()["capacity"] == 10
    assert duplicate.status_code == 409
    assert duplicate.json()["error"] == "duplicate_section"
    assert too_big.status_code == 422
    detail = (await client.get(f"/api/events/{created['id']}")).json()
    assert [section["name"] for section in detail["sections"]] == ["Campo", "Pullman"]
    assert detail["capacity"] == 20


async def test_listing_hides_drafts_from_the_public_and_paginates(client: httpx.AsyncClient) -> None:
    draft = await create_event(client, name="Draft", status="draft", startsAt=future(days=5))
    first = await create_event(client, name="First", startsAt=future(days=1))
    second = await create_event(client, name="Second", startsAt=future(days=2))

    public = (await client.get("/api/events")).json()
    admin = (await client.get("/api/events", headers=ADMIN)).json()
    page = (await client.get("/api/events", params={"limit": 1, "offset": 1})).json()
    only_drafts = (await client.get("/api/events", params={"status": "draft"}, headers=ADMIN)).json()

    assert [item["name"] for item in public["items"]] == ["First", "Second"]
    assert public["total"] == 2
    assert [item["name"] for item in admin["items"]] == ["First", "Second", "Draft"]
    assert [item["id"] for item in page["items"]] == [second["id"]]
    assert (page["total"], page["limit"], page["offset"]) == (2, 1, 1)
    assert [item["id"] for item in only_drafts["items"]] == [draft["id"]]
    assert (await client.get("/api/events", params={"status": "draft"})).json()["items"] == []
    assert (await client.get(f"/api/events/{draft['id']}")).status_code == 404
    assert (await client.get(f"/api/events/{draft['id']}/seats")).status_code == 404
    assert (await client.get(f"/api/events/{draft['id']}", headers=ADMIN)).status_code == 200
    assert (await client.get(f"/api/events/{draft['id']}/seats", headers=ADMIN)).status_code == 200
    assert public["items"][0]["id"] == first["id"]


async def test_live_availability_treats_expired_holds_as_free(
    client: httpx.AsyncClient, db: DatabaseUnderTest
) -> None:
    created = await create_event(client, sections=[reserved_section(rows=1, seats=6), ga_section(capacity=4)])
    platea, campo = created["sections"]
    now = datetime.now(UTC)
    seats = (await client.get(f"/api/events/{created['id']}/seats")).json()["seats"]
    ids = [seat["id"] for seat in seats]
    async with db.engine.begin() as connection:
        await connection.execute(update(Seat).where(Seat.id.in_(ids[:2])).values(status="sold"))
        await connection.execute(
            update(Seat).where(Seat.id == ids[2]).values(status="held", held_until=now + timedelta(minutes=5))
        )
        await connection.execute(
            update(Seat).where(Seat.id == ids[3]).values(status="held", held_until=now - timedelta(seconds=1))
        )
        await connection.execute(
            update(Seat)
            .where(Seat.section_id == campo["id"])
            .values(status="held", held_until=now + timedelta(minutes=5))
        )

    detail = (await client.get(f"/api/events/{created['id']}")).json()
    by_name = {section["name"]: section for section in detail["sections"]}
    statuses = {
        seat["id"]: seat["status"]
        for seat in (await client.get(f"/api/events/{created['id']}/seats")).json()["seats"]
    }
    held = (await client.get(f"/api/events/{created['id']}/seats", params={"status": "held"})).json()["seats"]
    available = (
        await client.get(f"/api/events/{created['id']}/seats", params={"status": "available"})
    ).json()
    sold = (await client.get(f"/api/events/{created['id']}/seats", params={"status": "sold"})).json()["seats"]

    assert (by_name["Platea"]["available"], by_name["Platea"]["held"], by_name["Platea"]["sold"]) == (3, 1, 2)
    assert (by_name["Campo"]["available"], by_name["Campo"]["held"]) == (0, 4)
    assert detail["available"] == 3
    assert [statuses[seat_id] for seat_id in ids] == [
        "sold",
        "sold",
        "held",
        "available",
        "available",
        "available",
    ]
    assert [seat["id"] for seat in held] == [ids[2]]
    assert [seat["id"] for seat in available["seats"]] == ids[3:]
    assert [seat["id"] for seat in sold] == ids[:2]
    assert {seat["section"] for seat in sold} == {platea["id"]}


async def test_seat_map_filters_by_section_and_pages_with_a_cursor(client: httpx.AsyncClient) -> None:
    created = await create_event(
        client,
        sections=[reserved_section("Platea", rows=2, seats=3), reserved_section("Pullman", rows=1, seats=4)],
    )
    pullman = created["sections"][1]["id"]

    only_pullman = (
        await client.get(f"/api/events/{created['id']}/seats", params={"section": pullman})
    ).json()
    first_page = (await client.get(f"/api/events/{created['id']}/seats", params={"limit": 4})).json()
    second_page = (
        await client.get(
            f"/api/events/{created['id']}/seats", params={"limit": 4, "after": first_page["nextAfter"]}
        )
    ).json()
    third_page = (
        await client.get(
            f"/api/events/{created['id']}/seats", params={"limit": 4, "after": second_page["nextAfter"]}
        )
    ).json()
    bad_status = await client.get(f"/api/events/{created['id']}/seats", params={"status": "lost"})

    assert [seat["label"] for seat in only_pullman["seats"]] == ["A-1", "A-2", "A-3", "A-4"]
    assert {seat["sectionName"] for seat in only_pullman["seats"]} == {"Pullman"}
    pages = first_page["seats"] + second_page["seats"] + third_page["seats"]
    assert len(pages) == 10
    assert len({seat["id"] for seat in pages}) == 10
    assert third_page["nextAfter"] is None
    assert bad_status.status_code == 422
    assert bad_status.json()["fields"][0]["field"] == "status"


async def test_patch_edits_publishes_pauses_and_cancels(client: httpx.AsyncClient) -> None:
    created = await create_event(client, status="draft", sections=[ga_section()])
    url = f"/api/events/{created['id']}"
    new_start = future(days=45)

    edited = await client.patch(
        url,
        json={
            "name": "Renamed",
            "venue": "Luna Park",
            "startsAt": new_start,
            "queue": {"admitPerMinute": 500},
        },
        headers=ADMIN,
    )
    published = await client.patch(url, json={"status": "published"}, headers=ADMIN)
    paused = await client.patch(url, json={"status": "paused"}, headers=ADMIN)
    resumed = await client.patch(url, json={"status": "published"}, headers=ADMIN)
    cancelled = await client.patch(url, json={"status": "cancelled"}, headers=ADMIN)
    reopened = await client.patch(url, json={"status": "published"}, headers=ADMIN)
    edit_cancelled = await client.patch(url, json={"name": "Again"}, headers=ADMIN)
    add_to_cancelled = await client.post(f"{url}/sections", json=ga_section("Otro"), headers=ADMIN)

    assert edited.status_code == 200
    assert (edited.json()["name"], edited.json()["venue"], edited.json()["startsAt"]) == (
        "Renamed",
        "Luna Park",
        new_start,
    )
    assert edited.json()["queue"]["admitPerMinute"] == 500
    assert edited.json()["queue"]["maxActiveShoppers"] == 500
    assert [r.json()["status"] for r in (published, paused, resumed, cancelled)] == [
        "published",
        "paused",
        "published",
        "cancelled",
    ]
    assert reopened.status_code == 409
    assert reopened.json()["error"] == "invalid_status_transition"
    assert edit_cancelled.status_code == 409
    assert edit_cancelled.json()["error"] == "event_cancelled"
    assert add_to_cancelled.status_code == 409
    assert (await client.get(url)).json()["status"] == "cancelled"


async def test_patch_refuses_bad_values(client: httpx.AsyncClient) -> None:
    created = await create_event(client)
    url = f"/api/events/{created['id']}"

    past = await client.patch(url, json={"startsAt": "2024-12-31T20:00:00Z"}, headers=ADMIN)
    null_name = await client.patch(url, json={"name": None}, headers=ADMIN)
    unknown = await client.patch(url, json={"sections": []}, headers=ADMIN)
    sale_after_start = await client.patch(url, json={"onSaleAt": future(days=400)}, headers=ADMIN)
    unknown_status = await client.patch(url, json={"status": "sold_out"}, headers=ADMIN)

    assert [r.status_code for r in (past, null_name, unknown, sale_after_start, unknown_status)] == [422] * 5
    assert past.json()["fields"][0]["field"] == "startsAt"
    assert null_name.json()["fields"][0]["field"] == "name"
    assert unknown.json()["fields"][0]["field"] == "sections"
    assert sale_after_start.json()["fields"][0]["field"] == "onSaleAt"


@pytest.mark.slow
async def test_a_fifty_thousand_seat_venue_is_one_call_of_bulk_inserts(
    client: httpx.AsyncClient, db: DatabaseUnderTest
) -> None:
    statements: list[tuple[str, bool]] = []

    def record(
        _conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any, executemany: bool
    ) -> None:
        statements.append((statement, executemany))

    engine = services_of(client.app).database.engine.sync_engine  # type: ignore[attr-defined]
    sa_event.listen(engine, "before_cursor_execute", record)
    try:
        rows = [{"label": f"R{index}", "seats": 500} for index in range(100)]
        created = await create_event(
            client, sections=[{"name": "Estadio", "price": "20000.00", "rows": rows}]
        )
    finally:
        sa_event.remove(engine, "before_cursor_execute", record)

    assert created["sections"][0]["capacity"] == 50_000
    assert created["available"] == 50_000
    seat_inserts = [
        executemany for statement, executemany in statements if statement.startswith("INSERT INTO seats")
    ]
    assert 0 < len(seat_inserts) <= 10
    detail = (await client.get(f"/api/events/{created['id']}")).json()
    assert detail["sections"][0]["available"] == 50_000
    section_map = (
        await client.get(f"/api/events/{created['id']}/seats", params={"limit": 500, "after": 0})
    ).json()
    assert section_map["seats"][0]["label"] == "R0-1"
    assert section_map["seats"][-1]["label"] == "R0-500"


async def test_a_failed_patch_changes_nothing(client: httpx.AsyncClient) -> None:
    created = await create_event(client, name="Original")
    url = f"/api/events/{created['id']}"

    refused = await client.patch(url, json={"name": "Changed", "onSaleAt": future(days=400)}, headers=ADMIN)
    null_status = await client.patch(url, json={"status": None}, headers=ADMIN)
    null_queue = await client.patch(url, json={"queue": None}, headers=ADMIN)

    assert refused.status_code == 422
    assert (null_status.status_code, null_status.json()["fields"][0]["field"]) == (422, "status")
    assert (null_queue.status_code, null_queue.json()["fields"][0]["field"]) == (422, "queue")
    assert (await client.get(url)).json()["name"] == "Original"


async def test_refused_admin_calls_store_nothing(client: httpx.AsyncClient) -> None:
    refused = await client.post("/api/events", json=event_body(), headers={"Authorization": "Bearer nope"})

    assert refused.status_code == 401
    assert (await client.get("/api/events", headers=ADMIN)).json()["total"] == 0


@pytest.mark.parametrize(
    ("start", "target"),
    [("draft", "paused"), ("published", "draft"), ("paused", "draft")],
)
async def test_status_transitions_outside_the_rules_are_refused(
    client: httpx.AsyncClient, start: str, target: str
) -> None:
    created = await create_event(client, status="draft")
    url = f"/api/events/{created['id']}"
    for step in {"draft": [], "published": ["published"], "paused": ["published", "paused"]}[start]:
        assert (await client.patch(url, json={"status": step}, headers=ADMIN)).status_code == 200

    response = await client.patch(url, json={"status": target}, headers=ADMIN)

    assert response.status_code == 409
    assert response.json() | {"message": ""} == {
        "error": "invalid_status_transition",
        "message": "",
        "status": start,
        "requested": target,
    }


async def test_names_differing_only_in_case_are_duplicates_on_every_backend(
    client: httpx.AsyncClient,
) -> None:
    same_body = await client.post(
        "/api/events", json=event_body(sections=[ga_section("Platea"), ga_section("platea")]), headers=ADMIN
    )
    rows = await client.post(
        "/api/events",
        json=event_body(
            sections=[
                {
                    "name": "P",
                    "price": "1.00",
                    "rows": [{"label": "A", "seats": 2}, {"label": "a", "seats": 2}],
                }
            ]
        ),
        headers=ADMIN,
    )
    created = await create_event(client, sections=[ga_section("Campo")])
    added = await client.post(
        f"/api/events/{created['id']}/sections", json=ga_section("CAMPO"), headers=ADMIN
    )
    accented = await client.post(
        f"/api/events/{created['id']}/sections", json=ga_section("Cámpo"), headers=ADMIN
    )

    assert (same_body.status_code, same_body.json()["fields"][0]["field"]) == (422, "sections[1].name")
    assert (rows.status_code, rows.json()["fields"][0]["field"]) == (422, "sections[0]")
    assert (added.status_code, added.json()["error"]) == (409, "duplicate_section")
    assert accented.status_code == 201


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/events/99999999999999999999", {}),
        ("/api/events/0", {}),
        ("/api/events/1/seats", {"section": "99999999999999999999"}),
        ("/api/events/1/seats", {"after": "-1"}),
    ],
)
async def test_out_of_range_ids_are_422(client: httpx.AsyncClient, path: str, params: dict[str, str]) -> None:
    response = await client.get(path, params=params)

    assert response.status_code == 422
    assert response.json()["fields"][0]["field"] in ("eventId", "section", "after")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"startsAt": "9999-12-31T23:00:00-05:00"}, "startsAt"),
        ({"name": "Nul\u0000name"}, "name"),
        ({"name": "Line\nbreak"}, "name"),
    ],
)
async def test_implausible_values_are_422_not_500(
    client: httpx.AsyncClient, overrides: dict[str, Any], field: str
) -> None:
    response = await client.post("/api/events", json=event_body(**overrides), headers=ADMIN)

    assert response.status_code == 422
    assert response.json()["fields"][0]["field"] == field


@pytest.mark.parametrize("query", [{"offset": str(2**63)}, {"offset": str(2**64 + 1)}, {"limit": str(2**63)}])
async def test_paging_past_what_the_database_holds_is_refused_as_input(
    client: httpx.AsyncClient, query: dict[str, str]
) -> None:
    """Even for an admin (whose 500s used to log the admin key): a 422, not an overflow."""
    refused = await client.get("/api/events", params=query, headers=ADMIN)
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"] == "validation_error"


async def test_a_seat_map_cursor_past_what_the_database_holds_is_refused(client: httpx.AsyncClient) -> None:
    event = (await client.post("/api/events", json=event_body(), headers=ADMIN)).json()
    refused = await client.get(f"/api/events/{event['id']}/seats", params={"after": str(2**63)})
    assert refused.status_code == 422, refused.text


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"sections": [ga_section(price="-0.00")]}, "sections[0].price"),
        ({"sections": [ga_section(price="\u0661\u0660\u0660")]}, "sections[0].price"),
        ({"sections": [{"name": "Campo", "price": True, "capacity": 10}]}, "sections[0].price"),
        ({"sections": [{"name": "Campo", "price": -1, "capacity": 10}]}, "sections[0].price"),
        ({"sections": [{"name": "Campo", "price": "9000", "capacity": True}]}, "sections[0].capacity"),
        ({"sections": [{"name": "Campo", "price": "9000", "capacity": "10"}]}, "sections[0].capacity"),
        ({"currency": "XXX"}, "currency"),
        ({"name": "Noche \u202ekcoR"}, "name"),
        ({"startsAt": 1893456000}, "startsAt"),
        ({"maxTicketsPerUser": True}, "maxTicketsPerUser"),
        ({"queue": {"enabled": "yes"}}, "queue.enabled"),
    ],
)
async def test_lenient_input_is_refused_naming_the_field(
    client: httpx.AsyncClient, change: dict[str, Any], field: str
) -> None:
    """The probe's lenient inputs: a negative zero or other scripts' digits as a price, `true` as a
    count, an unknown currency, a bidirectional override in a name, a number as a date."""
    refused = await client.post("/api/events", json=event_body(**change), headers=ADMIN)
    assert refused.status_code == 422, refused.text
    assert field in [item["field"] for item in refused.json()["fields"]]


async def test_canonical_input_still_passes(client: httpx.AsyncClient) -> None:
    created = await client.post(
        "/api/events",
        json=event_body(
            currency="USD",
            sections=[ga_section(price="15000.5"), {"name": "Platea", "price": 0, "capacity": 2}],
        ),
        headers=ADMIN,
    )
    assert created.status_code == 201, created.text
    assert [section["price"] for section in created.json()["sections"]] == ["15000.50", "0.00"]
