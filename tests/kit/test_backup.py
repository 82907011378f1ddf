"""Backups that restore: taken during sales, restored into a new database of either engine, every paid
order, ticket and payment there, and every ticket's signature verifying with the restored key."""

from __future__ import annotations

import asyncio
import gzip
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Boolean, Column, Integer, LargeBinary, MetaData, Numeric, String, Table, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import DatabaseUnderTest, fresh_database, services_of
from tests.shop import Shop, Simulator
from tests.test_cli import cli_env, run_cli
from tests.tickets.sales import paid_order, tickets_of
from ticketera.kit.backup import (
    BackupError,
    read_backup_header,
    restore_backup,
    restore_rows,
    write_backup,
)
from ticketera.kit.db import UTCDateTime, create_engine
from ticketera.kit.migrate import current_revision, head_revision
from ticketera.models import metadata
from ticketera.tickets.codes import unb64, verify_code


async def restored(backup: Path, url: str) -> AsyncEngine:
    """`backup` restored into the database at `url`, as `ticketera db restore` does."""
    engine = create_engine(url, pool_size=2)
    await restore_backup(engine, metadata, read_backup_header(backup))
    return engine


async def every_row(engine: AsyncEngine) -> dict[str, list[tuple[Any, ...]]]:
    async with engine.connect() as connection:
        return {
            table.name: [
                tuple(row)
                for row in await connection.execute(select(table).order_by(*table.primary_key.columns))
            ]
            for table in metadata.sorted_tables
        }


@pytest.fixture(params=["sqlite", "mariadb"])
async def target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database to restore into: the same engine as the shop's, or the other one."""
    async with fresh_database(request.param, tmp_path, "ticketera_restore") as url:
        yield url


async def test_a_backup_restores_every_row_into_either_engine(
    shop: Shop, sim: Simulator, tmp_path: Path, target: str
) -> None:
    event = await shop.event()
    orders = [await paid_order(shop, sim, event, f"fan-{index}", quantity=2) for index in range(3)]
    source = services_of(shop.app).database.engine
    backup = tmp_path / "sale.jsonl.gz"

    summary = await write_backup(source, metadata, backup, schema_revision=await current_revision(source))
    engine = await restored(backup, target)
    try:
        assert await every_row(engine) == await every_row(source)
        assert await current_revision(engine) == head_revision()
        async with engine.connect() as connection:
            public = (await connection.execute(text("SELECT public_key FROM event_keys"))).scalar_one()
        for order in orders:
            for ticket in await tickets_of(shop, order):
                assert verify_code(ticket["code"], unb64(public)).event_id == event["id"]
    finally:
        await engine.dispose()
    assert summary.rows["tickets"] == 6
    assert summary.rows["payments"] == 3
    assert (tmp_path / "sale.jsonl.gz.sha256").read_text().endswith("  sale.jsonl.gz\n")


async def test_a_backup_taken_during_sales_is_one_moment_of_them(
    shop: Shop, sim: Simulator, tmp_path: Path, db: DatabaseUnderTest
) -> None:
    """Orders are paid while the backup reads: every paid order it holds has its tickets and its
    payment, whichever side of the snapshot each sale fell."""
    event = await shop.event(sections=[{"name": "Campo", "price": "9000.00", "capacity": 200}])
    source = services_of(shop.app).database.engine
    backup = tmp_path / "during.jsonl.gz"

    async def sales() -> None:
        for index in range(8):
            await paid_order(shop, sim, event, f"rush-{index}")

    selling = asyncio.create_task(sales())
    await paid_order(shop, sim, event, "first")
    await write_backup(source, metadata, backup, schema_revision=await current_revision(source))
    await selling

    async with fresh_database(db.backend, tmp_path, "ticketera_moment") as url:
        engine = await restored(backup, url)
        try:
            async with engine.connect() as connection:
                paid = (
                    await connection.execute(text("SELECT id, quantity FROM orders WHERE status = 'paid'"))
                ).all()
                tickets: dict[int, int] = dict(
                    (
                        await connection.execute(
                            text("SELECT order_id, COUNT(*) FROM tickets GROUP BY order_id")
                        )
                    ).all()
                )
                sold = {
                    row[0]
                    for row in await connection.execute(
                        text("SELECT order_id FROM payments WHERE settlement = 'sold'")
                    )
                }
                public = (await connection.execute(text("SELECT public_key FROM event_keys"))).scalar_one()
                codes = set((await connection.execute(text("SELECT order_id, code FROM tickets"))).all())
        finally:
            await engine.dispose()
    assert paid
    assert {order_id: tickets.get(order_id) for order_id, _ in paid} == dict(paid)
    assert {order_id for order_id, _ in paid} <= sold
    # The tickets are the shop's own, and each code verifies with the event's key as restored.
    async with source.connect() as connection:
        issued = set((await connection.execute(text("SELECT order_id, code FROM tickets"))).all())
    assert codes <= issued
    assert all(verify_code(code, unb64(public)).event_id == event["id"] for _, code in codes)


async def test_a_damaged_or_cut_backup_is_refused(shop: Shop, tmp_path: Path) -> None:
    source = services_of(shop.app).database.engine
    backup = tmp_path / "whole.jsonl.gz"
    await write_backup(source, metadata, backup, schema_revision=await current_revision(source))
    lines = gzip.decompress(backup.read_bytes()).splitlines(keepends=True)
    changed = tmp_path / "changed.jsonl.gz"
    changed.write_bytes(gzip.compress(b"".join([*lines[:2], lines[2].replace(b"a", b"b", 1), *lines[3:]])))
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(gzip.compress(b"".join(lines[:-1])))

    with pytest.raises(BackupError, match="checksum"):
        read_backup_header(changed)
    with pytest.raises(BackupError, match="cut short"):
        read_backup_header(cut)
    with pytest.raises(BackupError, match="not a Ticketera backup"):
        read_backup_header(_gzipped(tmp_path / "other.gz", b'{"hello": 1}\n'))


def _gzipped(path: Path, content: bytes) -> Path:
    path.write_bytes(gzip.compress(content))
    return path


def test_the_commands_back_up_and_restore_and_refuse_to_overwrite(tmp_path: Path) -> None:
    source = cli_env(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'source.db'}")
    target = cli_env(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'target.db'}")
    assert run_cli("migrate", workdir=tmp_path, env=source).returncode == 0
    assert run_cli("demo", workdir=tmp_path, env=source).returncode == 0

    backed_up = run_cli("db", "backup", workdir=tmp_path, env=source)
    path = backed_up.stdout.strip().splitlines()[-1]
    first = run_cli("db", "restore", path, workdir=tmp_path, env=target)
    again = run_cli("db", "restore", path, workdir=tmp_path, env=target)
    forced = run_cli("db", "restore", path, "--force", workdir=tmp_path, env=target)

    assert backed_up.returncode == 0, backed_up.stderr
    assert path.startswith(str(tmp_path / "data" / "backups" / "ticketera-sqlite-"))
    assert first.returncode == 0, first.stderr
    assert "Restored 1203 rows" in first.stdout
    assert again.returncode == 1
    assert "--force" in again.stderr
    assert forced.returncode == 0, forced.stderr


async def test_every_kind_of_column_comes_back_as_it_was(tmp_path: Path) -> None:
    """Bytes, amounts, moments, nulls and text of any script, through a table of the test's own."""
    kinds = MetaData()
    table = Table(
        "kinds",
        kinds,
        Column("id", Integer, primary_key=True),
        Column("blob", LargeBinary, nullable=True),
        Column("amount", Numeric(12, 2), nullable=True),
        Column("moment", UTCDateTime(), nullable=True),
        Column("label", String(40), nullable=True),
        Column("flag", Boolean, nullable=True),
    )
    rows: list[dict[str, Any]] = [
        {
            "id": 1,
            "blob": bytes(range(256)),
            "amount": Decimal("15000.50"),
            "moment": datetime(2030, 3, 1, 12, 0, 0, 123456, tzinfo=UTC),
            "label": 'Ñandú 🎫 "quoted"',
            "flag": True,
        },
        {"id": 2, "blob": None, "amount": None, "moment": None, "label": None, "flag": None},
    ]
    source = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'kinds.db'}")
    target = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'restored.db'}")
    try:
        for engine in (source, target):
            async with engine.begin() as connection:
                await connection.run_sync(kinds.create_all)
        async with source.begin() as connection:
            await connection.execute(table.insert(), rows)
        await write_backup(source, kinds, tmp_path / "kinds.jsonl.gz", schema_revision=None)
        await restore_rows(target, kinds, tmp_path / "kinds.jsonl.gz")
        async with target.connect() as connection:
            restored_rows = [
                dict(row._mapping) for row in await connection.execute(select(table).order_by(table.c.id))
            ]
    finally:
        await source.dispose()
        await target.dispose()

    assert restored_rows == rows


async def test_the_file_and_its_folder_are_on_disk_before_the_writer_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Callers delete the rows right after (DROP PARTITION, an archive's deletes): the file's bytes
    must be synced before its rename, and the folder (the rename) after it."""
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(descriptor: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)
    kinds = MetaData()
    Table("kinds", kinds, Column("id", Integer, primary_key=True))
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'kinds.db'}")
    try:
        async with engine.begin() as connection:
            await connection.run_sync(kinds.create_all)
        path = tmp_path / "out" / "kinds.jsonl.gz"
        await write_backup(engine, kinds, path, schema_revision=None)
    finally:
        await engine.dispose()

    folder = str(path.parent)
    assert synced == [f"{path}.partial", f"{path}.sha256", folder]
