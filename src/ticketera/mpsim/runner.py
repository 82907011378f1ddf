"""Running the simulator as a server: in the foreground (`ticketera mp-sim`), or as a child process
beside the service (`ticketera dev`), which `python -m ticketera.mpsim` starts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass

import httpx

from ticketera.mpsim.app import create_simulator
from ticketera.mpsim.settings import SimulatorSettings

HEALTH_PATH = "/_sim/health"


class SimulatorStartError(RuntimeError):
    """The child process did not answer in time, or exited."""


def serve_simulator(settings: SimulatorSettings, *, host: str, port: int) -> None:
    """Serve until Ctrl+C or SIGTERM. Raises SimulatorConfigError before listening if misconfigured."""
    import uvicorn

    app = create_simulator(settings)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        server_header=False,
        # Longer than the idle keep-alive of the clients that call it (the service's MercadoPago
        # client and the load generator keep a connection 15 s): with uvicorn's 5 s a client could
        # send on a connection the simulator was closing, and a payment came back as a dropped
        # connection (3 of 3,996 in a sell-out).
        timeout_keep_alive=75,
    )


def simulator_answers(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}{HEALTH_PATH}", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def simulator_accepts(base_url: str, access_token: str) -> bool:
    """Whether a simulator already running takes this access token (another checkout's may not)."""
    try:
        response = httpx.get(
            f"{base_url}/v1/payments/search",
            params={"limit": 1},
            headers={"Authorization": f"Bearer {access_token}"},
            timeout=2,
        )
    except httpx.HTTPError:
        return False
    return response.status_code == 200


@dataclass
class SimulatorProcess:
    process: subprocess.Popen[bytes]
    base_url: str

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            # SIGTERM: uvicorn finishes its requests, the lifespan cancels pending deliveries.
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_simulator_process(
    *,
    host: str,
    port: int,
    access_token: str,
    webhook_secret: str,
    ready_within: float = 20.0,
) -> SimulatorProcess:
    """Start `python -m ticketera.mpsim` and wait until it answers; its output goes to ours."""
    env = {
        **os.environ,
        "MP_ACCESS_TOKEN": access_token,
        "MP_WEBHOOK_SECRET": webhook_secret,
        "MPSIM_PORT": str(port),
    }
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module, no shell
        [sys.executable, "-m", "ticketera.mpsim", "--host", host, "--port", str(port)], env=env
    )
    started = SimulatorProcess(process, f"http://{host}:{port}")
    deadline = time.monotonic() + ready_within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SimulatorStartError(f"it exited with status {process.returncode} (is port {port} free?)")
        if simulator_answers(started.base_url):
            return started
        time.sleep(0.2)
    started.stop()
    raise SimulatorStartError(f"it did not answer on {started.base_url} within {ready_within:.0f} s")
