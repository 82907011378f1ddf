"""Payments, the notification inbox, and the checkout and reconciliation columns of orders.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from ticketera.kit.db import UTCDateTime

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_MYSQL: dict[str, Any] = {
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
    "mysql_engine": "InnoDB",
}


def upgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("preference_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("checkout_url", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("reconcile_at", UTCDateTime(), nullable=True))
        batch_op.create_index("ix_orders_reconcile_at", ["reconcile_at"], unique=False)

    op.create_table(
        "payments",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("provider_payment_id", sa.String(length=32), nullable=False),
        sa.Column("order_id", _ID, nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("status_detail", sa.String(length=64), nullable=True),
        sa.Column("amount", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("refunded_amount", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("payment_type", sa.String(length=32), nullable=True),
        sa.Column("provider_updated_at", UTCDateTime(), nullable=True),
        sa.Column("settlement", sa.String(length=16), nullable=False),
        sa.Column("refund_reason", sa.String(length=32), nullable=True),
        sa.Column("refund_attempts", sa.Integer(), nullable=False),
        sa.Column("refund_next_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_payments_order_id_orders"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
        sa.UniqueConstraint("provider_payment_id", name=op.f("uq_payments_provider_payment_id")),
        **_MYSQL,
    )
    op.create_index("ix_payments_order_id", "payments", ["order_id"], unique=False)
    op.create_index("ix_payments_settlement", "payments", ["settlement"], unique=False)

    op.create_table(
        "payment_notifications",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("dedup_key", sa.String(length=190), nullable=False),
        sa.Column("source", sa.String(length=12), nullable=False),
        sa.Column("topic", sa.String(length=32), nullable=False),
        sa.Column("resource_id", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=48), nullable=True),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("last_error", sa.String(length=300), nullable=True),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("processed_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_notifications")),
        sa.UniqueConstraint("dedup_key", name=op.f("uq_payment_notifications_dedup_key")),
        **_MYSQL,
    )
    op.create_index(
        "ix_payment_notifications_state_next_attempt_at",
        "payment_notifications",
        ["state", "next_attempt_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_table("payment_notifications")
    op.drop_table("payments")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index("ix_orders_reconcile_at")
        batch_op.drop_column("reconcile_at")
        batch_op.drop_column("checkout_url")
        batch_op.drop_column("preference_id")
