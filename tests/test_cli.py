"""The `ticketera` command end to end: real processes, real HTTP, a real database file."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from ticketera.queue.identity import UserAssertions

TICKETERA = str(Path(sys.executable).parent / "ticketera")
SECRETS = {
    "ADMIN_API_KEY": "cli-admin",
    "STAFF_API_KEY": "cli-staff",
    "SECRET_KEY": "cli-secret",
    "MP_ACCESS_TOKEN": "cli-mp",
    "MP_WEBHOOK_SECRET": "cli-hook",
    # Production's other requirements; nothing here sends an email or receives a webhook.
    "PUBLIC_BASE_URL": "https://tickets.example",
    "SMTP_URL": "smtp://127.0.0.1:2525",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def cli_env(workdir: Path, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DB_", "REDIS_", "APP_", "NODE_"))
    }
    env.pop("DATABASE_URL", None)
    env.update({"LOG_LEVEL": "INFO", "DATA_DIR": str(workdir / "data"), "LOG_DIR": str(workdir / "logs")})
    env.update(extra)
    return env


def run_cli(*args: str, workdir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TICKETERA, *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def wait_until_ready(
    base: str, process: subprocess.Popen[str], seconds: float = 60, *, path: str = "/health/ready"
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited early: {process.stdout.read() if process.stdout else ''}")
        try:
            if httpx.get(f"{base}{path}", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"server did not become ready ({base}{path} never answered 200)")


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    try:
        output, _ = process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return output


@contextmanager
def serving_workers(
    tmp_path: Path, workers: int = 2, **extra_env: str
) -> Iterator[tuple[str, dict[str, str]]]:
    """`ticketera serve --workers N` in production mode on a fresh SQLite file, with `extra_env`
    added to its environment; yields its base URL and that environment."""
    port = free_port()
    env = cli_env(
        tmp_path,
        **SECRETS,
        APP_ENV="production",
        DATABASE_URL=f"sqlite:///{tmp_path / 'svc.db'}",
        **extra_env,
    )
    process = subprocess.Popen(
        [TICKETERA, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base, process)
        yield base, env
    finally:
        stop(process)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path, dict[str, str]]]:
    """`ticketera serve` on a fresh SQLite file, with two workers."""
    with serving_workers(tmp_path) as (base, env):
        yield base, tmp_path, env


@pytest.mark.slow
def test_serve_migrates_and_health_reports_ok(served: tuple[str, Path, dict[str, str]]) -> None:
    base, workdir, env = served

    # Generous timeouts (the defaults are 5 s): an answer is what is tested, not how fast on a busy machine.
    healthy = run_cli("health", "--url", base, "--timeout", "30", workdir=workdir, env=env)
    as_json = run_cli("health", "--url", base, "--json", "--timeout", "30", workdir=workdir, env=env)
    created = httpx.post(
        f"{base}/api/events",
        json={"name": "CLI", "startsAt": "2099-01-01T20:00:00Z"},
        headers={"Authorization": "Bearer cli-admin", "X-Request-ID": "cli-test-1"},
        timeout=30,
    )

    assert healthy.returncode == 0, healthy.stderr
    assert healthy.stdout.startswith("OK")
    assert "database  connected (sqlite)" in healthy.stdout
    assert "limit 20" in healthy.stdout
    assert json.loads(as_json.stdout)["status"] == "ok"
    assert created.status_code == 201
    assert {line["event"] for line in logged_lines(workdir, request_id="cli-test-1")} >= {
        "event.created",
        "http.request",
    }


def logged_lines(workdir: Path, *, request_id: str) -> list[dict[str, object]]:
    """The request's lines from the JSON log; the access line is written just after the response, so
    wait for it (generously: a busy machine may take a while to get there)."""
    deadline = time.monotonic() + 30
    while True:
        lines = [json.loads(line) for line in (workdir / "logs" / "ticketera.log").read_text().splitlines()]
        matching = [line for line in lines if line.get("request_id") == request_id]
        if any(line["event"] == "http.request" for line in matching) or time.monotonic() > deadline:
            return matching
        time.sleep(0.1)


def test_health_exits_non_zero_when_nothing_answers(tmp_path: Path) -> None:
    result = run_cli(
        "health", "--url", f"http://127.0.0.1:{free_port()}", workdir=tmp_path, env=cli_env(tmp_path)
    )

    assert result.returncode == 1
    assert "did not answer" in result.stderr


def test_production_without_secrets_refuses_to_start(tmp_path: Path) -> None:
    result = run_cli(
        "serve", workdir=tmp_path, env=cli_env(tmp_path, APP_ENV="production", ADMIN_API_KEY="x")
    )

    assert result.returncode == 2
    assert (
        "STAFF_API_KEY, SECRET_KEY, MP_ACCESS_TOKEN, MP_WEBHOOK_SECRET, PUBLIC_BASE_URL, SMTP_URL"
        in result.stderr
    )


def test_user_assertion_prints_a_join_body_the_service_accepts(tmp_path: Path) -> None:
    secret = "organizer-shared-secret"
    signed = run_cli(
        "user-assertion", "ana", workdir=tmp_path, env=cli_env(tmp_path, USER_ASSERTION_SECRET=secret)
    )
    unsigned = run_cli("user-assertion", "ana", workdir=tmp_path, env=cli_env(tmp_path))

    body = json.loads(signed.stdout)
    assert body["userId"] == "ana"
    UserAssertions(secret).verify("ana", body["userAssertion"], now=datetime.now(UTC))
    assert unsigned.returncode == 1
    assert "USER_ASSERTION_SECRET" in unsigned.stderr


@pytest.mark.mariadb
@pytest.mark.parametrize("command", [("migrate",), ("db", "optimize")])
def test_db_ssl_holds_for_migrations_and_maintenance(tmp_path: Path, command: tuple[str, ...]) -> None:
    """The test server speaks no TLS: a command that honours DB_SSL fails to connect instead of
    talking to it in the clear."""
    url = os.environ.get("TICKETERA_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/") + "mysql"
    result = run_cli(*command, workdir=tmp_path, env=cli_env(tmp_path, DATABASE_URL=url, DB_SSL="true"))

    assert result.returncode != 0
    assert "ssl" in (result.stdout + result.stderr).lower()


@pytest.mark.mariadb
def test_serve_warns_when_its_connections_could_exceed_the_database_limit(tmp_path: Path) -> None:
    """For the primary and for each replica, which take as many connections each."""
    url = os.environ.get("TICKETERA_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/") + "mysql"
    env = cli_env(
        tmp_path,
        DATABASE_URL=url,
        DATABASE_REPLICA_URL=url,  # the same server stands for a replica: its limit is what is read
        DB_POOL_SIZE="500",
        QUEUE_TICKER="false",
        WORKER_IN_PROCESS="false",
    )
    process = subprocess.Popen(
        [TICKETERA, "serve", "--no-migrate", "--host", "127.0.0.1", "--port", str(free_port())],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        # Said before the server starts: among its first lines, or never.
        said = [process.stderr.readline() for _ in range(5)]
    finally:
        process.kill()
        process.wait()

    warnings = [line for line in said if "DB_POOL_SIZE" in line]
    assert len(warnings) == 2
    assert all("1 workers x DB_POOL_SIZE 500 = 500 connections" in line for line in warnings)
    assert "the database allows max_connections=" in warnings[0]
    assert "the replica at 127.0.0.1 allows max_connections=" in warnings[1]


def test_db_optimize_recreates_a_missing_index_and_analyzes(tmp_path: Path) -> None:
    import sqlite3

    env = cli_env(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'opt.db'}")
    assert run_cli("migrate", workdir=tmp_path, env=env).returncode == 0
    with sqlite3.connect(tmp_path / "opt.db") as connection:
        connection.execute("DROP INDEX ix_seats_event_id_status_held_until")

    result = run_cli("db", "optimize", workdir=tmp_path, env=env)

    assert result.returncode == 0, result.stderr
    assert "created  index ix_seats_event_id_status_held_until on seats" in result.stdout
    assert "ok       index ix_seats_section_id_status_held_until on seats" in result.stdout
    assert "analyzed tables" in result.stdout
    with sqlite3.connect(tmp_path / "opt.db") as connection:
        names = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        stats = connection.execute("SELECT count(*) FROM sqlite_stat1").fetchone()
    assert "ix_seats_event_id_status_held_until" in names
    assert stats is not None


@pytest.mark.slow
def test_dev_generates_keys_loads_the_demo_and_serves(tmp_path: Path) -> None:
    port = free_port()
    env = cli_env(tmp_path)
    process = subprocess.Popen(
        [TICKETERA, "dev", "--port", str(port), "--no-reload"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base, process)
        secrets = json.loads((tmp_path / "data" / "secrets.json").read_text())
        listing = httpx.get(f"{base}/api/events", timeout=30).json()
        admin_listing = httpx.get(
            f"{base}/api/events", headers={"Authorization": f"Bearer {secrets['ADMIN_API_KEY']}"}, timeout=30
        )
    finally:
        output = stop(process)

    assert f"Admin key    {secrets['ADMIN_API_KEY']}" in output
    assert (tmp_path / "data" / "ticketera.db").exists()
    (demo,) = listing["items"]
    assert [(section["kind"], section["capacity"]) for section in demo["sections"]] == [
        ("reserved", 200),
        ("general_admission", 1000),
    ]
    assert admin_listing.status_code == 200


def test_logs_prints_past_lines_and_filters_errors(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    lines = [
        {"timestamp": "2026-01-01T00:00:00Z", "level": "info", "event": "http.request", "status": 200},
        {
            "timestamp": "2026-01-01T00:00:01Z",
            "level": "error",
            "event": "database.unreachable",
            "error": "X",
        },
    ]
    (logs / "ticketera.log").write_text("".join(json.dumps(line) + "\n" for line in lines))

    everything = run_cli("logs", "--no-follow", workdir=tmp_path, env=cli_env(tmp_path))
    errors = run_cli("logs", "--no-follow", "--errors", workdir=tmp_path, env=cli_env(tmp_path))

    assert everything.returncode == 0
    assert "http.request" in everything.stdout
    assert "database.unreachable" in everything.stdout
    assert "http.request" not in errors.stdout
    assert "database.unreachable error=X" in errors.stdout


def test_redis_flush_clears_counters_and_keeps_waiting_rooms_unless_told(tmp_path: Path) -> None:
    import redis as sync_redis

    url = "redis://127.0.0.1:6379/12"
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        client.ping()
    except sync_redis.ConnectionError as exc:
        from tests.conftest import _backend_unavailable

        _backend_unavailable("redis", str(exc))
    client.flushdb()
    client.set("LIMITS:ip:1", "3")
    client.hset("q:{event:7}:users", "ana", "waiting|1|0")
    env = cli_env(tmp_path, REDIS_URL=url)
    try:
        plain = run_cli("redis", "flush", workdir=tmp_path, env=env)
        kept = client.exists("q:{event:7}:users")
        unconfirmed = run_cli("redis", "flush", "--queue-event", "7", workdir=tmp_path, env=env)
        confirmed = run_cli("redis", "flush", "--queue-event", "7", "--yes", workdir=tmp_path, env=env)
        erased = client.exists("q:{event:7}:users")
    finally:
        client.flushdb()
        client.close()

    assert plain.returncode == 0, plain.stderr
    assert "Deleted 1 keys: rate-limit counters." in plain.stdout
    assert kept == 1
    assert unconfirmed.returncode == 2
    assert confirmed.returncode == 0
    assert "Deleted 1 keys: waiting room of event 7." in confirmed.stdout
    assert erased == 0
