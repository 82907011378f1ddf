"""The audit log partitioned by month on MariaDB (see ticketera.kit.partitions for why only it).

On MariaDB/MySQL the primary key widens to (id, at), since InnoDB wants the partitioning column in
every unique key, and the table gets one partition per month from its oldest row's to
PARTITION_MONTHS_AHEAD_AT_MIGRATION months ahead, then the catch-all `pmax`. The ALTER copies the table
once, holding writes to it (and so sales, which write it) for as long as the copy takes: on a large
audit log, migrate in a quiet hour. SQLite, the embedded default, has no partitions: nothing to do.

Revision ID: 0006
Revises: 0005
Create Date: 2027-01-05
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Months created ahead here; `ticketera db partitions` and the worker keep adding them afterwards.
PARTITION_MONTHS_AHEAD_AT_MIGRATION = 3


# What this revision does is fixed once released: the month arithmetic and the PARTITION BY clause
# are copied here from ticketera.kit.partitions as they were, so a later change there (a new naming,
# another catch-all) cannot change what migrating an old database through 0006 creates.
CATCH_ALL = "pmax"


def month_of(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def add_months(month: datetime, count: int) -> datetime:
    index = month.year * 12 + month.month - 1 + count
    return month.replace(year=index // 12, month=index % 12 + 1)


def months_between(first: datetime, last: datetime) -> list[datetime]:
    months, month = [], month_of(first)
    while month <= month_of(last):
        months.append(month)
        month = add_months(month, 1)
    return months


def partition_by(column: str, months: list[datetime]) -> str:
    parts = [
        f"PARTITION p{month:%Y%m} VALUES LESS THAN ('{add_months(month, 1):%Y-%m-%d %H:%M:%S}')"
        for month in months
    ]
    parts.append(f"PARTITION {CATCH_ALL} VALUES LESS THAN (MAXVALUE)")
    return f"PARTITION BY RANGE COLUMNS(`{column}`) (" + ", ".join(parts) + ")"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "mysql":
        return
    now = datetime.now(UTC)
    oldest = bind.execute(sa.text("SELECT MIN(`at`) FROM audit_log")).scalar()
    first = month_of(oldest) if oldest is not None else month_of(now)
    months = months_between(
        min(first, month_of(now)), add_months(month_of(now), PARTITION_MONTHS_AHEAD_AT_MIGRATION)
    )
    op.execute(
        "ALTER TABLE audit_log DROP PRIMARY KEY, ADD PRIMARY KEY (id, `at`) " + partition_by("at", months)
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "mysql":
        return
    op.execute("ALTER TABLE audit_log REMOVE PARTITIONING")
    op.execute("ALTER TABLE audit_log DROP PRIMARY KEY, ADD PRIMARY KEY (id)")
