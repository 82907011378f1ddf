"""The client's address for the per-IP limits comes from trusted proxies only (FORWARDED_ALLOW_IPS),
and from a proxy chain it is the right-most hop that is not a trusted proxy: the real server, with
requests from 127.0.0.2 (not a proxy) and 127.0.0.1 (the trusted one)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import minute_boundary_delay
from tests.test_cli import SECRETS, TICKETERA, cli_env, serving_workers

LIMIT = 5
# TEST-NET-3 (RFC 5737): addresses that only ever appear inside a header here.
SPOOFED = "203.0.113.{}"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """`ticketera serve` in production mode, one worker (its in-process limiter sees every request),
    APP_RATE_LIMIT of 5 a minute, proxies trusted: the default (loopback)."""
    with serving_workers(tmp_path, workers=1, APP_RATE_LIMIT=f"{LIMIT}/minute") as (base, _env):
        yield base


def statuses(base: str, source: str, forwarded_for: list[str]) -> list[int]:
    """GET /api/events once per X-Forwarded-For value, from the local address `source`."""
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(base_url=base, transport=transport, timeout=30) as http:
        return [
            http.get("/api/events", headers={"X-Forwarded-For": value}).status_code for value in forwarded_for
        ]


def test_a_client_that_is_no_proxy_cannot_pick_its_address(server: str) -> None:
    """The probe's rotating X-Forwarded-For from an untrusted address: the header is ignored, the
    client is 127.0.0.2, and the limit holds."""
    time.sleep(minute_boundary_delay())
    answers = statuses(server, "127.0.0.2", [SPOOFED.format(n) for n in range(LIMIT + 3)])
    assert answers == [200] * LIMIT + [429] * 3


def test_behind_the_proxy_the_right_most_untrusted_hop_is_the_client(server: str) -> None:
    """nginx appends the address it saw: `spoofed, real`. The spoofed left-most value changes with
    every request and the limit still holds for the real one."""
    chain = [f"{SPOOFED.format(n)}, 198.51.100.7" for n in range(LIMIT + 2)]
    time.sleep(minute_boundary_delay())
    assert statuses(server, "127.0.0.1", chain) == [200] * LIMIT + [429] * 2
    # Another real client behind the same proxy has its own allowance.
    assert statuses(server, "127.0.0.1", ["198.51.100.8"]) == [200]


def test_a_wildcard_proxy_list_is_refused_at_start(tmp_path: Path) -> None:
    env = cli_env(tmp_path, **SECRETS, FORWARDED_ALLOW_IPS="*")
    result = subprocess.run(
        [TICKETERA, "migrate"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert "Configuration error" in result.stderr
    assert "FORWARDED_ALLOW_IPS" in result.stderr
    assert "Traceback" not in result.stderr
