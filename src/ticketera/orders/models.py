"""The orders table."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from ticketera.kit.clock import utc_now
from ticketera.kit.db import MYSQL_TABLE_OPTIONS, Base, BigId, UTCDateTime


class OrderStatus(StrEnum):
    PENDING_PAYMENT = "pending_payment"
    PAID = "paid"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    hold_id: Mapped[int] = mapped_column(ForeignKey("holds.id", ondelete="CASCADE"), unique=True)
    user_id: Mapped[str] = mapped_column(String(128))
    buyer_email: Mapped[str] = mapped_column(String(254))
    buyer_name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(24), default=OrderStatus.PENDING_PAYMENT.value)
    # Why the order is in its status, when that needs saying (e.g. "seats_lost", "admin").
    status_reason: Mapped[str | None] = mapped_column(String(64))
    total: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    currency: Mapped[str] = mapped_column(String(3))
    quantity: Mapped[int] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The client's Idempotency-Key, and a digest of the request it came with.
    # The MercadoPago checkout for this order (created once, reused on replays).
    preference_id: Mapped[str | None] = mapped_column(String(64))
    checkout_url: Mapped[str | None] = mapped_column(String(500))
    # When the reconciler next asks MercadoPago about this unpaid order (None: no longer asks).
    reconcile_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    request_digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now, onupdate=utc_now)

    __table_args__ = (
        # The worker's query: unpaid orders past their deadline.
        Index("ix_orders_status_expires_at", "status", "expires_at"),
        # maxTicketsPerUser counts a buyer's paid orders in the event.
        Index("ix_orders_event_id_user_id_status", "event_id", "user_id", "status"),
        # The reconciler's query: unpaid orders due for a look at MercadoPago.
        Index("ix_orders_reconcile_at", "reconcile_at"),
        MYSQL_TABLE_OPTIONS,
    )
