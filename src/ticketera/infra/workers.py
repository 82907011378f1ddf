"""Several uvicorn workers, each with its own SO_REUSEPORT socket, so the kernel balances connections.

Written by hand because uvicorn's own `--workers` shares one listening socket: whichever worker
wakes first accepts, and long-lived keep-alive connections pile onto one or two workers (the on-sale
benchmark saw 20 buyers' connections land 99% on one of four). With a socket per worker bound with
SO_REUSEPORT, Linux spreads new connections across them by hash. gunicorn's `reuse_port` would do
the same at the cost of a second process manager; this is the few lines we need: start the
workers, restart one that dies, stop them all on SIGINT/SIGTERM.
"""

from __future__ import annotations

import multiprocessing
import signal
import socket
import time
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

import structlog

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


def serve_workers(host: str, port: int, workers: int, options: dict[str, Any]) -> None:
    """Run `workers` uvicorn servers on host:port until SIGINT or SIGTERM; restart any that dies."""
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
