"""The rules of payments: what an order's checkout says, and what each payment state does to it.

MercadoPago is never trusted from a notification's body: jobs read the payment back and hand it to
`apply_payment`, which decides under the order's row lock. Every decision is idempotent: a payment
remembers what was done about it (`settlement`), and an older read never overwrites a newer one.
Services flush but never commit; `payments.tasks` holds the transaction and network boundaries.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from itertools import groupby
from typing import Any, cast

import structlog
from sqlalchemy import Select, Table
from sqlalchemy.ext.asyncio import AsyncSession

from ticketera.holds import service as holds_service
from ticketera.holds.service import HeldUnit
from ticketera.infra.mercadopago import ProviderPayment
from ticketera.kit.audit import SYSTEM_ACTOR
from ticketera.kit.errors import DomainError
from ticketera.kit.leases import LeasedWork
from ticketera.kit.resilience import backoff_seconds
from ticketera.orders import service as orders_service
from ticketera.orders.models import Order, OrderReason, OrderStatus
from ticketera.payments import repository
from ticketera.payments.models import (
    NotificationState,
    Payment,
    PaymentNotification,
    RefundReason,
    Settlement,
)
from ticketera.tickets import service as tickets_service
from ticketera.tickets.keys import TicketKeyring

log = structlog.get_logger(__name__)

# Payment methods paid in cash at a store days later: excluded by default, so limited inventory is
# never held for days waiting for a coupon that may never be paid.
CASH_PAYMENT_TYPES = ("ticket", "atm")
APPROVED = "approved"
REVERSING_STATUSES = frozenset({"refunded", "charged_back"})
# Refund reasons that undo the order too, and the reason the order then shows (the others leave
# the order as it is).
ORDER_UNDOING_REFUNDS = {
    RefundReason.ADMIN: OrderReason.ADMIN,
    RefundReason.SEATS_LOST: OrderReason.SEATS_LOST,
    RefundReason.LIMIT_EXCEEDED: OrderReason.LIMIT_EXCEEDED,
}
# Notifications are retried with exponential backoff (10 s doubling to an hour) up to this many
# attempts: about a day and a half, longer than any MercadoPago outage we plan for. The reconciler
# covers the orders of the few that still fail.
MAX_NOTIFICATION_ATTEMPTS = 40
# A payment MercadoPago answers 404 for is read this many times (it may lag its own notification).
NOT_FOUND_ATTEMPTS = 5
# A refund MercadoPago refuses or cannot take is retried (30 s doubling to an hour) this many times.
MAX_REFUND_ATTEMPTS = 30
NOTIFICATION_LEASE = timedelta(seconds=60)
# The inbox: processed under a lease, retried 10 s, 20 s, 40 s ... capped at an hour (a flaky API is
# retried soon, an outage not hammered), kept as failed for an operator after MAX_NOTIFICATION_ATTEMPTS.
INBOX = LeasedWork(
    cast(Table, PaymentNotification.__table__),
    pending=NotificationState.PENDING,
    failed=NotificationState.FAILED,
    finished_at="processed_at",
    finished_states=(NotificationState.DONE, NotificationState.FAILED),
    lease=NOTIFICATION_LEASE,
    retry_base_seconds=10,
    max_attempts=MAX_NOTIFICATION_ATTEMPTS,
)
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
    # Where MercadoPago sends webhooks, when not the public address (MP_NOTIFICATION_BASE_URL).
    notification_base_url: str = ""


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
        "notification_url": f"{options.notification_base_url or options.public_base_url}"
        "/api/webhooks/mercadopago?source_news=webhooks",
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


# MercadoPago's payment ids are ASCII digits (str.isdigit() would also take other scripts' digits).
PAYMENT_ID = re.compile(r"[0-9]{1,20}")


class MalformedNotification(DomainError):
    status_code = 400
    code = "malformed_notification"


@dataclass(frozen=True)
class IncomingNotification:
    source: str  # webhook or ipn
    topic: str
    resource_id: str
    action: str | None
    request_id: str | None
    # Copies of one notification that carry no id of their own are one row within this window.
    window: str = ""

    @property
    def dedup_key(self) -> str:
        # A webhook redelivered with the same x-request-id is the same notification.
        marker = self.request_id or "-"
        key = f"{self.source}:{self.topic}:{self.resource_id}:{self.action or '-'}:{marker}"
        return (key + (f":{self.window}" if self.window else ""))[:190]


def legacy_ipn(topic: str, resource_id: str, now: datetime) -> IncomingNotification | None:
    """A legacy IPN call worth storing, or None. It is unsigned, so it only ever makes us read the
    payment back from the API; its copies within a minute are one row, so a flood of them cannot
    flood MercadoPago in turn."""
    if topic != "payment" or not PAYMENT_ID.fullmatch(resource_id):
        return None
    return IncomingNotification("ipn", topic, resource_id, None, None, window=str(int(now.timestamp()) // 60))


def signed_notification(
    data_id: str | None, *, topic: str, action: str | None, request_id: str | None
) -> IncomingNotification | None:
    """A verified webhook worth storing, or None: merchant_order and others are skipped, since the
    payment notifications carry everything we act on, and payment ids are numeric (anything else
    could never be read back)."""
    if not data_id:
        raise MalformedNotification("The notification has no data.id in its query.")
    if topic != "payment" or not PAYMENT_ID.fullmatch(data_id):
        log.info("notification.skipped", topic=topic, resource_id=data_id[:64])
        return None
    return IncomingNotification("webhook", topic, data_id, action, request_id)


async def receive_notification(
    session: AsyncSession, notification: IncomingNotification, now: datetime
) -> int:
    """Store a verified notification in the inbox (once) and return its id; processed later."""
    return await repository.store_notification(
        session,
        {
            "dedup_key": notification.dedup_key,
            "source": notification.source,
            "topic": notification.topic,
            "resource_id": notification.resource_id[:64],
            "action": notification.action[:48] if notification.action else None,
            "state": NotificationState.PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "received_at": now,
        },
    )


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
    order = await orders_service.find_locked_order(session, order_id) if order_id else None
    if order is None:
        if _normal_status(payment.status) == APPROVED:
            # Money taken for an order we do not have (archived with `ticketera db archive`, or a
            # reference that was never ours): an operator must send it back from MercadoPago's panel
            # (or unarchive the event and refund the order). Not refunded here: a refund is sent from
            # a payments row, which needs its order (a foreign key), and a reference that is not ours
            # may be another integration's sale on the same account, not ours to give back.
            log.error(
                "payment.unknown_order",
                payment_id=payment.id,
                order_id=order_id,
                reference=payment.external_reference,
                status=payment.status,
                amount=str(payment.amount),
                currency=payment.currency,
            )
        else:
            log.warning(
                "payment.unknown_order",
                payment_id=payment.id,
                order_id=order_id,
                reference=payment.external_reference,
                status=payment.status,
            )
        return Applied(Effect.NONE, provider_payment_id=payment.id)
    record = await repository.find_payment(session, payment.id)
    if record is None:
        record = Payment(
            provider_payment_id=payment.id,
            order_id=order.id,
            settlement=Settlement.WAITING,
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
            return _refund_due(record, RefundReason.AMOUNT_MISMATCH)
        outcome = await orders_service.sell_order(session, order, actor=actor, now=now)
        if outcome is orders_service.PaymentOutcome.SOLD:
            record.settlement = Settlement.SOLD
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
            orders_service.PaymentOutcome.ALREADY_PAID: RefundReason.DUPLICATE,
            orders_service.PaymentOutcome.SEATS_LOST: RefundReason.SEATS_LOST,
            orders_service.PaymentOutcome.NOT_PAYABLE: RefundReason.ORDER_CLOSED,
            orders_service.PaymentOutcome.LIMIT_EXCEEDED: RefundReason.LIMIT_EXCEEDED,
        }
        return _refund_due(record, reasons[outcome])
    if record.status in REVERSING_STATUSES:
        if settlement is Settlement.SOLD:
            charged_back = record.status == "charged_back"
            reason = OrderReason.CHARGED_BACK if charged_back else OrderReason.REFUNDED_AT_PROVIDER
            if charged_back:
                # Flagged for the organizer: the money was taken back by the buyer's bank.
                log.warning("payment.charged_back", payment_id=record.provider_payment_id, order_id=order.id)
            await orders_service.close_as_refunded(session, order, actor=actor, now=now, reason=reason)
            record.settlement = Settlement.REVERSED
            return Effect.REVERSED
        if settlement is Settlement.REFUND_DUE:
            # Our refund went through even though we never heard its answer.
            await record_refund(session, record, actor=actor, now=now)
        return Effect.NONE
    if record.status == "in_mediation":
        log.warning("payment.in_mediation", payment_id=record.provider_payment_id, order_id=order.id)
    return Effect.NONE


def _refund_due(record: Payment, reason: RefundReason) -> Effect:
    record.settlement = Settlement.REFUND_DUE
    record.refund_reason = reason
    log.warning("payment.refund_due", payment_id=record.provider_payment_id, reason=reason)
    return Effect.REFUND_DUE


async def record_refund(session: AsyncSession, record: Payment, *, actor: str, now: datetime) -> None:
    """A refund we sent has gone through: settle the payment, and the order when it is undone.

    By reason: `admin` undoes a paid order (its units go back on sale); `seats_lost` closes the
    unpaid order whose units were sold to someone else; a duplicate payment, a payment for a
    closed order or a wrong amount leaves the order as it is.
    """
    record.settlement = Settlement.REFUNDED
    record.updated_at = now
    order_reason = ORDER_UNDOING_REFUNDS.get(record.refund_reason) if record.refund_reason else None
    if order_reason is not None:
        order = await orders_service.find_locked_order(session, record.order_id)
        status = OrderStatus(order.status) if order is not None else None
        # Only undo what this payment stood for: an admin refund undoes the sale it paid for; a
        # refused late payment closes the order only while it is still unpaid (another payment
        # may have paid it since, and that sale stands).
        by_admin = record.refund_reason == RefundReason.ADMIN
        undo = (by_admin and status is OrderStatus.PAID) or (
            not by_admin and status in (OrderStatus.PENDING_PAYMENT, OrderStatus.EXPIRED)
        )
        if order is not None and undo:
            await orders_service.close_as_refunded(session, order, actor=actor, now=now, reason=order_reason)
    await session.flush()
    log.info("payment.refunded", payment_id=record.provider_payment_id, reason=record.refund_reason)


@dataclass(frozen=True)
class RefundToSend:
    """The refund is due from now on: send it through MercadoPago (retried until it goes out)."""

    provider_payment_id: str


@dataclass(frozen=True)
class NothingToSend:
    """Already refunded, or paid without a payment on record: the order as it is now."""

    order: orders_service.OrderView


RefundRequest = RefundToSend | NothingToSend


async def request_refund(session: AsyncSession, order_id: int, *, actor: str, now: datetime) -> RefundRequest:
    """An organizer's full refund of a paid order."""
    order = await orders_service.find_locked_order(session, order_id)
    if order is None:
        raise orders_service.OrderNotFound(f"Order {order_id} does not exist.")
    status = OrderStatus(order.status)
    if status is OrderStatus.REFUNDED:
        return NothingToSend(await orders_service.get_order(session, order_id, now))
    if status is not OrderStatus.PAID:
        current = orders_service.effective_status(order, now).value
        raise orders_service.OrderNotRefundable(f"Only a paid order can be refunded; this one is {current}.")
    record = await repository.paying_payment(session, order.id)
    if record is None:
        due = [
            p
            for p in await repository.payments_of_order(session, order.id)
            if p.refund_reason == RefundReason.ADMIN
        ]
        if due and due[0].settlement == Settlement.REFUND_DUE:
            return RefundToSend(due[0].provider_payment_id)
        return NothingToSend(
            await orders_service.mark_refunded(
                session, order.id, actor=actor, now=now, reason=OrderReason.ADMIN
            )
        )
    record.settlement = Settlement.REFUND_DUE
    record.refund_reason = RefundReason.ADMIN
    record.updated_at = now
    await session.flush()
    log.info(
        "payment.refund_requested", payment_id=record.provider_payment_id, order_id=order.id, actor=actor
    )
    return RefundToSend(record.provider_payment_id)


async def payments_of_order(session: AsyncSession, order_id: int) -> list[Payment]:
    """Every payment MercadoPago told us of for this order, with what we did about each (the refund's
    state among them), oldest first."""
    return await repository.payments_of_order(session, order_id)


async def payment_counts_of_event(session: AsyncSession, event_id: int) -> dict[str, int]:
    return await repository.payment_counts_of_event(session, event_id)


# -- the inbox's retention (`ticketera db partitions`, ops.retention) -------------------------------


async def processed_notifications(session: AsyncSession, before: datetime) -> tuple[int, int | None]:
    """How many notifications were processed before `before`, and the newest one's id: the last
    that pruning takes. None processed after it is ever older than `before` (processing stamps
    `processed_at` with its own time), so the set pruning archives and deletes cannot grow."""
    return await repository.newest_processed_before(session, before)


def processed_notification_rows(before: datetime, up_to_id: int) -> Select[Any]:
    """The rows `prune_processed_notifications` deletes, for the archive file written first."""
    return repository.processed_before_rows(before, up_to_id)


async def prune_processed_notifications(
    session: AsyncSession, before: datetime, *, after_id: int, up_to_id: int, limit: int
) -> tuple[int, int] | None:
    """Delete one batch (`limit`) of the notifications processed before `before`, by id from past
    `after_id` up to `up_to_id`; returns the batch's last id (where the next one starts) and how many
    were deleted, or None once none is left. Pending and failed ones are never touched: they are
    work, or an operator's. Never commits: the caller commits each batch on its own, so no lock is
    held for long."""
    return await repository.delete_processed_before(
        session, before, after_id=after_id, up_to_id=up_to_id, limit=limit
    )


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
        record.settlement = Settlement.REFUND_FAILED
        log.error(
            "refund.gave_up",
            payment_id=record.provider_payment_id,
            order_id=record.order_id,
            attempts=record.refund_attempts,
        )
