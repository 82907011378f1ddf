"""Shoppers: the holds a buyer began after their first, so that their first is told apart.

The upsert that takes a buyer's lock for a hold now changes an existing row (`purchases + 1`), so
the driver's affected-row count says whether the row was new: a buyer's first hold in an event, with
nothing held or bought to count against maxTicketsPerUser, skips that count (one statement of an
express purchase's ten).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # In place on both engines: a column with a constant default copies no table.
    op.add_column("shoppers", sa.Column("purchases", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    op.drop_column("shoppers", "purchases")
