"""Archiving a finished event: exactly its rows leave the database for a checksummed file, other
events stay as they were, an unfinished event is refused, and the file brings it all back: its orders
read again and its tickets still verify with its restored key. On SQLite and MariaDB."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import ADMIN, fresh_database, services_of
from tests.shop import Shop, Simulator, shop, shop_clock, sim
from tests.test_cli import cli_env, run_cli
from tests.tickets.sales import paid_order, tickets_of
from ticketera.kit.backup import ARCHIVE_FORMAT, read_backup_header
from ticketera.kit.migrate import current_revision
from ticketera.models import metadata
from ticketera.ops.archive import ArchiveRefused, archive_event, unarchive
from ticketera.ops.repository import EVENT_TABLES, event_row_selections
from ticketera.tickets.codes import unb64, verify_code

__all__ = ["shop", "shop_clock", "sim"]  # fixtures

AFTER_DAYS = 180


async def rows_of_event(engine: AsyncEngine, event_id: int) -> dict[str, list[tuple[Any, ...]]]:
    async with engine.connect() as connection:
        return {
            table.name: [tuple(row) for row in await connection.execute(statement)]
            for table, statement in event_row_selections(event_id)
        }


def test_every_table_that_leads_to_an_event_is_archived_with_it() -> None:
    """A table added later with a foreign key into the event's tables must join the archive, or an
    archived event would leave rows behind that point at nothing."""
    reaching = {"events"}
    changed = True
    while changed:
        changed = False
        for table in metadata.sorted_tables:
            if table.name not in reaching and any(
                key.column.table.name in reaching for key in table.foreign_keys
            ):
                reaching.add(table.name)
                changed = True
    assert reaching <= EVENT_TABLES
    assert "audit_log" in EVENT_TABLES


async def test_a_finished_event_leaves_whole_and_comes_back_whole(
    shop: Shop, sim: Simulator, tmp_path: Path
) -> None:
    engine = services_of(shop.app).database.engine
    gone = await shop.event()
    orders = [await paid_order(shop, sim, gone, f"fan-{index}", quantity=2) for index in range(2)]
    tickets = [ticket for order in orders for ticket in await tickets_of(shop, order)]
    stays = await shop.event(name="Later show")
    await paid_order(shop, sim, stays, "other-fan")
    before_gone = await rows_of_event(engine, gone["id"])
    before_stays = await rows_of_event(engine, stays["id"])
    assert before_gone["audit_log"]
    assert before_gone["payments"]
    assert before_gone["email_outbox"]
    revision = await current_revision(engine)
    starts = datetime.fromisoformat(gone["startsAt"])

    with pytest.raises(ArchiveRefused, match="ARCHIVE_AFTER_DAYS"):
        await archive_event(
            engine,
            gone["id"],
            tmp_path / "early.jsonl.gz",
            starts + timedelta(days=1),
            after_days=AFTER_DAYS,
            force=False,
            schema_revision=revision,
        )
    assert await rows_of_event(engine, gone["id"]) == before_gone

    path = tmp_path / "archive" / "event.jsonl.gz"
    archived = await archive_event(
        engine,
        gone["id"],
        path,
        starts + timedelta(days=AFTER_DAYS + 1),
        after_days=AFTER_DAYS,
        force=False,
        schema_revision=revision,
    )
    assert archived.summary.rows == {name: len(rows) for name, rows in before_gone.items()}
    assert archived.summary.rows["tickets"] == 4
    assert all(not rows for rows in (await rows_of_event(engine, gone["id"])).values())
    assert await rows_of_event(engine, stays["id"]) == before_stays
    header = read_backup_header(path, file_format=ARCHIVE_FORMAT)
    assert header.header["scope"]["event"] == gone["id"]
    assert (await shop.http.get(f"/api/orders/{orders[0]['id']}", headers=ADMIN)).status_code == 404

    await unarchive(engine, path, schema_revision=revision)
    assert await rows_of_event(engine, gone["id"]) == before_gone
    assert await rows_of_event(engine, stays["id"]) == before_stays
    for order in orders:
        assert (await shop.get_order(order["id"]))["status"] == "paid"
    async with engine.connect() as connection:
        public_key = (
            await connection.execute(
                select(metadata.tables["event_keys"].c.public_key).where(
                    metadata.tables["event_keys"].c.event_id == gone["id"]
                )
            )
        ).scalar_one()
    for ticket in tickets:
        assert verify_code(ticket["code"], unb64(public_key)).event_id == gone["id"]
    assert len(await tickets_of(shop, orders[0])) == 2

    with pytest.raises(ArchiveRefused, match="already"):
        await unarchive(engine, path, schema_revision=revision)


async def test_force_archives_an_unfinished_event_but_never_one_owing_refunds(
    shop: Shop, sim: Simulator, tmp_path: Path
) -> None:
    engine = services_of(shop.app).database.engine
    event = await shop.event()
    await paid_order(shop, sim, event, "fan")
    later = await shop.event(name="Later show")
    await paid_order(shop, sim, later, "other-fan")
    revision = await current_revision(engine)
    payments = metadata.tables["payments"]
    async with engine.begin() as connection:
        await connection.execute(payments.update().values(settlement="refund_due"))
    with pytest.raises(ArchiveRefused, match="refunds still to send"):
        await archive_event(
            engine,
            event["id"],
            tmp_path / "a.jsonl.gz",
            shop.clock(),
            after_days=AFTER_DAYS,
            force=True,
            schema_revision=revision,
        )
    async with engine.begin() as connection:
        await connection.execute(payments.update().values(settlement="sold"))
    archived = await archive_event(
        engine,
        event["id"],
        tmp_path / "a.jsonl.gz",
        shop.clock(),
        after_days=AFTER_DAYS,
        force=True,
        schema_revision=revision,
    )
    assert archived.summary.rows["orders"] == 1
    assert all(not rows for rows in (await rows_of_event(engine, event["id"])).values())


@pytest.mark.parametrize("backend", ["sqlite", "mariadb"])
async def test_the_commands_archive_unarchive_and_keep_partitions(backend: str, tmp_path: Path) -> None:
    async with fresh_database(backend, tmp_path, "ticketera_archive_cli") as url:
        env = cli_env(tmp_path, DATABASE_URL=url)
        assert run_cli("migrate", workdir=tmp_path, env=env).returncode == 0
        assert run_cli("demo", workdir=tmp_path, env=env).returncode == 0

        early = run_cli("db", "archive", "--event", "1", workdir=tmp_path, env=env)
        assert early.returncode == 1
        assert "ARCHIVE_AFTER_DAYS" in early.stderr
        forced = run_cli("db", "archive", "--event", "1", "--force", workdir=tmp_path, env=env)
        partitions = [run_cli("db", "partitions", workdir=tmp_path, env=env) for _ in range(2)]
        assert all(done.returncode == 0 for done in partitions), partitions[0].stderr
        if backend == "sqlite":
            # The demo event is the newest: SQLite would give its id to the next event.
            assert forced.returncode == 1
            assert "hand out again" in forced.stderr
            assert "nothing to do" in partitions[0].stdout
            return
        assert forced.returncode == 0, forced.stderr
        path = forced.stdout.strip().splitlines()[-1]
        assert path.startswith(str(tmp_path / "data" / "archive" / "event-1-"))
        assert run_cli("db", "archive", "--event", "1", workdir=tmp_path, env=env).returncode == 1
        back = run_cli("db", "unarchive", path, workdir=tmp_path, env=env)
        assert back.returncode == 0, back.stderr
        assert "Restored event 1" in back.stdout
        assert "up to date" in partitions[1].stdout
