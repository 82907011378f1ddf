"""Tickets, the events' signing keys, and the outbox of emails to buyers."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ticketera.kit.db import MYSQL_TABLE_OPTIONS, Base, BigId, UTCDateTime, enum_column


class TicketStatus(StrEnum):
    VALID = "valid"
    VOID = "void"  # the order was refunded or charged back


class Ticket(Base):
    __tablename__ = "tickets"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # Random, signed into the code: what a scanner looks a ticket up by.
    serial: Mapped[int] = mapped_column(BigInteger, unique=True)
    code: Mapped[str] = mapped_column(String(160))
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    seat_id: Mapped[int] = mapped_column(BigInteger)
    section_id: Mapped[int] = mapped_column(BigInteger)
    section_name: Mapped[str] = mapped_column(String(200))
    seat_label: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[TicketStatus] = mapped_column(enum_column(TicketStatus, 8), default=TicketStatus.VALID)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    checked_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    checked_in_device: Mapped[str | None] = mapped_column(String(64))
    # When the server learned of the check-in (its own clock), which for a scan made offline can be
    # long after `checked_in_at` (the phone's scan time): what the doors' "changed since" reads go
    # by, or a ticket let in offline an hour ago and synced now would never reach the other doors.
    checkin_recorded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("ix_tickets_order_id", "order_id"),
        # The door's figures: an event's tickets by status and section.
        Index("ix_tickets_event_id_status_section_id", "event_id", "status", "section_id"),
        # The doors' incremental read (every half minute per phone): two range reads, one per index,
        # instead of every ticket of the event.
        Index("ix_tickets_event_id_checkin_recorded_at", "event_id", "checkin_recorded_at"),
        Index("ix_tickets_event_id_voided_at", "event_id", "voided_at"),
        MYSQL_TABLE_OPTIONS,
    )


class EventKey(Base):
    __tablename__ = "event_keys"

    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), primary_key=True)
    public_key: Mapped[str] = mapped_column(String(64))
    private_key_encrypted: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (MYSQL_TABLE_OPTIONS,)


class EmailState(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"  # gave up after many attempts; an operator can set it back to pending
    SKIPPED = "skipped"  # nothing left to send: the order was refunded before its email went out


class OutboxEmail(Base):
    """An email to send, written in the transaction that makes it necessary; sent by the worker."""

    __tablename__ = "email_outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # One email per purpose: e.g. "tickets:<order id>"; a replayed payment never queues a second.
    purpose: Mapped[str] = mapped_column(String(64), unique=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    to_address: Mapped[str] = mapped_column(String(254))
    state: Mapped[EmailState] = mapped_column(enum_column(EmailState, 8), default=EmailState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Not before: the retry backoff, and the lease of the worker sending it now.
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("ix_email_outbox_state_next_attempt_at", "state", "next_attempt_at"),
        MYSQL_TABLE_OPTIONS,
    )
