"""Monthly partitions on MariaDB: which tables have them, and keeping them (`ticketera db partitions`).

InnoDB allows a partitioned table only when it takes part in no foreign key, on either side, and when
every unique key, the primary key included, contains the partitioning column. Table by table:

- `audit_log`: partitioned by month of `at`. No foreign key, no unique key but the primary key, which
  becomes (id, at) on MariaDB; only ever appended to, and it grows fastest (a row per state change of
  every hold and order, expired holds included). Old months are archived to a file, then dropped.
- `payment_notifications`: not partitioned. Its unique `dedup_key` is what makes a webhook delivered
  twice one row, stored before we answer 200. With `received_at` added to it, as partitioning
  requires, it would be unique within a month only: a redelivery across a month's end would be stored
  and processed twice. A separate dedupe table would have to keep every key as long as the inbox, so it
  would be the same unbounded table again, and a second write on the path that must answer MercadoPago
  in time. Rows grow with payments (a few per payment), like `orders`; its worker query is served by
  `ix_payment_notifications_state_next_attempt_at`.
- `email_outbox`: not partitioned. It refers to its order (a foreign key), and its unique `purpose`
  ("tickets:<order id>") is the guard that a replayed payment never queues a second email; partitioned,
  both would go. It grows with paid orders, one row each, and leaves with its event's archive.
- check-in scans: there is no table of them; a scan is recorded on its ticket (`checked_in_at`,
  `checked_in_device`), bounded by the tickets sold, and leaves with its event's archive.

`orders` and its neighbours are kept fast by their indexes and small by `ticketera db archive --event N`
instead (README, "Why orders is not partitioned by year").

A partition `pYYYYMM` holds its month: `VALUES LESS THAN` the first instant of the next month, compared
in UTC like every stored time (`UTCDateTime` keeps naive UTC). The first partition has no lower bound,
so it also holds anything older (a backup restored into a fresh database). A last partition `pmax`
(`LESS THAN MAXVALUE`) takes whatever lies past the last month, so an insert never fails when nobody
ran the command. Adding months splits `pmax` (REORGANIZE), which only touches metadata while `pmax`
is empty; hence months are kept ahead. Dropping a partition is metadata only too. Both take the table's
metadata lock for a moment, so they wait at most `LOCK_WAIT_SECONDS` for running transactions (a sale
writes the audit log) and give up rather than queue sales behind them.

SQLite, the embedded default, has no partitions: the command says so and does nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import structlog
from sqlalchemy import Table, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ticketera.kit.audit import AUDIT_LOG
from ticketera.kit.backup import ARCHIVE_FORMAT, write_rows_file

log = structlog.get_logger(__name__)

CATCH_ALL = "pmax"
LOCK_WAIT_SECONDS = 10


@dataclass(frozen=True)
class MonthlyTable:
    """A table partitioned by month of `column`, kept for `retention_months` (the default)."""

    table: Table
    column: str
    retention_months: int

    @property
    def name(self) -> str:
        return str(self.table.name)


# The audit trail is what an organizer or an auditor asks about a disputed sale: kept two years by
# default (AUDIT_LOG_RETENTION_MONTHS), and archived to a file, not lost, when it leaves the database.
AUDIT_LOG_MONTHLY = MonthlyTable(AUDIT_LOG, "at", retention_months=24)
PARTITIONED_TABLES: tuple[MonthlyTable, ...] = (AUDIT_LOG_MONTHLY,)


def month_of(moment: datetime) -> datetime:
    """The first instant of `moment`'s month, in UTC."""
    moment = moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def add_months(month: datetime, count: int) -> datetime:
    index = month.year * 12 + month.month - 1 + count
    return month.replace(year=index // 12, month=index % 12 + 1)


def partition_name(month: datetime) -> str:
    return f"p{month:%Y%m}"


def month_of_partition(name: str) -> datetime | None:
    """The month a `pYYYYMM` partition holds; None for the catch-all or a name this code never made."""
    if len(name) != 7 or not name.startswith("p") or not name[1:].isdigit():
        return None
    return datetime(int(name[1:5]), int(name[5:7]), 1, tzinfo=UTC)


def months_between(first: datetime, last: datetime) -> list[datetime]:
    """Every month from `first`'s to `last`'s, both included."""
    months, month = [], month_of(first)
    while month <= month_of(last):
        months.append(month)
        month = add_months(month, 1)
    return months


def _partition(month: datetime) -> str:
    bound = add_months(month, 1)
    return f"PARTITION {partition_name(month)} VALUES LESS THAN ('{bound:%Y-%m-%d %H:%M:%S}')"


def partition_definitions(months: list[datetime]) -> str:
    """The partitions of `months`, then the catch-all, as the parenthesised list MariaDB takes."""
    parts = [_partition(month) for month in months]
    parts.append(f"PARTITION {CATCH_ALL} VALUES LESS THAN (MAXVALUE)")
    return "(" + ", ".join(parts) + ")"


def partition_by(column: str, months: list[datetime]) -> str:
    """The PARTITION BY clause of a table partitioned by month of `column` (a DATETIME)."""
    return f"PARTITION BY RANGE COLUMNS(`{column}`) {partition_definitions(months)}"


@dataclass
class PartitionPlan:
    add: list[datetime] = field(default_factory=list)
    expire: list[datetime] = field(default_factory=list)


def plan_partitions(
    names: list[str], now: datetime, *, months_ahead: int, retention_months: int
) -> PartitionPlan:
    """What to change so that the months up to `months_ahead` after `now`'s exist, and none ends before
    the `retention_months` kept before `now`'s month (the current month counts as one of them)."""
    named = sorted(month for name in names if (month := month_of_partition(name)) is not None)
    current = month_of(now)
    last_wanted = add_months(current, months_ahead)
    first_new = add_months(named[-1], 1) if named else current
    plan = PartitionPlan(add=months_between(first_new, last_wanted) if first_new <= last_wanted else [])
    oldest_kept = add_months(current, -(retention_months - 1))
    # Months added now count too: a table left alone for longer than its retention gets them back to
    # back, and the old ones leave in the same run.
    plan.expire = [month for month in named + plan.add if month < oldest_kept]
    return plan


async def partition_names(connection: AsyncConnection, table: str) -> list[str]:
    """The table's partitions in order, or [] when it is not partitioned."""
    rows = await connection.execute(
        text(
            "SELECT PARTITION_NAME FROM information_schema.PARTITIONS"
            " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :table AND PARTITION_NAME IS NOT NULL"
            " ORDER BY PARTITION_ORDINAL_POSITION"
        ),
        {"table": table},
    )
    return [str(row[0]) for row in rows]


async def maintain_partitions(
    engine: AsyncEngine,
    monthly: MonthlyTable,
    now: datetime,
    *,
    months_ahead: int,
    retention_months: int | None = None,
    archive_dir: Path | None,
    schema_revision: str | None = None,
    dry_run: bool = False,
    expire: bool = True,
) -> list[str]:
    """Add the months ahead, then archive (to `archive_dir`; None: just drop) and drop the months past
    the retention. Returns one line per thing done (or, with `dry_run`, that would be done); a second
    run right after does nothing."""
    name = monthly.name
    if engine.dialect.name != "mysql":
        return [f"{name}: SQLite keeps no partitions; nothing to do"]
    keep = retention_months or monthly.retention_months
    async with engine.connect() as connection:
        names = await partition_names(connection, name)
    if CATCH_ALL not in names:
        return [f"{name}: not partitioned (run `ticketera migrate`); nothing done"]
    plan = plan_partitions(names, now, months_ahead=months_ahead, retention_months=keep)
    if not expire:
        plan.expire = []
    done: list[str] = []
    verb = "would " if dry_run else ""
    if plan.add:
        added = ", ".join(partition_name(month) for month in plan.add)
        if not dry_run:
            definitions = partition_definitions(plan.add)
            await _ddl(engine, f"ALTER TABLE `{name}` REORGANIZE PARTITION {CATCH_ALL} INTO {definitions}")
            log.info("partitions.added", table=name, partitions=added)
        done.append(f"{name}: {verb}add {added}")
    for month in plan.expire:
        partition = partition_name(month)
        if archive_dir is not None:
            path = archive_dir / f"{name}-{partition}.jsonl.gz"
            if dry_run:
                done.append(f"{name}: would archive {partition} to {path}")
            else:
                # The oldest partition has no lower bound, so "before its end" is exactly its rows.
                column = monthly.table.columns[monthly.column]
                statement = (
                    select(*monthly.table.columns)
                    .where(column < add_months(month, 1))
                    .order_by(*monthly.table.primary_key.columns)
                )
                summary, _ = await write_rows_file(
                    engine,
                    path,
                    [(monthly.table, statement)],
                    file_format=ARCHIVE_FORMAT,
                    schema_revision=schema_revision,
                    scope={"table": name, "partition": partition},
                )
                log.info("partitions.archived", table=name, partition=partition, rows=summary.total_rows)
                done.append(f"{name}: archived {partition} ({summary.total_rows} rows) to {path}")
        if not dry_run:
            await _ddl(engine, f"ALTER TABLE `{name}` DROP PARTITION {partition}")
            log.info("partitions.dropped", table=name, partition=partition)
        done.append(f"{name}: {verb}drop {partition}")
    if not done:
        done.append(f"{name}: up to date ({len(names) - 1} months, {CATCH_ALL})")
    return done


async def _ddl(engine: AsyncEngine, statement: str) -> None:
    async with engine.connect() as connection:
        # Waiting longer for the metadata lock would hold every sale that writes the table behind us.
        await connection.execute(text(f"SET SESSION lock_wait_timeout = {LOCK_WAIT_SECONDS}"))
        await connection.execute(text(statement))
