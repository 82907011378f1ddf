"""Archiving a finished event: exactly its rows leave the database for a checksummed file, other
events stay as they were, an unfinished event is refused, and the file brings it all back: its orders
read again and its tickets still verify with its restored key. On SQLite and MariaDB."""

from __future__ import annotations

import asyncio
import gzip
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import ADMIN, fresh_database, services_of
from tests.shop import Shop, Simulator, shop, shop_clock, sim
from tests.test_cli import cli_env, run_cli
from tests.tickets.sales import paid_order, tickets_of
from ticketera.kit.backup import ARCHIVE_FORMAT, read_backup_header
from ticketera.kit.db import create_engine
from ticketera.kit.migrate import current_revision
from ticketera.models import metadata
from ticketera.ops import archive as archive_module
from ticketera.ops.archive import (
    ArchiveRefused,
    ArchiveStopped,
    WrittenArchive,
    archive_event,
    delete_archived,
    unarchive,
    write_archive,
)
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


async def set_event(engine: AsyncEngine, event_id: int, **values: Any) -> None:
    async with engine.begin() as connection:
        events = metadata.tables["events"]
        await connection.execute(events.update().where(events.c.id == event_id).values(**values))


async def set_payments(engine: AsyncEngine, **values: Any) -> None:
    async with engine.begin() as connection:
        await connection.execute(metadata.tables["payments"].update().values(**values))


async def test_force_archives_an_unfinished_event_but_never_one_still_moving(
    shop: Shop, sim: Simulator, tmp_path: Path
) -> None:
    """`--force` skips ARCHIVE_AFTER_DAYS only: an event on sale, or owing money, or with payments,
    holds or orders still to settle, would change after the archive read it."""
    engine = services_of(shop.app).database.engine
    event = await shop.event()
    await paid_order(shop, sim, event, "fan")
    pending = await shop.buy(event, "late-fan")
    later = await shop.event(name="Later show")
    await paid_order(shop, sim, later, "other-fan")
    revision = await current_revision(engine)

    async def forced() -> Any:
        return await archive_event(
            engine,
            event["id"],
            tmp_path / "a.jsonl.gz",
            shop.clock(),
            after_days=AFTER_DAYS,
            force=True,
            schema_revision=revision,
        )

    with pytest.raises(ArchiveRefused, match="is on sale"):
        await forced()
    await set_event(engine, event["id"], status="paused")
    await set_payments(engine, settlement="refund_due")
    with pytest.raises(ArchiveRefused, match="refunds still to send"):
        await forced()
    await set_payments(engine, settlement="refund_failed")
    with pytest.raises(ArchiveRefused, match="money is still owed"):
        await forced()
    await set_payments(engine, settlement="sold", status="in_process")
    with pytest.raises(ArchiveRefused, match="not decided yet"):
        await forced()
    await set_payments(engine, status="approved")
    with pytest.raises(ArchiveRefused, match="1 orders awaiting payment"):
        await forced()
    orders = metadata.tables["orders"]
    async with engine.begin() as connection:
        await connection.execute(orders.update().where(orders.c.id == pending["id"]).values(status="expired"))
    assert not (tmp_path / "a.jsonl.gz").exists()

    archived = await forced()
    assert archived.summary.rows["orders"] == 2
    assert all(not rows for rows in (await rows_of_event(engine, event["id"])).values())


async def finished_event_with_a_later_one(shop: Shop, sim: Simulator) -> tuple[dict[str, Any], datetime]:
    """An event with two paid orders, over for long enough, and a later event that sold (so on
    SQLite the first holds no newest id); and a moment to archive the first at."""
    gone = await shop.event()
    for index in range(2):
        await paid_order(shop, sim, gone, f"fan-{index}")
    later = await shop.event(name="Later show")
    await paid_order(shop, sim, later, "other-fan")
    return gone, datetime.fromisoformat(gone["startsAt"]) + timedelta(days=AFTER_DAYS + 1)


async def add_late_payment(engine: AsyncEngine, order_id: int, provider_id: str) -> None:
    """A payment written for the order after the archive read the event's rows."""
    async with engine.begin() as connection:
        await connection.execute(
            metadata.tables["payments"]
            .insert()
            .values(
                provider_payment_id=provider_id,
                order_id=order_id,
                status="refunded",
                amount=Decimal("1.00"),
                refunded_amount=Decimal("1.00"),
                settlement="refunded",
                refund_attempts=0,
                created_at=datetime.now(UTC),
                updated_at=datetime.now(UTC),
            )
        )


async def test_a_row_written_after_the_archive_read_the_event_stops_it_before_any_delete(
    shop: Shop, sim: Simulator, tmp_path: Path
) -> None:
    """ON DELETE CASCADE would take a late payment along with its order, and it is in no file."""
    engine = services_of(shop.app).database.engine
    gone, when = await finished_event_with_a_later_one(shop, sim)
    path = tmp_path / "event.jsonl.gz"
    written = await write_archive(
        engine,
        gone["id"],
        path,
        when,
        after_days=AFTER_DAYS,
        force=False,
        schema_revision=await current_revision(engine),
    )
    order_id = next(iter(written.keys["orders"]))[0]
    await add_late_payment(engine, order_id, "late-1")
    before = await rows_of_event(engine, gone["id"])

    with pytest.raises(ArchiveStopped, match=r"payments row .* written after the archive read it"):
        await delete_archived(engine, written)

    assert await rows_of_event(engine, gone["id"]) == before
    assert not path.exists()

    changed = await write_archive(
        engine,
        gone["id"],
        path,
        when,
        after_days=AFTER_DAYS,
        force=False,
        schema_revision=await current_revision(engine),
    )
    await set_event(engine, gone["id"], name="Renamed after the archive read it")
    with pytest.raises(ArchiveStopped, match=r"events row id=.* changed after the archive read it"):
        await delete_archived(engine, changed)
    assert len(await rows_of_event(engine, gone["id"])) == len(before)
    assert (await rows_of_event(engine, gone["id"]))["payments"] == before["payments"]


async def test_a_row_written_while_the_archive_deletes_stops_it_and_the_file_holds_what_left(
    shop: Shop, sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same write racing the deletes themselves (past the check before them): each batch is
    checked again in its own transaction, so the order and its late payment stay, the file is cut
    down to what was deleted, and the two files of a second run bring everything back."""
    engine = services_of(shop.app).database.engine
    gone, when = await finished_event_with_a_later_one(shop, sim)
    revision = await current_revision(engine)
    first = tmp_path / "first.jsonl.gz"
    written = await write_archive(
        engine, gone["id"], first, when, after_days=AFTER_DAYS, force=False, schema_revision=revision
    )
    order_id = next(iter(written.keys["orders"]))[0]
    await add_late_payment(engine, order_id, "late-2")
    expected = await rows_of_event(engine, gone["id"])

    async def no_problem(engine: AsyncEngine, written: WrittenArchive) -> None:
        return None

    with monkeypatch.context() as patched:
        patched.setattr(archive_module, "_first_problem", no_problem)
        with pytest.raises(ArchiveStopped, match=r"payments row .* refers to an archived orders row"):
            await delete_archived(engine, written)

    left = await rows_of_event(engine, gone["id"])
    assert len(left["payments"]) == 1  # the late one; the archived ones went, in the file
    assert left["orders"] == expected["orders"]
    partial = read_backup_header(first, file_format=ARCHIVE_FORMAT)
    assert partial.header["scope"]["partial"] is True
    assert partial.rows["orders"] == 0
    assert partial.rows["payments"] == len(expected["payments"]) - 1

    second = tmp_path / "second.jsonl.gz"
    await archive_event(
        engine, gone["id"], second, when, after_days=AFTER_DAYS, force=False, schema_revision=revision
    )
    assert all(not rows for rows in (await rows_of_event(engine, gone["id"])).values())
    with pytest.raises(ArchiveRefused, match="unarchive the later file"):
        await unarchive(engine, first, schema_revision=revision)
    await unarchive(engine, second, schema_revision=revision)
    await unarchive(engine, first, schema_revision=revision)
    assert await rows_of_event(engine, gone["id"]) == expected


async def test_unarchive_names_a_row_whose_id_sqlite_handed_out_again(
    shop: Shop, sim: Simulator, tmp_path: Path
) -> None:
    """SQLite numbers a table without AUTOINCREMENT one past its largest id: once an archive takes
    a table's newest row, the next row gets its id, and unarchive must say so, not fail on a raw
    duplicate key (simulated here by writing the reused id directly, on either engine)."""
    engine = services_of(shop.app).database.engine
    gone, when = await finished_event_with_a_later_one(shop, sim)
    revision = await current_revision(engine)
    path = tmp_path / "event.jsonl.gz"
    archived = await archive_event(
        engine, gone["id"], path, when, after_days=AFTER_DAYS, force=False, schema_revision=revision
    )
    assert archived.summary.rows["audit_log"]
    archived_audit_id = (await rows_of_event_in_file(path, "audit_log"))[-1]
    audit = metadata.tables["audit_log"]
    async with engine.begin() as connection:
        await connection.execute(
            audit.insert().values(
                id=archived_audit_id,
                entity="order",
                entity_id=999999,
                actor="system",
                at=datetime.now(UTC),
                to_status="paid",
            )
        )

    with pytest.raises(ArchiveRefused, match=f"audit_log row with id={archived_audit_id}"):
        await unarchive(engine, path, schema_revision=revision)
    assert all(not rows for rows in (await rows_of_event(engine, gone["id"])).values())


async def rows_of_event_in_file(path: Path, table: str) -> list[int]:
    """The ids of `table`'s rows in an archive file."""

    def read() -> list[int]:
        ids: list[int] = []
        current = None
        with gzip.open(path, "rb") as stream:
            for number, line in enumerate(stream):
                parsed = orjson.loads(line)
                if number == 0:
                    continue
                if isinstance(parsed, dict):
                    current = parsed.get("table")
                elif current == table:
                    ids.append(int(parsed[0]))
        return ids

    return await asyncio.to_thread(read)


@pytest.mark.parametrize("backend", ["sqlite", "mariadb"])
async def test_the_commands_archive_unarchive_and_keep_partitions(backend: str, tmp_path: Path) -> None:
    async with fresh_database(backend, tmp_path, "ticketera_archive_cli") as url:
        env = cli_env(tmp_path, DATABASE_URL=url)
        assert run_cli("migrate", workdir=tmp_path, env=env).returncode == 0
        assert run_cli("demo", workdir=tmp_path, env=env).returncode == 0

        on_sale = run_cli("db", "archive", "--event", "1", "--force", workdir=tmp_path, env=env)
        assert on_sale.returncode == 1
        assert "is on sale" in on_sale.stderr
        engine = create_engine(url, pool_size=1)
        try:
            await set_event(engine, 1, status="cancelled", updated_at=datetime.now(UTC))
        finally:
            await engine.dispose()
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
