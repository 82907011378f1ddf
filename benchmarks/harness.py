"""Plumbing shared by the benchmark scripts: the service under test, MySQL databases, CPU meters.

The scripts (`create_venue.py`, `queue.py`, `onsale.py`, `checkin.py`, `webhooks.py`) run as
`python benchmarks/<name>.py`. Each first drops its own folder from sys.path (the sibling `queue.py`
shadows the standard library's `queue`), then puts the project root in front and imports this
module as `from benchmarks import harness`. This module never imports that sibling, and it depends
on nothing being imported before it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ticketera.config import Settings, to_async_url

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

ADMIN_KEY = "bench-admin"
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN_KEY}"}
# The SECRET_KEY of the service run in production mode, which wants a long one.
PRODUCTION_SECRET_KEY = "bench-secret-key-with-enough-length-0123456789"
MYSQL_SERVER_URL = os.environ.get("TICKETERA_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/")
READY_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 10.0
REQUEST_TIMEOUT_SECONDS = 30.0
SERVICE_OUTPUT = "service-output.log"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PASSED_ENVIRONMENT = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")

# What a script's run_backend returns: a dataclass, written to --json with dataclasses.asdict.
ResultT = TypeVar("ResultT", bound="DataclassInstance")


class BenchmarkError(Exception):
    """A process did not start or the service answered wrongly; the message says how."""


class DatabaseUnavailable(Exception):
    """The MySQL server does not answer; the message names it and says why, `reason` only why."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"no server answers at {MYSQL_SERVER_URL} ({reason})")
        self.reason = reason


@dataclass
class Latency:
    """Milliseconds of a series of requests (or of whole purchase paths)."""

    p50: float = 0.0
    p95: float = 0.0
    p99: float = 0.0
    mean: float = 0.0
    samples: int = 0

    @classmethod
    def of(cls, seconds: list[float]) -> Latency:
        """Percentiles and mean of `seconds`, in milliseconds (fewer than two samples: that one, or 0)."""
        ms = [value * 1000.0 for value in seconds]
        if len(ms) < 2:
            only = ms[0] if ms else 0.0
            return cls(p50=only, p95=only, p99=only, mean=only, samples=len(ms))
        cuts = statistics.quantiles(ms, n=100, method="inclusive")
        return cls(p50=cuts[49], p95=cuts[94], p99=cuts[98], mean=statistics.fmean(ms), samples=len(ms))

    def summary(self, *, p99: bool = True) -> str:
        """`p50 …  p95 …  p99 … ms`, each figure six wide (without the p99 if not asked for)."""
        text_ = f"p50 {self.p50:6.1f}  p95 {self.p95:6.1f}"
        return text_ + (f"  p99 {self.p99:6.1f}" if p99 else "") + " ms"


# --------------------------------------------------------------------------------------------
# Databases


async def mysql_unreachable_reason() -> str | None:
    """None when the MySQL server at MYSQL_SERVER_URL answers; otherwise why not, in one short line."""
    engine = create_async_engine(to_async_url(MYSQL_SERVER_URL), connect_args={"connect_timeout": 3})
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return None
    except Exception as exc:  # any failure means "skip MariaDB", with the reason
        return f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"
    finally:
        await engine.dispose()


async def mysql_admin(statement: str) -> None:
    """Run one statement (CREATE/DROP DATABASE) on the MySQL server, in its own engine."""
    engine = create_async_engine(to_async_url(MYSQL_SERVER_URL), pool_size=1)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


async def mysql_server_version() -> str:
    """`SELECT VERSION()` of the MySQL server, in its own engine."""
    engine = create_async_engine(to_async_url(MYSQL_SERVER_URL), pool_size=1)
    try:
        async with engine.connect() as connection:
            return str((await connection.execute(text("SELECT VERSION()"))).scalar_one())
    finally:
        await engine.dispose()


@contextmanager
def mysql_database() -> Iterator[str]:
    """A fresh database on the MySQL server, dropped afterwards; yields its plain mysql:// URL."""
    name = f"ticketera_bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(mysql_admin(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
    try:
        url = make_url(MYSQL_SERVER_URL).set(drivername="mysql", database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        asyncio.run(mysql_admin(f"DROP DATABASE IF EXISTS `{name}`"))


@contextmanager
def backend_database(backend: str, workdir: Path) -> Iterator[str]:
    """The service's database URL on `backend`: "sqlite", a file in `workdir`; "mariadb", a fresh
    database on the MySQL server, dropped afterwards. DatabaseUnavailable when that server does not
    answer."""
    if backend == "sqlite":
        yield f"sqlite:///{workdir / 'bench.db'}"
        return
    reason = asyncio.run(mysql_unreachable_reason())
    if reason is not None:
        raise DatabaseUnavailable(reason)
    with mysql_database() as database_url:
        yield database_url


# --------------------------------------------------------------------------------------------
# Processes and the service under test


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def tail(path: Path, lines: int = 30) -> str:
    """The last `lines` lines of a process's output file, or "(no output)"."""
    if not path.exists():
        return "(no output)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after STOP_TIMEOUT_SECONDS; nothing if the process already ended."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def passed_environment() -> dict[str, str]:
    """Only what a process needs to run (PASSED_ENVIRONMENT) from this process's environment."""
    return {name: value for name, value in os.environ.items() if name in PASSED_ENVIRONMENT}


def scrubbed_environment() -> dict[str, str]:
    """This process's environment without any variable the service's settings would read."""
    env = dict(os.environ)
    for name in [*Settings.model_fields, "node_env", "db_host", "redis_host"]:
        env.pop(name.upper(), None)
    return env


def service_environment(
    base: Mapping[str, str],
    database_url: str,
    workdir: Path,
    *,
    app_env: str = "development",
    secret_key: str = "bench-secret-key",
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """`base` plus the settings every benchmark gives the service, then `extra` on top.

    Nothing from the caller's shell may configure the service under test: pass
    `passed_environment()` or `scrubbed_environment()` as `base`.
    """
    env = dict(base)
    env.update(
        {
            "APP_ENV": app_env,
            "DATABASE_URL": database_url,
            "DATA_DIR": str(workdir / "data"),
            "LOG_DIR": str(workdir / "logs"),
            "LOG_LEVEL": "WARNING",
            # A benchmark measures the service, not the app's own rate limiter.
            "APP_RATE_LIMIT": "off",
            "QUEUE_JOIN_RATE_LIMIT": "off",
            "ADMIN_API_KEY": ADMIN_KEY,
            "STAFF_API_KEY": "bench-staff",
            "SECRET_KEY": secret_key,
            "MP_ACCESS_TOKEN": "TEST-bench-token",
            "MP_WEBHOOK_SECRET": "bench-webhook-secret",
            **(extra or {}),
        }
    )
    return env


def production_environment(
    database_url: str, workdir: Path, *, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Production mode (as deployed) with its secrets, rate limits, the admission ticker and the
    in-process worker off, nothing from the caller's shell; then `extra` on top. What is measured is
    the requests' own path, not a sweep (or an email) running beside it."""
    return service_environment(
        passed_environment(),
        database_url,
        workdir,
        app_env="production",
        secret_key=PRODUCTION_SECRET_KEY,
        extra={
            "QUEUE_TICKER": "false",
            "WORKER_IN_PROCESS": "false",
            # Production requires both; with the worker off, no email is sent, and the scripts that
            # need webhooks give the service's own address (running_service_with_mp_simulator).
            "PUBLIC_BASE_URL": "http://127.0.0.1",
            "SMTP_URL": "smtp://127.0.0.1:2525",
            **(extra or {}),
        },
    )


def answers_ok(url: str) -> bool:
    """Whether `GET url` answers 200 within two seconds."""
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def wait_answering(
    process: subprocess.Popen[bytes],
    answering: Callable[[], bool],
    what: str,
    output_path: Path,
    *,
    interval: float = 0.2,
) -> None:
    """Call `answering()` every `interval` seconds until it is true; BenchmarkError (naming `what`,
    with the end of its output) if the process exits first or READY_TIMEOUT_SECONDS run out."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchmarkError(
                f"{what} exited with code {process.returncode} before it was ready:\n{tail(output_path)}"
            )
        if answering():
            return
        time.sleep(interval)
    raise BenchmarkError(f"{what} was not ready within {READY_TIMEOUT_SECONDS:.0f} s:\n{tail(output_path)}")


@contextmanager
def running_service(
    workdir: Path, env: Mapping[str, str], workers: int = 1, *, port: int | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    """`ticketera serve` on `port` (by default a free one), ready; yields its base URL, its process
    and its output file."""
    command = Path(sys.executable).parent / "ticketera"
    port = free_port() if port is None else port
    output_path = workdir / SERVICE_OUTPUT
    arguments = [str(command), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    if SERVER == "granian":
        # For comparison only: granian's own workers in place of `serve`'s (migrations first, as
        # `serve` runs them), the app built by benchmarks/granian_app.py in each.
        granian = Path(sys.executable).parent / "granian"
        if not granian.exists():
            raise BenchmarkError("--server granian needs granian: .venv/bin/pip install granian")
        subprocess.run([str(command), "migrate"], cwd=workdir, env=dict(env), check=True, capture_output=True)
        arguments = [str(granian), "--interface", "asgi", "--loop", "uvloop"]
        arguments += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers), "--no-ws"]
        arguments += ["--log-level", "warning", "benchmarks.granian_app:app"]
    with output_path.open("wb") as output:
        process = subprocess.Popen(  # our own entry point, fixed arguments
            arguments,
            cwd=workdir,
            env=dict(env) if SERVER == "uvicorn" else {**env, "PORT": str(port), "PYTHONPATH": str(ROOT)},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            base_url = f"http://127.0.0.1:{port}"
            ready = f"{base_url}/health/ready"
            wait_answering(process, lambda: answers_ok(ready), "the service", output_path)
            yield base_url, process, output_path
        finally:
            stop(process)


def redis_io_threads(cores: int) -> int:
    """Redis' IO threads for a host of `cores`, as deploy/stack-env.sh writes them for the Compose
    stack (deploy/redis/redis.conf says why: an IO thread spins while it waits)."""
    return 4 if cores >= 8 else 2 if cores >= 4 else 1


@contextmanager
def private_redis(
    workdir: Path, *, config: Path | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A throwaway redis-server on a free loopback port, no persistence; yields its URL and process.

    With `config` (the shipped deploy/redis/redis.conf), the server runs that file's settings, but
    for its address, folder and persistence (a benchmark measures the server, not this disk), and
    its IO threads, which are the host's (`redis_io_threads`), as in the Compose stack."""
    # Imported here: redis-py imports the standard library's `queue`, which benchmarks/queue.py
    # shadows for any script run from this folder that has not dropped the folder from sys.path.
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        raise BenchmarkError("redis-server is not on PATH; install Redis to run this benchmark")
    port = free_port()
    folder = workdir / "redis"
    folder.mkdir()
    output_path = workdir / "redis-output.log"
    config_args: list[str] = []
    if config is not None:
        # Redis checks the file's `dir` (the container's /data) while reading it, before any
        # command-line override; the copy leaves that line out and --dir below names ours.
        copy = workdir / "redis.conf"
        lines = config.read_text().splitlines()
        copy.write_text("\n".join(line for line in lines if not line.startswith("dir ")) + "\n")
        config_args = [str(copy), "--io-threads", str(redis_io_threads(os.cpu_count() or 1))]
    with output_path.open("wb") as output:
        process = subprocess.Popen(  # a fixed command line of our own
            [
                binary,
                *config_args,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(folder),
            ],
            cwd=folder,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            probe = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1.0)

            def pong() -> bool:
                try:
                    return bool(probe.ping())
                except redis.RedisError:
                    return False

            try:
                wait_answering(process, pong, "redis-server", output_path, interval=0.1)
            finally:
                probe.close()
            yield f"redis://127.0.0.1:{port}/0", process
        finally:
            stop(process)


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_ports(count: int) -> list[int]:
    """Free loopback ports whose cluster bus port (port + 10000) is free too; Redis wants them below
    55536."""
    chosen: list[int] = []
    for port in random.sample(range(20000, 45000), 2000):
        if _bindable(port) and _bindable(port + 10000):
            chosen.append(port)
            if len(chosen) == count:
                return chosen
    raise BenchmarkError("no free ports for a Redis Cluster")


def start_redis_server(port: int, workdir: Path, *extra: str) -> subprocess.Popen[bytes]:
    """A redis-server on loopback `port`, with no RDB saves and these `extra` options; returned once
    it accepts connections."""
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
    raise BenchmarkError(f"redis-server on port {port} did not start")


@dataclass
class Cluster:
    """A Redis Cluster of a test's or a benchmark's own, on loopback ports."""

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
        raise BenchmarkError("redis-server or redis-cli is not on PATH; install Redis")
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
                raise BenchmarkError("the Redis Cluster did not reach cluster_state:ok with its replicas")
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


class PrivateMariaDB:
    """A throwaway mariadbd of our own on a free loopback port, for benchmarks and tests that stop,
    freeze, kill or replicate the database (never the shared server): `start()` again after `kill()`
    is a restart on the same data and port, as a crash and its recovery would be. `options` are
    mariadbd's own (binlog off unless they ask for it)."""

    def __init__(
        self, workdir: Path, name: str = "mariadb", options: tuple[str, ...] = ("--skip-log-bin",)
    ) -> None:
        self.folder = workdir / name
        self.port = free_port()
        self.options = options
        self.process: subprocess.Popen[bytes] | None = None
        self.output_path = workdir / f"{name}-output.log"

    @property
    def url(self) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/ticketera"

    def url_for(self, user: str, password: str) -> str:
        return f"mysql://{user}:{password}@127.0.0.1:{self.port}/ticketera"

    def install(self) -> None:
        installer, server = shutil.which("mariadb-install-db"), shutil.which("mariadbd")
        if installer is None or server is None:
            raise BenchmarkError("mariadb-install-db / mariadbd are not on PATH; install mariadb-server")
        self.folder.mkdir(parents=True)
        subprocess.run(  # a fixed command line of our own
            [
                installer,
                "--no-defaults",
                f"--datadir={self.folder / 'data'}",
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        server = shutil.which("mariadbd")
        assert server is not None, "install() checked it"
        with self.output_path.open("ab") as output:
            self.process = subprocess.Popen(  # a fixed command line of our own
                [
                    server,
                    "--no-defaults",
                    f"--datadir={self.folder / 'data'}",
                    "--user=root",
                    f"--port={self.port}",
                    "--bind-address=127.0.0.1",
                    f"--socket={self.folder / 'mariadb.sock'}",
                    f"--pid-file={self.folder / 'mariadb.pid'}",
                    "--innodb-buffer-pool-size=128M",
                    *self.options,
                ],
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        process = self.process

        def answers() -> bool:
            probe = subprocess.run(
                ["mysqladmin", "--protocol=tcp", "-h127.0.0.1", f"-P{self.port}", "-uroot", "ping"],
                capture_output=True,
                check=False,
            )
            return probe.returncode == 0

        wait_answering(process, answers, "mariadbd", self.output_path, interval=0.2)

    def sql(self, statements: str) -> str:
        """Run `statements` as root with the mysql client; what they printed (tab-separated, no headers)."""
        done = subprocess.run(  # our own statements, on our own server
            [
                "mysql",
                "--protocol=tcp",
                "-h127.0.0.1",
                f"-P{self.port}",
                "-uroot",
                "-N",
                "-B",
                "-e",
                statements,
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        if done.returncode != 0:
            raise BenchmarkError(
                f"mariadb on port {self.port} refused {statements[:80]!r}: {done.stderr.strip()}"
            )
        return done.stdout.strip()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def freeze(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None:
            self.thaw()
            stop(self.process)


CREATE_TICKETERA_DATABASE = "CREATE DATABASE ticketera CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"


@contextmanager
def private_mariadb(workdir: Path) -> Iterator[PrivateMariaDB]:
    """A `PrivateMariaDB`, installed and started with an empty `ticketera` database; stopped after."""
    server = PrivateMariaDB(workdir)
    server.install()
    server.start()
    try:
        server.sql(CREATE_TICKETERA_DATABASE)
        yield server
    finally:
        server.stop()


# The guide's `readonly` user (deploy/mariadb/create-readonly-user.sh), whom replicas serve.
READONLY_USER, READONLY_PASSWORD = "readonly", "readonly-secret"
READONLY_USER_SCRIPT = (
    Path(__file__).resolve().parent.parent / "deploy" / "mariadb" / "create-readonly-user.sh"
)
_REPLICATION_USER, _REPLICATION_PASSWORD = "replication", "replication-secret"
REPLICATION_READY_SECONDS = 60.0


@dataclass
class ReplicatedMariaDB:
    """A primary and its replica, each a `PrivateMariaDB`, replicating by GTID."""

    primary: PrivateMariaDB
    replica: PrivateMariaDB

    @property
    def replica_url(self) -> str:
        """The replica as the app reads it: the `readonly` user, SELECT on ticketera only."""
        return self.replica.url_for(READONLY_USER, READONLY_PASSWORD)

    def follow(self) -> None:
        """Point the replica at the primary (again, after a restart) and start replicating."""
        self.replica.sql(
            f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={self.primary.port}, "
            f"MASTER_USER='{_REPLICATION_USER}', MASTER_PASSWORD='{_REPLICATION_PASSWORD}', "
            "MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1; START SLAVE"
        )

    def caught_up(self) -> bool:
        """Whether the replica has applied everything the primary has written to its binlog."""
        return self.primary.sql("SELECT @@gtid_binlog_pos") == self.replica.sql("SELECT @@gtid_slave_pos")

    def wait_caught_up(self) -> None:
        deadline = time.monotonic() + REPLICATION_READY_SECONDS
        while not self.caught_up():
            if time.monotonic() > deadline:
                status = self.replica.sql("SHOW SLAVE STATUS\\G")
                raise BenchmarkError(
                    f"the replica did not catch up in {REPLICATION_READY_SECONDS:.0f} s:\n{status}"
                )
            time.sleep(0.1)


@contextmanager
def replicated_mariadb(workdir: Path) -> Iterator[ReplicatedMariaDB]:
    """A primary and a replica of our own on free ports (row-based binlog, GTID replication), with
    an empty `ticketera` database on both and the `readonly` user; both stopped after."""
    primary = PrivateMariaDB(
        workdir, "primary", options=("--log-bin=primary-bin", "--server-id=1", "--binlog-format=ROW")
    )
    replica = PrivateMariaDB(
        workdir,
        "replica",
        options=("--server-id=2", "--read-only", "--relay-log=replica-relay", "--skip-log-bin"),
    )
    pair = ReplicatedMariaDB(primary, replica)
    try:
        for server in (primary, replica):
            server.install()
            server.start()
        primary.sql(
            f"CREATE USER '{_REPLICATION_USER}'@'127.0.0.1' IDENTIFIED BY '{_REPLICATION_PASSWORD}'; "
            f"GRANT REPLICATION SLAVE ON *.* TO '{_REPLICATION_USER}'@'127.0.0.1'; "
            f"{CREATE_TICKETERA_DATABASE}; "
            # An anonymous ''@localhost would shadow `readonly`@'%' for a client on this machine.
            "DELETE FROM mysql.global_priv WHERE User = ''; FLUSH PRIVILEGES"
        )
        # The shipped script makes the user on the primary, as an operator runs it; replication
        # brings it over.
        subprocess.run(  # our own script, against our own server
            ["sh", str(READONLY_USER_SCRIPT)],
            env={
                **os.environ,
                "READONLY_PASSWORD": READONLY_PASSWORD,
                "MARIADB_HOST": "127.0.0.1",
                "MARIADB_PORT": str(primary.port),
                "MARIADB_ROOT_PASSWORD": "",
            },
            capture_output=True,
            check=True,
        )
        pair.follow()
        pair.wait_caught_up()
        yield pair
    finally:
        replica.stop()
        primary.stop()


# The ASGI server `running_service` starts: "uvicorn" (`ticketera serve`, what ships) or "granian"
# (to compare them on the same machine: benchmarks/onsale.py --server granian).
SERVER = "uvicorn"
ROOT = Path(__file__).resolve().parent.parent


# The running simulators' process ids by base URL, for the scripts that meter their CPU.
SIMULATOR_PIDS: dict[str, int] = {}


@contextmanager
def running_mp_simulator(workdir: Path, env: Mapping[str, str]) -> Iterator[str]:
    """The MercadoPago simulator (`python -m ticketera.mpsim`) on a free port with the service's
    MP_ACCESS_TOKEN and MP_WEBHOOK_SECRET from `env`; yields the base URL for MP_BASE_URL."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    output_path = workdir / "mp-simulator-output.log"
    sim_env = {**passed_environment(), **{k: v for k, v in env.items() if k.startswith("MP_")}}
    sim_env.update({"MPSIM_PUBLIC_URL": base_url, "LOG_LEVEL": "WARNING"})
    with output_path.open("wb") as output:
        process = subprocess.Popen(  # our own interpreter and module, fixed arguments
            [sys.executable, "-m", "ticketera.mpsim", "--host", "127.0.0.1", "--port", str(port)],
            cwd=workdir,
            env=sim_env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        SIMULATOR_PIDS[base_url] = process.pid
        try:
            health = f"{base_url}/_sim/health"
            wait_answering(process, lambda: answers_ok(health), "the MercadoPago simulator", output_path)
            yield base_url
        finally:
            SIMULATOR_PIDS.pop(base_url, None)
            stop(process)


@contextmanager
def running_service_with_mp_simulator(
    workdir: Path, env: Mapping[str, str], workers: int, *, public_base_url: bool = False
) -> Iterator[tuple[str, subprocess.Popen[bytes], str]]:
    """The MercadoPago simulator, then the service with MP_BASE_URL pointing at it (every order
    creates its checkout there). With `public_base_url`, the service's PUBLIC_BASE_URL names its own
    port, chosen before it starts, so the preferences it creates send the simulator's webhooks to
    it. Yields the service's base URL, its process, and the simulator's base URL; the service's
    output is in SERVICE_OUTPUT in `workdir` (see service_problems)."""
    env = dict(env)
    port = free_port() if public_base_url else None
    if port is not None:
        env["PUBLIC_BASE_URL"] = f"http://127.0.0.1:{port}"
    with running_mp_simulator(workdir, env) as simulator_url:
        env["MP_BASE_URL"] = simulator_url
        with running_service(workdir, env, workers, port=port) as (base_url, process, _):
            yield base_url, process, simulator_url


def service_problems(workdir: Path, output_path: Path | None = None) -> list[str]:
    """Warning and error lines the service wrote to its output (by default SERVICE_OUTPUT in
    `workdir`) and its log file."""
    markers = ("error", "warning", "traceback", "exception", "critical")
    problems: list[str] = []
    for path in [output_path or workdir / SERVICE_OUTPUT, *sorted((workdir / "logs").glob("*.log"))]:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            if any(marker in line.lower() for marker in markers):
                problems.append(f"{path.name}: {line.strip()[:300]}")
    return problems


def problem_lines(problems: list[str]) -> list[str]:
    """The report's lines about service_problems(): how many, and the first five; none if none."""
    if not problems:
        return []
    return [
        f"  service logged {len(problems)} warning/error line(s), first ones:",
        *(f"    {problem}" for problem in problems[:5]),
    ]


# --------------------------------------------------------------------------------------------
# What the processes cost


def proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds used) of a live process, from /proc; None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def tree_cpu_seconds_by_process(root: int) -> dict[int, float]:
    """CPU seconds of a process and of each of its live descendants (the service's workers), by pid."""
    stats = _all_proc_stats()
    return {pid: stats[pid][1] for pid in _tree(root, stats)}


def _all_proc_stats() -> dict[int, tuple[int, float]]:
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := proc_stat(int(entry.name))) is not None:
            stats[int(entry.name)] = stat
    return stats


def _tree(root: int, stats: dict[int, tuple[int, float]]) -> set[int]:
    """`root` and its live descendants, from `stats` (parent pid first in each entry)."""
    tree = {root}
    grew = True
    while grew:
        grew = False
        for pid, (parent, _) in stats.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return {pid for pid in tree if pid in stats}


def rss_bytes(pid: int) -> int | None:
    """Resident memory of a live process (VmRSS), or None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def tree_rss_by_process(root: int) -> dict[int, int]:
    """Resident memory of a process and of each of its live descendants, by pid."""
    found = {pid: rss_bytes(pid) for pid in _tree(root, _all_proc_stats())}
    return {pid: size for pid, size in found.items() if size is not None}


@asynccontextmanager
async def peak_rss(root: int, *, interval: float = 0.5) -> AsyncIterator[dict[int, int]]:
    """While the block runs, the largest resident memory seen of each process of `root`'s tree."""
    peaks: dict[int, int] = {}

    async def sample() -> None:
        while True:
            for pid, size in tree_rss_by_process(root).items():
                peaks[pid] = max(peaks.get(pid, 0), size)
            await asyncio.sleep(interval)

    sampler = asyncio.create_task(sample())
    try:
        yield peaks
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler


@dataclass
class CorePlacement:
    """Which CPUs the service's processes run on, and which everything else of the run does; the
    affinities found before, to give back (`restore`): MariaDB is the machine's own server."""

    service_cpus: set[int]
    other_cpus: set[int]
    refused: list[int] = field(default_factory=list)
    _before: dict[int, set[int]] = field(default_factory=dict)

    def describe(self) -> str:
        refused = f"; could not move pid(s) {self.refused}" if self.refused else ""
        return (
            f"  placed: the service on CPU {_cpu_list(self.service_cpus)} alone; MariaDB, the simulator"
            f" and the load generator on CPU {_cpu_list(self.other_cpus)}{refused}"
        )

    def restore(self) -> None:
        for thread, cpus in self._before.items():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(thread, cpus)


def _cpu_list(cpus: set[int]) -> str:
    return ",".join(str(cpu) for cpu in sorted(cpus))


def place_on_own_cores(service_root: int, service_cores: int, others: list[int]) -> CorePlacement:
    """Give the service's process tree the last `service_cores` CPUs to itself and move `others`
    (MariaDB, the simulator, this load generator) to the rest: the service's CPU per request as on
    a machine where it does not share its cores. Every thread of each process is moved (a thread's
    affinity is its own; threads started later inherit their creator's)."""
    cpus = sorted(os.sched_getaffinity(0))
    if not 0 < service_cores < len(cpus):
        raise BenchmarkError(f"--service-cores must leave a CPU for the rest: {len(cpus)} CPU(s) here")
    placement = CorePlacement(set(cpus[-service_cores:]), set(cpus[:-service_cores]))
    service = _tree(service_root, _all_proc_stats())
    for pid, target in [
        *((pid, placement.service_cpus) for pid in service),
        *((pid, placement.other_cpus) for pid in others),
    ]:
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                thread = int(task.name)
                placement._before.setdefault(thread, os.sched_getaffinity(thread))
                os.sched_setaffinity(thread, target)
        except (OSError, ValueError):
            placement.refused.append(pid)
    return placement


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of a process and all its live descendants, summed."""
    return sum(tree_cpu_seconds_by_process(root).values())


def client_cpu_seconds() -> float:
    """CPU seconds (user + system) this process, the load generator, has used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def processes_cpu_seconds(pids: list[int]) -> float:
    """CPU seconds of the processes `pids` that are still alive, summed."""
    return sum(stat[1] for pid in pids if (stat := proc_stat(pid)) is not None)


def mariadb_pids() -> list[int]:
    """The running `mariadbd` processes (none where pgrep is missing)."""
    try:
        found = subprocess.run(["pgrep", "-x", "mariadbd"], capture_output=True, text=True, check=False)
    except OSError:
        return []
    return [int(pid) for pid in found.stdout.split()]


# MariaDB counters read before and after each phase (SHOW GLOBAL STATUS).
STATUS_COUNTERS = (
    "Questions",
    "Com_select",
    "Com_insert",
    "Com_update",
    "Com_delete",
    "Com_begin",
    "Com_commit",
    "Com_rollback",
    "Com_set_option",
    "Com_savepoint",
    "Innodb_row_lock_waits",
    "Innodb_row_lock_time",
    "Innodb_deadlocks",
    "Innodb_data_fsyncs",
)


@dataclass
class Cost:
    """What the load generator, the service and MariaDB spent during one phase."""

    client_cpu_s: float = 0.0
    service_cpu_s: float = 0.0
    mariadb_cpu_s: float = 0.0
    simulator_cpu_s: float = 0.0
    client_cores: float = 0.0
    service_cores: float = 0.0
    service_cpu_s_by_process: list[float] = field(default_factory=list)
    mariadb_cores: float = 0.0
    simulator_cores: float = 0.0
    # MariaDB SHOW GLOBAL STATUS deltas (empty on SQLite).
    status_deltas: dict[str, int] = field(default_factory=dict)


class ServerStatus:
    """MariaDB's global counters, through one connection of the load generator."""

    def __init__(self) -> None:
        self.engine: AsyncEngine = create_async_engine(to_async_url(MYSQL_SERVER_URL), pool_size=1)

    async def counters(self) -> dict[str, int]:
        names = ", ".join(f"'{name}'" for name in STATUS_COUNTERS)
        async with self.engine.connect() as connection:
            rows = (
                await connection.execute(text(f"SHOW GLOBAL STATUS WHERE Variable_name IN ({names})"))
            ).all()
        return {str(name): int(value) for name, value in rows}

    async def close(self) -> None:
        await self.engine.dispose()


# Load generator CPU s, service CPU s by process, MariaDB CPU s, MariaDB counters, simulator CPU s.
Reading = tuple[float, dict[int, float], float, dict[str, int], float]


@dataclass
class Meters:
    """Reads what the load generator, the service and MariaDB have spent so far."""

    service_pid: int
    mariadb_pids: list[int]
    server_status: ServerStatus | None
    simulator_pid: int | None = None

    async def read(self) -> Reading:
        mariadb = processes_cpu_seconds(self.mariadb_pids)
        counters = await self.server_status.counters() if self.server_status is not None else {}
        simulator = processes_cpu_seconds([self.simulator_pid]) if self.simulator_pid else 0.0
        return (
            client_cpu_seconds(),
            tree_cpu_seconds_by_process(self.service_pid),
            mariadb,
            counters,
            simulator,
        )

    async def cost_since(self, before: Reading, wall_s: float) -> Cost:
        after = await self.read()
        wall = max(wall_s, 1e-9)
        cost = Cost(
            client_cpu_s=after[0] - before[0],
            service_cpu_s=sum(after[1].values()) - sum(before[1].values()),
            mariadb_cpu_s=after[2] - before[2],
            simulator_cpu_s=after[4] - before[4],
        )
        cost.simulator_cores = cost.simulator_cpu_s / wall
        cost.client_cores = cost.client_cpu_s / wall
        cost.service_cores = cost.service_cpu_s / wall
        # How evenly the kernel spread the buyers' connections over the workers shows here.
        by_process = [seconds - before[1].get(pid, 0.0) for pid, seconds in after[1].items()]
        cost.service_cpu_s_by_process = sorted((value for value in by_process if value > 0), reverse=True)
        cost.mariadb_cores = cost.mariadb_cpu_s / wall
        # Minus the SHOW STATUS statement the first reading itself made.
        cost.status_deltas = {
            name: after[3][name] - before[3].get(name, 0) - (1 if name == "Questions" else 0)
            for name in after[3]
        }
        return cost


# --------------------------------------------------------------------------------------------
# Events


def starts_at() -> str:
    """An event start 30 days from now, in the API's UTC format."""
    return (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------------------------
# Talking to the service


def one_connection_client(base_url: str) -> httpx.AsyncClient:
    """A client with one keep-alive connection, as one browser tab, scanner or delivery has."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    return httpx.AsyncClient(base_url=base_url, limits=limits, timeout=REQUEST_TIMEOUT_SECONDS)


class LeanClient:
    """One keep-alive connection through aiohttp's client, for the measured phases of a benchmark.

    The load generator shares the machine's two cores with the service, its simulator and MariaDB.
    httpx's client spent 1.1-1.4 ms of CPU per request here and aiohttp's 0.25 ms (GET of the
    simulator's /_sim/health, one connection, 3,000 requests each), so with aiohttp more of the
    cores go to what is measured. Bodies come back parsed; a body that is not JSON comes back as None.
    """

    def __init__(self, base_url: str) -> None:
        self._session = aiohttp.ClientSession(
            base_url,
            connector=aiohttp.TCPConnector(limit=1),
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS),
        )

    async def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, Any]:
        """(status, parsed JSON body or None); aiohttp.ClientError or TimeoutError on transport errors."""
        async with self._session.request(method, path, json=json_body, headers=headers) as response:
            raw = await response.read()
        try:
            return response.status, json.loads(raw) if raw else None
        except ValueError:
            return response.status, None

    async def close(self) -> None:
        await self._session.close()


@asynccontextmanager
async def lean_clients(base_url: str, count: int) -> AsyncIterator[list[LeanClient]]:
    """`count` LeanClients, closed afterwards."""
    clients = [LeanClient(base_url) for _ in range(count)]
    try:
        yield clients
    finally:
        await asyncio.gather(*(client.close() for client in clients))


# What a LeanClient raises when the transport fails.
TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError)


@asynccontextmanager
async def one_connection_clients(base_url: str, count: int) -> AsyncIterator[list[httpx.AsyncClient]]:
    """`count` clients of one keep-alive connection each (one_connection_client), closed afterwards."""
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(one_connection_client(base_url)) for _ in range(count)]


def expect(response: httpx.Response, status: int, what: str) -> dict[str, Any]:
    """The JSON body of `response`; BenchmarkError naming `what` unless it has `status`."""
    if response.status_code != status:
        raise BenchmarkError(f"{what} answered {response.status_code}: {response.text[:300]}")
    body: dict[str, Any] = response.json()
    return body


async def in_parallel(count: int, concurrency: int, work: Callable[[int], Awaitable[None]]) -> None:
    """`work(0) ... work(count - 1)`, at most `concurrency` at a time."""
    counter = itertools.count()

    async def worker() -> None:
        while (index := next(counter)) < count:
            await work(index)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def released_together(
    clients: list[httpx.AsyncClient], work: Callable[[int, httpx.AsyncClient], Awaitable[None]]
) -> float:
    """`work(number, client)` for every client, each a task, all released at once when every one
    is waiting; the wall seconds from the release until the last is done."""
    go = asyncio.Event()

    async def task(number: int, client: httpx.AsyncClient) -> None:
        await go.wait()
        await work(number, client)

    tasks = [asyncio.create_task(task(number, client)) for number, client in enumerate(clients)]
    await asyncio.sleep(0)  # every task waits on the event before it is set
    started = time.perf_counter()
    go.set()
    await asyncio.gather(*tasks)
    return time.perf_counter() - started


async def poll(check: Callable[[], Awaitable[bool]], *, deadline: float, interval: float) -> bool:
    """Await `check()` every `interval` seconds until it is true (True), or until time.monotonic()
    has passed `deadline` (False)."""
    while True:
        if await check():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(interval)


async def seconds_until(
    check: Callable[[], Awaitable[bool]], *, limit: float, interval: float = 0.1
) -> float | None:
    """Seconds until `check()` is true, asked every `interval`; None when `limit` passes first."""
    started = time.monotonic()
    if await poll(check, deadline=started + limit, interval=interval):
        return time.monotonic() - started
    return None


# --------------------------------------------------------------------------------------------
# The scripts' frame: options, start, report


def add_database_option(parser: argparse.ArgumentParser, default: str) -> None:
    """The flag for the backend other than `default`: --sqlite where "mariadb" is the default, else
    --mariadb (read back with chosen_backend)."""
    if default == "mariadb":
        parser.add_argument(
            "--sqlite", action="store_true", help="use SQLite, not MariaDB (TICKETERA_TEST_MYSQL_URL)"
        )
    else:
        parser.add_argument(
            "--mariadb", action="store_true", help="use MariaDB (TICKETERA_TEST_MYSQL_URL), not SQLite"
        )


def chosen_backend(args: argparse.Namespace) -> str:
    """The backend the flag of add_database_option chose."""
    if "sqlite" in vars(args):
        return "sqlite" if args.sqlite else "mariadb"
    return "mariadb" if args.mariadb else "sqlite"


def add_workers_option(parser: argparse.ArgumentParser, default: int | Mapping[str, int]) -> None:
    """--workers: `default` service workers, or by default (None) the backend's own from `default`."""
    if isinstance(default, int):
        parser.add_argument(
            "--workers", type=int, default=default, help=f"service worker processes (default {default})"
        )
    else:
        parser.add_argument(
            "--workers",
            type=int,
            default=None,
            help=f"service workers (default {default['mariadb']} on MariaDB, {default['sqlite']} on SQLite)",
        )


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the figures here")


def check_at_least_one(parser: argparse.ArgumentParser, args: argparse.Namespace, names: list[str]) -> None:
    """parser.error for the first option among `names` (as dests) set below 1; None passes."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")


def parse_backends(parser: argparse.ArgumentParser, value: str, known: tuple[str, ...]) -> list[str]:
    """The comma-separated backends of `value`; parser.error if there is none, or one not `known`."""
    backends = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in backends if name not in known]
    if unknown or not backends:
        parser.error(f"unknown backend(s) {unknown}; choose from {', '.join(known)}")
    return backends


def load_note(load: tuple[float, float, float]) -> str:
    """`N CPU(s), load average a b c at the start`, for a script's first line."""
    return f"{os.cpu_count()} CPU(s), load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the start"


def _exit_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def start(title: str) -> tuple[float, float, float]:
    """A script's start: from now on SIGTERM unwinds like Ctrl-C does (so the processes are stopped
    and the MariaDB database dropped); prints `title` with the machine's CPUs and load average, and
    returns that load."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    load = os.getloadavg()
    print(f"{title}; {load_note(load)}")
    return load


def run_on_backend(script: str, backend: str, run_backend: Callable[[str, str, Path], ResultT]) -> ResultT:
    """`run_backend(backend, database_url, workdir)` in a new temporary directory, on a fresh
    database of `backend` (backend_database: DatabaseUnavailable if the MySQL server does not answer)."""
    with tempfile.TemporaryDirectory(prefix=f"ticketera-bench-{script}-{backend}-") as tmp:
        workdir = Path(tmp)
        with backend_database(backend, workdir) as database_url:
            return run_backend(backend, database_url, workdir)


def run_one_backend(
    args: argparse.Namespace,
    title: str,
    script: str,
    run_backend: Callable[[str, str, Path], ResultT],
    format_result: Callable[[ResultT], str],
    unavailable_hint: str = "",
) -> int:
    """The main of a script that measures the one backend chosen_backend(args): start(title),
    run_on_backend, then the result printed (format_result) and, with --json, written as "result".
    The exit status: 0, or 2 (with `unavailable_hint` after the reason) when the MySQL server does
    not answer."""
    load = start(title)
    try:
        result = run_on_backend(script, chosen_backend(args), run_backend)
    except DatabaseUnavailable as exc:
        print(f"\nmariadb: {exc}{unavailable_hint}")
        return 2
    print(format_result(result))
    write_figures(args, load, result=asdict(result))
    return 0


def service_line(backend: str, workers: int, server_version: str, workers_default: bool | None = None) -> str:
    """The line a backend's figures start with (after an empty one): `<backend>: ticketera serve
    --workers N (why), server V`, the why only when `workers_default` says whether N is the
    backend's default, the version only when there is one."""
    why = ""
    if workers_default is not None:
        why = f" (the default for {backend})" if workers_default else " (set by --workers)"
    version = f", server {server_version}" if server_version else ""
    return f"\n{backend}: ticketera serve --workers {workers}{why}{version}"


def write_figures(args: argparse.Namespace, load: tuple[float, float, float], **figures: Any) -> None:
    """With --json: the settings (every option but --json), the load average at the start and
    `figures`, written there as JSON."""
    if args.json is None:
        return
    payload = {
        "settings": {key: value for key, value in vars(args).items() if key != "json"},
        "load_average_at_start": list(load),
        **figures,
    }
    args.json.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"\nFigures written to {args.json}")


# --------------------------------------------------------------------------------------------
# Where the service's CPU goes


@contextmanager
def sampling_profile(root: int, directory: Path | None, label: str, *, top: int = 25) -> Iterator[None]:
    """py-spy sampling `root` and its children (the service's workers) while the block runs, when
    `directory` is given: the collapsed stacks go to DIR/<label>.txt and a summary is printed (own
    and inclusive samples by function, own samples by package). Only samples on CPU are kept (py-spy
    leaves out idle threads), so the shares are shares of the service's CPU."""
    if directory is None:
        yield
        return
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        raise BenchmarkError("--profile needs py-spy: .venv/bin/pip install py-spy")
    directory.mkdir(parents=True, exist_ok=True)
    output = directory / f"{label}.txt"
    command = [py_spy, "record", "--pid", str(root), "--subprocesses", "--nonblocking"]
    command += ["--rate", "250", "--format", "raw", "--output", str(output)]
    sampler = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fixed arguments
    time.sleep(1.0)  # py-spy attaches to every process of the tree before the load starts
    try:
        yield
    finally:
        sampler.send_signal(signal.SIGINT)
        try:
            _, errors = sampler.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            sampler.kill()
            _, errors = sampler.communicate()
        if output.exists():
            print(format_profile(output, top=top), flush=True)
        else:
            print(f"  profile: py-spy wrote nothing ({errors.decode(errors='replace')[-300:]})")


def _frame_key(frame: str) -> tuple[str, str]:
    """(function with its file, package) of one py-spy frame, "name (package/module.py:line)": py-spy
    names a file from its import root, so the first part is the top-level package or module."""
    name, _, where = frame.rpartition(" (")
    path = where.rstrip(")").rpartition(":")[0]
    package = path.partition("/")[0].removesuffix(".py")
    return f"{name} ({path})", package if package.isidentifier() else "other"


def format_profile(path: Path, *, top: int) -> str:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    by_package: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame for frame in stack.split(";") if " (" in frame and frame.endswith(")")]
        if not frames:
            continue
        keys = [_frame_key(frame) for frame in frames]
        total += count
        own[keys[-1][0]] += count
        by_package[keys[-1][1]] += count
        for name in {key[0] for key in keys}:
            inclusive[name] += count
    if not total:
        return f"  profile {path.name}: no samples"
    lines = [f"  profile {path.name}: {total:,} samples on CPU (py-spy, every process of the service)"]
    lines.append(
        "    own samples by package: "
        + ", ".join(f"{name} {n / total:.0%}" for name, n in by_package.most_common(14))
    )
    lines.append("    inclusive (the function and what it calls):")
    lines += [f"      {n / total:6.1%}  {name}" for name, n in inclusive.most_common(top)]
    lines.append("    own (the function itself):")
    lines += [f"      {n / total:6.1%}  {name}" for name, n in own.most_common(top)]
    return "\n".join(lines)
