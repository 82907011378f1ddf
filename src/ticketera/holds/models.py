"""The holds table. Which units a hold has is recorded on the units (`seats.hold_id`)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from ticketera.kit.clock import utc_now
from ticketera.kit.db import MYSQL_TABLE_OPTIONS, Base, BigId, UTCDateTime, enum_column


class HoldStatus(StrEnum):
    ACTIVE = "active"  # holding its units until expires_at
    RELEASED = "released"  # given back by the buyer
    EXPIRED = "expired"  # ran out of time (recorded by the worker; the units were free at expires_at)
    ORDERED = "ordered"  # turned into an order, which now owns the units' deadline


class Hold(Base):
    __tablename__ = "holds"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # What clients see: random, so a hold id cannot be guessed and used by someone else.
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(String(128))
    status: Mapped[HoldStatus] = mapped_column(enum_column(HoldStatus, 16), default=HoldStatus.ACTIVE)
    quantity: Mapped[int] = mapped_column(Integer)
    total: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    currency: Mapped[str] = mapped_column(String(3))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now, onupdate=utc_now)

    __table_args__ = (
        # Hot query: a buyer's live holds in an event (maxTicketsPerUser).
        Index("ix_holds_event_id_user_id_status", "event_id", "user_id", "status"),
        # The worker's query: active holds past their deadline.
        Index("ix_holds_status_expires_at", "status", "expires_at"),
        MYSQL_TABLE_OPTIONS,
    )


class Shopper(Base):
    """One row per (event, buyer): locked while a hold is taken, so one buyer's concurrent holds
    are counted one after another against maxTicketsPerUser.

    Made by the buyer's first hold in the event, in the same transaction, and removed only with the
    event's own rows: a buyer without a row has nothing held or bought here. `purchases` counts the
    holds begun after the first, so the row changes on each: the upsert that locks it tells the
    buyer's first hold (a new row, nothing to count) from the others (MariaDB only: SQLite keeps no
    rows, its writers run one at a time)."""

    __tablename__ = "shoppers"

    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    purchases: Mapped[int] = mapped_column(Integer, server_default="0")

    __table_args__ = (MYSQL_TABLE_OPTIONS,)
