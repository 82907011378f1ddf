"""Concurrent writers through the app: no lost writes, no "database is locked", no duplicates."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from tests.conftest import ADMIN, DatabaseUnderTest, make_settings, serving
from tests.factories import create_event, event_body, ga_section, reserved_section


async def test_concurrent_venue_creations_all_succeed(client: httpx.AsyncClient) -> None:
    bodies = [
        event_body(name=f"Show {index}", sections=[reserved_section(rows=5, seats=40)]) for index in range(25)
    ]

    responses = await asyncio.gather(
        *(client.post("/api/events", json=body, headers=ADMIN) for body in bodies)
    )

    assert [response.status_code for response in responses] == [201] * 25
    listing = (await client.get("/api/events", params={"limit": 100})).json()
    assert listing["total"] == 25
    assert {item["capacity"] for item in listing["items"]} == {200}


async def test_the_same_section_added_concurrently_is_created_once(client: httpx.AsyncClient) -> None:
    created = await create_event(client)
    url = f"/api/events/{created['id']}/sections"

    responses = await asyncio.gather(
        *(client.post(url, json=ga_section("Campo"), headers=ADMIN) for _ in range(12))
    )

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] + [409] * 11
    detail = (await client.get(f"/api/events/{created['id']}")).json()
    assert [(section["name"], section["capacity"]) for section in detail["sections"]] == [("Campo", 10)]


async def test_status_changes_and_edits_racing_each_other_leave_a_consistent_event(
    client: httpx.AsyncClient,
) -> None:
    created = await create_event(client)
    url = f"/api/events/{created['id']}"
    patches = [
        {"status": "paused"},
        {"status": "published"},
        {"name": "Renamed"},
        {"maxTicketsPerUser": 4},
    ] * 5

    responses = await asyncio.gather(*(client.patch(url, json=patch, headers=ADMIN) for patch in patches))

    assert {response.status_code for response in responses} == {200}
    final = (await client.get(url)).json()
    assert final["name"] == "Renamed"
    assert final["maxTicketsPerUser"] == 4
    assert final["status"] in ("paused", "published")


async def test_a_row_lock_held_too_long_is_409_resource_busy(db: DatabaseUnderTest, tmp_path: Path) -> None:
    if db.backend != "mariadb":
        pytest.skip("row locks with a lock-wait timeout are MariaDB's; SQLite serialises whole writers")
    async with serving(make_settings(db.url, tmp_path, db_lock_timeout_seconds=1)) as client:
        created = await create_event(client)
        async with db.engine.connect() as holder:
            await holder.execute(
                text("SELECT id FROM events WHERE id = :id FOR UPDATE"), {"id": created["id"]}
            )
            response = await client.patch(f"/api/events/{created['id']}", json={"name": "x"}, headers=ADMIN)
            await holder.rollback()
        retried = await client.patch(f"/api/events/{created['id']}", json={"name": "x"}, headers=ADMIN)

    assert (response.status_code, response.json()["error"]) == (409, "resource_busy")
    assert response.headers["retry-after"] == "1"
    assert retried.status_code == 200
