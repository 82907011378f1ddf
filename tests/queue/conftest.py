"""Waiting-room backends for the contract suite: in-process, Redis, and a 3-master Redis Cluster.

The cluster is started by the tests on loopback ports (`redis-server --cluster-enabled yes` and
`redis-cli --cluster create`) and torn down at the end of the session.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import DatabaseUnderTest, _backend_unavailable, make_settings, services_of, serving
from tests.fakes import FakeClock
from ticketera.infra.redis import RedisConnection
from ticketera.queue.backend import QueueBackend
from ticketera.queue.memory import MemoryQueueBackend
from ticketera.queue.redis_backend import RedisQueueBackend
from ticketera.queue.tasks import admission_tick

# A database of its own on the shared Redis, emptied around each test.
TEST_REDIS_URL = os.environ.get("TICKETERA_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_ports(count: int) -> list[int]:
    """Free ports whose cluster bus port (port + 10000) is free too; Redis wants them below 55536."""
    chosen: list[int] = []
    for port in random.sample(range(20000, 45000), 2000):
        if _bindable(port) and _bindable(port + 10000):
            chosen.append(port)
            if len(chosen) == count:
                return chosen
    raise RuntimeError("no free ports for a test Redis Cluster")


def start_redis_server(port: int, workdir: Path, *extra: str) -> subprocess.Popen[bytes]:
    workdir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(workdir),
            "--save",
            "",
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return process
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"redis-server on port {port} did not start")


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


@dataclass
class Cluster:
    """A Redis Cluster of this test run's own, on loopback ports."""

    ports: list[int]
    processes: dict[int, subprocess.Popen[bytes]]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}"

    def cli(self, port: int, *command: str) -> str:
        done = subprocess.run(
            ["redis-cli", "-p", str(port), *command], capture_output=True, text=True, check=False, timeout=10
        )
        return done.stdout

    def master_of(self, key: str) -> int:
        """The port of the master serving `key`'s slot right now."""
        slot = int(self.cli(self.ports[0], "cluster", "keyslot", key).strip())
        for line in self.cli(self.ports[0], "cluster", "nodes").splitlines():
            fields = line.split()
            if "master" not in fields[2] or "fail" in fields[2]:
                continue
            for span in fields[8:]:
                low, _, high = span.partition("-")
                if low.isdigit() and int(low) <= slot <= int(high or low):
                    return int(fields[1].split(":")[1].split("@")[0])
        raise AssertionError(f"no master serves slot {slot}")

    def healthy(self) -> bool:
        return "cluster_state:ok" in self.cli(self.ports[0], "cluster", "info")


@contextmanager
def running_cluster(
    root: Path, *, masters: int = 3, replicas: int = 1, node_timeout_ms: int = 15000
) -> Iterator[Cluster]:
    """The guide's cluster: `masters` masters with `replicas` replicas each (`--cluster-replicas`)."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        _backend_unavailable("redis-cluster", "redis-server or redis-cli is not installed")
    ports = free_cluster_ports(masters * (1 + replicas))
    processes = {
        port: start_redis_server(
            port,
            root / str(port),
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            f"nodes-{port}.conf",
            "--cluster-node-timeout",
            str(node_timeout_ms),
            "--appendonly",
            "no",
        )
        for port in ports
    }
    cluster = Cluster(ports, processes)
    try:
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *[f"127.0.0.1:{port}" for port in ports],
                "--cluster-replicas",
                str(replicas),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        deadline = time.monotonic() + 30
        while not (cluster.healthy() and _replicas_attached(cluster, masters * replicas)):
            if time.monotonic() > deadline:
                raise RuntimeError("the test Redis Cluster did not reach cluster_state:ok with its replicas")
            time.sleep(0.2)
        yield cluster
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
        for process in processes.values():
            process.wait(timeout=10)


def _replicas_attached(cluster: Cluster, expected: int) -> bool:
    nodes = cluster.cli(cluster.ports[0], "cluster", "nodes").splitlines()
    return sum(1 for line in nodes if "slave" in line.split()[2] and " connected" in line) >= expected


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
