"""Tickets, events' signing keys and the email outbox.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from ticketera.kit.db import UTCDateTime

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_MYSQL: dict[str, Any] = {
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
    "mysql_engine": "InnoDB",
}


def upgrade() -> None:
    op.create_table(
        "tickets",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("serial", sa.BigInteger(), nullable=False),
        sa.Column("code", sa.String(length=160), nullable=False),
        sa.Column("event_id", _ID, nullable=False),
        sa.Column("order_id", _ID, nullable=False),
        sa.Column("seat_id", sa.BigInteger(), nullable=False),
        sa.Column("section_id", sa.BigInteger(), nullable=False),
        sa.Column("section_name", sa.String(length=200), nullable=False),
        sa.Column("seat_label", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("issued_at", UTCDateTime(), nullable=False),
        sa.Column("voided_at", UTCDateTime(), nullable=True),
        sa.Column("checked_in_at", UTCDateTime(), nullable=True),
        sa.Column("checked_in_device", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.id"], name=op.f("fk_tickets_event_id_events"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_tickets_order_id_orders"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tickets")),
        sa.UniqueConstraint("serial", name=op.f("uq_tickets_serial")),
        **_MYSQL,
    )
    op.create_index("ix_tickets_order_id", "tickets", ["order_id"], unique=False)
    op.create_index(
        "ix_tickets_event_id_status_section_id", "tickets", ["event_id", "status", "section_id"], unique=False
    )
    op.create_table(
        "event_keys",
        sa.Column("event_id", _ID, nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("private_key_encrypted", sa.String(length=200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.id"], name=op.f("fk_event_keys_event_id_events"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_event_keys")),
        **_MYSQL,
    )
    op.create_table(
        "email_outbox",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("purpose", sa.String(length=64), nullable=False),
        sa.Column("order_id", _ID, nullable=False),
        sa.Column("to_address", sa.String(length=254), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("last_error", sa.String(length=300), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_email_outbox_order_id_orders"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_outbox")),
        sa.UniqueConstraint("purpose", name=op.f("uq_email_outbox_purpose")),
        **_MYSQL,
    )
    op.create_index(
        "ix_email_outbox_state_next_attempt_at", "email_outbox", ["state", "next_attempt_at"], unique=False
    )


def downgrade() -> None:
    op.drop_table("email_outbox")
    op.drop_table("event_keys")
    op.drop_table("tickets")
