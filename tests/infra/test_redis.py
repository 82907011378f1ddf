"""What Redis' configuration could lose of the waiting room, read at start-up (single server and Cluster)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import DatabaseUnderTest, make_settings, serving
from tests.queue.conftest import running_redis
from ticketera.infra.logging import LOG_FILE_NAME
from ticketera.infra.redis import RedisConnection


async def risks_of(url: str, *, cluster: bool = False) -> list[str]:
    connection = RedisConnection(url, cluster=cluster)
    try:
        return await connection.persistence_risks()
    finally:
        await connection.close()


async def test_an_evicting_policy_and_no_aof_are_both_named(tmp_path: Path) -> None:
    with running_redis(tmp_path, "--maxmemory-policy", "allkeys-lru", "--appendonly", "no") as url:
        risks = await risks_of(url)

    assert len(risks) == 2
    assert "allkeys-lru" in risks[0]
    assert "appendonly is no" in risks[1]


async def test_noeviction_with_aof_is_safe(tmp_path: Path) -> None:
    with running_redis(tmp_path, "--maxmemory-policy", "noeviction", "--appendonly", "yes") as url:
        assert await risks_of(url) == []


async def test_every_cluster_node_is_asked(redis_cluster_url: str) -> None:
    """The test cluster keeps nothing on disk, like the test server: the risk is seen through it."""
    risks = await risks_of(redis_cluster_url, cluster=True)

    assert any("appendonly is no" in risk for risk in risks)


async def test_the_app_warns_at_start_up(db: DatabaseUnderTest, tmp_path: Path) -> None:
    with running_redis(tmp_path, "--maxmemory-policy", "volatile-lru", "--appendonly", "yes") as url:
        settings = make_settings(db.url, tmp_path, redis_url=url)
        async with serving(settings):
            pass

    lines = (settings.log_dir / LOG_FILE_NAME).read_text().splitlines()
    warnings = [entry for entry in map(json.loads, lines) if entry["event"] == "redis.persistence_risk"]
    assert len(warnings) == 1
    assert "volatile-lru" in warnings[0]["risk"]
