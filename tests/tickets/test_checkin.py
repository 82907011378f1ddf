"""Check-in at the door: once per ticket however many scanners race, forged and void codes refused,
offline scans reconciled in time order, and codes verifiable by a scanner with nothing but the key.

Scans go to the shop's real port with the staff key, as the door's devices send them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import sys
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN
from tests.shop import Shop, Simulator
from tests.tickets.sales import (
    STAFF,
    bearer,
    checkin_key,
    claim_of,
    paid_order,
    scan,
    seat_ids,
    signed_by_a_stranger,
    tickets_of,
    with_flipped_signature_byte,
)

SCANNERS = 20


def stamp(moment: datetime) -> str:
    """A time as the API writes it (UTC, `Z`)."""
    return moment.isoformat().replace("+00:00", "Z")


async def test_twenty_simultaneous_scans_of_one_code_admit_exactly_one(shop: Shop, sim: Simulator) -> None:
    event = await shop.event()
    order = await paid_order(shop, sim, event)
    (ticket,) = await tickets_of(shop, order)

    async with contextlib.AsyncExitStack() as stack:
        scanners = [
            await stack.enter_async_context(httpx.AsyncClient(base_url=shop.http.base_url, timeout=30))
            for _ in range(SCANNERS)
        ]
        # Every scanner's connection is open before the burst, so the scans reach the service
        # together instead of in the order their TCP handshakes happen to finish.
        for scanner in scanners:
            assert (await scanner.get("/health/live")).status_code == 200
        go = asyncio.Event()

        async def scan_when_told(scanner: httpx.AsyncClient, device: str) -> httpx.Response:
            await go.wait()
            return await scan(scanner, ticket["code"], eventId=event["id"], deviceId=device)

        tasks = [
            asyncio.create_task(scan_when_told(scanner, f"door-{number}"))
            for number, scanner in enumerate(scanners)
        ]
        await asyncio.sleep(0)  # every task waits on the event before it is set
        go.set()
        responses = await asyncio.gather(*tasks)

    assert Counter(response.status_code for response in responses) == {200: 1, 409: SCANNERS - 1}
    (admitted,) = [response.json() for response in responses if response.status_code == 200]
    assert admitted["result"] == "ok"
    refused = [response.json() for response in responses if response.status_code == 409]
    assert {body["result"] for body in refused} == {"already_checked_in"}
    # Every loser is told when, and by which device, the one admission happened.
    assert {(body["at"], body["device"]) for body in refused} == {(admitted["at"], admitted["device"])}
    (after,) = await tickets_of(shop, order)
    assert after["checkedInAt"] == admitted["at"]


async def test_a_second_scan_says_when_the_ticket_was_admitted(shop: Shop, sim: Simulator) -> None:
    event = await shop.event()
    order = await paid_order(shop, sim, event, seat_ids=await seat_ids(shop, event, 1))
    (ticket,) = await tickets_of(shop, order)
    admitted_at = shop.clock.now

    first = await scan(shop.http, ticket["code"], eventId=event["id"], deviceId="north-gate")
    assert first.status_code == 200
    assert first.json() == {
        "result": "ok",
        "ticket": {
            "eventId": event["id"],
            "orderId": order["id"],
            "section": "Platea",
            "seat": "A-1",
            "status": "valid",
        },
        "at": stamp(admitted_at),
        "device": "north-gate",
    }
    shop.clock.advance(90)
    again = await scan(shop.http, ticket["code"], deviceId="south-gate")
    assert again.status_code == 409
    assert again.json()["result"] == "already_checked_in"
    assert again.json()["at"] == stamp(admitted_at)
    assert again.json()["device"] == "north-gate"
    (after,) = await tickets_of(shop, order)
    assert after["checkedInAt"] == stamp(admitted_at)


async def test_forged_codes_are_invalid_and_admit_nobody(shop: Shop, sim: Simulator) -> None:
    event = await shop.event()
    (ticket,) = await tickets_of(shop, await paid_order(shop, sim, event))
    code = ticket["code"]
    claim = claim_of(code)
    forgeries = {
        "a flipped signature byte": with_flipped_signature_byte(code),
        "the last signature byte flipped": with_flipped_signature_byte(code, index=63),
        # The real ticket's claim, signed by someone else's key.
        "a stranger's signature": signed_by_a_stranger(claim),
        # A made-up ticket of this event: any serial, the forger's key.
        "an invented serial": signed_by_a_stranger(dataclasses.replace(claim, serial=claim.serial ^ 1)),
        "an event without a key": signed_by_a_stranger(dataclasses.replace(claim, event_id=999_999)),
        "not a code at all": "hello",
        "one character short": code[:-1],
    }
    for what, forged in forgeries.items():
        for door in ({}, {"eventId": event["id"]}):
            response = await scan(shop.http, forged, **door)
            assert response.status_code == 404, (what, response.text)
            assert response.json()["result"] == "invalid", what
            assert "ticket" not in response.json(), what
    # None of them touched the real ticket.
    assert (await scan(shop.http, code)).status_code == 200


async def test_a_code_of_another_event_is_refused_at_this_events_door(shop: Shop, sim: Simulator) -> None:
    here, elsewhere = await shop.event(name="Aquí"), await shop.event(name="Allá")
    await paid_order(shop, sim, here)
    (foreign,) = await tickets_of(shop, await paid_order(shop, sim, elsewhere, "bob"))

    at_wrong_door = await scan(shop.http, foreign["code"], eventId=here["id"])
    assert at_wrong_door.status_code == 404
    assert at_wrong_door.json()["result"] == "invalid"
    assert "another event" in at_wrong_door.json()["reason"]
    # Pointing the code's payload at this event breaks the signature: this event's key never signed it.
    claim = claim_of(foreign["code"])
    repointed = signed_by_a_stranger(dataclasses.replace(claim, event_id=here["id"]))
    assert (await scan(shop.http, repointed, eventId=here["id"])).json()["result"] == "invalid"

    # The refusal did not spend the ticket: at its own door it is admitted.
    own_door = await scan(shop.http, foreign["code"], eventId=elsewhere["id"])
    assert own_door.status_code == 200
    assert own_door.json()["ticket"]["eventId"] == elsewhere["id"]


async def test_a_refund_voids_the_tickets_at_the_door(shop: Shop, sim: Simulator) -> None:
    event = await shop.event()
    order = await paid_order(shop, sim, event, quantity=2)
    used, unused = await tickets_of(shop, order)
    assert (await scan(shop.http, used["code"])).status_code == 200

    refunded = await shop.http.post(f"/api/orders/{order['id']}/refund", headers=ADMIN)
    assert refunded.status_code == 200, refunded.text
    assert refunded.json()["status"] == "refunded"

    for ticket in (unused, used):
        response = await scan(shop.http, ticket["code"], eventId=event["id"])
        assert response.status_code == 410, response.text
        assert response.json()["result"] == "void"
        assert response.json()["ticket"]["status"] == "void"
    assert [ticket["status"] for ticket in await tickets_of(shop, order)] == ["void", "void"]
    figures = (await shop.http.get(f"/api/events/{event['id']}/checkin", headers=STAFF)).json()
    assert (figures["sold"], figures["checkedIn"]) == (0, 0)


async def test_the_door_figures_of_an_unknown_event_are_404(shop: Shop, sim: Simulator) -> None:
    response = await shop.http.get("/api/events/999999/checkin", headers=STAFF)
    assert response.status_code == 404
    assert response.json()["error"] == "event_not_found"


async def test_scanning_and_the_door_figures_need_the_staff_or_admin_key(shop: Shop, sim: Simulator) -> None:
    event = await shop.event()
    order = await paid_order(shop, sim, event, quantity=2)
    first, second = await tickets_of(shop, order)
    batch = {"scans": [{"code": first["code"], "scannedAt": stamp(shop.clock.now)}]}
    refused_headers: list[dict[str, str]] = [{}, bearer("not-the-staff-key"), bearer(order["orderToken"])]
    for headers in refused_headers:
        checkin = await shop.http.post("/api/checkin", json={"code": first["code"]}, headers=headers)
        assert checkin.status_code == 401
        assert (await shop.http.post("/api/checkin/batch", json=batch, headers=headers)).status_code == 401
        figures = await shop.http.get(f"/api/events/{event['id']}/checkin", headers=headers)
        assert figures.status_code == 401

    # Refused scans admitted nobody; staff and admin may scan and read the figures.
    assert (await scan(shop.http, first["code"])).status_code == 200
    as_admin = await shop.http.post("/api/checkin", json={"code": second["code"]}, headers=ADMIN)
    assert as_admin.status_code == 200
    assert as_admin.json()["result"] == "ok"
    for headers in (STAFF, ADMIN):
        figures = await shop.http.get(f"/api/events/{event['id']}/checkin", headers=headers)
        assert figures.status_code == 200
        assert figures.json()["checkedIn"] == 2


async def test_the_door_figures_count_sold_and_admitted_by_section(shop: Shop, sim: Simulator) -> None:
    event = await shop.event()
    platea, campo = (int(section["id"]) for section in event["sections"])
    empty = await shop.http.get(f"/api/events/{event['id']}/checkin", headers=STAFF)
    assert empty.json() == {"eventId": event["id"], "sold": 0, "checkedIn": 0, "sections": []}

    seated = await tickets_of(
        shop, await paid_order(shop, sim, event, "ana", seat_ids=await seat_ids(shop, event, 3))
    )
    standing = await tickets_of(shop, await paid_order(shop, sim, event, "bob", quantity=2))
    refunded = await paid_order(shop, sim, event, "carla", quantity=1)
    assert (await shop.http.post(f"/api/orders/{refunded['id']}/refund", headers=ADMIN)).status_code == 200
    for ticket in [seated[0], *standing]:
        assert (await scan(shop.http, ticket["code"])).status_code == 200

    figures = (await shop.http.get(f"/api/events/{event['id']}/checkin", headers=STAFF)).json()
    assert figures == {
        "eventId": event["id"],
        # The refunded order's ticket is no longer sold.
        "sold": 5,
        "checkedIn": 3,
        "sections": [
            {"sectionId": platea, "section": "Platea", "sold": 3, "checkedIn": 1},
            {"sectionId": campo, "section": "Campo", "sold": 2, "checkedIn": 2},
        ],
    }


async def test_offline_scans_are_applied_in_time_order_and_conflicts_reported(
    shop: Shop, sim: Simulator
) -> None:
    event = await shop.event()
    twice, once, later = await tickets_of(shop, await paid_order(shop, sim, event, quantity=3))
    start = shop.clock.now
    # Two doors were offline; both scanned `twice`. The gate-b scan came first in time, though it
    # is listed after gate-a's in the upload.
    scans = [
        {"code": twice["code"], "scannedAt": stamp(start + timedelta(minutes=5)), "deviceId": "gate-a"},
        {"code": once["code"], "scannedAt": stamp(start + timedelta(minutes=1))},
        {"code": twice["code"], "scannedAt": stamp(start + timedelta(minutes=2)), "deviceId": "gate-b"},
        {"code": with_flipped_signature_byte(later["code"]), "scannedAt": stamp(start)},
    ]
    response = await shop.http.post(
        "/api/checkin/batch",
        json={"eventId": event["id"], "deviceId": "handheld-7", "scans": scans},
        headers=STAFF,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["applied"] == 4
    assert body["counts"] == {"ok": 2, "already_checked_in": 1, "invalid": 1}
    results = body["results"]
    # In the order they were sent, each with its index.
    assert [result["index"] for result in results] == [0, 1, 2, 3]
    assert [result["result"] for result in results] == ["already_checked_in", "ok", "ok", "invalid"]
    # The later scan is the conflict, and it names the earlier one that won.
    assert results[0]["at"] == stamp(start + timedelta(minutes=2))
    assert results[0]["device"] == "gate-b"
    assert (results[1]["at"], results[1]["device"]) == (stamp(start + timedelta(minutes=1)), "handheld-7")
    assert [conflict["index"] for conflict in body["conflicts"]] == [0, 3]

    # Online scans after the upload see the offline admission.
    online = await scan(shop.http, twice["code"])
    assert online.status_code == 409
    assert online.json()["at"] == stamp(start + timedelta(minutes=2))

    # A device that uploads later still conflicts, even with an earlier scan time: the admission
    # already recorded stands (who was let in cannot be undone), and the newcomer is reported.
    late = await shop.http.post(
        "/api/checkin/batch",
        json={
            "deviceId": "gate-c",
            "scans": [
                {"code": twice["code"], "scannedAt": stamp(start + timedelta(seconds=30))},
                {"code": later["code"], "scannedAt": stamp(start)},
            ],
        },
        headers=STAFF,
    )
    assert [result["result"] for result in late.json()["results"]] == ["already_checked_in", "ok"]
    assert late.json()["results"][0]["at"] == stamp(start + timedelta(minutes=2))

    # The same upload again (the device never got the answer): the same scans, not new conflicts.
    again = await shop.http.post(
        "/api/checkin/batch",
        json={"eventId": event["id"], "deviceId": "handheld-7", "scans": scans},
        headers=STAFF,
    )
    assert [result["result"] for result in again.json()["results"]] == [
        "already_checked_in",
        "ok",
        "ok",
        "invalid",
    ]
    assert again.json()["results"][1]["reason"] == "replayed"


# A scanner app in miniature: the code module and the public key, nothing else of the shop.
OFFLINE_SCANNER = """
import base64, json, sys
from ticketera.tickets.codes import ForgedCode, verify_code

key = base64.urlsafe_b64decode(sys.argv[1] + "=" * (-len(sys.argv[1]) % 4))
verdicts = []
for code in sys.argv[2:]:
    try:
        claim = verify_code(code, key)
    except ForgedCode:
        verdicts.append("forged")
    else:
        verdicts.append([claim.serial, claim.event_id, claim.seat_id])
loaded = sorted({name.split(".")[0] for name in sys.modules})
print(json.dumps({"verdicts": verdicts, "loaded": loaded}))
"""


async def test_a_scanner_in_another_process_verifies_codes_with_the_public_key_alone(
    shop: Shop, sim: Simulator, tmp_path: Path
) -> None:
    event = await shop.event()
    tickets = await tickets_of(shop, await paid_order(shop, sim, event, quantity=2))
    public_key = await checkin_key(shop.http, event["id"])
    codes = [ticket["code"] for ticket in tickets]
    forged = with_flipped_signature_byte(codes[0])

    empty = tmp_path / "scanner"
    empty.mkdir()
    # No settings at all: no DATABASE_URL, SECRET_KEY or .env (its directory is empty); -I ignores
    # PYTHON* variables and the user's site-packages.
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-I",
        "-c",
        OFFLINE_SCANNER,
        public_key,
        *codes,
        forged,
        cwd=empty,
        env={"PATH": os.environ.get("PATH", "")},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()
    report = json.loads(stdout)
    expected = [[claim.serial, claim.event_id, claim.seat_id] for claim in map(claim_of, codes)]
    assert report["verdicts"] == [*expected, "forged"]
    assert all(verdict[1] == event["id"] for verdict in expected)
    # Verifying pulled in no database driver, ORM or settings: a scanner needs none of them.
    assert not {"sqlalchemy", "aiosqlite", "asyncmy", "aiomysql", "pydantic_settings"} & set(report["loaded"])


async def test_a_code_claiming_an_event_id_outside_the_databases_range_is_invalid(
    shop: Shop, sim: Simulator
) -> None:
    # A code carries an unsigned 64-bit event id; SQLite's integers stop at 2**63 - 1, so an id
    # past that must be refused before it reaches a query (it once made SQLite raise: a 500).
    event = await shop.event()
    (ticket,) = await tickets_of(shop, await paid_order(shop, sim, event))
    claim = claim_of(ticket["code"])
    for event_id in (0, 2**63, 2**64 - 1):
        response = await scan(shop.http, signed_by_a_stranger(dataclasses.replace(claim, event_id=event_id)))
        assert response.status_code == 404, response.text
        assert response.json()["result"] == "invalid"


async def test_offline_scan_times_without_a_zone_are_taken_as_utc(shop: Shop, sim: Simulator) -> None:
    # Device clocks may send no zone. Mixed with zoned times they must still sort (comparing the
    # two kinds once raised a TypeError: a 500), naive ones read as UTC.
    event = await shop.event()
    (ticket,) = await tickets_of(shop, await paid_order(shop, sim, event))
    response = await shop.http.post(
        "/api/checkin/batch",
        json={
            "scans": [
                {"code": ticket["code"], "scannedAt": "2030-01-01T10:00:00", "deviceId": "no-zone"},
                {"code": ticket["code"], "scannedAt": "2030-01-01T12:00:00+03:00", "deviceId": "zoned"},
            ]
        },
        headers=STAFF,
    )
    assert response.status_code == 200, response.text
    first, second = response.json()["results"]
    # 12:00+03:00 is 09:00 UTC, an hour before the zoneless 10:00: that scan admitted the holder.
    assert (second["result"], second["at"], second["device"]) == ("ok", "2030-01-01T09:00:00Z", "zoned")
    assert (first["result"], first["at"], first["device"]) == (
        "already_checked_in",
        "2030-01-01T09:00:00Z",
        "zoned",
    )


@pytest.mark.parametrize("scanned_at", [0, "0", "1700000000"])
async def test_an_offline_scan_time_is_iso_text_not_a_number(shop: Shop, scanned_at: object) -> None:
    """`scannedAt: 0` would be 1970: a device that sends a number sent no time a person meant, even
    as text (pydantic alone reads "0" as 1970 too)."""
    refused = await shop.http.post(
        "/api/checkin/batch", json={"scans": [{"code": "AAAA", "scannedAt": scanned_at}]}, headers=STAFF
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["fields"][0]["field"] == "scans[0].scannedAt"
