"""What the doors learn from each other between scans (`GET /door/events/{id}/known?since=`): a
ticket let in offline at one door and synced now is news to the others however long ago it was
scanned, refunds too, and the read is two range reads on their own indexes, not the whole event."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text

from tests.conftest import ADMIN, DatabaseUnderTest, services_of
from tests.shop import Shop, Simulator
from tests.tickets.sales import claim_of, paid_order, scan, tickets_of
from tests.web.test_door import csrf_of, log_in
from ticketera.tickets import repository

# The margin js/door.js takes off the last answer's `asOf` for its next `since`.
KNOWN_MARGIN = timedelta(seconds=60)


def stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class Door:
    """A phone at a door: logged in at /door on its own cookie, calling what the page's script calls."""

    def __init__(self, http: httpx.AsyncClient, csrf: str) -> None:
        self.http = http
        self.headers = {"X-CSRF-Token": csrf}

    async def known(self, event_id: int, since: datetime | None = None) -> dict[str, Any]:
        params = {"since": stamp(since)} if since is not None else {}
        answer = await self.http.get(f"/door/events/{event_id}/known", params=params, headers=self.headers)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    async def sync(self, event_id: int, scans: list[dict[str, Any]]) -> dict[str, Any]:
        answer = await self.http.post(
            "/door/batch", json={"eventId": event_id, "scans": scans}, headers=self.headers
        )
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body


@asynccontextmanager
async def door(shop: Shop) -> AsyncIterator[Door]:
    async with httpx.AsyncClient(base_url=shop.http.base_url, timeout=30) as http:
        assert (await log_in(http)).status_code == 303
        yield Door(http, csrf_of((await http.get("/door")).text))


async def test_a_ticket_let_in_offline_at_one_door_reaches_the_others_next_read(
    shop: Shop, sim: Simulator
) -> None:
    event = await shop.event()
    order = await paid_order(shop, sim, event)
    (ticket,) = await tickets_of(shop, order)
    async with door(shop) as door_a, door(shop) as door_b:
        first = await door_b.known(event["id"])
        # Door A's phone let the ticket in ten minutes ago, without network; it syncs now.
        scanned_at = shop.clock() - timedelta(minutes=10)
        synced = await door_a.sync(
            event["id"], [{"code": ticket["code"], "scannedAt": stamp(scanned_at), "deviceId": "Puerta 1"}]
        )
        # Door B asks for what changed since its last read, less the page's margin.
        later = await door_b.known(event["id"], since=datetime.fromisoformat(first["asOf"]) - KNOWN_MARGIN)

    assert first["checkedIn"] == []
    assert synced["counts"] == {"ok": 1}
    assert later["checkedIn"] == [
        {"serial": str(claim_of(ticket["code"]).serial), "at": scanned_at.isoformat(), "door": "Puerta 1"}
    ]


async def test_the_next_read_has_the_refunds_too_each_ticket_once(shop: Shop, sim: Simulator) -> None:
    event = await shop.event()
    order = await paid_order(shop, sim, event, quantity=2)
    used, unused = await tickets_of(shop, order)
    async with door(shop) as door_b:
        first = await door_b.known(event["id"])
        assert (await scan(shop.http, used["code"], deviceId="Puerta 1")).status_code == 200
        refunded = await shop.http.post(f"/api/orders/{order['id']}/refund", headers=ADMIN)
        assert refunded.status_code == 200, refunded.text
        later = await door_b.known(event["id"], since=datetime.fromisoformat(first["asOf"]) - KNOWN_MARGIN)

    # The used ticket is in both halves of the read (let in, then voided): it is told once, as void.
    assert sorted(later["void"]) == sorted(str(claim_of(t["code"]).serial) for t in (used, unused))
    assert later["checkedIn"] == []


async def test_the_incremental_read_is_two_range_reads_on_their_indexes(
    shop: Shop, sim: Simulator, db: DatabaseUnderTest
) -> None:
    event = await shop.event()
    order = await paid_order(shop, sim, event, quantity=2)
    ticket, _other = await tickets_of(shop, order)
    assert (await scan(shop.http, ticket["code"])).status_code == 200

    database = services_of(shop.app).database
    statement = repository.known_since_statement(event["id"], shop.clock() - KNOWN_MARGIN)
    async with database.read_session() as session:
        sql = str(
            statement.compile(dialect=session.get_bind().dialect, compile_kwargs={"literal_binds": True})
        )
        if db.backend == "sqlite":
            plan = " ".join(
                str(row[-1]) for row in (await session.execute(text(f"EXPLAIN QUERY PLAN {sql}"))).all()
            )
        else:
            plan = " ".join(
                f"{row._mapping['key']}:{row._mapping['type']}"
                for row in (await session.execute(text(f"EXPLAIN {sql}"))).all()
            )

    assert "ix_tickets_event_id_checkin_recorded_at" in plan, plan
    assert "ix_tickets_event_id_voided_at" in plan, plan
