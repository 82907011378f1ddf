"""Tickets: when the server learned of a check-in, and the indexes of the doors' incremental read.

`checked_in_at` is when the ticket was scanned, which for a scan made offline is the phone's time,
possibly an hour before the batch reaches the server; the doors' "what changed since" read went by
it and so never told the other doors of tickets let in offline. `checkin_recorded_at` is the
server's own time of writing the check-in; the read goes by it, and by `voided_at` (also the
server's), each through an index that starts with the event.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from ticketera.kit.db import UTCDateTime

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Added in place, never by copying the table (a batch operation): a nullable column needs no
    # copy on either engine, and the tickets table is the biggest there is.
    op.add_column("tickets", sa.Column("checkin_recorded_at", UTCDateTime(), nullable=True))
    # Check-ins stored before this revision: the scan time is the best record there is. Doors
    # already hold them from their earlier reads; a door starting now reads everything anyway.
    op.execute("UPDATE tickets SET checkin_recorded_at = checked_in_at WHERE checked_in_at IS NOT NULL")
    op.create_index(
        "ix_tickets_event_id_checkin_recorded_at",
        "tickets",
        ["event_id", "checkin_recorded_at"],
        unique=False,
    )
    op.create_index("ix_tickets_event_id_voided_at", "tickets", ["event_id", "voided_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_tickets_event_id_voided_at", table_name="tickets")
    op.drop_index("ix_tickets_event_id_checkin_recorded_at", table_name="tickets")
    op.drop_column("tickets", "checkin_recorded_at")
