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

# Orders read and written per statement of the fill: bounded memory, one round trip per batch.
FILL_BATCH = 2000


def upgrade() -> None:
    # Added in place, never by copying the table (a batch operation): SQLite runs with foreign keys
    # on, and dropping the old orders table would cascade into tickets and payments. Not null from
    # the start needs a server default on SQLite; MariaDB drops it after the fill, SQLite keeps an
    # unused '' (the app always writes the column).
    op.add_column(
        "orders",
        sa.Column("buyer_email_lower", sa.String(length=254), nullable=False, server_default=""),
    )
    _fill_lowercase_emails(op.get_bind())
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column(
            "orders",
            "buyer_email_lower",
            existing_type=sa.String(length=254),
            existing_nullable=False,
            server_default=None,
        )
    op.create_index("ix_orders_buyer_email_lower", "orders", ["buyer_email_lower"])


def _fill_lowercase_emails(bind: sa.engine.Connection) -> None:
    """buyer_email_lower = Python's str.lower() of buyer_email, as the app writes new orders and the
    search lowercases what it looks for; SQL's lower() would not do: SQLite's folds ASCII only, so
    `Ñ` would stay and `ÑANDU@...` would never be found. Read by id in batches (keyset, so each read
    is an index range), and only rows whose copy differs are written: running it again, or after a
    fill cut short, writes nothing already right."""
    orders = sa.table(
        "orders", sa.column("id", sa.BigInteger), sa.column("buyer_email"), sa.column("buyer_email_lower")
    )
    update = (
        orders.update()
        .where(orders.c.id == sa.bindparam("order_id"))
        .values(buyer_email_lower=sa.bindparam("lowered"))
    )
    after = 0
    while True:
        rows = bind.execute(
            sa.select(orders.c.id, orders.c.buyer_email, orders.c.buyer_email_lower)
            .where(orders.c.id > after)
            .order_by(orders.c.id)
            .limit(FILL_BATCH)
        ).all()
        if not rows:
            return
        changes = [
            {"order_id": row.id, "lowered": row.buyer_email.lower()}
            for row in rows
            if row.buyer_email_lower != row.buyer_email.lower()
        ]
        if changes:
            bind.execute(update, changes)
        after = rows[-1].id


def downgrade() -> None:
    op.drop_index("ix_orders_buyer_email_lower", table_name="orders")
    op.drop_column("orders", "buyer_email_lower")
