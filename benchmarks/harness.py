"""Plumbing shared by the benchmark scripts: the service under test, MySQL databases, CPU meters.

The scripts (`create_venue.py`, `queue.py`, `onsale.py`) run as `python benchmarks/<name>.py`.
Each first drops its own folder from sys.path (the sibling `queue.py` shadows the standard
library's `queue`), then puts the project root in front and imports from here as
`benchmarks.harness`. This module never imports that sibling, and it depends on nothing being
imported before it.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from ticketera.config import Settings, to_async_url

ADMIN_KEY = "bench-admin"
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN_KEY}"}
MYSQL_SERVER_URL = os.environ.get("TICKETERA_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/")
READY_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 10.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PASSED_ENVIRONMENT = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")


class BenchmarkError(Exception):
    """A process did not start or the service answered wrongly; the message says how."""


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


def wait_ready(process: subprocess.Popen[bytes], base_url: str, output_path: Path) -> None:
    """Poll `/health/ready` until it answers 200; BenchmarkError if the process exits or time runs out."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchmarkError(
                f"the service exited with code {process.returncode} before it was ready:\n{tail(output_path)}"
            )
        try:
            if httpx.get(f"{base_url}/health/ready", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise BenchmarkError(
        f"the service was not ready within {READY_TIMEOUT_SECONDS:.0f} s:\n{tail(output_path)}"
    )


@contextmanager
def running_service(
    workdir: Path, env: Mapping[str, str], workers: int = 1
) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    """`ticketera serve` on a free port, ready; yields its base URL, its process and its output file."""
    command = Path(sys.executable).parent / "ticketera"
    port = free_port()
    output_path = workdir / "service-output.log"
    with output_path.open("wb") as output:
        process = subprocess.Popen(  # our own entry point, fixed arguments
            [str(command), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
            cwd=workdir,
            env=dict(env),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            base_url = f"http://127.0.0.1:{port}"
            wait_ready(process, base_url, output_path)
            yield base_url, process, output_path
        finally:
            stop(process)


def service_problems(workdir: Path, output_path: Path) -> list[str]:
    """Warning and error lines the service wrote to its output and its log file."""
    markers = ("error", "warning", "traceback", "exception", "critical")
    problems: list[str] = []
    for path in [output_path, *sorted((workdir / "logs").glob("*.log"))]:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            if any(marker in line.lower() for marker in markers):
                problems.append(f"{path.name}: {line.strip()[:300]}")
    return problems


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
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := proc_stat(int(entry.name))) is not None:
            stats[int(entry.name)] = stat
    tree = {root}
    grew = True
    while grew:
        grew = False
        for pid, (parent, _) in stats.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return {pid: stats[pid][1] for pid in tree if pid in stats}


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of a process and all its live descendants, summed."""
    return sum(tree_cpu_seconds_by_process(root).values())


def client_cpu_seconds() -> float:
    """CPU seconds (user + system) this process, the load generator, has used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --------------------------------------------------------------------------------------------
# Events


def starts_at() -> str:
    """An event start 30 days from now, in the API's UTC format."""
    return (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
