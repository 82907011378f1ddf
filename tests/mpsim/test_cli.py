"""`ticketera mp-sim` and the simulator `ticketera dev` starts: real processes, real HTTP."""

from __future__ import annotations

import http.client
import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.test_cli import TICKETERA, cli_env, free_port, stop, wait_until_ready
from ticketera.mpsim.runner import HEALTH_PATH, start_simulator_process


def sim_env(workdir: Path, **extra: str) -> dict[str, str]:
    """The CLI tests' environment, without a developer's MercadoPago or simulator settings."""
    env = {key: value for key, value in cli_env(workdir).items() if not key.startswith(("MP_", "MPSIM_"))}
    env.update(extra)
    return env


def start(args: list[str], workdir: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [TICKETERA, *args], cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def answers(base: str) -> bool:
    try:
        httpx.get(f"{base}/_sim/health", timeout=1)
    except httpx.HTTPError:
        return False
    return True


def test_mp_sim_serves_with_the_configured_token(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = sim_env(tmp_path, MP_ACCESS_TOKEN="cli-mp", MP_WEBHOOK_SECRET="cli-hook")
    process = start(["mp-sim", "--port", str(port)], tmp_path, env)
    try:
        wait_until_ready(base, process, path="/_sim/health")
        accepted = httpx.get(f"{base}/v1/payments/search", headers={"Authorization": "Bearer cli-mp"})
        refused = httpx.get(f"{base}/v1/payments/search", headers={"Authorization": "Bearer other"})
        preference = httpx.post(
            f"{base}/checkout/preferences",
            json={"items": [{"title": "x", "quantity": 1, "unit_price": 10}]},
            headers={"Authorization": "Bearer cli-mp"},
        ).json()
        config = httpx.get(f"{base}/_sim/config").json()
    finally:
        output = stop(process)

    assert accepted.status_code == 200
    assert refused.status_code == 401
    assert preference["init_point"].startswith(f"http://localhost:{port}/checkout/v1/redirect?pref_id=")
    assert config["webhookSecret"] == "cli-hook"
    assert config["retrySchedule"][0] == 900
    assert "MercadoPago simulator" in output
    assert process.returncode == 0


def test_mp_sim_takes_the_development_secrets_when_none_are_set(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start(["mp-sim", "--port", str(port)], tmp_path, sim_env(tmp_path, MPSIM_RETRY_SCHEDULE="1,2"))
    try:
        wait_until_ready(base, process, path="/_sim/health")
        secrets = json.loads((tmp_path / "data" / "secrets.json").read_text())
        accepted = httpx.get(
            f"{base}/v1/payments/search", headers={"Authorization": f"Bearer {secrets['MP_ACCESS_TOKEN']}"}
        )
        config = httpx.get(f"{base}/_sim/config").json()
    finally:
        stop(process)

    assert accepted.status_code == 200
    assert config["webhookSecret"] == secrets["MP_WEBHOOK_SECRET"]
    assert config["retrySchedule"] == [1.0, 2.0]


@pytest.mark.slow
def test_dev_runs_the_simulator_beside_the_service_and_stops_it(tmp_path: Path) -> None:
    port, sim_port = free_port(), free_port()
    sim_base = f"http://127.0.0.1:{sim_port}"
    process = start(
        ["dev", "--port", str(port), "--no-reload", "--mp-sim-port", str(sim_port)],
        tmp_path,
        sim_env(tmp_path),
    )
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", process)
        secrets = json.loads((tmp_path / "data" / "secrets.json").read_text())
        accepted = httpx.get(
            f"{sim_base}/v1/payments/search",
            headers={"Authorization": f"Bearer {secrets['MP_ACCESS_TOKEN']}"},
        )
        config = httpx.get(f"{sim_base}/_sim/config").json()
    finally:
        output = stop(process)

    assert f"MercadoPago  {sim_base} (simulator" in output
    assert accepted.status_code == 200
    assert config["webhookSecret"] == secrets["MP_WEBHOOK_SECRET"]
    assert not answers(sim_base)


@pytest.mark.slow
def test_dev_leaves_an_explicit_mp_base_url_alone(tmp_path: Path) -> None:
    port, sim_port = free_port(), free_port()
    env = sim_env(tmp_path, MP_BASE_URL="http://127.0.0.1:9/mp")
    process = start(
        ["dev", "--port", str(port), "--no-reload", "--mp-sim-port", str(sim_port)], tmp_path, env
    )
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", process)
        started = answers(f"http://127.0.0.1:{sim_port}")
    finally:
        output = stop(process)

    assert not started
    assert "MercadoPago  http://127.0.0.1:9/mp (as configured)" in output


def test_the_simulator_keeps_an_idle_connection_longer_than_its_clients_do() -> None:
    """Its clients (the service's MercadoPago client, the load generator) keep an idle connection
    15 s: the server must not close it first, or a request sent as it closes is lost."""
    port = free_port()
    simulator = start_simulator_process(
        host="127.0.0.1", port=port, access_token="TEST-keepalive", webhook_secret="secret"
    )
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        answers, sockets = [], []
        for pause in (0.0, 6.0):  # past uvicorn's default keep-alive of 5 s
            time.sleep(pause)
            connection.request("GET", HEALTH_PATH)
            response = connection.getresponse()  # RemoteDisconnected had the server closed it
            response.read()
            answers.append(response.status)
            sockets.append(connection.sock)
    finally:
        connection.close()
        simulator.stop()
    assert answers == [200, 200]
    assert sockets[0] is sockets[1], "the second request went on the first's connection"
