"""The rules of orders: from a hold to a payable order, then paid, expired, cancelled or refunded.

An unpaid order past `expires_at` is expired (and its units free) by query, whatever the worker has
or has not recorded yet. Services flush but never commit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

import orjson
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from ticketera.events import service as events_service
from ticketera.holds import service as holds_service
from ticketera.holds.models import HoldStatus
from ticketera.kit.audit import SYSTEM_ACTOR, audit_row, record_changes, record_rows
from ticketera.kit.clock import Clock
from ticketera.kit.components import Component
from ticketera.kit.db import ConflictingChange, Database
from ticketera.kit.errors import Conflict, DomainError, NotFound
from ticketera.kit.tokens import TokenSigner
from ticketera.orders import repository
from ticketera.orders.models import Order, OrderReason, OrderStatus
from ticketera.orders.schemas import BuyerIn, ExpressPlaces, ExpressSeats, OrderRequest
from ticketera.tickets import service as tickets_service
from ticketera.tickets.documents import PrintedOrder, PrintedTicket
from ticketera.tickets.models import Ticket

log = structlog.get_logger(__name__)

AUDIT_ENTITY = "order"
EXPIRY_BATCH = 500
# The payments reconciler first asks MercadoPago about an unpaid order this long after it was
# created: by then a webhook should have come, so asking earlier would only load their API.
FIRST_PAYMENT_CHECK = timedelta(minutes=3)


class OrderNotFound(NotFound):
    code = "order_not_found"


class IdempotencyMismatch(Conflict):
    code = "idempotency_mismatch"


class OrderNotCancellable(Conflict):
    code = "order_not_cancellable"


class OrderNotRefundable(Conflict):
    code = "order_not_refundable"


class PaymentOutcome(StrEnum):
    SOLD = "sold"  # the order is paid now and its units sold
    ALREADY_PAID = "already_paid"  # nothing to do: a repeated confirmation
    SEATS_LOST = "seats_lost"  # expired and some unit was taken by someone else: refund it
    NOT_PAYABLE = "not_payable"  # cancelled or refunded: refund the payment
    # Paid after expiry while the buyer holds or bought other units since: selling would pass
    # maxTicketsPerUser, so refund instead.
    LIMIT_EXCEEDED = "limit_exceeded"


@dataclass(frozen=True)
class OrderView:
    order: Order
    units: list[holds_service.HeldUnit]
    status: OrderStatus
    replayed: bool = False
    tickets: list[Ticket] = field(default_factory=list)


class Checkout(Protocol):
    """What placing an order needs of the payment provider (the payments domain provides it)."""

    async def ensure_checkout(self, view: OrderView, *, order_token: str) -> str:
        """The order's checkout URL, created once (safe to repeat)."""


CHECKOUT = Component[Checkout]("checkout")


@dataclass(frozen=True)
class PlacedOrder:
    view: OrderView
    # The order's reader token, in the checkout's return URL and the answer alike.
    token: str


@dataclass(frozen=True)
class ExpressPurchase:
    """An express purchase: what to hold (`items`), for whom (the access token's event and user)."""

    event_id: int
    user_id: str
    items: ExpressSeats | ExpressPlaces


async def place_order(
    database: Database,
    checkout: Checkout,
    signer: TokenSigner,
    *,
    key: str,
    request: OrderRequest | ExpressPurchase,
    clock: Clock,
    payment_minutes: int,
) -> PlacedOrder:
    """A buyer's purchase: the order (or the one this Idempotency-Key already made), then its
    checkout at MercadoPago, never inside the transaction. The order is of a hold taken before
    (`OrderRequest`), or, in an express purchase, of a hold taken in the same transaction.

    The order never waits on MercadoPago: when the checkout cannot be made now (MercadoPago slow,
    down, or its breaker open), the order is answered as committed, without `checkoutUrl`, and the
    worker makes the checkout as soon as MercadoPago answers (`PaymentProcessor.make_missing_checkouts`);
    the order page and `GET /api/orders/{id}` show it from then on. No buyer is told 503 for an
    order that exists.
    """
    digest = request_digest(request)

    async def replay(session: AsyncSession) -> OrderView | None:
        return await replay_of(session, key, digest, clock())

    try:
        if isinstance(request, ExpressPurchase):
            view = await _express_order(
                database,
                key=key,
                digest=digest,
                purchase=request,
                clock=clock,
                payment_minutes=payment_minutes,
            )
        else:

            async def create(session: AsyncSession) -> OrderView:
                return await create_order(
                    session, key=key, request=request, now=clock(), payment_minutes=payment_minutes
                )

            view = await database.transaction(create)
    except ConflictingChange:
        # Two requests with one key raced and the other inserted first: answer with its order.
        replayed = await database.transaction(replay)
        if replayed is None:
            raise
        view = replayed
    token = signer.order_token(view.order.id)
    if view.status is OrderStatus.PENDING_PAYMENT and not view.order.checkout_url:
        try:
            await checkout.ensure_checkout(view, order_token=token)
        except DomainError as exc:
            log.warning("order.checkout_deferred", order_id=view.order.id, error=exc.code)
    return PlacedOrder(view, token)


async def _express_order(
    database: Database,
    *,
    key: str,
    digest: str,
    purchase: ExpressPurchase,
    clock: Clock,
    payment_minutes: int,
) -> OrderView:
    """Hold and order in one transaction, in the shape `holds_service.hold_seats` gives a hold (the
    plan read without locks; on SQLite in a read session first, so a loser never queues for the
    writer). The units are held straight away until the order must be paid."""

    async def plan(session: AsyncSession, *, count_places: bool = True) -> holds_service.HoldPlan:
        return await holds_service.plan_hold(
            session, event_id=purchase.event_id, form=purchase.items, now=clock(), count_places=count_places
        )

    async def hold_and_order(session: AsyncSession, planned: holds_service.HoldPlan | None) -> OrderView:
        # No look for an earlier order of this key first: almost no purchase is a retry, and the one
        # that is meets its first order at the key's unique index (`place_order`), or at the buyer's
        # limit or the seats the first took (below), and is answered with it, its own writes rolled
        # back. The look cost every buyer a statement (a tenth of the express purchase's).
        now = clock()
        try:
            held = await holds_service.hold_units(
                session,
                # Planned here (MariaDB), the places are counted by the take's own pick.
                plan=planned or await plan(session, count_places=False),
                user_id=purchase.user_id,
                now=now,
                hold_minutes=payment_minutes,
                look_again=planned is not None,
                becomes_order=True,
            )
        except (holds_service.SeatsUnavailable, holds_service.LimitExceeded):
            # Looked for in this transaction, before it is rolled back: a refusal is only for a
            # purchase that made no order.
            replayed = await _replay_once_the_buyer_is_done(
                session, purchase, key=key, digest=digest, now=now
            )
            if replayed is not None:
                # Out of the session first, as loaded: the rollback would expire what it holds.
                session.expunge_all()
                raise _AnsweredByItsFirstAttempt(replayed) from None
            raise
        hold = holds_service.just_taken(held, purchase.user_id)
        return await _order_hold(
            session,
            hold,
            key=key,
            digest=digest,
            buyer=purchase.items.buyer,
            now=now,
            expires_at=held.expires_at,
            taken=held.units,
        )

    try:
        if database.backend == "sqlite":

            async def replay_or_plan(session: AsyncSession) -> OrderView | holds_service.HoldPlan:
                replayed = await replay_of(session, key, digest, clock())
                return replayed if replayed is not None else await plan(session)

            found = await database.read(replay_or_plan)
            if isinstance(found, OrderView):
                return found
            return await database.transaction(lambda session: hold_and_order(session, found))
        return await database.transaction(lambda session: hold_and_order(session, None))
    except _AnsweredByItsFirstAttempt as answered:
        return answered.view


class _AnsweredByItsFirstAttempt(Exception):
    """A refused express purchase that was a retry: its first attempt's order is the answer, given
    once this attempt's own writes (a shopper row, a hold begun) are rolled back."""

    def __init__(self, view: OrderView) -> None:
        super().__init__("answered by its first attempt's order")
        self.view = view


async def _replay_once_the_buyer_is_done(
    session: AsyncSession, purchase: ExpressPurchase, *, key: str, digest: str, now: datetime
) -> OrderView | None:
    """The order of this key, looked for after the buyer's purchases in flight have ended.

    On MariaDB a retry can come while its first attempt is still in its transaction (the client
    timed out and sent it again): the places that attempt is taking are row-locked, the pick passes
    them by (SKIP LOCKED) and finds the section sold out, and the first's order is not committed
    yet. The first attempt holds the buyer's lock until it ends, so waiting for that lock, then
    looking (READ COMMITTED: the look sees what committed meanwhile), answers the retry with its
    order instead of sold out. A buyer with no purchase in flight (every refusal but a retry's)
    does not wait; it pays two reads in the transaction it was refused in. On SQLite the retry's
    transaction began after the first's ended (writers are serialised): the look alone finds it.
    """
    await holds_service.wait_for_buyers_purchases(
        session, event_id=purchase.event_id, user_id=purchase.user_id
    )
    return await replay_of(session, key, digest, now)


def request_digest(request: OrderRequest | ExpressPurchase) -> str:
    """A fingerprint of what was asked, to tell a retry from a different request under one key (an
    express purchase's includes whose token it came with: its event and user)."""
    if isinstance(request, ExpressPurchase):
        asked = {
            "eventId": request.event_id,
            "userId": request.user_id,
            "items": request.items.model_dump(mode="json"),
        }
    else:
        asked = request.model_dump(mode="json")
    canonical = orjson.dumps(asked, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def effective_status(order: Order, now: datetime) -> OrderStatus:
    status = OrderStatus(order.status)
    if status is OrderStatus.PENDING_PAYMENT and order.expires_at <= now:
        return OrderStatus.EXPIRED
    return status


async def replay_of(session: AsyncSession, key: str, digest: str, now: datetime) -> OrderView | None:
    """The order an earlier request with this Idempotency-Key created, if any (and if it matches)."""
    # Every purchase asks, and almost none is a retry: the question is a one-column lookup, and the
    # order is loaded only when there is one.
    found = await repository.find_id_by_idempotency_key(session, key)
    if found is None:
        return None
    order_id, stored_digest = found
    if stored_digest != digest:
        raise IdempotencyMismatch("This Idempotency-Key was already used with a different request.")
    existing = await repository.find_order(session, order_id)
    if existing is None:  # the lookup just found it, in this transaction
        raise OrderNotFound(f"Order {order_id} does not exist.")
    return await _view(session, existing, now, replayed=True)


async def create_order(
    session: AsyncSession, *, key: str, request: OrderRequest, now: datetime, payment_minutes: int
) -> OrderView:
    """Turn a live hold into an order awaiting payment: six statements, each built once.

    A repeated request finds its hold already ordered and gets the same order back; two requests
    racing with one key meet at the key's unique index (the endpoint then answers the replay).
    """
    digest = request_digest(request)
    hold = await holds_service.lock_for_order(session, request.hold_id)
    if hold.status == HoldStatus.ORDERED:
        replay = await replay_of(session, key, digest, now)
        if replay is not None:
            return replay
        raise holds_service.HoldAlreadyOrdered("This hold already became an order.")
    expires_at = now + timedelta(minutes=payment_minutes)
    await holds_service.keep_for_order(session, hold, now=now, until=expires_at)
    return await _order_hold(
        session, hold, key=key, digest=digest, buyer=request.buyer, now=now, expires_at=expires_at
    )


async def _order_hold(
    session: AsyncSession,
    hold: holds_service.LockedHold,
    *,
    key: str,
    digest: str,
    buyer: BuyerIn,
    now: datetime,
    expires_at: datetime,
    taken: list[holds_service.HeldUnit] | None = None,
) -> OrderView:
    """The order of a live hold whose units are kept until `expires_at`; the hold becomes ordered.

    `taken`: the units of a hold this transaction took with `becomes_order` (an express purchase),
    already written as ordered; its audit rows go in with the order's, and the units just written
    are not read back.
    """
    order = Order(
        event_id=hold.event_id,
        hold_id=hold.id,
        user_id=hold.user_id,
        buyer_email=str(buyer.email),
        buyer_name=buyer.name,
        status=OrderStatus.PENDING_PAYMENT,
        status_reason=None,
        total=hold.total,
        currency=hold.currency,
        quantity=hold.quantity,
        expires_at=expires_at,
        paid_at=None,
        reconcile_at=now + FIRST_PAYMENT_CHECK,
        idempotency_key=key,
        request_digest=digest,
        created_at=now,
        updated_at=now,
    )
    order.id = await repository.insert_order(session, order)
    actor = f"user:{hold.user_id}"
    hold_rows = (
        holds_service.express_audit_rows(hold, order_id=order.id, actor=actor, now=now)
        if taken is not None
        else [await holds_service.mark_ordered(session, hold, order_id=order.id, actor=actor, now=now)]
    )
    order_row = audit_row(
        AUDIT_ENTITY, order.id, actor=actor, at=now, from_status=None, to_status=OrderStatus.PENDING_PAYMENT
    )
    await record_rows(session, [*hold_rows, order_row])
    log.info("order.created", order_id=order.id, event_id=order.event_id, units=order.quantity)
    if taken is not None:
        return OrderView(order, taken, effective_status(order, now))
    return await _view(session, order, now)


async def get_order(session: AsyncSession, order_id: int, now: datetime) -> OrderView:
    order = await repository.find_order(session, order_id)
    if order is None:
        raise OrderNotFound(f"Order {order_id} does not exist.")
    return await _view(session, order, now)


async def orders_of_event(
    session: AsyncSession,
    event_id: int,
    *,
    now: datetime,
    status: OrderStatus | None = None,
    reason: OrderReason | None = None,
    after: int = 0,
    limit: int = 100,
) -> tuple[list[tuple[Order, OrderStatus]], int | None]:
    """A page of an event's orders for its organizer (e.g. the charge-backs to look into), each
    with the status the API shows, and the cursor of the next page (None on the last one)."""
    found = await repository.orders_of_event(
        session, event_id, now=now, status=status, reason=reason, after=after, limit=limit + 1
    )
    page = found[:limit]
    next_after = page[-1].id if len(found) > limit else None
    return [(order, effective_status(order, now)) for order in page], next_after


@dataclass(frozen=True)
class SaleMoment:
    """Paid orders as the sales chart counts them: those of one stretch of time (`paid_at` the last
    payment in it, `first_paid_at` the first), or one order."""

    paid_at: datetime
    tickets: int
    total: Decimal
    first_paid_at: datetime | None = None


# The search answers at most this many orders; a narrower filter finds the rest.
SEARCH_LIMIT = 200


async def search_orders(
    session: AsyncSession,
    *,
    now: datetime,
    email: str | None = None,
    order_id: int | None = None,
    event_id: int | None = None,
    status: OrderStatus | None = None,
    limit: int = SEARCH_LIMIT,
) -> list[tuple[Order, OrderStatus]]:
    """Orders an organizer looks for (by buyer email, id, event, status), newest first, each with
    the status the API shows."""
    found = await repository.search_orders(
        session, now=now, email=email, order_id=order_id, event_id=event_id, status=status, limit=limit
    )
    return [(order, effective_status(order, now)) for order in found]


async def sales_of_event(
    session: AsyncSession, event_id: int, *, since: datetime, until: datetime, buckets: int
) -> list[SaleMoment]:
    """What the sales-over-time chart draws: the event's paid orders summed over `buckets` equal
    stretches from `since` to `until` (sales before `since` in one more, first), oldest first."""
    step = max((until - since).total_seconds(), 1.0) / buckets
    rows = await repository.paid_sales_by_bucket(
        session, event_id, start=since, step_seconds=step, buckets=buckets
    )
    return [
        SaleMoment(paid_at=last, tickets=tickets, total=total, first_paid_at=first)
        for _bucket, first, last, tickets, total in rows
    ]


async def event_order_counts(session: AsyncSession, event_id: int, now: datetime) -> dict[OrderStatus, int]:
    return await repository.event_counts_by_status(session, event_id, now)


async def attendees_of_event(
    session: AsyncSession, event_id: int, *, after: int = 0, limit: int = 500
) -> list[tuple[Ticket, Order]]:
    """A page of the event's valid tickets with their orders (the attendee list), by ticket id."""
    return await repository.attendees_of_event(session, event_id, after=after, limit=limit)


async def cancel_order(
    session: AsyncSession, order_id: int, *, actor: str, now: datetime, reason: OrderReason
) -> OrderView:
    """Cancel an unpaid order (expired ones too) and put its units back on sale at once."""
    order = await _locked_order(session, order_id)
    status = OrderStatus(order.status)
    if status is OrderStatus.CANCELLED:
        return await _view(session, order, now)
    if status not in (OrderStatus.PENDING_PAYMENT, OrderStatus.EXPIRED):
        raise OrderNotCancellable(f"An order that is {status.value} cannot be cancelled; refund it instead.")
    await _close(session, order, OrderStatus.CANCELLED, actor=actor, now=now, reason=reason)
    return await _view(session, order, now)


async def confirm_payment(
    session: AsyncSession, order_id: int, *, actor: str, now: datetime
) -> PaymentOutcome:
    """Turn a paid order's held units into sold ones, atomically; idempotent.

    An order that expired is still sold if every unit is still free (nobody took it since); if any
    was taken, nothing is sold and SEATS_LOST tells the payment side to refund. Never sells twice.
    A late one is also counted again against maxTicketsPerUser, under the buyer's row lock, since
    the buyer may have held or bought other units once this order's had lapsed.
    """
    return await sell_order(session, await _locked_order(session, order_id), actor=actor, now=now)


async def sell_order(session: AsyncSession, order: Order, *, actor: str, now: datetime) -> PaymentOutcome:
    """`confirm_payment` for an order the caller has already locked (FOR UPDATE)."""
    status = OrderStatus(order.status)
    if status is OrderStatus.PAID:
        return PaymentOutcome.ALREADY_PAID
    if status in (OrderStatus.CANCELLED, OrderStatus.REFUNDED):
        return PaymentOutcome.NOT_PAYABLE
    # Stored as pending or expired, what matters is whether the deadline had passed when paid.
    shown = effective_status(order, now)
    if shown is OrderStatus.EXPIRED and await _late_sale_passes_limit(session, order, now):
        log.warning("order.late_payment_over_limit", order_id=order.id, user_id=order.user_id)
        return PaymentOutcome.LIMIT_EXCEEDED
    sold_all = True
    async with session.begin_nested() as savepoint:
        sold = await holds_service.sell_units(session, hold_id=order.hold_id, order_id=order.id, now=now)
        if sold != order.quantity:
            sold_all = False
            await savepoint.rollback()
    if not sold_all:
        log.warning("order.seats_lost", order_id=order.id, expected=order.quantity, still_free=sold)
        return PaymentOutcome.SEATS_LOST
    order.status = OrderStatus.PAID
    order.paid_at = now
    order.reconcile_at = None
    order.status_reason = None if shown is OrderStatus.PENDING_PAYMENT else OrderReason.PAID_AFTER_EXPIRY
    await record_changes(
        session,
        AUDIT_ENTITY,
        [order.id],
        actor=actor,
        at=now,
        from_status=status.value,
        to_status=OrderStatus.PAID,
        reason=order.status_reason,
    )
    await session.flush()
    log.info("order.paid", order_id=order.id, units=order.quantity)
    return PaymentOutcome.SOLD


async def mark_refunded(
    session: AsyncSession, order_id: int, *, actor: str, now: datetime, reason: OrderReason
) -> OrderView:
    """Record that the buyer's money went back: a paid order's units return to sale at once.

    Idempotent. Also closes an unpaid order whose late payment had to be refunded (seats lost).
    """
    order = await _locked_order(session, order_id)
    await close_as_refunded(session, order, actor=actor, now=now, reason=reason)
    return await _view(session, order, now)


async def close_as_refunded(
    session: AsyncSession, order: Order, *, actor: str, now: datetime, reason: OrderReason
) -> None:
    """`mark_refunded` for an order the caller has already locked (FOR UPDATE), without the view."""
    status = OrderStatus(order.status)
    if status is OrderStatus.REFUNDED:
        return
    if status is OrderStatus.CANCELLED:
        raise OrderNotRefundable("A cancelled order was never paid; there is nothing to refund.")
    order.reconcile_at = None
    await _close(session, order, OrderStatus.REFUNDED, actor=actor, now=now, reason=reason)


async def _locked_order(session: AsyncSession, order_id: int) -> Order:
    """The order's row, locked until the transaction ends (404 when there is none)."""
    order = await find_locked_order(session, order_id)
    if order is None:
        raise OrderNotFound(f"Order {order_id} does not exist.")
    return order


async def find_locked_order(session: AsyncSession, order_id: int) -> Order | None:
    """The order's row, locked until the transaction ends: every change to one order (its payments
    applied, a refund, a cancel) happens one after another."""
    return await repository.find_order(session, order_id, lock=True)


async def find_order(session: AsyncSession, order_id: int) -> Order | None:
    return await repository.find_order(session, order_id)


async def record_checkout(
    session: AsyncSession, order_id: int, *, preference_id: str, checkout_url: str
) -> None:
    """The MercadoPago checkout made for this order (made once, reused on replays)."""
    await repository.set_checkout(session, order_id, preference_id=preference_id, checkout_url=checkout_url)


async def claim_orders_to_reconcile(
    session: AsyncSession, now: datetime, *, lease_until: datetime, limit: int
) -> list[int]:
    """Unpaid orders due for a look at MercadoPago, leased until `lease_until` to the caller."""
    return await repository.claim_orders_to_reconcile(session, now, lease_until=lease_until, limit=limit)


async def schedule_reconcile(session: AsyncSession, order_id: int, at: datetime | None) -> None:
    """When the reconciler next asks MercadoPago about this order (None: never again)."""
    await repository.schedule_reconcile(session, order_id, at)


async def orders_without_checkout(session: AsyncSession, now: datetime, *, limit: int) -> list[int]:
    """Unpaid orders still within their deadline whose checkout could not be made when placed."""
    return await repository.orders_without_checkout(session, now, limit=limit)


async def count_by_status(session: AsyncSession, now: datetime) -> dict[OrderStatus, int]:
    """Orders per status as the API shows them (for /metrics)."""
    return await repository.count_by_status(session, now)


async def printable_order(session: AsyncSession, order_id: int, *, zone: tzinfo) -> PrintedOrder | None:
    """The order's tickets as the PDF and the email show them; None when there is no such order."""
    order = await repository.find_order(session, order_id)
    if order is None:
        return None
    event = await events_service.find_event(session, order.event_id)
    tickets = await tickets_service.tickets_of_order(session, order_id)
    return PrintedOrder(
        order_id=order.id,
        event_name=event.name if event is not None else f"Event {order.event_id}",
        starts_at=event.starts_at if event is not None else order.created_at,
        venue=event.venue if event is not None else None,
        buyer_name=order.buyer_name,
        buyer_email=order.buyer_email,
        tickets=[PrintedTicket(t.code, t.section_name, t.seat_label, t.status) for t in tickets],
        zone=zone,
    )


async def _close(
    session: AsyncSession,
    order: Order,
    to_status: OrderStatus,
    *,
    actor: str,
    now: datetime,
    reason: OrderReason,
) -> None:
    """Cancel or refund: the order's units (held or sold) go back on sale at once, with its audit row."""
    from_status = order.status
    freed = await holds_service.release_units(session, hold_id=order.hold_id, order_id=order.id, now=now)
    if to_status is OrderStatus.REFUNDED:
        await tickets_service.void_for_order(session, order.id, now)
    order.status = to_status
    order.status_reason = reason
    await record_changes(
        session,
        AUDIT_ENTITY,
        [order.id],
        actor=actor,
        at=now,
        from_status=from_status,
        to_status=to_status.value,
        reason=reason,
    )
    await session.flush()
    log.info("order.closed", order_id=order.id, status=to_status.value, units=freed, reason=reason)


async def _late_sale_passes_limit(session: AsyncSession, order: Order, now: datetime) -> bool:
    # This order's own units have lapsed, so they are not among the buyer's live or sold ones.
    return await holds_service.would_pass_ticket_limit(
        session, event_id=order.event_id, user_id=order.user_id, quantity=order.quantity, now=now
    )


async def expire_overdue_orders(session: AsyncSession, now: datetime, *, batch: int = EXPIRY_BATCH) -> int:
    """Record as expired the unpaid orders past their deadline (their units are free already)."""
    overdue = await repository.overdue_order_ids(session, now, limit=batch)
    if overdue:
        await repository.mark_orders(
            session,
            overdue,
            from_status=OrderStatus.PENDING_PAYMENT,
            to_status=OrderStatus.EXPIRED,
            now=now,
        )
        await record_changes(
            session,
            AUDIT_ENTITY,
            overdue,
            actor=SYSTEM_ACTOR,
            at=now,
            from_status=OrderStatus.PENDING_PAYMENT,
            to_status=OrderStatus.EXPIRED,
            reason="deadline",
        )
        log.info("orders.expired", orders=len(overdue))
    return len(overdue)


async def _view(session: AsyncSession, order: Order, now: datetime, *, replayed: bool = False) -> OrderView:
    units = await holds_service.units_of(session, order.hold_id)
    status = effective_status(order, now)
    tickets = await tickets_service.tickets_of_order(session, order.id) if _has_tickets(status) else []
    return OrderView(order, units, status, replayed=replayed, tickets=tickets)


def _has_tickets(status: OrderStatus) -> bool:
    return status in (OrderStatus.PAID, OrderStatus.REFUNDED)
