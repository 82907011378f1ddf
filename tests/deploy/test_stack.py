"""The Compose stack for real (`make test-deploy`): three replicas behind nginx, Redis, MariaDB and
the MercadoPago simulator in containers, from this checkout, with the stand-in images built from
Debian's packages (deploy/local-images). A project, ports and a network of the test's own, so a
developer's stack is left alone; traffic goes to ports published on 127.0.0.1 and to containers on
the network this test created. Torn down, volumes and all, at the end."""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import shutil
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.test_cli import free_port

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
DOCKER = os.environ.get("DOCKER", "/usr/bin/docker")
LOCAL_IMAGES = {
    "PYTHON_IMAGE": "ticketera-local/python:latest",
    "NGINX_IMAGE": "ticketera-local/nginx:latest",
    "REDIS_IMAGE": "ticketera-local/redis:latest",
    "MARIADB_IMAGE": "ticketera-local/mariadb:latest",
}
HEALTHY_WITHIN_SECONDS = 300
REPLICAS = 3


@dataclass
class Stack:
    project: str
    env: dict[str, str]
    http_port: int
    https_port: int
    mpsim_port: int
    admin_key: str
    certificate: Path

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def compose(
        self, *args: str, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        command = ["docker-compose", "-f", "docker-compose.yml", "-f", "docker-compose.scale.yml", *args]
        return subprocess.run(
            command, cwd=ROOT, env=self.env, capture_output=True, text=True, check=check, timeout=timeout
        )

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base, verify=ssl.create_default_context(cafile=str(self.certificate)), timeout=30
        )

    def replica_ids(self) -> list[str]:
        return self.compose("ps", "-q", "app").stdout.split()

    def on_network(self, script: str) -> str:
        """`script` run by sh in a throwaway container on the stack's network (its own address)."""
        image = self.env["NGINX_IMAGE"]
        result = subprocess.run(
            [
                DOCKER,
                "run",
                "--rm",
                "--network",
                f"{self.project}_ticketera",
                "--entrypoint",
                "sh",
                image,
                "-c",
                script,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        return result.stdout

    def upstreams_seen(self) -> set[str]:
        lines = self.compose("logs", "--no-color", "nginx").stdout.splitlines()
        found: set[str] = set()
        for line in lines:
            _, _, entry = line.partition("| ")
            if entry.startswith("{") and '"upstream"' in entry:
                upstream = json.loads(entry)["upstream"]
                found.update(address.strip() for address in upstream.split(",") if address.strip())
        return found


def _docker_ready() -> None:
    if shutil.which("docker-compose") is None or not Path(DOCKER).exists():
        pytest.fail("docker.io and docker-compose are needed (.ci/run installs them)")
    if subprocess.run([DOCKER, "info"], capture_output=True, check=False).returncode != 0:
        pytest.fail("dockerd is not running (.ci/run starts it)")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    _docker_ready()
    folder = tmp_path_factory.mktemp("stack")
    admin_key = secrets.token_urlsafe(24)
    env_file = folder / ".env"
    generated = {
        "ADMIN_API_KEY": admin_key,
        "STAFF_API_KEY": secrets.token_urlsafe(24),
        "SECRET_KEY": secrets.token_urlsafe(32),
        "MP_ACCESS_TOKEN": secrets.token_urlsafe(24),
        "MP_WEBHOOK_SECRET": secrets.token_urlsafe(24),
        "DB_PASSWORD": secrets.token_urlsafe(24),
        "MARIADB_ROOT_PASSWORD": secrets.token_urlsafe(24),
    }
    env_file.write_text(
        (ROOT / ".env.example").read_text()
        + "".join(f"\n{name}={value}" for name, value in generated.items())
        + "\n"
    )
    http_port, https_port, mpsim_port = free_port(), free_port(), free_port()
    octet = random.randint(100, 240)
    project = f"tkttest{uuid.uuid4().hex[:8]}"
    env = {
        key: value
        for key, value in os.environ.items()
        if key in ("PATH", "HOME", "LANG", "DOCKER_HOST", "TMPDIR")
    }
    env.update(LOCAL_IMAGES)
    env.update(
        {
            "COMPOSE_PROJECT_NAME": project,
            "COMPOSE_PROFILES": "dev",
            "STACK_ENV_FILE": str(env_file),
            "HTTP_PORT": str(http_port),
            "HTTPS_PORT": str(https_port),
            "MPSIM_PORT": str(mpsim_port),
            # What deploy/stack-env.sh writes for a host of fewer than 4 cores, as this one.
            "REDIS_IO_THREADS": "1",
            "PUBLIC_BASE_URL": f"https://127.0.0.1:{https_port}",
            "STACK_SUBNET": f"172.31.{octet}.0/24",
            "NGINX_ADDRESS": f"172.31.{octet}.10",
            **generated,
        }
    )
    subprocess.run(
        ["deploy/local-images/build.sh"], cwd=ROOT, env={**env, "DOCKER": DOCKER}, check=True, timeout=900
    )
    subprocess.run(["deploy/dev-certs.sh"], cwd=ROOT, check=True, timeout=60)
    extra_ca = ROOT / "deploy" / "docker" / "extra-ca" / "host-ca.pem"
    if Path("/etc/ssl/certs/ca-certificates.crt").exists() and not extra_ca.exists():
        shutil.copy("/etc/ssl/certs/ca-certificates.crt", extra_ca)
    built = Stack(
        project, env, http_port, https_port, mpsim_port, admin_key, ROOT / "deploy/nginx/certs/tls.crt"
    )
    try:
        built.compose("build", "app", timeout=900)
        built.compose("up", "-d", timeout=900)
        _wait_healthy(f"http://127.0.0.1:{http_port}/health")
        yield built
    finally:
        logs = built.compose("logs", "--no-color", "--tail=40", check=False).stdout
        built.compose("down", "--volumes", "--remove-orphans", check=False)
        if "Traceback" in logs:
            print(f"\n--- the stack's last log lines ---\n{logs[-6000:]}")


def _wait_healthy(url: str) -> None:
    deadline = time.monotonic() + HEALTHY_WITHIN_SECONDS
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=3).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise AssertionError(f"the stack did not become healthy at {url}")


def test_both_compose_files_are_valid(stack: Stack) -> None:
    single = subprocess.run(
        ["docker-compose", "-f", "docker-compose.yml", "config", "-q"], cwd=ROOT, env=stack.env, check=False
    )
    assert single.returncode == 0
    assert stack.compose("config", "-q").returncode == 0


async def test_a_buyer_pays_through_nginx_and_gets_tickets(stack: Stack) -> None:
    admin = {"Authorization": f"Bearer {stack.admin_key}"}
    body = {
        "name": "Noche de Rock en el stack",
        "startsAt": "2030-01-10T20:00:00Z",
        "queue": {"enabled": False},
        "sections": [{"name": "Campo", "price": "9000.00", "capacity": 50}],
    }
    async with stack.client() as client, httpx.AsyncClient(timeout=30) as browser:
        event = (await client.post("/api/events", json=body, headers=admin)).json()
        joined = await client.post(f"/api/queue/{event['id']}/join", json={})
        hold = await client.post(
            f"/api/events/{event['id']}/holds",
            json={"sectionId": event["sections"][0]["id"], "quantity": 2},
            headers={"X-Access-Token": joined.json()["accessToken"]},
        )
        placed = await client.post(
            "/api/orders",
            json={"holdId": hold.json()["holdId"], "buyer": {"email": "ana@example.com", "name": "Ana"}},
            headers={"Idempotency-Key": f"stack-{uuid.uuid4().hex}"},
        )
        order = placed.json()
        preference = httpx.URL(order["checkoutUrl"]).params["pref_id"]
        paid = await browser.post(
            f"http://127.0.0.1:{stack.mpsim_port}/_sim/payments",
            json={"preferenceId": preference, "outcome": "APRO"},
        )
        assert paid.status_code == 201, paid.text

        async def status() -> dict[str, Any]:
            answer = await client.get(
                f"/api/orders/{order['id']}", headers={"Authorization": f"Bearer {order['orderToken']}"}
            )
            found: dict[str, Any] = answer.json()
            return found

        deadline = time.monotonic() + 60
        final = await status()
        while final["status"] != "paid" and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            final = await status()

    assert placed.status_code == 201, placed.text
    assert final["status"] == "paid"
    assert len(final["tickets"]) == 2


async def test_every_replica_serves(stack: Stack) -> None:
    async with stack.client() as client:
        for _ in range(REPLICAS * 6):
            assert (await client.get("/health/live")).status_code == 200

    assert len(stack.replica_ids()) == REPLICAS
    assert len(stack.upstreams_seen()) >= REPLICAS


async def test_headers_compression_and_redirect(stack: Stack) -> None:
    async with stack.client() as client, httpx.AsyncClient(timeout=10) as plain:
        answer = await client.get("/openapi.json", headers={"Accept-Encoding": "gzip"})
        redirected = await plain.get(f"http://127.0.0.1:{stack.http_port}/api/events")

    assert answer.headers["content-encoding"] == "gzip"
    assert answer.headers["strict-transport-security"].startswith("max-age=31536000")
    assert redirected.status_code == 301
    assert redirected.headers["location"] == f"https://127.0.0.1:{stack.https_port}/api/events"


def test_a_burst_is_limited_per_address_and_a_spoofed_header_changes_nothing(stack: Stack) -> None:
    """Two clients on the stack's network, each with its own address, as two fans are."""
    status = "curl -sk -o /dev/null -w"
    burst = stack.on_network(
        f"for i in $(seq 60); do {status} '%{{http_code}}\\n' https://nginx/health/live & done; wait;"
        # Then a burst in which each request names another address: still this client's burst (asked
        # as a burst, so the bucket's refill after the first cannot let a lone late request through).
        f" for i in $(seq 60); do {status} 'spoofed %{{http_code}}\\n' -H \"X-Forwarded-For: 203.0.113.$i\""
        " https://nginx/health/live & done; wait"
    )
    other = stack.on_network("curl -sk -o /dev/null -w '%{http_code}' https://nginx/health/live")

    codes = [line for line in burst.split("\n") if line and not line.startswith("spoofed")]
    assert codes.count("429") > 0, burst
    assert codes.count("200") >= 20, burst
    assert "spoofed 429" in burst
    assert other == "200"


async def test_a_replica_killed_mid_stream_loses_no_read_and_comes_back(stack: Stack) -> None:
    victim = stack.replica_ids()[0]
    pid = int(_inspect(victim, "{{.State.Pid}}"))
    failures: list[int] = []
    async with stack.client() as client:
        for index in range(60):
            if index == 10:
                os.kill(pid, 9)  # a crash, not a stop: the restart policy brings it back
            answer = await client.get("/health/live")
            if answer.status_code != 200:
                failures.append(answer.status_code)
            await asyncio.sleep(0.12)  # under the guide's 10 requests a second

    assert failures == []
    deadline = time.monotonic() + 120
    while (state := await asyncio.to_thread(_inspect, victim, "{{.State.Health.Status}}")) != "healthy":
        assert time.monotonic() < deadline, f"the killed replica is {state}"
        await asyncio.sleep(1)


def _inspect(container: str, template: str) -> str:
    found = subprocess.run(
        [DOCKER, "inspect", "-f", template, container], capture_output=True, text=True, check=False
    )
    return found.stdout.strip()


async def test_a_rolling_deploy_serves_every_read(stack: Stack) -> None:
    results: list[int] = []
    done = asyncio.Event()

    async def reads() -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            while not done.is_set():
                answer = await client.get(f"http://127.0.0.1:{stack.http_port}/health")
                results.append(answer.status_code)
                await asyncio.sleep(0.1)

    reader = asyncio.create_task(reads())
    compose = f"docker-compose -p {stack.project} -f docker-compose.yml -f docker-compose.scale.yml"
    deployed = await asyncio.to_thread(
        subprocess.run,
        ["deploy/rolling-deploy.sh"],
        cwd=ROOT,
        env={**stack.env, "COMPOSE": compose, "DOCKER": DOCKER},
        capture_output=True,
        text=True,
        timeout=900,
    )
    done.set()
    await reader

    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert len(stack.replica_ids()) == REPLICAS
    assert len(results) > 50
    assert [code for code in results if code != 200] == []


def test_mariadb_runs_durable_with_its_binlog_and_the_readonly_user_reads_only(stack: Stack) -> None:
    settings = stack.compose(
        "exec",
        "-T",
        "mariadb",
        "sh",
        "-c",
        'mariadb -N -uroot -p"$MARIADB_ROOT_PASSWORD" -e'
        ' "SELECT @@innodb_flush_log_at_trx_commit, @@sync_binlog, @@log_bin, @@binlog_format"',
    ).stdout.split()
    script = (ROOT / "deploy" / "mariadb" / "create-readonly-user.sh").read_text()
    stack.compose("exec", "-T", "-e", "READONLY_PASSWORD=only-reads", "mariadb", "sh", "-c", script)
    as_readonly = 'mariadb -N -ureadonly -ponly-reads ticketera -e "{}" 2>&1 || true'
    read = stack.compose(
        "exec", "-T", "mariadb", "sh", "-c", as_readonly.format("SELECT COUNT(*) FROM events")
    )
    write = stack.compose("exec", "-T", "mariadb", "sh", "-c", as_readonly.format("DELETE FROM events"))

    assert settings == ["1", "1", "1", "ROW"]
    assert read.stdout.strip().isdigit()
    assert "DELETE command denied" in write.stdout


def test_redis_runs_the_shipped_configuration_with_the_io_threads_of_the_host(stack: Stack) -> None:
    def setting(name: str) -> str:
        answer = stack.compose("exec", "-T", "redis", "redis-cli", "CONFIG", "GET", name).stdout.split()
        return answer[1]

    assert setting("io-threads") == stack.env["REDIS_IO_THREADS"]
    assert setting("maxmemory-policy") == "noeviction"
    assert setting("appendonly") == "yes"
    assert setting("maxmemory") == str(256 * 1024 * 1024)


def test_docker_stop_ends_the_worker_cleanly(stack: Stack) -> None:
    """The worker is its container's process 1, where SIGTERM has no default action: it handles
    `docker stop`'s signal, ends its steps and exits 0 (137 would be Docker's SIGKILL ten seconds on)."""
    (worker,) = stack.compose("ps", "-q", "worker").stdout.split()
    try:
        stack.compose("stop", "worker")
        inspected = subprocess.run(
            [DOCKER, "inspect", "--format", "{{json .State}}", worker],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        logs = stack.compose("logs", "--no-color", "worker").stdout
    finally:
        stack.compose("start", "worker")

    assert json.loads(inspected.stdout)["ExitCode"] == 0, logs[-3000:]
    assert "worker.stopping" in logs
    assert "worker.stopped" in logs
    assert "Traceback" not in logs
