"""The organizer's search by buyer email uses an index: a lowercase copy of the email, indexed.

`lower(buyer_email) = ?` read the whole orders table on each search; neither engine can serve it
from an index both have (MariaDB has no functional indexes, and an indexed generated column could
not be written back by a restore), so the app stores the lowercase email itself (a column default,
see ticketera.orders.models) and this fills it for the orders already there.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Added in place, never by copying the table (a batch operation): SQLite runs with foreign keys
    # on, and dropping the old orders table would cascade into tickets and payments. Not null from
    # the start needs a server default on SQLite; MariaDB drops it after the fill, SQLite keeps an
    # unused '' (the app always writes the column).
    op.add_column(
        "orders",
        sa.Column("buyer_email_lower", sa.String(length=254), nullable=False, server_default=""),
    )
    op.execute("UPDATE orders SET buyer_email_lower = lower(buyer_email)")
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column(
            "orders",
            "buyer_email_lower",
            existing_type=sa.String(length=254),
            existing_nullable=False,
            server_default=None,
        )
    op.create_index("ix_orders_buyer_email_lower", "orders", ["buyer_email_lower"])


def downgrade() -> None:
    op.drop_index("ix_orders_buyer_email_lower", table_name="orders")
    op.drop_column("orders", "buyer_email_lower")
