"""The background worker: records expired holds and orders, in batches, safe in several copies.

Correctness never waits for it (expired holds and orders are free by query); it keeps the stored
statuses and the audit trail up to date. Each batch is its own short transaction, and rows are
claimed with SKIP LOCKED, so two workers never expire the same hold or order twice.
`ticketera worker` runs it as its own process; the embedded default runs it inside the web process.

Once a day it also adds the coming months' partitions (MariaDB, `kit.partitions`): cheap, idempotent,
and what keeps the catch-all partition empty, so that adding a month stays a metadata change even where
nobody schedules `ticketera db partitions`. Dropping old months loses rows from the database, so that
stays the operator's command (cron), never the worker's.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from ticketera.holds import service as holds_service
from ticketera.kit.clock import Clock
from ticketera.kit.db import Database
from ticketera.kit.errors import ServiceUnavailable
from ticketera.kit.lifecycle import BACKGROUND_STOP_GRACE_SECONDS, pause, stopped
from ticketera.kit.partitions import PARTITIONED_TABLES, maintain_partitions
from ticketera.kit.resilience import OutageNotice
from ticketera.orders import service as orders_service
from ticketera.payments.tasks import PaymentProcessor
from ticketera.tickets.tasks import TicketMailer

log = structlog.get_logger(__name__)
T = TypeVar("T")
# The steps of a pass, in order.
STEPS = ("expiries", "payments", "emails", "partitions")
PARTITIONS_EVERY_SECONDS = 24 * 3600

BATCH = 500


@dataclass(frozen=True)
class ExpiryPass:
    holds: int
    orders: int


async def expire_overdue(
    database: Database, clock: Clock, *, batch: int = BATCH, stop: asyncio.Event | None = None
) -> ExpiryPass:
    """Expire everything overdue right now, one batch per transaction, until nothing is left (or
    `stop` is set: the rest waits for the next worker)."""
    holds = orders = 0

    async def expire_holds(session: AsyncSession) -> int:
        return await holds_service.expire_overdue_holds(session, clock(), batch=batch)

    async def expire_orders(session: AsyncSession) -> int:
        return await orders_service.expire_overdue_orders(session, clock(), batch=batch)

    while not stopped(stop) and (done := await database.transaction(expire_holds)) > 0:
        holds += done
        if done < batch:
            break
    while not stopped(stop) and (done := await database.transaction(expire_orders)) > 0:
        orders += done
        if done < batch:
            break
    return ExpiryPass(holds, orders)


async def run_worker(
    database: Database,
    clock: Clock,
    *,
    interval: float,
    payments: PaymentProcessor | None = None,
    mailer: TicketMailer | None = None,
    stop: asyncio.Event,
    partition_months_ahead: int | None = None,
) -> None:
    """Every `interval` seconds until `stop` is set: expire overdue holds and orders,
    then the payment sweeps (unprocessed notifications, refunds not sent yet, reconciliation with
    MercadoPago); at start and once a day, the months ahead's partitions. Beside them, the tickets
    emails waiting in the outbox, at once while a backlog lasts, else every `interval` seconds.

    Once `stop` is set, each step ends after the item under way (a notification, an email, a batch)
    and the loops return: a step cut off in the middle of returning a connection to the pool costs
    that connection and a traceback in the log, and an email cut off between its sending and its
    record would be sent again."""
    log.info("worker.started", interval=interval, payments=payments is not None)

    async def expiries() -> None:
        done = await expire_overdue(database, clock, stop=stop)
        if done.holds or done.orders:
            log.info("worker.pass", holds=done.holds, orders=done.orders)

    async def payment_sweeps(payments: PaymentProcessor) -> None:
        swept = await payments.run_pass(stop=stop)
        if any(swept.values()):
            log.info("worker.payments_pass", **swept)

    async def emails(mailer: TicketMailer) -> None:
        """The tickets emails in a loop of their own: a backlog is sent batch after batch without
        waiting for the next pass (one batch a pass sent 4 emails a second, and the tickets of a
        sell-out reached their buyers an hour late), and the other steps never wait for it."""
        while not stop.is_set():
            sweep = await _survive("worker.emails_pass_failed", mailer.sweep(stop=stop), outages["emails"])
            if sweep is not None and sweep.sent:
                log.info("worker.emails_sent", emails=sweep.sent)
            await pause(stop, 0 if sweep is not None and sweep.more_waiting else interval)

    async def partitions(months_ahead: int) -> None:
        for monthly in PARTITIONED_TABLES:
            await maintain_partitions(
                database.engine, monthly, clock(), months_ahead=months_ahead, archive_dir=None, expire=False
            )

    async def passes() -> None:
        partitions_due = time.monotonic()
        while not stop.is_set():
            started = time.monotonic()
            if partition_months_ahead is not None and started >= partitions_due:
                partitions_due = started + PARTITIONS_EVERY_SECONDS
                step = partitions(partition_months_ahead)
                await _survive("worker.partitions_failed", step, outages["partitions"])
            await _survive("worker.pass_failed", expiries(), outages["expiries"])
            if payments is not None:
                await _survive("worker.payments_pass_failed", payment_sweeps(payments), outages["payments"])
            await pause(stop, max(0.1, interval - (time.monotonic() - started)))

    # Each step meets an outage of its own dependencies (the database, MercadoPago, SMTP).
    outages = {step: OutageNotice(f"worker.{step}_waiting", f"worker.{step}_resumed") for step in STEPS}
    async with asyncio.TaskGroup() as group:
        if mailer is not None:
            group.create_task(emails(mailer), name="worker.emails")
        group.create_task(passes(), name="worker.passes")
    log.info("worker.stopped")


def stop_on_signals(stop: asyncio.Event, *, grace: float = BACKGROUND_STOP_GRACE_SECONDS) -> None:
    """From now on SIGTERM (`docker stop`, systemd) or SIGINT (Ctrl-C) sets `stop`, and the worker
    returns once its steps under way end. A second signal, or steps still running `grace` seconds
    later, cancel the running task: a stop never waits on a stuck database.

    Without a handler, SIGTERM would be ignored altogether where the worker is its container's
    process 1, and `docker stop` would wait for its SIGKILL."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None

    def cut_off(reason: str, **detail: object) -> None:
        if not task.done():
            log.warning("worker.cut_off", reason=reason, **detail)
            task.cancel()

    def signalled(signum: signal.Signals) -> None:
        if stop.is_set():
            cut_off("second_signal", signal=signum.name)
            return
        log.info("worker.stopping", signal=signum.name, grace_seconds=grace)
        stop.set()
        loop.call_later(grace, lambda: cut_off("grace_exceeded", grace_seconds=grace))

    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, signalled, signum)
        except NotImplementedError:  # Windows' loops: Ctrl-C stays a KeyboardInterrupt
            return


async def _survive(failed_event: str, step: Awaitable[T], outage: OutageNotice) -> T | None:
    """Run one step of a pass, and give its result (None when it failed); a failure is logged and
    the loop goes on (cancellation is not caught: CancelledError is no Exception)."""
    try:
        done = await step
    except ServiceUnavailable as exc:
        outage.stopped(exc)
    except Exception as exc:
        log.exception(failed_event, error=type(exc).__name__)
    else:
        outage.ran()
        return done
    return None
