"""Payments as MercadoPago last reported them, and the inbox of its notifications."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from ticketera.kit.clock import utc_now
from ticketera.kit.db import MYSQL_TABLE_OPTIONS, Base, BigId, UTCDateTime, enum_column


class Settlement(StrEnum):
    """What we did about a payment; set once an effect is applied, so replays do nothing."""

    WAITING = "waiting"  # pending, in process, rejected or cancelled: nothing to do (yet)
    SOLD = "sold"  # this payment paid its order
    REFUND_DUE = "refund_due"  # approved but cannot keep the money: a refund must be sent
    REFUNDED = "refunded"  # we refunded it (seats lost, duplicate, order cancelled, admin)
    # MercadoPago kept refusing the refund: left for an operator (logged as refund.gave_up).
    REFUND_FAILED = "refund_failed"
    REVERSED = "reversed"  # refunded or charged back at MercadoPago: the order was undone


# MercadoPago's statuses that no longer change by themselves (a refund or chargeback is a new event
# on an approved payment); pending, in_process, authorized and in_mediation are still moving.
FINAL_STATUSES = frozenset({"approved", "rejected", "cancelled", "refunded", "charged_back"})


class RefundReason(StrEnum):
    """Why a payment's money goes back (`refund_reason`)."""

    ADMIN = "admin"  # an organizer refunded the order
    SEATS_LOST = "seats_lost"  # paid after expiry, and some unit was sold to someone else
    LIMIT_EXCEEDED = "limit_exceeded"  # paid after expiry, selling would pass maxTicketsPerUser
    DUPLICATE = "duplicate"  # a second payment for an order already paid
    ORDER_CLOSED = "order_closed"  # a payment for a cancelled or refunded order
    AMOUNT_MISMATCH = "amount_mismatch"  # less than the order's total, or another currency


class Payment(Base):
    __tablename__ = "payments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    provider_payment_id: Mapped[str] = mapped_column(String(32), unique=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(24))
    status_detail: Mapped[str | None] = mapped_column(String(64))
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    refunded_amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    currency: Mapped[str | None] = mapped_column(String(3))
    payment_type: Mapped[str | None] = mapped_column(String(32))
    # MercadoPago's date_last_updated of the state stored here: an older read never overwrites it.
    provider_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    settlement: Mapped[Settlement] = mapped_column(enum_column(Settlement, 16), default=Settlement.WAITING)
    # Why a refund was (or must be) sent: seats_lost, duplicate, order_cancelled, admin.
    refund_reason: Mapped[RefundReason | None] = mapped_column(enum_column(RefundReason, 32))
    # Refunds that fail are retried with backoff, so one MercadoPago keeps refusing never holds up
    # the others behind it.
    refund_attempts: Mapped[int] = mapped_column(Integer, default=0)
    refund_next_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now, onupdate=utc_now)

    __table_args__ = (
        Index("ix_payments_order_id", "order_id"),
        # The worker's query: approved payments whose refund has not gone out yet.
        Index("ix_payments_settlement", "settlement"),
        MYSQL_TABLE_OPTIONS,
    )


class NotificationState(StrEnum):
    PENDING = "pending"
    DONE = "done"
    # Gave up after many attempts; kept for an operator (the reconciler still covers the order).
    FAILED = "failed"


class PaymentNotification(Base):
    """The inbox: a verified notification is stored here before we answer 200, then processed."""

    __tablename__ = "payment_notifications"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # One row per notification: the same delivery sent twice (same x-request-id) is stored once.
    dedup_key: Mapped[str] = mapped_column(String(190), unique=True)
    source: Mapped[str] = mapped_column(String(12))  # webhook, ipn, reconcile
    topic: Mapped[str] = mapped_column(String(32))
    resource_id: Mapped[str] = mapped_column(String(64))
    action: Mapped[str | None] = mapped_column(String(48))
    state: Mapped[NotificationState] = mapped_column(
        enum_column(NotificationState, 12), default=NotificationState.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Not before this time: the retry backoff, and the lease of whoever is processing it now.
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String(300))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("ix_payment_notifications_state_next_attempt_at", "state", "next_attempt_at"),
        MYSQL_TABLE_OPTIONS,
    )
