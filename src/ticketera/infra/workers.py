"""Several uvicorn workers, each with its own SO_REUSEPORT socket, so the kernel balances connections.

Written by hand because uvicorn's own `--workers` shares one listening socket: whichever worker
wakes first accepts, and long-lived keep-alive connections pile onto one or two workers (the on-sale
benchmark saw 20 buyers' connections land 99% on one of four). With a socket per worker bound with
SO_REUSEPORT, Linux spreads new connections across them by hash. gunicorn's `reuse_port` would do
the same at the cost of a second process manager; this is the few lines we need: start the
workers, restart one that dies, stop them all on SIGINT/SIGTERM.

The workers share a fresh directory for Prometheus metrics (see `metrics_directory`), so whichever
worker a scrape reaches reports every worker's requests.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

import structlog
from prometheus_client.multiprocess import mark_process_dead

from ticketera.infra.metrics import MULTIPROC_DIR_ENV

log = structlog.get_logger(__name__)

STOP_GRACE_SECONDS = 30.0


def reuse_port_supported() -> bool:
    return hasattr(socket, "SO_REUSEPORT")


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _run_worker(host: str, port: int, options: dict[str, Any]) -> None:
    import uvicorn

    sock = _listening_socket(host, port)
    config = uvicorn.Config("ticketera.main:create_app", factory=True, host=host, port=port, **options)
    uvicorn.Server(config).run(sockets=[sock])


@contextmanager
def metrics_directory() -> Iterator[str]:
    """A new, empty directory for the workers' metric files, named in PROMETHEUS_MULTIPROC_DIR.

    Fresh for every start: files left by an earlier run would be added to this run's counts. Set in
    our environment before any worker starts, so each (spawned: a new interpreter) reads it when it
    first imports prometheus_client, which is when the library picks where values live. Removed,
    and the variable restored, when the workers have stopped.
    """
    previous = os.environ.get(MULTIPROC_DIR_ENV)
    directory = tempfile.mkdtemp(prefix="ticketera-metrics-")
    os.environ[MULTIPROC_DIR_ENV] = directory
    try:
        yield directory
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_DIR_ENV, None)
        else:
            os.environ[MULTIPROC_DIR_ENV] = previous
        shutil.rmtree(directory, ignore_errors=True)


def forget_worker(pid: int | None, directory: str) -> None:
    """Drop a dead worker's per-process gauges (breakers, pool, memory); its request counts stay,
    so the totals never go down when a worker is replaced."""
    if pid is not None:
        mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]  # unannotated upstream


def serve_workers(host: str, port: int, workers: int, options: dict[str, Any]) -> None:
    """Run `workers` uvicorn servers on host:port until SIGINT or SIGTERM; restart any that dies."""
    with metrics_directory() as directory:
        log.info("workers.metrics_directory", path=directory)
        _supervise(host, port, workers, options, directory)


def _supervise(host: str, port: int, workers: int, options: dict[str, Any], directory: str) -> None:
    context = multiprocessing.get_context("spawn")
    stopping = False

    def start() -> BaseProcess:
        process = context.Process(target=_run_worker, args=(host, port, options), name="ticketera-worker")
        process.start()
        return process

    def stop(_signal: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    processes = [start() for _ in range(workers)]
    log.info("workers.started", workers=workers, host=host, port=port, balancing="SO_REUSEPORT")
    while not stopping:
        time.sleep(0.5)
        for index, process in enumerate(processes):
            if not process.is_alive() and not stopping:
                log.warning("workers.restarting", pid=process.pid, exitcode=process.exitcode)
                forget_worker(process.pid, directory)
                processes[index] = start()
    for process in processes:
        if process.is_alive() and process.pid is not None:
            # uvicorn finishes the requests in flight on SIGTERM, then exits.
            process.terminate()
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()
    log.info("workers.stopped")
