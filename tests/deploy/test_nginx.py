"""deploy/nginx/ for real, without Docker: Debian's nginx in front of two `ticketera serve` replicas
(MariaDB, Redis), on loopback ports. The rules file (ticketera.conf) and the main file are the
repository's own; only what a deployment says about itself (upstream, listen ports, public port)
is written here, as Compose's files say it for containers."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import re
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from playwright.async_api import async_playwright
from playwright.async_api import expect as async_expect

from tests.browser.conftest import CHROMIUM
from tests.browser.conftest import _missing as _browser_missing
from tests.conftest import _backend_unavailable, fresh_database
from tests.factories import event_body, ga_section
from tests.queue.conftest import TEST_REDIS_URL, flush
from tests.test_cli import SECRETS, TICKETERA, cli_env, free_port, stop, wait_until_ready
from ticketera.infra.redis import RedisConnection

pytestmark = pytest.mark.mariadb

DEPLOY_NGINX = Path(__file__).resolve().parents[2] / "deploy" / "nginx"
ADMIN = {"Authorization": f"Bearer {SECRETS['ADMIN_API_KEY']}"}
# The guide's limit for the API: 10 requests a second per address, bursts of 20.
BURST = 20


@dataclass
class Edge:
    """nginx on 127.0.0.1 (HTTP and HTTPS ports) in front of the replicas."""

    http_port: int
    https_port: int
    replicas: list[subprocess.Popen[str]]
    replica_ports: list[int]
    access_log: Path
    certificate: Path

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def client(self, source: str = "127.0.0.1", **options: Any) -> httpx.AsyncClient:
        """A client whose connections come from `source` (any 127.x address is this machine)."""
        trusted = ssl.create_default_context(cafile=str(self.certificate))
        transport = httpx.AsyncHTTPTransport(local_address=source, verify=trusted)
        return httpx.AsyncClient(base_url=self.base, transport=transport, timeout=30, **options)

    def upstreams_seen(self) -> set[str]:
        lines = [
            json.loads(line) for line in self.access_log.read_text().splitlines() if line.startswith("{")
        ]
        return {line["upstream"] for line in lines if line["upstream"]}


def self_signed(folder: Path) -> Path:
    """A certificate for 127.0.0.1 and localhost (tls.crt, tls.key in `folder`), as `make certs` makes."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tls.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (folder / "tls.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return folder / "tls.crt"


def nginx_prefix(folder: Path, *, replica_ports: list[int], http_port: int, https_port: int) -> Path:
    """The repository's nginx files, with this run's upstream, ports and certificate beside them."""
    shutil.copytree(DEPLOY_NGINX, folder)
    shutil.copy("/etc/nginx/mime.types", folder / "mime.types")
    servers = "\n".join(
        f"    server 127.0.0.1:{port} max_fails=3 fail_timeout=10s;" for port in replica_ports
    )
    (folder / "upstream-lb.conf").write_text(
        f"upstream ticketera {{\n    least_conn;\n{servers}\n    keepalive 16;\n}}\n"
    )
    (folder / "listen-http.conf").write_text(f"listen 127.0.0.1:{http_port};\n")
    (folder / "listen-https.conf").write_text(f"listen 127.0.0.1:{https_port} ssl http2;\n")
    (folder / "public.conf").write_text(f"map $scheme $public_https_port {{\n    default {https_port};\n}}\n")
    self_signed(folder / "certs")
    # The cache in this run's folder, not the machine's /var/cache/nginx (as Compose's tmpfs is the
    # container's own).
    rules = (folder / "ticketera.conf").read_text()
    assert "proxy_cache_path /var/cache/nginx/ticketera " in rules
    (folder / "ticketera.conf").write_text(
        rules.replace("proxy_cache_path /var/cache/nginx/ticketera ", f"proxy_cache_path {folder / 'cache'} ")
    )
    return folder


@contextmanager
def replica(tmp_path: Path, database_url: str, index: int) -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    env = cli_env(
        tmp_path / f"replica-{index}",
        **SECRETS,
        APP_ENV="production",
        DATABASE_URL=database_url,
        REDIS_URL=TEST_REDIS_URL,
        # nginx's limits are under test: the app's own would answer first.
        APP_RATE_LIMIT="off",
        QUEUE_JOIN_RATE_LIMIT="off",
        WORKER_IN_PROCESS="false",
        LOG_LEVEL="WARNING",
    )
    output = tmp_path / f"replica-{index}.log"
    with output.open("w") as sink:
        process = subprocess.Popen(
            [TICKETERA, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            cwd=tmp_path,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", process)
        yield process, port
    finally:
        if process.poll() is None:
            stop(process)


@contextmanager
def running_nginx(prefix: Path, main: str, output: Path) -> Iterator[subprocess.Popen[str]]:
    """nginx in the foreground on `prefix`'s files, its access log (stdout) and errors in `output`."""
    with output.open("w") as sink:
        process = subprocess.Popen(
            [
                "nginx",
                "-p",
                str(prefix),
                "-c",
                str(prefix / main),
                "-g",
                f"daemon off; pid {prefix / 'nginx.pid'}; user root;",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        yield process
    finally:
        stop(process)


def require_nginx() -> None:
    if shutil.which("nginx") is None:
        _backend_unavailable("nginx", "nginx is not installed (Debian's package nginx; .ci/run installs it)")


@pytest.fixture
async def edge(tmp_path: Path) -> AsyncIterator[Edge]:
    require_nginx()
    await empty_test_redis()
    async with fresh_database("mariadb", tmp_path, "ticketera_edge") as url:
        with ExitStack() as stack:
            # Each migrates at start (under the migration lock), then serves.
            started = [stack.enter_context(replica(tmp_path, url, index)) for index in range(2)]
            http_port, https_port = free_port(), free_port()
            ports = [port for _, port in started]
            prefix = nginx_prefix(
                tmp_path / "nginx", replica_ports=ports, http_port=http_port, https_port=https_port
            )
            access_log = tmp_path / "nginx-access.log"
            nginx = stack.enter_context(running_nginx(prefix, "nginx-lb.conf", access_log))
            edge = Edge(
                http_port,
                https_port,
                [p for p, _ in started],
                ports,
                access_log,
                prefix / "certs" / "tls.crt",
            )
            wait_until_ready(f"http://127.0.0.1:{http_port}", nginx, path="/health/live")
            yield edge
    await empty_test_redis()


async def empty_test_redis() -> None:
    connection = RedisConnection(TEST_REDIS_URL)
    try:
        await flush(connection)
    finally:
        await connection.close()


async def create_event(edge: Edge, **overrides: Any) -> dict[str, Any]:
    body = event_body(**{"sections": [ga_section(capacity=100)], "queue": {"enabled": False}, **overrides})
    async with edge.client() as client:
        created = await client.post("/api/events", json=body, headers=ADMIN)
    assert created.status_code == 201, created.text
    event: dict[str, Any] = created.json()
    return event


async def test_plain_http_redirects_to_https_which_says_so_for_a_year(edge: Edge) -> None:
    async with httpx.AsyncClient(timeout=30) as plain:
        redirected = await plain.get(f"http://127.0.0.1:{edge.http_port}/api/events?limit=5")
    async with edge.client() as client:
        answer = await client.get("/api/events")

    assert redirected.status_code == 301
    assert redirected.headers["location"] == f"https://127.0.0.1:{edge.https_port}/api/events?limit=5"
    assert answer.status_code == 200
    assert answer.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.http_version in ("HTTP/1.1", "HTTP/2")


async def test_json_is_compressed(edge: Edge) -> None:
    for index in range(5):
        await create_event(edge, name=f"Festival de verano, noche {index}")
    async with edge.client() as client:
        answer = await client.get("/api/events", headers={"Accept-Encoding": "gzip"})

    assert answer.status_code == 200
    assert answer.headers["content-encoding"] == "gzip"
    assert len(answer.json()["items"]) >= 5


async def test_a_burst_past_the_limit_is_refused_429_and_another_address_is_not(edge: Edge) -> None:
    async with edge.client() as client:
        burst = await asyncio.gather(*(client.get("/health/live") for _ in range(BURST * 3)))
        # The client's own X-Forwarded-For is ignored: its address is the connection's. A burst in
        # which every request names another address is still one address's burst (asked as a
        # burst, not one request after it, so the bucket's refill on a slow machine cannot hide it).
        spoofed = await asyncio.gather(
            *(
                client.get("/health/live", headers={"X-Forwarded-For": f"203.0.113.{index}"})
                for index in range(BURST * 3)
            )
        )
    async with edge.client("127.0.0.2") as neighbour:
        unaffected = await neighbour.get("/health/live")

    refused = [answer for answer in burst if answer.status_code == 429]
    assert refused, [answer.status_code for answer in burst]
    assert sum(answer.status_code == 200 for answer in burst) >= BURST
    assert refused[0].json()["error"] == "rate_limited"
    assert refused[0].headers["retry-after"] == "1"
    assert any(answer.status_code == 429 for answer in spoofed)
    assert unaffected.status_code == 200


async def test_public_event_reads_come_from_a_one_second_cache(edge: Edge) -> None:
    event = await create_event(edge)
    async with edge.client() as client:
        first = await client.get(f"/api/events/{event['id']}")
        second = await client.get(f"/api/events/{event['id']}")
        admin = await client.get(f"/api/events/{event['id']}", headers=ADMIN)

    assert first.headers["x-cache-status"] in ("MISS", "EXPIRED")
    assert second.headers["x-cache-status"] == "HIT"
    assert second.json() == first.json()
    assert admin.headers["x-cache-status"] == "BYPASS"


async def test_request_ids_pass_through_or_are_made(edge: Edge) -> None:
    async with edge.client() as client:
        chosen = await client.get("/health/live", headers={"X-Request-ID": "fan-42.retry-1"})
        hostile = await client.get("/health/live", headers={"X-Request-ID": "<script>alert(1)</script>"})

    assert chosen.headers["x-request-id"] == "fan-42.retry-1"
    assert len(hostile.headers["x-request-id"]) == 32
    assert hostile.headers.get_list("x-request-id") == [hostile.headers["x-request-id"]]


async def test_both_replicas_serve_and_losing_one_loses_no_read(edge: Edge) -> None:
    event = await create_event(edge)
    failures: list[str] = []
    answered = 0

    async with edge.client() as client:

        async def read() -> None:
            nonlocal answered
            answer = await client.get(f"/api/events/{event['id']}", headers=ADMIN)
            if answer.status_code != 200:
                failures.append(f"{answer.status_code} {answer.text[:80]}")
            answered += 1

        for _ in range(BURST // 2):
            await read()
        assert len(edge.upstreams_seen()) == 2
        edge.replicas[0].kill()
        for _ in range(BURST // 2):
            await read()

    assert failures == []
    assert answered == BURST


async def test_the_waiting_room_stream_passes_through_unbuffered(edge: Edge) -> None:
    event = await create_event(edge, queue={"enabled": True, "admitPerMinute": 60, "maxActiveShoppers": 10})
    async with edge.client() as client:
        joined = await client.post(f"/api/queue/{event['id']}/join", json={})
        token = joined.json()["queueToken"]
        events: list[str] = []
        async with client.stream(
            "GET", f"/api/queue/{event['id']}/stream", params={"token": token}
        ) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            async for line in stream.aiter_lines():
                if line.startswith("event:"):
                    events.append(line)
                    break

    assert events == ["event: status"]


async def test_the_metrics_stay_inside(edge: Edge) -> None:
    async with edge.client() as client:
        assert (await client.get("/metrics")).status_code == 404


def test_both_main_files_pass_nginx_own_check(tmp_path: Path) -> None:
    require_nginx()
    prefix = nginx_prefix(
        tmp_path / "nginx", replica_ports=[free_port()], http_port=free_port(), https_port=free_port()
    )
    for main in ("nginx.conf", "nginx-lb.conf"):
        if main == "nginx.conf":
            (prefix / "upstream.conf").write_text("upstream ticketera { server 127.0.0.1:1; keepalive 8; }\n")
        checked = subprocess.run(
            [
                "nginx",
                "-t",
                "-p",
                str(prefix),
                "-c",
                str(prefix / main),
                "-g",
                f"pid {prefix / 'nginx.pid'};",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert checked.returncode == 0, checked.stderr


async def test_the_pages_work_behind_nginx_its_headers_and_the_apps_policy(edge: Edge) -> None:
    """A fan's pages through nginx in chromium: nginx's security headers and the app's
    Content-Security-Policy together leave every script running (the line moves the fan on to the
    seats), and the static files come with the app's one Cache-Control, past the rate limit."""
    if not CHROMIUM.exists():
        _browser_missing(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    event = await create_event(edge)
    errors: list[str] = []
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        context = await browser.new_context(base_url=edge.base, ignore_https_errors=True, locale="es-AR")
        page = await context.new_page()
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        answer = await page.goto(f"/events/{event['id']}")
        assert answer is not None
        headers = await answer.all_headers()
        assert "script-src 'self'" in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY"
        await page.get_by_test_id("join").click()
        # The queue's script joined (the line is off for this event) and sent the fan on to choose.
        await async_expect(page.get_by_test_id("quantity")).to_be_visible(timeout=30_000)
        await browser.close()
    assert not errors, errors

    async with edge.client() as client:
        css = next(
            href for href in re.findall(r'href="([^"]+)"', (await client.get("/")).text) if ".css" in href
        )
        burst = await asyncio.gather(*(client.get(css) for _ in range(BURST * 2)))
    assert {answer.status_code for answer in burst} == {200}
    assert burst[0].headers.get_list("cache-control") == ["public, max-age=31536000, immutable"]
