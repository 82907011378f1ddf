"""The rules of payments: what an order's checkout says, and what each payment state does to it.

MercadoPago is never trusted from a notification's body: jobs read the payment back and hand it to
`apply_payment`, which decides under the order's row lock. Every decision is idempotent: a payment
remembers what was done about it (`settlement`), and an older read never overwrites a newer one.
Services flush but never commit; `payments.tasks` holds the transaction and network boundaries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from itertools import groupby
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from ticketera.holds import service as holds_service
from ticketera.holds.service import HeldUnit
from ticketera.infra.mercadopago import ProviderPayment
from ticketera.kit.audit import SYSTEM_ACTOR
from ticketera.kit.resilience import backoff_seconds
from ticketera.orders import repository as orders_repository
from ticketera.orders import service as orders_service
from ticketera.orders.models import Order, OrderStatus
from ticketera.payments import repository
from ticketera.payments.models import NotificationState, Payment, Settlement
from ticketera.tickets import service as tickets_service
from ticketera.tickets.keys import TicketKeyring

log = structlog.get_logger(__name__)

# Payment methods paid in cash at a store days later: excluded by default, so limited inventory is
# never held for days waiting for a coupon that may never be paid.
CASH_PAYMENT_TYPES = ("ticket", "atm")
APPROVED = "approved"
REVERSING_STATUSES = frozenset({"refunded", "charged_back"})
# Refund reasons that undo the order too (the others leave it as it is).
ORDER_UNDOING_REFUNDS = frozenset({"admin", "seats_lost", "limit_exceeded"})
# Notifications are retried with exponential backoff (10 s doubling to an hour) up to this many
# attempts: about a day and a half, longer than any MercadoPago outage we plan for. The reconciler
# covers the orders of the few that still fail.
MAX_NOTIFICATION_ATTEMPTS = 40
# A payment MercadoPago answers 404 for is read this many times (it may lag its own notification).
NOT_FOUND_ATTEMPTS = 5
# A refund MercadoPago refuses or cannot take is retried (30 s doubling to an hour) this many times.
MAX_REFUND_ATTEMPTS = 30
NOTIFICATION_LEASE = timedelta(seconds=60)
# The reconciler stops asking about an unpaid order this long after its deadline.
RECONCILE_WINDOW = timedelta(days=2)
RECONCILE_MAX_GAP = timedelta(hours=6)
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class CheckoutOptions:
    public_base_url: str
    binary_mode: bool = False
    exclude_cash: bool = True
    statement_descriptor: str | None = None


def refund_key(provider_payment_id: str) -> str:
    """One key per payment for its full refund: every path that refunds it asks once."""
    return f"ticketera-refund-{provider_payment_id}"


def preference_key(order: Order) -> str:
    """The order's checkout, once. Besides the order id, the key carries the digest of the request
    that created the order (it names the random hold id): MercadoPago remembers keys longer than a
    test database, or a rebuilt development one, remembers which order had which id."""
    return f"ticketera-checkout-{order.id}-{order.request_digest[:24]}"


def checkout_preference(
    order: Order, units: Sequence[HeldUnit], *, event_name: str, order_token: str, options: CheckoutOptions
) -> dict[str, Any]:
    """The MercadoPago preference (Checkout Pro) of an order: one item per section and price.

    The buyer comes back to the order's page with the order token, which only lets them read
    their own order: the query MercadoPago appends is never taken as proof of payment.
    """
    order_page = f"{options.public_base_url}/orders/{order.id}?token={order_token}"
    by_section = sorted(units, key=_section_and_price)
    items = [
        {
            "id": f"section-{section_id}",
            "title": f"{event_name} - {group[0].section_name}"[:256],
            "description": ", ".join(unit.label for unit in group if unit.label)[:256] or None,
            "quantity": len(group),
            "unit_price": float(group[0].price),
            "currency_id": order.currency,
        }
        for (section_id, _price), grouped in groupby(by_section, key=_section_and_price)
        if (group := list(grouped))
    ]
    name, _, surname = order.buyer_name.partition(" ")
    body: dict[str, Any] = {
        "items": [{key: value for key, value in item.items() if value is not None} for item in items],
        "payer": {"email": order.buyer_email, "name": name, "surname": surname},
        "back_urls": {
            "success": f"{order_page}&result=success",
            "pending": f"{order_page}&result=pending",
            "failure": f"{order_page}&result=failure",
        },
        "auto_return": APPROVED,
        "notification_url": f"{options.public_base_url}/api/webhooks/mercadopago?source_news=webhooks",
        "external_reference": str(order.id),
        "expires": True,
        # A little before now: a MercadoPago clock slightly behind ours must still find it payable.
        "expiration_date_from": _mp_time(order.created_at - CLOCK_SKEW),
        "expiration_date_to": _mp_time(order.expires_at),
        "date_of_expiration": _mp_time(order.expires_at),
        "binary_mode": options.binary_mode,
        "metadata": {"order_id": order.id, "event_id": order.event_id},
    }
    if options.exclude_cash:
        body["payment_methods"] = {"excluded_payment_types": [{"id": kind} for kind in CASH_PAYMENT_TYPES]}
    if options.statement_descriptor:
        body["statement_descriptor"] = options.statement_descriptor[:22]
    return body


def _section_and_price(unit: HeldUnit) -> tuple[int, Decimal]:
    return unit.section_id, unit.price


def _mp_time(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


# -- notifications ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class IncomingNotification:
    source: str  # webhook or ipn
    topic: str
    resource_id: str
    action: str | None
    request_id: str | None

    @property
    def dedup_key(self) -> str:
        # A webhook redelivered with the same x-request-id is the same notification. IPN calls
        # carry no id of their own: each is stored, and processing them twice is harmless.
        marker = self.request_id or "-"
        return f"{self.source}:{self.topic}:{self.resource_id}:{self.action or '-'}:{marker}"[:190]


async def receive_notification(
    session: AsyncSession, notification: IncomingNotification, now: datetime, *, unique_marker: str = ""
) -> int:
    """Store a verified notification in the inbox (once) and return its id; processed later."""
    key = notification.dedup_key + (f":{unique_marker}" if unique_marker else "")
    return await repository.store_notification(
        session,
        {
            "dedup_key": key[:190],
            "source": notification.source,
            "topic": notification.topic,
            "resource_id": notification.resource_id[:64],
            "action": notification.action[:48] if notification.action else None,
            "state": NotificationState.PENDING.value,
            "attempts": 0,
            "next_attempt_at": now,
            "received_at": now,
        },
    )


def notification_retry_at(attempts: int, now: datetime) -> datetime:
    """10 s, 20 s, 40 s ... capped at an hour: a flaky API is retried soon, an outage not hammered."""
    return now + timedelta(seconds=backoff_seconds(attempts, base=10, cap=3600))


# -- applying a payment's state ----------------------------------------------------------------------


class Effect(StrEnum):
    NONE = "none"  # nothing changed (waiting, repeated, stale, or not ours)
    SOLD = "sold"  # the order is paid now: issue tickets, free the shopper's slot
    REFUND_DUE = "refund_due"  # the money must go back: send the refund after commit
    REVERSED = "reversed"  # refunded or charged back at MercadoPago: the order was undone


@dataclass(frozen=True)
class Applied:
    effect: Effect
    order_id: int | None = None
    event_id: int | None = None
    user_id: str | None = None
    provider_payment_id: str | None = None


def order_id_of(payment: ProviderPayment) -> int | None:
    reference = (payment.external_reference or "").strip()
    return int(reference) if reference.isdigit() and 0 < len(reference) <= 18 else None


async def apply_payment(
    session: AsyncSession,
    payment: ProviderPayment,
    *,
    keyring: TicketKeyring,
    now: datetime,
    actor: str = SYSTEM_ACTOR,
) -> Applied:
    """Bring our records in line with a payment as MercadoPago reports it now.

    The order row is locked first: every payment of one order is applied one after another, so two
    notifications of one approval (or of two payments) can never both sell or both refund.
    """
    order_id = order_id_of(payment)
    order = await orders_repository.find_order(session, order_id, lock=True) if order_id else None
    if order is None:
        log.warning("payment.unknown_order", payment_id=payment.id, reference=payment.external_reference)
        return Applied(Effect.NONE, provider_payment_id=payment.id)
    record = await repository.find_payment(session, payment.id)
    if record is None:
        record = Payment(
            provider_payment_id=payment.id,
            order_id=order.id,
            settlement=Settlement.WAITING.value,
            created_at=now,
        )
        session.add(record)
    elif _is_stale(record, payment):
        log.info("payment.stale_read", payment_id=payment.id, status=payment.status, kept=record.status)
        return Applied(Effect.NONE, order.id, provider_payment_id=payment.id)
    record.status = _normal_status(payment.status)
    record.status_detail = (payment.status_detail or "")[:64] or None
    record.amount = payment.amount
    record.refunded_amount = payment.refunded_amount
    record.currency = (payment.currency or "")[:3] or None
    record.payment_type = (payment.payment_type or "")[:32] or None
    record.provider_updated_at = payment.last_updated
    record.updated_at = now
    effect = await _settle(session, order, record, keyring=keyring, now=now, actor=actor)
    await session.flush()
    return Applied(effect, order.id, order.event_id, order.user_id, payment.id)


async def _settle(
    session: AsyncSession, order: Order, record: Payment, *, keyring: TicketKeyring, now: datetime, actor: str
) -> Effect:
    settlement = Settlement(record.settlement)
    if record.status == APPROVED:
        if settlement is Settlement.REFUND_DUE:
            return Effect.REFUND_DUE  # an earlier refund attempt did not go through: try again
        if settlement is not Settlement.WAITING:
            return Effect.NONE
        if record.amount < order.total or (record.currency and record.currency != order.currency):
            log.error(
                "payment.amount_mismatch",
                payment_id=record.provider_payment_id,
                order_id=order.id,
                paid=str(record.amount),
                due=str(order.total),
            )
            return _refund_due(record, "amount_mismatch")
        outcome = await orders_service.sell_order(session, order, actor=actor, now=now)
        if outcome is orders_service.PaymentOutcome.SOLD:
            record.settlement = Settlement.SOLD.value
            # In the selling transaction: a paid order never lacks its tickets or their email.
            await tickets_service.issue_for_order(
                session,
                keyring,
                order_id=order.id,
                event_id=order.event_id,
                buyer_email=order.buyer_email,
                units=await holds_service.units_of(session, order.hold_id),
                now=now,
            )
            log.info("payment.sold", payment_id=record.provider_payment_id, order_id=order.id)
            return Effect.SOLD
        reasons = {
            orders_service.PaymentOutcome.ALREADY_PAID: "duplicate",
            orders_service.PaymentOutcome.SEATS_LOST: "seats_lost",
            orders_service.PaymentOutcome.NOT_PAYABLE: "order_closed",
            orders_service.PaymentOutcome.LIMIT_EXCEEDED: "limit_exceeded",
        }
        return _refund_due(record, reasons[outcome])
    if record.status in REVERSING_STATUSES:
        if settlement is Settlement.SOLD:
            reason = "charged_back" if record.status == "charged_back" else "refunded_at_provider"
            if reason == "charged_back":
                # Flagged for the organizer: the money was taken back by the buyer's bank.
                log.warning("payment.charged_back", payment_id=record.provider_payment_id, order_id=order.id)
            await orders_service.close_as_refunded(session, order, actor=actor, now=now, reason=reason)
            record.settlement = Settlement.REVERSED.value
            return Effect.REVERSED
        if settlement is Settlement.REFUND_DUE:
            # Our refund went through even though we never heard its answer.
            await record_refund(session, record, actor=actor, now=now)
        return Effect.NONE
    if record.status == "in_mediation":
        log.warning("payment.in_mediation", payment_id=record.provider_payment_id, order_id=order.id)
    return Effect.NONE


def _refund_due(record: Payment, reason: str) -> Effect:
    record.settlement = Settlement.REFUND_DUE.value
    record.refund_reason = reason
    log.warning("payment.refund_due", payment_id=record.provider_payment_id, reason=reason)
    return Effect.REFUND_DUE


async def record_refund(session: AsyncSession, record: Payment, *, actor: str, now: datetime) -> None:
    """A refund we sent has gone through: settle the payment, and the order when it is undone.

    By reason: `admin` undoes a paid order (its units go back on sale); `seats_lost` closes the
    unpaid order whose units were sold to someone else; a duplicate payment, a payment for a
    closed order or a wrong amount leaves the order as it is.
    """
    record.settlement = Settlement.REFUNDED.value
    record.updated_at = now
    if record.refund_reason in ORDER_UNDOING_REFUNDS:
        order = await orders_repository.find_order(session, record.order_id, lock=True)
        status = OrderStatus(order.status) if order is not None else None
        # Only undo what this payment stood for: an admin refund undoes the sale it paid for; a
        # refused late payment closes the order only while it is still unpaid (another payment
        # may have paid it since, and that sale stands).
        undo = (record.refund_reason == "admin" and status is OrderStatus.PAID) or (
            record.refund_reason != "admin" and status in (OrderStatus.PENDING_PAYMENT, OrderStatus.EXPIRED)
        )
        if order is not None and undo:
            await orders_service.close_as_refunded(
                session, order, actor=actor, now=now, reason=record.refund_reason or "refunded"
            )
    await session.flush()
    log.info("payment.refunded", payment_id=record.provider_payment_id, reason=record.refund_reason)


async def request_refund(
    session: AsyncSession, order_id: int, *, actor: str, now: datetime
) -> orders_service.OrderView | str:
    """An organizer's full refund of a paid order. Returns the payment to refund through
    MercadoPago (the refund is due from now on, retried until it goes out), or the order's view
    when there is nothing to send: already refunded, or paid without a payment on record."""
    order = await orders_repository.find_order(session, order_id, lock=True)
    if order is None:
        raise orders_service.OrderNotFound(f"Order {order_id} does not exist.")
    status = OrderStatus(order.status)
    if status is OrderStatus.REFUNDED:
        return await orders_service.get_order(session, order_id, now)
    if status is not OrderStatus.PAID:
        current = orders_service.effective_status(order, now).value
        raise orders_service.OrderNotRefundable(f"Only a paid order can be refunded; this one is {current}.")
    record = await repository.paying_payment(session, order.id)
    if record is None:
        due = [p for p in await repository.payments_of_order(session, order.id) if p.refund_reason == "admin"]
        if due and due[0].settlement == Settlement.REFUND_DUE.value:
            return due[0].provider_payment_id
        return await orders_service.mark_refunded(session, order.id, actor=actor, now=now, reason="admin")
    record.settlement = Settlement.REFUND_DUE.value
    record.refund_reason = "admin"
    record.updated_at = now
    await session.flush()
    log.info(
        "payment.refund_requested", payment_id=record.provider_payment_id, order_id=order.id, actor=actor
    )
    return record.provider_payment_id


def _is_stale(record: Payment, payment: ProviderPayment) -> bool:
    """A read older than what is stored (two processors raced, or the API lagged): ignore it."""
    if record.provider_updated_at is None or payment.last_updated is None:
        return False
    return payment.last_updated < record.provider_updated_at


def _normal_status(status: str) -> str:
    # The Orders API spells it "canceled".
    return "cancelled" if status == "canceled" else status[:24]


# -- reconciliation --------------------------------------------------------------------------------


def next_reconcile_at(order: Order, now: datetime) -> datetime | None:
    """When to ask again about an unpaid order: gaps double with its age, until the window ends."""
    if OrderStatus(order.status) in (OrderStatus.PAID, OrderStatus.REFUNDED):
        return None
    if now > order.expires_at + RECONCILE_WINDOW:
        return None
    age = now - order.created_at
    return now + min(RECONCILE_MAX_GAP, max(orders_service.FIRST_PAYMENT_CHECK, age))


def record_refund_failure(record: Payment, *, now: datetime) -> None:
    """A refund attempt failed: try again later, or leave it to an operator after many tries."""
    record.refund_attempts = (record.refund_attempts or 0) + 1
    record.refund_next_at = now + timedelta(
        seconds=backoff_seconds(record.refund_attempts, base=30, cap=3600)
    )
    if record.refund_attempts >= MAX_REFUND_ATTEMPTS:
        record.settlement = Settlement.REFUND_FAILED.value
        log.error(
            "refund.gave_up",
            payment_id=record.provider_payment_id,
            order_id=record.order_id,
            attempts=record.refund_attempts,
        )
