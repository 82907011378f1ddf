"""`ticketera serve --workers N`: the metrics of every worker, whichever one answers the scrape."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.test_cli import serving_workers
from ticketera.infra.metrics import MULTIPROC_DIR_ENV
from ticketera.infra.workers import metrics_directory

ROUTE = "/health/live"
# An answer is what is tested, not how fast: generous, for a busy machine.
TIMEOUT_SECONDS = 30


def test_the_metrics_directory_is_fresh_and_removed_afterwards(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MULTIPROC_DIR_ENV, "/somewhere/else")

    with metrics_directory() as directory:
        inside = os.environ[MULTIPROC_DIR_ENV]
        empty = os.listdir(directory) == []

    assert inside == directory
    assert empty
    assert not Path(directory).exists()
    assert os.environ[MULTIPROC_DIR_ENV] == "/somewhere/else"


def scrape(base: str) -> dict[str, Metric]:
    # A new connection each time: SO_REUSEPORT picks a worker per connection.
    response = httpx.get(f"{base}/metrics", timeout=TIMEOUT_SECONDS)
    assert response.status_code == 200, response.text
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def counted(families: dict[str, Metric], route: str = ROUTE) -> float:
    return sum(
        sample.value
        for sample in families["ticketera_http_requests"].samples
        if sample.name == "ticketera_http_requests_total" and sample.labels["route"] == route
    )


def worker_pids(families: dict[str, Metric]) -> set[str]:
    return {sample.labels["pid"] for sample in families["ticketera_process_resident_memory_bytes"].samples}


def counted_per_worker(directory: Path) -> dict[str, float]:
    """What each worker's own file says it answered, read the way the scrape reads all of them."""
    per_worker = {}
    for path in directory.glob("counter_*.db"):
        metrics = MultiProcessCollector.merge([str(path)])  # type: ignore[no-untyped-call]
        per_worker[path.stem.removeprefix("counter_")] = sum(
            sample.value
            for metric in metrics
            for sample in metric.samples
            if sample.name == "ticketera_http_requests_total" and sample.labels["route"] == ROUTE
        )
    return per_worker


def wait_for_replacement(base: str, dead_pid: str, seconds: float = 30) -> dict[str, Metric]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            families = scrape(base)
        except httpx.HTTPError:
            families = {}
        pids = worker_pids(families) if families else set()
        if len(pids) == 2 and dead_pid not in pids:
            return families
        time.sleep(0.2)
    raise AssertionError(f"worker {dead_pid} was not replaced, or its gauges were not removed")


@pytest.mark.slow
def test_every_workers_requests_are_counted_whichever_worker_answers(tmp_path: Path) -> None:
    (tmp_path / "tmp").mkdir()
    with serving_workers(tmp_path, TMPDIR=str(tmp_path / "tmp")) as (base, _):
        (directory,) = (tmp_path / "tmp").glob("ticketera-metrics-*")
        for _ in range(40):
            assert httpx.get(f"{base}{ROUTE}", timeout=TIMEOUT_SECONDS).status_code == 200
        scrapes = [scrape(base) for _ in range(6)]
        per_worker = counted_per_worker(directory)

        # A worker dies: the supervisor replaces it and drops its gauges; its requests stay counted.
        dead = sorted(per_worker)[0]
        os.kill(int(dead), signal.SIGKILL)
        after = wait_for_replacement(base, dead)
        for _ in range(10):
            assert httpx.get(f"{base}{ROUTE}", timeout=TIMEOUT_SECONDS).status_code == 200
        final = scrape(base)

    assert [counted(families) for families in scrapes] == [40] * 6
    assert all(counted(families, "/metrics") == 0 for families in scrapes)
    assert len(per_worker) == 2, per_worker
    assert all(count > 0 for count in per_worker.values()), per_worker  # both workers answered
    assert {len(worker_pids(families)) for families in scrapes} == {2}
    assert set(per_worker) == worker_pids(scrapes[0])
    assert counted(after) == 40
    assert counted(final) == 50
    assert not directory.exists()  # removed when the server stopped
