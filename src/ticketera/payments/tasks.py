"""Payment work that crosses the network: the transaction and network boundaries of payments.

Never a MercadoPago call inside a database transaction (a slow API would hold row locks, and on
SQLite the single write lock): each step reads or writes in a short transaction, then calls out,
then records what came back in another. Every step is idempotent, so a crash between two of them is
repaired by running the step again (the inbox lease expires, a due refund is sent again under the
same idempotency key, the reconciler asks again).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

import httpx
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from ticketera.config import Settings
from ticketera.events import service as events_service
from ticketera.infra.mercadopago import MercadoPagoClient, MercadoPagoError, ProviderPayment
from ticketera.kit.audit import SYSTEM_ACTOR
from ticketera.kit.cache import TtlCache
from ticketera.kit.clock import Clock, utc_now
from ticketera.kit.components import Component
from ticketera.kit.db import Database, DatabaseOverloaded, DatabaseUnavailable
from ticketera.kit.errors import DomainError
from ticketera.kit.lifecycle import pause, stopped
from ticketera.kit.resilience import BreakerState
from ticketera.kit.tokens import TokenSigner
from ticketera.orders import service as orders_service
from ticketera.payments import repository, service
from ticketera.payments.models import NotificationState, Settlement
from ticketera.payments.spool import NotificationSpool
from ticketera.tickets.keys import TicketKeyring

log = structlog.get_logger(__name__)

# MercadoPago's cause code for "this payment's state does not allow a refund" (e.g. already refunded).
REFUND_NOT_ALLOWED = "2063"
PAYMENT_NOT_FOUND = "2000"
SWEEP_BATCH = 50
# How often a web process looks for webhooks spooled during a database outage.
SPOOL_CHECK_SECONDS = 1.0
# How long an event's name is reused for checkout titles before it is read again: a rename reaches
# new checkouts within this time, and in a rush an order costs no read session of its own for it.
EVENT_NAME_TTL_SECONDS = 30.0

OnPaid = Callable[[int, str], Awaitable[object]]


class PaymentProviderRefused(DomainError):
    """MercadoPago answered a 4xx to a request of ours: a bug or a misconfiguration, not an outage."""

    status_code = 502
    code = "payment_provider_error"


async def _nothing(_event_id: int, _user_id: str) -> None:
    return None


@dataclass
class PaymentProcessor:
    """Runs payment work for one process (web or worker); shares the MercadoPago client."""

    database: Database
    gateway: MercadoPagoClient
    clock: Clock
    checkout: service.CheckoutOptions
    keyring: TicketKeyring
    # Signs the order token that goes into a checkout's return URLs (made by the worker too).
    signer: TokenSigner
    # Told when an order is paid (the waiting room frees the buyer's shopping slot).
    on_paid: OnPaid = field(default=_nothing)
    # Where webhooks go while the database cannot store them (web processes; None: answer 503).
    spool: NotificationSpool | None = None
    _event_names: TtlCache[int, str] = field(
        default_factory=lambda: TtlCache(EVENT_NAME_TTL_SECONDS), init=False, repr=False
    )

    # -- checkout ------------------------------------------------------------------------------

    async def ensure_checkout(self, view: orders_service.OrderView, *, order_token: str) -> str:
        """The order's checkout URL, creating its MercadoPago preference the first time.

        Safe to repeat: the preference's idempotency key is the order id, so a retry after a lost
        answer gets the same preference back instead of a second one.
        """
        order = view.order
        if order.checkout_url:
            return order.checkout_url

        async def event_name(session: AsyncSession) -> str:
            event = await events_service.find_event(session, order.event_id)
            return event.name if event is not None else f"Event {order.event_id}"

        name = await self._event_names.get(order.event_id, lambda: self.database.read(event_name))
        body = service.checkout_preference(
            order, view.units, event_name=name, order_token=order_token, options=self.checkout
        )
        try:
            preference = await self.gateway.create_preference(
                body, idempotency_key=service.preference_key(order)
            )
        except MercadoPagoError as exc:
            log.error("order.checkout_refused", order_id=order.id, status=exc.status, body=exc.body)
            raise PaymentProviderRefused(
                "MercadoPago refused to create this order's checkout; the order is kept, try again later."
            ) from exc

        async def store(session: AsyncSession) -> None:
            await orders_service.record_checkout(
                session, order.id, preference_id=preference.id, checkout_url=preference.init_point
            )

        await self.database.transaction(store)
        order.preference_id, order.checkout_url = preference.id, preference.init_point
        log.info("order.checkout_created", order_id=order.id, preference_id=preference.id)
        return preference.init_point

    # -- notifications -------------------------------------------------------------------------

    async def receive(self, notification: service.IncomingNotification) -> int | None:
        """Keep a verified notification durably before MercadoPago hears 200: its inbox row id, or
        None when the database could not take it and the spool did (see `ticketera.payments.spool`)."""
        now = self.clock()
        try:
            return await self._store(notification, received_at=now)
        except (DatabaseUnavailable, DatabaseOverloaded) as unavailable:
            if self.spool is None:
                raise
            try:
                await self.spool.keep(notification, received_at=now)
            except OSError as exc:
                # Nowhere durable to keep it: the 503 stands, and MercadoPago sends it again later.
                log.error("notification.spool_failed", error=type(exc).__name__, detail=str(exc)[:200])
                raise unavailable from exc
            log.warning("notification.spooled", resource_id=notification.resource_id)
            return None

    async def drain_spool(self) -> list[int]:
        """Move what the spool kept into the inbox, oldest first; the inbox ids, to process. The
        first refusal of the database ends the pass, and the rest waits for the next one."""
        if self.spool is None:
            return []
        stored = []
        for spooled in self.spool.pending():
            stored.append(await self._store(spooled.notification, received_at=spooled.received_at))
            self.spool.discard(spooled)
        if stored:
            log.info("notification.spool_drained", count=len(stored))
        return stored

    async def _store(self, notification: service.IncomingNotification, *, received_at: datetime) -> int:
        async def store(session: AsyncSession) -> int:
            return await service.receive_notification(session, notification, received_at)

        return await self.database.transaction(store)

    async def process_notification(self, notification_id: int) -> bool:
        """Process one inbox row if it is due and nobody else has it; True when it was processed."""
        now = self.clock()

        async def claim(session: AsyncSession) -> repository.ClaimedNotification | None:
            if not await service.INBOX.claim(session, notification_id, now=now):
                return None
            return await repository.claimed_notification(session, notification_id)

        claimed = await self.database.transaction(claim)
        if claimed is None:
            return False
        try:
            if claimed.topic == "payment":
                payment = await self.gateway.get_payment(claimed.resource_id)
                await self.apply(payment)
            else:
                log.info("notification.ignored", topic=claimed.topic, resource_id=claimed.resource_id)
        except Exception as exc:
            await self._reschedule(claimed, exc)
            return False
        await self._finish(notification_id)
        return True

    async def process_due_notifications(
        self, *, limit: int = SWEEP_BATCH, stop: asyncio.Event | None = None
    ) -> int:
        """The worker's sweep: notifications not processed yet (a crash, an API outage, a retry)."""
        now = self.clock()
        due = await self.database.read(lambda session: service.INBOX.due(session, now, limit=limit))
        done = 0
        for notification_id in due:
            if stopped(stop):
                break
            done += await self.process_notification(notification_id)
        return done

    async def _reschedule(self, claimed: repository.ClaimedNotification, exc: Exception) -> None:
        now = self.clock()
        not_found = isinstance(exc, MercadoPagoError) and (
            PAYMENT_NOT_FOUND in exc.cause_codes or exc.status == 404
        )
        # A payment MercadoPago does not know: an unsigned IPN naming any id, or a signed one that
        # is still unknown after a few tries, is not worth a day and a half of reads.
        retry = service.INBOX.after_failure(
            claimed.attempts,
            now,
            give_up=not_found and (claimed.source == "ipn" or claimed.attempts >= service.NOT_FOUND_ATTEMPTS),
        )
        log.warning(
            "notification.failed",
            notification_id=claimed.id,
            resource_id=claimed.resource_id,
            attempts=claimed.attempts,
            error=type(exc).__name__,
            detail=str(exc)[:200],
            gave_up=retry.gave_up,
            payment_not_found=not_found,
        )

        async def record(session: AsyncSession) -> None:
            await service.INBOX.record_failure(
                session, claimed.id, retry, now=now, error=f"{type(exc).__name__}: {exc}"
            )

        await self.database.transaction(record)

    async def _finish(self, notification_id: int) -> None:
        now = self.clock()

        async def finish(session: AsyncSession) -> None:
            await service.INBOX.finish(session, notification_id, state=NotificationState.DONE, now=now)

        await self.database.transaction(finish)

    # -- applying a payment, and what follows from it -------------------------------------------

    async def apply(self, payment: ProviderPayment, *, actor: str = SYSTEM_ACTOR) -> service.Applied:
        """Apply a payment read back from MercadoPago, then do what it calls for, after commit."""

        async def apply(session: AsyncSession) -> service.Applied:
            return await service.apply_payment(
                session, payment, keyring=self.keyring, now=self.clock(), actor=actor
            )

        applied = await self.database.transaction(apply)
        if applied.effect is service.Effect.SOLD and applied.event_id is not None and applied.user_id:
            try:
                await self.on_paid(applied.event_id, applied.user_id)
            except Exception as exc:  # the sale stands; the slot frees itself when access expires
                log.warning("order.paid_hook_failed", order_id=applied.order_id, error=type(exc).__name__)
        elif applied.effect is service.Effect.REFUND_DUE:
            await self.send_refund(payment.id)
        return applied

    async def send_refund(self, provider_payment_id: str, *, actor: str = SYSTEM_ACTOR) -> bool:
        """Refund a payment whose refund is due; True once it is refunded. Safe to repeat."""
        try:
            await self._send_refund(provider_payment_id)
        except Exception:
            await self._refund_failed(provider_payment_id)
            raise
        now = self.clock()

        async def record(session: AsyncSession) -> bool:
            payment = await repository.find_payment(session, provider_payment_id)
            if payment is None or payment.settlement != Settlement.REFUND_DUE:
                return False
            await service.record_refund(session, payment, actor=actor, now=now)
            return True

        return await self.database.transaction(record)

    async def _refund_failed(self, provider_payment_id: str) -> None:
        now = self.clock()

        async def record(session: AsyncSession) -> None:
            payment = await repository.find_payment(session, provider_payment_id)
            if payment is not None and payment.settlement == Settlement.REFUND_DUE:
                service.record_refund_failure(payment, now=now)

        await self.database.transaction(record)

    async def _send_refund(self, provider_payment_id: str) -> None:
        try:
            await self.gateway.refund_payment(
                provider_payment_id, idempotency_key=service.refund_key(provider_payment_id)
            )
        except MercadoPagoError as exc:
            # Already refunded (say, from MercadoPago's panel)? Then the payment's state says so.
            refunded_already = REFUND_NOT_ALLOWED in exc.cause_codes and (
                (await self.gateway.get_payment(provider_payment_id)).status in service.REVERSING_STATUSES
            )
            if not refunded_already:
                log.error("refund.refused", payment_id=provider_payment_id, status=exc.status, body=exc.body)
                raise PaymentProviderRefused(
                    "MercadoPago refused the refund; it stays due and is tried again by the worker."
                ) from exc

    async def send_due_refunds(self, *, limit: int = SWEEP_BATCH, stop: asyncio.Event | None = None) -> int:
        """The worker's sweep: refunds that could not be sent when they became due (each after
        its own backoff, so refunds MercadoPago keeps refusing never hold up the others)."""
        now = self.clock()

        async def due_ids(session: AsyncSession) -> list[str]:
            return await repository.refunds_due(session, now, limit=limit)

        due = await self.database.read(due_ids)
        sent = 0
        for provider_payment_id in due:
            if stopped(stop):
                break
            try:
                sent += await self.send_refund(provider_payment_id)
            except Exception as exc:
                log.warning("refund.retry_failed", payment_id=provider_payment_id, error=type(exc).__name__)
        return sent

    async def refund_order(self, order_id: int, *, actor: str) -> orders_service.OrderView:
        """An organizer's refund: the refund is due at once, then sent; the order follows."""
        now = self.clock()

        async def request(session: AsyncSession) -> service.RefundRequest:
            return await service.request_refund(session, order_id, actor=actor, now=now)

        requested = await self.database.transaction(request)
        if isinstance(requested, service.NothingToSend):
            return requested.order  # as the transaction left it
        await self.send_refund(requested.provider_payment_id, actor=actor)
        return await self.database.read(
            lambda session: orders_service.get_order(session, order_id, self.clock())
        )

    # -- reconciliation ------------------------------------------------------------------------

    async def reconcile(self, *, limit: int = SWEEP_BATCH, stop: asyncio.Event | None = None) -> int:
        """Ask MercadoPago about unpaid orders due for a look, so a lost webhook never loses a sale.
        (Claimed orders a stop leaves unasked are asked again once their lease runs out.)"""
        now = self.clock()

        async def claim(session: AsyncSession) -> list[int]:
            return await orders_service.claim_orders_to_reconcile(
                session, now, lease_until=now + service.NOTIFICATION_LEASE, limit=limit
            )

        order_ids = await self.database.transaction(claim)
        for order_id in order_ids:
            if stopped(stop):
                break
            try:
                for payment in await self.gateway.search_payments(str(order_id)):
                    if service.order_id_of(payment) == order_id:
                        await self.apply(payment, actor="reconciler")
            except Exception as exc:
                # Asked again when the lease runs out.
                log.warning("reconcile.failed", order_id=order_id, error=type(exc).__name__)
                continue
            await self._reschedule_reconcile(order_id)
        return len(order_ids)

    async def _reschedule_reconcile(self, order_id: int) -> None:
        async def reschedule(session: AsyncSession) -> None:
            order = await orders_service.find_order(session, order_id)
            if order is not None:
                await orders_service.schedule_reconcile(
                    session, order_id, service.next_reconcile_at(order, self.clock())
                )

        await self.database.transaction(reschedule)

    async def make_missing_checkouts(
        self, *, limit: int = SWEEP_BATCH, stop: asyncio.Event | None = None
    ) -> int:
        """The worker's sweep: checkouts that could not be made when their order was placed
        (MercadoPago down or slow), made now. Safe beside the buyer's own retry: the preference's
        idempotency key is the order's, so both get the same checkout."""
        if self.gateway.breaker.state is BreakerState.OPEN:
            return 0  # still down: the next pass asks again, once the breaker lets a call through
        now = self.clock()

        async def missing(session: AsyncSession) -> list[orders_service.OrderView]:
            order_ids = await orders_service.orders_without_checkout(session, now, limit=limit)
            return [await orders_service.get_order(session, order_id, now) for order_id in order_ids]

        made = 0
        for view in await self.database.read(missing):
            if stopped(stop):
                break
            try:
                await self.ensure_checkout(view, order_token=self.signer.order_token(view.order.id))
            except DomainError as exc:
                log.warning("order.checkout_still_deferred", order_id=view.order.id, error=exc.code)
                break  # MercadoPago is still failing: the rest wait for the next pass
            made += 1
        return made

    async def run_pass(self, *, stop: asyncio.Event | None = None) -> dict[str, int]:
        """One worker pass over every payment sweep; once `stop` is set, each ends after the item
        under way (what is left is due again for the next worker)."""
        return {
            "checkouts": await self.make_missing_checkouts(stop=stop),
            "notifications": await self.process_due_notifications(stop=stop),
            "refunds": await self.send_due_refunds(stop=stop),
            "reconciled": await self.reconcile(stop=stop),
        }


PAYMENTS = Component[PaymentProcessor]("payments")


class NotificationPump:
    """Processes this process's stored notifications right after they are answered, one at a time.

    One consumer instead of a task per webhook: a burst of notifications (MercadoPago retries, an
    on-sale) is then answered at the speed of inserting rows, while the slower processing (a read
    from the API, the sale, the tickets) runs behind it and never competes with the answers for
    the event loop and the connection pool. What is still queued when the process stops stays
    pending in the inbox, and the worker's sweep takes it.
    """

    def __init__(
        self,
        processor: PaymentProcessor,
        *,
        capacity: int = 10_000,
        spool_check_seconds: float = SPOOL_CHECK_SECONDS,
    ) -> None:
        self._processor = processor
        self._queue: asyncio.Queue[int] = asyncio.Queue(maxsize=capacity)
        self._spool_check_seconds = spool_check_seconds

    def submit(self, notification_id: int) -> None:
        try:
            self._queue.put_nowait(notification_id)
        except asyncio.QueueFull:
            log.warning("notification.pump_full", notification_id=notification_id)

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop` is set (the notification under way is processed first)."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._process_submitted(stop), name="payment-notifications.process")
            if self._processor.spool is not None:
                group.create_task(self._drain_spool(stop), name="payment-notifications.spool")

    async def _drain_spool(self, stop: asyncio.Event) -> None:
        """Spooled webhooks into the inbox as soon as the database answers again, then processed
        like any other: approved payments of an outage are paid seconds after it ends."""
        spool, breaker = self._processor.spool, self._processor.database.breaker
        assert spool is not None
        while not stop.is_set():
            # While the breaker is open, its own probe is asking the database; draining would only
            # fail again. It closes within a second of the database answering.
            if breaker.state is not BreakerState.OPEN and spool.has_pending():
                try:
                    for notification_id in await self._processor.drain_spool():
                        self.submit(notification_id)
                except Exception as exc:  # what is left stays spooled for the next pass
                    log.warning("notification.spool_drain_failed", error=type(exc).__name__)
            await pause(stop, self._spool_check_seconds)

    async def _process_submitted(self, stop: asyncio.Event) -> None:
        while (notification_id := await self._next_submitted(stop)) is not None:
            try:
                await self._processor.process_notification(notification_id)
            except Exception as exc:  # the worker's sweep takes it again when its lease runs out
                log.warning(
                    "notification.processing_failed",
                    notification_id=notification_id,
                    error=type(exc).__name__,
                )
            finally:
                self._queue.task_done()

    async def _next_submitted(self, stop: asyncio.Event) -> int | None:
        """The next notification to process, or None once `stop` is set."""
        if stop.is_set():
            return None
        if not self._queue.empty():
            return self._queue.get_nowait()
        taken = asyncio.ensure_future(self._queue.get())
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait([taken, stopped], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not taken.done():
                taken.cancel()
        # Taken off the queue as the stop came: it is processed rather than dropped (it would be
        # swept from the inbox later anyway).
        return taken.result() if taken.done() and not taken.cancelled() else None

    async def drained(self) -> None:
        """Until everything submitted so far is processed (tests and benchmarks; never, once the
        pump has stopped with notifications still queued)."""
        await self._queue.join()


def build_payment_processor(
    settings: Settings,
    database: Database,
    clock: Clock,
    *,
    on_paid: OnPaid = _nothing,
    transport: httpx.AsyncBaseTransport | None = None,
) -> PaymentProcessor:
    """The process's MercadoPago client and payment processor, as configured.

    The breaker times its open period on the app's clock when one is injected (tests move it two
    minutes ahead instead of waiting), on the monotonic clock otherwise.
    """
    breaker_clock = time.monotonic if clock is utc_now else (lambda: clock().timestamp())
    gateway = MercadoPagoClient(
        settings.mp_access_token or "",
        base_url=settings.mp_base_url,
        timeout=settings.mp_timeout_seconds,
        breaker_clock=breaker_clock,
        transport=transport,
    )
    options = service.CheckoutOptions(
        public_base_url=settings.effective_public_base_url,
        notification_base_url=(settings.mp_notification_base_url or "").rstrip("/"),
        binary_mode=settings.mp_binary_mode,
        exclude_cash=not settings.mp_allow_cash,
        statement_descriptor=settings.mp_statement_descriptor,
    )
    assert settings.secret_key, "secrets are filled in by load_settings()"
    keyring = TicketKeyring(settings.secret_key)
    return PaymentProcessor(
        database, gateway, clock, options, keyring, TokenSigner(settings.secret_key), on_paid=on_paid
    )


NOTIFICATION_PUMP = Component[NotificationPump]("notification_pump")
