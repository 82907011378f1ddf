"""The dashboard's sales chart is summed by the database: one query per refresh, a bounded number of
rows however many orders were paid, the same totals as the orders themselves, on either engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import event, update

from tests.conftest import DatabaseUnderTest, services_of
from tests.factories import open_sale, place_order, take_hold
from ticketera.orders import service as orders
from ticketera.orders.models import Order, OrderStatus

OPENED = datetime(2030, 1, 1, 10, 0, tzinfo=UTC)


async def test_sales_are_summed_in_sql_into_bounded_stretches(
    client: httpx.AsyncClient, db: DatabaseUnderTest
) -> None:
    sale = await open_sale(client)
    section = next(s["id"] for s in sale["sections"] if s["kind"] == "general_admission")
    ids = []
    for index in range(9):
        hold_id = await take_hold(client, sale, f"fan-{index}", {"sectionId": section, "quantity": 1})
        ids.append((await place_order(client, hold_id)).json()["id"])
    # Paid a minute apart from the opening, one of them before it (onSaleAt moved later), one unpaid.
    async with db.engine.begin() as connection:
        for index, order_id in enumerate(ids[:8]):
            await connection.execute(
                update(Order)
                .where(Order.id == order_id)
                .values(status=OrderStatus.PAID, paid_at=OPENED + timedelta(minutes=index - 1, seconds=30))
            )

    statements: list[str] = []

    def count(*args: Any) -> None:
        if str(args[2]).lstrip().upper().startswith("SELECT"):
            statements.append(str(args[2]))

    database = services_of(client.app).database  # type: ignore[attr-defined]
    engine = database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        async with database.read_session() as session:
            now = OPENED + timedelta(minutes=10)
            stretches = await orders.sales_of_event(session, sale["id"], since=OPENED, until=now, buckets=4)
    finally:
        event.remove(engine, "before_cursor_execute", count)

    assert len(statements) == 1, statements
    # 4 stretches of 150 s, and one before the opening: 0:30 early; 0:30, 1:30; 2:30, 3:30, 4:30;
    # 5:30, 6:30; nothing in the last (7:30-10:00), so no row for it.
    assert [(s.tickets, s.total) for s in stretches] == [
        (1, Decimal("9000.00")),
        (2, Decimal("18000.00")),
        (3, Decimal("27000.00")),
        (2, Decimal("18000.00")),
    ]
    assert stretches[0].first_paid_at == OPENED - timedelta(seconds=30)
    assert [s.paid_at for s in stretches[1:]] == [
        OPENED + timedelta(minutes=m, seconds=30) for m in (1, 4, 6)
    ]
    # Past the last stretch (a clock ahead of `until`): counted in the last one, never a new row.
    async with database.read_session() as session:
        late = await orders.sales_of_event(session, sale["id"], since=OPENED, until=OPENED, buckets=4)
    assert len(late) == 2
    assert sum(s.tickets for s in late) == 8
