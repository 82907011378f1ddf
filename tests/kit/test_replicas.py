"""Read replicas (kit.replicas): which server a read goes to, against a real MariaDB primary and replica.

The module starts its own primary and replica (`benchmarks.harness.replicated_mariadb`: two
mariadbd on free ports, row-based binlog, GTID replication, the guide's `readonly` user) and stops
them after. To tell which server answered, a test changes a row on the replica alone: a public read
that shows the replica's version was served by the replica, one that shows the primary's was not.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from benchmarks.harness import BenchmarkError, ReplicatedMariaDB, replicated_mariadb
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import async_sessionmaker

from tests.conftest import (
    ADMIN,
    SELECTED_BACKENDS,
    STAFF_KEY,
    DatabaseUnderTest,
    _backend_unavailable,
    services_of,
)
from tests.fakes import FakeClock
from tests.shop import Shop, Simulator, eventually, preference_id_of, serving_shop
from ticketera.config import to_async_url
from ticketera.kit.db import Database, create_engine
from ticketera.kit.migrate import upgrade
from ticketera.kit.replicas import Replica, ReplicaSet, has_reached, parse_gtid_position

NAME_ON_REPLICA = "Visto en la réplica"
SECTION_SUFFIX_ON_REPLICA = " (réplica)"
STAFF = {"Authorization": f"Bearer {STAFF_KEY}"}
# Replication, a checker round, a restart: generous, never a measure (benchmarks/replicas.py measures).
WITHIN = 30.0


# -- GTID positions and the pick, without servers -----------------------------------------------


def test_gtid_positions_are_compared_domain_by_domain() -> None:
    primary = parse_gtid_position("0-1-42,1-2-7")
    assert primary == {0: 42, 1: 7}
    assert parse_gtid_position("") == {}
    assert parse_gtid_position(None) == {}
    assert has_reached({0: 42, 1: 7}, primary)
    assert has_reached({0: 50, 1: 9}, primary)
    assert not has_reached({0: 42, 1: 6}, primary)
    assert not has_reached({0: 99}, primary)  # domain 1 never applied
    assert has_reached({}, {})  # a primary that wrote nothing yet


class SteppedClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def unconnected_replica(port: int) -> Replica:
    engine = create_engine(f"mysql+asyncmy://readonly@127.0.0.1:{port}/ticketera", pool_size=1)
    return Replica(engine, async_sessionmaker(engine))


async def test_reads_are_spread_over_the_fresh_replicas_and_skip_the_down_and_the_stale() -> None:
    clock = SteppedClock()
    first, second, third = (unconnected_replica(port) for port in (1, 2, 3))
    replicas = ReplicaSet(
        create_engine("mysql+asyncmy://root@127.0.0.1:4/ticketera", pool_size=1),
        [first, second, third],
        max_lag_seconds=1.0,
        clock=clock,
    )
    try:
        assert replicas.pick() is None  # not checked yet: the primary
        for replica in (first, second, third):
            replica.checked, replica.fresh_as_of = True, clock.now
        third.mark_down("OperationalError")
        picks = [replicas.pick() for _ in range(6)]
        assert picks.count(first) == 3
        assert picks.count(second) == 3

        clock.now += 0.6
        second.fresh_as_of = clock.now  # a later check found it caught up; the first was not re-checked
        clock.now += 0.6  # the first may now be 1.2 s behind
        assert {replicas.pick() for _ in range(4)} == {second}
        assert replicas.status_of(first).value == "lagging"
        assert replicas.status_of(third).value == "down"

        clock.now += 1.0
        assert replicas.pick() is None  # nobody checked for a second: nobody is known to be fresh
    finally:
        await replicas.dispose()


# -- a real primary and replica ---------------------------------------------------------------


@pytest.fixture(scope="module")
def replication(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplicatedMariaDB]:
    if "mariadb" not in SELECTED_BACKENDS:
        pytest.skip("mariadb not selected by TICKETERA_TEST_BACKENDS")
    if shutil.which("mariadbd") is None or shutil.which("mariadb-install-db") is None:
        _backend_unavailable("mariadb-replication", "mariadbd / mariadb-install-db are not installed")
    try:
        with replicated_mariadb(tmp_path_factory.mktemp("replication")) as pair:
            yield pair
    except BenchmarkError as exc:
        _backend_unavailable("mariadb-replication", str(exc))


@pytest.fixture(scope="module")
async def primary(replication: ReplicatedMariaDB) -> AsyncIterator[DatabaseUnderTest]:
    url = to_async_url(replication.primary.url)
    engine = create_engine(url, pool_size=2)
    await upgrade(engine)
    try:
        yield DatabaseUnderTest("mariadb", url, engine)
    finally:
        await engine.dispose()


@pytest.fixture
async def replicated_shop(
    replication: ReplicatedMariaDB,
    primary: DatabaseUnderTest,
    tmp_path: Path,
    sim: Simulator,
    simulator_url: str,
    shop_clock: FakeClock,
) -> AsyncIterator[Shop]:
    async with serving_shop(
        primary, tmp_path, simulator_url, shop_clock, database_replica_url=replication.replica_url
    ) as shop:
        yield shop


def database_of(shop: Shop) -> Database:
    return services_of(shop.app).database


async def health(shop: Shop) -> dict[str, Any]:
    response = await shop.http.get("/health")
    assert response.status_code == 200, response.text
    database: dict[str, Any] = response.json()["services"]["database"]
    return database


async def replica_status(shop: Shop) -> str:
    (replica,) = (await health(shop))["replicas"]
    return str(replica["status"])


async def wait_for_status(shop: Shop, status: str) -> None:
    async def reached() -> bool:
        return await replica_status(shop) == status

    await eventually(reached, within=WITHIN)


async def public_event(shop: Shop, event_id: int) -> dict[str, Any]:
    response = await shop.http.get(f"/api/events/{event_id}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def diverge_on_replica(replication: ReplicatedMariaDB, event: dict[str, Any]) -> None:
    """Rename the event, its sections and its tickets' sections on the replica alone (once it has them)."""
    await asyncio.to_thread(replication.wait_caught_up)
    await asyncio.to_thread(
        replication.replica.sql,
        f"UPDATE ticketera.events SET name = '{NAME_ON_REPLICA}' WHERE id = {event['id']}; "
        f"UPDATE ticketera.sections SET name = CONCAT(name, '{SECTION_SUFFIX_ON_REPLICA}') "
        f"WHERE event_id = {event['id']}; "
        # Tickets keep their section's name as sold, which the door's figures show.
        f"UPDATE ticketera.tickets SET section_name = CONCAT(section_name, '{SECTION_SUFFIX_ON_REPLICA}') "
        f"WHERE event_id = {event['id']}",
    )


def replica_sections(names: set[str]) -> bool:
    return bool(names) and all(name.endswith(SECTION_SUFFIX_ON_REPLICA) for name in names)


async def test_public_reads_come_from_the_replica_and_an_admin_reads_the_primary(
    replicated_shop: Shop, replication: ReplicatedMariaDB, sim: Simulator
) -> None:
    shop = replicated_shop
    event = await shop.event(name="Noche de Rock")
    order = await shop.buy(event)  # a ticket sold, for the door's figures
    await sim.pay(preference_id_of(order))
    assert (await shop.wait_for_status(order["id"], "paid"))["status"] == "paid"
    await wait_for_status(shop, "in_use")

    async def replica_copy_is_read() -> bool:
        # Renamed again each time: a row change the primary makes a moment later (the sale's own
        # bookkeeping, on a slow machine) replicates whole rows and writes the replica's copy back.
        await diverge_on_replica(replication, event)
        detail = await public_event(shop, event["id"])
        return detail["name"] == NAME_ON_REPLICA and replica_sections(
            {section["name"] for section in detail["sections"]}
        )

    await eventually(replica_copy_is_read, within=WITHIN)
    listing = (await shop.http.get("/api/events", params={"limit": 200})).json()["items"]
    assert {item["name"] for item in listing if item["id"] == event["id"]} == {NAME_ON_REPLICA}
    seats = (await shop.http.get(f"/api/events/{event['id']}/seats")).json()["seats"]
    assert replica_sections({seat["sectionName"] for seat in seats})
    figures = await shop.http.get(f"/api/events/{event['id']}/checkin", headers=STAFF)
    assert figures.status_code == 200, figures.text
    assert figures.json()["sold"] == 1
    assert replica_sections({section["section"] for section in figures.json()["sections"]})

    # An admin reads back what they wrote: the primary.
    as_admin = await shop.http.get(f"/api/events/{event['id']}", headers=ADMIN)
    assert as_admin.json()["name"] == "Noche de Rock"

    (replica,) = (await health(shop))["replicas"]
    assert replica["name"] == f"127.0.0.1:{replication.replica.port}/ticketera"
    assert replica["reads"] >= 4
    assert replica["lagSeconds"] is not None
    metrics = (await shop.http.get("/metrics")).text
    assert f'ticketera_db_replica_in_use{{replica="{replica["name"]}"}} 1.0' in metrics
    assert f'ticketera_db_replica_reads{{server="{replica["name"]}"}}' in metrics


async def test_the_buyer_path_never_reads_from_the_replica(
    replicated_shop: Shop, replication: ReplicatedMariaDB, sim: Simulator
) -> None:
    shop = replicated_shop
    event = await shop.event()
    await asyncio.to_thread(replication.wait_caught_up)
    await wait_for_status(shop, "in_use")
    replicas = database_of(shop).replicas
    assert replicas is not None
    on_replica: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "gtid_slave_pos" not in statement:  # the checker's own question
            on_replica.append(statement)

    for replica in replicas.replicas:
        sqlalchemy_event.listen(replica.engine.sync_engine, "before_cursor_execute", record)
    # The witness sees what the replica serves...
    await public_event(shop, event["id"])
    assert on_replica, "a public read should have run on the replica"
    on_replica.clear()

    # ...and nothing of a purchase: hold, order, payment, the buyer's page and tickets right after.
    order = await shop.buy(event)
    await sim.pay(preference_id_of(order))
    assert (await shop.wait_for_status(order["id"], "paid"))["status"] == "paid"
    token = order["orderToken"]
    page = await shop.http.get(f"/orders/{order['id']}", params={"token": token})
    assert page.status_code == 200
    mine = await shop.http.get(f"/api/orders/{order['id']}", headers={"Authorization": f"Bearer {token}"})
    assert mine.status_code == 200
    assert mine.json()["status"] == "paid"
    tickets = await shop.http.get(
        f"/api/orders/{order['id']}/tickets", headers={"Authorization": f"Bearer {token}"}
    )
    assert tickets.status_code == 200, tickets.text
    assert on_replica == []


async def test_a_lagging_replica_is_left_for_the_primary_until_it_catches_up(
    replicated_shop: Shop, replication: ReplicatedMariaDB
) -> None:
    shop = replicated_shop
    event = await shop.event(name="Antes")
    await diverge_on_replica(replication, event)
    await wait_for_status(shop, "in_use")
    assert (await public_event(shop, event["id"]))["name"] == NAME_ON_REPLICA

    await asyncio.to_thread(replication.replica.sql, "STOP SLAVE SQL_THREAD")
    try:
        renamed = await shop.http.patch(f"/api/events/{event['id']}", json={"name": "Después"}, headers=ADMIN)
        assert renamed.status_code == 200, renamed.text

        async def served_by_primary() -> bool:
            return bool((await public_event(shop, event["id"]))["name"] == "Después")

        # Only the primary has "Después": the replica applies nothing while its SQL thread is stopped.
        await eventually(served_by_primary, within=WITHIN)
        assert await replica_status(shop) == "lagging"
        assert (await health(shop))["circuitBreaker"] == {"state": "CLOSED", "failureCount": 0}
    finally:
        await asyncio.to_thread(replication.replica.sql, "START SLAVE SQL_THREAD")

    await wait_for_status(shop, "in_use")
    replicas = database_of(shop).replicas
    assert replicas is not None
    before = replicas.replicas[0].reads
    assert (await public_event(shop, event["id"]))["name"] == "Después"  # caught up, from the replica
    assert replicas.replicas[0].reads == before + 1


async def test_a_stopped_replica_is_left_for_the_primary_and_taken_back_when_it_returns(
    replicated_shop: Shop, replication: ReplicatedMariaDB
) -> None:
    shop = replicated_shop
    event = await shop.event(name="Noche de Jazz")
    await diverge_on_replica(replication, event)
    await wait_for_status(shop, "in_use")
    assert (await public_event(shop, event["id"]))["name"] == NAME_ON_REPLICA

    await asyncio.to_thread(replication.replica.stop)
    try:
        await wait_for_status(shop, "down")
        for _ in range(5):
            assert (await public_event(shop, event["id"]))["name"] == "Noche de Jazz"
        # The replica's failures are its own: the primary's breaker never counted them.
        assert (await health(shop))["circuitBreaker"] == {"state": "CLOSED", "failureCount": 0}
        assert database_of(shop).breaker.failure_count == 0
    finally:
        await asyncio.to_thread(replication.replica.start)

    await wait_for_status(shop, "in_use")
    # Its data survived the restart: the public reads are the replica's again.
    assert (await public_event(shop, event["id"]))["name"] == NAME_ON_REPLICA


async def test_without_replicas_every_read_is_the_primarys(tmp_path: Path) -> None:
    database = Database(create_engine(f"sqlite+aiosqlite:///{tmp_path / 'alone.db'}", pool_size=1))
    try:
        assert database.replicas is None
        async with database.replica_session() as session:
            bind = session.get_bind()
            assert isinstance(bind, Engine)
            assert bind.pool is database.engine.sync_engine.pool
    finally:
        await database.dispose()
