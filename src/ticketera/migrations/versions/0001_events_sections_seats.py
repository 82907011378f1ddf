"""Events, sections and seats (one row per sellable unit).

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from ticketera.kit.db import UTCDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# Binary collation: uniqueness of names and row labels means the same on MariaDB as on SQLite.
MYSQL_TABLE: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
}


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("venue", sa.String(length=200), nullable=True),
        sa.Column("starts_at", UTCDateTime(), nullable=False),
        sa.Column("on_sale_at", UTCDateTime(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("max_tickets_per_user", sa.Integer(), nullable=False),
        sa.Column("queue_enabled", sa.Boolean(), nullable=False),
        sa.Column("queue_admit_per_minute", sa.Integer(), nullable=False),
        sa.Column("queue_max_active_shoppers", sa.Integer(), nullable=False),
        sa.Column("queue_access_minutes", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("max_tickets_per_user > 0", name=op.f("ck_events_max_tickets_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        **MYSQL_TABLE,
    )
    op.create_index("ix_events_status_starts_at", "events", ["status", "starts_at"])

    op.create_table(
        "sections",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("event_id", BigId, nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("price", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("capacity > 0", name=op.f("ck_sections_capacity_positive")),
        sa.CheckConstraint("price >= 0", name=op.f("ck_sections_price_not_negative")),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.id"], name=op.f("fk_sections_event_id_events"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sections")),
        sa.UniqueConstraint("event_id", "name", name=op.f("uq_sections_event_id_name")),
        **MYSQL_TABLE,
    )

    op.create_table(
        "seats",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("event_id", BigId, nullable=False),
        sa.Column("section_id", BigId, nullable=False),
        sa.Column("row_label", sa.String(length=16), nullable=True),
        sa.Column("number", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("hold_id", sa.BigInteger(), nullable=True),
        sa.Column("held_until", UTCDateTime(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint("status IN ('available', 'held', 'sold')", name=op.f("ck_seats_status_known")),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.id"], name=op.f("fk_seats_event_id_events"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["section_id"], ["sections.id"], name=op.f("fk_seats_section_id_sections"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_seats")),
        sa.UniqueConstraint(
            "section_id", "row_label", "number", name=op.f("uq_seats_section_id_row_label_number")
        ),
        **MYSQL_TABLE,
    )
    op.create_index("ix_seats_section_id_status_held_until", "seats", ["section_id", "status", "held_until"])
    op.create_index("ix_seats_event_id_status_held_until", "seats", ["event_id", "status", "held_until"])
    op.create_index("ix_seats_hold_id", "seats", ["hold_id"])


def downgrade() -> None:
    op.drop_table("seats")
    op.drop_table("sections")
    op.drop_table("events")
