"""The organizer's search by buyer email: letter case aside, and answered from an index on either
engine (ix_orders_buyer_email_lower on the stored lowercase copy), not by reading every order."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from sqlalchemy import text

from tests.conftest import DatabaseUnderTest, services_of
from tests.factories import open_sale, place_order, take_hold
from ticketera.orders import repository
from ticketera.orders import service as orders

INDEX = "ix_orders_buyer_email_lower"


async def test_the_email_search_ignores_case_and_reads_its_index(
    client: httpx.AsyncClient, db: DatabaseUnderTest
) -> None:
    sale = await open_sale(client)
    section = next(s["id"] for s in sale["sections"] if s["kind"] == "general_admission")
    emails = ["Ana.Perez@Example.COM", "beto@example.com", "carla@example.com"]
    for index, email in enumerate(emails):
        hold_id = await take_hold(client, sale, f"fan-{index}", {"sectionId": section, "quantity": 1})
        placed = await place_order(client, hold_id, buyer={"email": email, "name": "Fan"})
        assert placed.status_code == 201, placed.text

    database = services_of(client.app).database  # type: ignore[attr-defined]
    now = datetime.now(UTC)
    async with database.read_session() as session:
        found = await orders.search_orders(session, now=now, email="ana.perez@EXAMPLE.com")
        statement = repository.search_statement(
            now=now, email="ana.perez@example.com", order_id=None, event_id=None, status=None
        )
        sql = str(
            statement.compile(dialect=session.get_bind().dialect, compile_kwargs={"literal_binds": True})
        )
        if db.backend == "sqlite":
            plan = " ".join(
                str(row[-1]) for row in (await session.execute(text(f"EXPLAIN QUERY PLAN {sql}"))).all()
            )
        else:
            plan = " ".join(
                str(row._mapping["key"]) for row in (await session.execute(text(f"EXPLAIN {sql}"))).all()
            )

    assert [(order.buyer_email, order.buyer_email_lower) for order, _status in found] == [
        ("Ana.Perez@example.com", "ana.perez@example.com")  # the domain is normalized on the way in
    ]
    assert INDEX in plan, plan
