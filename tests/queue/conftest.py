"""Waiting-room backends for the contract suite: in-process, Redis, and a 3-master Redis Cluster.

The cluster is started by the tests on loopback ports (`redis-server --cluster-enabled yes` and
`redis-cli --cluster create`) and torn down at the end of the session.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from benchmarks.harness import Cluster, free_cluster_ports, start_redis_server
from benchmarks.harness import running_cluster as harness_cluster

from tests.conftest import DatabaseUnderTest, _backend_unavailable, make_settings, services_of, serving
from tests.fakes import FakeClock
from ticketera.infra.redis import RedisConnection
from ticketera.queue.backend import QueueBackend
from ticketera.queue.memory import MemoryQueueBackend
from ticketera.queue.redis_backend import RedisQueueBackend
from ticketera.queue.tasks import admission_tick

# A database of its own on the shared Redis, emptied around each test.
TEST_REDIS_URL = os.environ.get("TICKETERA_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


@contextmanager
def running_redis(folder: Path, *options: str) -> Iterator[str]:
    """A redis-server of the test's own on a free loopback port, with `options`; its URL."""
    if shutil.which("redis-server") is None:
        _backend_unavailable("redis", "redis-server is not installed")
    port = free_cluster_ports(1)[0]
    process = start_redis_server(port, folder / f"redis-{port}", *options)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def running_cluster(
    root: Path, *, masters: int = 3, replicas: int = 1, node_timeout_ms: int = 15000
) -> Iterator[Cluster]:
    """The guide's cluster of the test's own (`harness.running_cluster`); skipped, or failed in CI,
    where Redis is not installed."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        _backend_unavailable("redis-cluster", "redis-server or redis-cli is not installed")
    with harness_cluster(
        root, masters=masters, replicas=replicas, node_timeout_ms=node_timeout_ms
    ) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The guide's Redis Cluster (3 masters, 3 replicas) on loopback ports, for this test session."""
    with running_cluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster.url


async def redis_connection_or_skip(url: str, *, cluster: bool = False) -> RedisConnection:
    connection = RedisConnection(url, cluster=cluster)
    if not await connection.ping():
        await connection.close()
        _backend_unavailable("redis-cluster" if cluster else "redis", f"cannot connect to {url}")
    return connection


async def flush(connection: RedisConnection) -> None:
    if connection.cluster:
        await connection.client.flushall(target_nodes="primaries")
    else:
        await connection.client.flushdb()


@pytest.fixture(params=["memory", "redis", "cluster"])
async def queue_backend(request: pytest.FixtureRequest) -> AsyncIterator[QueueBackend]:
    kind: str = request.param
    if kind == "memory":
        yield MemoryQueueBackend()
        return
    if kind == "redis":
        connection = await redis_connection_or_skip(TEST_REDIS_URL)
    else:
        url: str = request.getfixturevalue("redis_cluster_url")
        connection = await redis_connection_or_skip(url, cluster=True)
    await flush(connection)
    try:
        yield RedisQueueBackend(connection)
    finally:
        await flush(connection)
        await connection.close()


@asynccontextmanager
async def open_room(
    kind: str,
    database_url: str,
    tmp_path: Path,
    clock: FakeClock,
    *,
    cluster_url: str | None = None,
    **overrides: Any,
) -> AsyncIterator[httpx.AsyncClient]:
    """The app on this database, its waiting room in-process ("memory"), on Redis ("redis") or on
    a Redis Cluster ("cluster", at `cluster_url`), with time on `clock`."""
    connection = None
    if kind == "redis":
        connection = await redis_connection_or_skip(TEST_REDIS_URL)
        overrides = {"redis_url": TEST_REDIS_URL, **overrides}
    elif kind == "cluster":
        assert cluster_url is not None
        connection = await redis_connection_or_skip(cluster_url, cluster=True)
        overrides = {"redis_url": cluster_url, "redis_cluster": True, **overrides}
    if connection is not None:
        await flush(connection)
    try:
        async with serving(make_settings(database_url, tmp_path, **overrides), clock=clock) as client:
            yield client
    finally:
        if connection is not None:
            await flush(connection)
            await connection.close()


@pytest.fixture(params=["memory", "redis", "cluster"])
def room_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
async def room_client(
    request: pytest.FixtureRequest, room_kind: str, db: DatabaseUnderTest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[httpx.AsyncClient]:
    cluster_url = request.getfixturevalue("redis_cluster_url") if room_kind == "cluster" else None
    async with open_room(room_kind, db.url, tmp_path, clock, cluster_url=cluster_url) as client:
        yield client


async def tick(client: httpx.AsyncClient, clock: FakeClock) -> int:
    """One admission tick of the app behind `client`, at the clock's current time."""
    state = services_of(client.app)  # type: ignore[attr-defined]
    return await admission_tick(state.waiting_room, state.database, clock, tick_seconds=1.0)
