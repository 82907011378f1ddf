"""The orders table."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Numeric, String
from sqlalchemy.engine.default import DefaultExecutionContext
from sqlalchemy.orm import Mapped, mapped_column

from ticketera.kit.clock import utc_now
from ticketera.kit.db import MYSQL_TABLE_OPTIONS, Base, BigId, UTCDateTime, enum_column


class OrderStatus(StrEnum):
    PENDING_PAYMENT = "pending_payment"
    PAID = "paid"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


class OrderReason(StrEnum):
    """Why an order is in its status, when that needs saying (`status_reason`)."""

    ADMIN = "admin"  # an organizer cancelled or refunded it
    PAID_AFTER_EXPIRY = "paid_after_expiry"  # paid late, while every unit was still free
    SEATS_LOST = "seats_lost"  # paid late, some unit was taken meanwhile: refunded
    LIMIT_EXCEEDED = "limit_exceeded"  # paid late, selling would pass maxTicketsPerUser: refunded
    CHARGED_BACK = "charged_back"  # the buyer's bank took the money back
    REFUNDED_AT_PROVIDER = "refunded_at_provider"  # refunded from MercadoPago's panel


def searchable_email(email: str) -> str:
    """A buyer's email as the organizer's search compares it (`buyer_email_lower`)."""
    return email.lower()


def _lowercase_email(context: DefaultExecutionContext) -> str:
    # SQLAlchemy's own method is unannotated.
    return searchable_email(str(context.get_current_parameters()["buyer_email"]))  # type: ignore[no-untyped-call]


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    hold_id: Mapped[int] = mapped_column(ForeignKey("holds.id", ondelete="CASCADE"), unique=True)
    user_id: Mapped[str] = mapped_column(String(128))
    buyer_email: Mapped[str] = mapped_column(String(254))
    # The email as the organizer's search compares it: lowercased once when the row is written (a
    # column default, so every insert gets it: the ORM's, Core's, a restored archive's rows). Searching
    # `lower(buyer_email) = ?` instead reads every order; an equality on this column is one look in
    # its index. Neither engine could index the expression itself: MariaDB has no functional indexes
    # (only indexed generated columns, which a backup could not insert back into), SQLite has them.
    buyer_email_lower: Mapped[str] = mapped_column(String(254), default=_lowercase_email)
    buyer_name: Mapped[str] = mapped_column(String(200))
    status: Mapped[OrderStatus] = mapped_column(
        enum_column(OrderStatus, 24), default=OrderStatus.PENDING_PAYMENT
    )
    # Why the order is in its status, when that needs saying (e.g. "seats_lost", "admin").
    status_reason: Mapped[OrderReason | None] = mapped_column(enum_column(OrderReason, 64))
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
        # The organizer's search by buyer email (see buyer_email_lower).
        Index("ix_orders_buyer_email_lower", "buyer_email_lower"),
        MYSQL_TABLE_OPTIONS,
    )
