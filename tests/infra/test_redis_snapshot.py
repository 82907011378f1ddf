"""Redis' data saved beside a backup is a real RDB file: a new redis-server loads it and every
place in line is where it was."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis

from tests.queue.conftest import running_redis
from tests.test_cli import cli_env, run_cli
from ticketera.infra.redis import RedisConnection
from ticketera.infra.redis_snapshot import (
    RDB_MAGIC,
    RedisServer,
    SnapshotError,
    fetch_snapshot,
    snapshot_beside,
)
from ticketera.queue.redis_backend import RedisQueueBackend

EVENT_ID = 41


async def _line_of(url: str, users: list[str]) -> None:
    connection = RedisConnection(url)
    backend = RedisQueueBackend(connection)
    try:
        for user in users:
            await backend.join(EVENT_ID, user, now_ms=1_000, on_sale_ms=None, max_waiting=1_000)
    finally:
        await connection.close()


def _places(url: str) -> list[str]:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return [str(member) for member in client.zrange(f"q:{{event:{EVENT_ID}}}:line", 0, -1)]
    finally:
        client.close()


async def test_a_snapshot_loads_into_a_new_server_with_every_place_in_line(tmp_path: Path) -> None:
    users = [f"fan-{index}" for index in range(500)]
    with running_redis(tmp_path / "source") as url:
        await _line_of(url, users)
        snapshot = await fetch_snapshot(RedisServer.from_url(url), tmp_path / "saved" / "line.rdb")

    assert snapshot.size == snapshot.path.stat().st_size
    assert snapshot.path.read_bytes().startswith(RDB_MAGIC)
    assert not list(snapshot.path.parent.glob("*.partial"))
    # Redis' own way back: the file as the new server's dbfilename, loaded at start.
    restored_dir = tmp_path / "restored"
    restored_dir.mkdir()
    (restored_dir / "dump.rdb").write_bytes(snapshot.path.read_bytes())
    with running_redis(tmp_path / "unused", "--dir", str(restored_dir), "--appendonly", "no") as restored:
        assert _places(restored) == users


async def test_a_server_with_a_password_sends_its_snapshot_only_to_who_knows_it(tmp_path: Path) -> None:
    with running_redis(tmp_path, "--requirepass", "s3cret") as url:
        server = RedisServer.from_url(url.replace("redis://", "redis://:s3cret@"))
        saved = await fetch_snapshot(server, tmp_path / "ok.rdb")
        with pytest.raises(SnapshotError, match="AUTH refused"):
            await fetch_snapshot(
                RedisServer.from_url(url.replace("redis://", "redis://:wrong@")), tmp_path / "no.rdb"
            )

    assert saved.path.read_bytes().startswith(RDB_MAGIC)
    assert not (tmp_path / "no.rdb").exists()


async def test_a_cluster_is_saved_one_file_per_master(redis_cluster_url: str, tmp_path: Path) -> None:
    backup = tmp_path / "ticketera-mysql-20261205T100000Z.jsonl.gz"

    snapshots = await snapshot_beside(backup, redis_cluster_url, cluster=True)

    assert len(snapshots) == 3  # the guide's three masters; their replicas hold copies
    assert len({snapshot.server.port for snapshot in snapshots}) == 3
    for snapshot in snapshots:
        assert snapshot.path.name.startswith("ticketera-mysql-20261205T100000Z.redis-127.0.0.1-")
        assert snapshot.path.read_bytes().startswith(RDB_MAGIC)


def test_db_backup_saves_redis_beside_the_database_and_prints_the_backup_last(tmp_path: Path) -> None:
    with running_redis(tmp_path / "redis") as url:
        asyncio.run(_line_of(url, ["ana", "beto"]))
        env = cli_env(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'shop.db'}", REDIS_URL=url)
        assert run_cli("migrate", workdir=tmp_path, env=env).returncode == 0
        backed_up = run_cli("db", "backup", workdir=tmp_path, env=env)
        without = run_cli(
            "db", "backup", "--no-redis", "--output", str(tmp_path / "b.jsonl.gz"), workdir=tmp_path, env=env
        )

    assert backed_up.returncode == 0, backed_up.stderr
    backup = Path(backed_up.stdout.strip().splitlines()[-1])
    beside = backup.with_name(backup.name.removesuffix(".jsonl.gz") + ".redis.rdb")
    assert beside.read_bytes().startswith(RDB_MAGIC)
    assert f"bytes in {beside}" in backed_up.stdout
    assert without.returncode == 0, without.stderr
    assert not list(tmp_path.glob("b.redis*.rdb"))
