"""Tables of the events domain: events, sections and seats.

Inventory is one row per sellable unit in `seats`: a numbered seat of a reserved section, or one
place of a general-admission section (no row, no number). That gives both kinds one rule for
availability, and lets holds and orders (later tables) point at exact units:

- a unit is *sold* when `status = 'sold'`;
- it is *held* when `status = 'held'` and `held_until` is still in the future;
- otherwise it is *available*: an expired hold frees its seats by query, no sweeper needed.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ticketera.kit.clock import utc_now
from ticketera.kit.db import MYSQL_TABLE_OPTIONS, Base, BigId, UTCDateTime, enum_column


class EventStatus(StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"
    PAUSED = "paused"
    CANCELLED = "cancelled"


class SectionKind(StrEnum):
    RESERVED = "reserved"
    GENERAL_ADMISSION = "general_admission"


class SeatStatus(StrEnum):
    AVAILABLE = "available"
    HELD = "held"
    SOLD = "sold"


class Event(Base):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    venue: Mapped[str | None] = mapped_column(String(200))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    on_sale_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[EventStatus] = mapped_column(enum_column(EventStatus, 16), default=EventStatus.PUBLISHED)
    currency: Mapped[str] = mapped_column(String(3), default="ARS")
    max_tickets_per_user: Mapped[int] = mapped_column(Integer, default=10)
    queue_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    queue_admit_per_minute: Mapped[int] = mapped_column(Integer, default=100)
    queue_max_active_shoppers: Mapped[int] = mapped_column(Integer, default=500)
    queue_access_minutes: Mapped[int] = mapped_column(Integer, default=10)
    queue_paused: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now, onupdate=utc_now)

    sections: Mapped[list[Section]] = relationship(
        back_populates="event", order_by="Section.position, Section.id", lazy="raise"
    )

    __table_args__ = (
        Index("ix_events_status_starts_at", "status", "starts_at"),
        CheckConstraint("max_tickets_per_user > 0", name="max_tickets_positive"),
        MYSQL_TABLE_OPTIONS,
    )


class Section(Base):
    __tablename__ = "sections"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(120))
    kind: Mapped[SectionKind] = mapped_column(enum_column(SectionKind, 24))
    price: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    capacity: Mapped[int] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)

    event: Mapped[Event] = relationship(back_populates="sections", lazy="raise")

    __table_args__ = (
        UniqueConstraint("event_id", "name"),
        CheckConstraint("price >= 0", name="price_not_negative"),
        CheckConstraint("capacity > 0", name="capacity_positive"),
        MYSQL_TABLE_OPTIONS,
    )


class Seat(Base):
    __tablename__ = "seats"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    section_id: Mapped[int] = mapped_column(ForeignKey("sections.id", ondelete="CASCADE"))
    row_label: Mapped[str | None] = mapped_column(String(16))
    number: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[SeatStatus] = mapped_column(enum_column(SeatStatus, 16), default=SeatStatus.AVAILABLE)
    # The hold that took this unit last (live while `held_until` is ahead), and the order it was sold to.
    hold_id: Mapped[int | None] = mapped_column(BigInteger)
    held_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    order_id: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("section_id", "row_label", "number"),
        # Hot query: free units of one section (a hold picks from here; availability counts it).
        Index("ix_seats_section_id_status_held_until", "section_id", "status", "held_until"),
        # Hot query: units of an event by status (seat map filters, sold/held reports, expiry).
        Index("ix_seats_event_id_status_held_until", "event_id", "status", "held_until"),
        Index("ix_seats_hold_id", "hold_id"),
        Index("ix_seats_order_id", "order_id"),
        CheckConstraint("status IN ('available', 'held', 'sold')", name="status_known"),
        MYSQL_TABLE_OPTIONS,
    )


def seat_label(row_label: str, number: int) -> str:
    """The printed name of a reserved seat: row and number, like `A-12`."""
    return f"{row_label}-{number}"
