"""The audit trail: one row per state change of a hold or an order (actor, time, from, to, reason).

Written in the same transaction as the change it records, so the trail never disagrees with the data.

On MariaDB the table is partitioned by month of `at` (`ticketera.kit.partitions`), and its primary key
there is (id, at), as InnoDB requires of a partitioned table. The model keeps `id` alone: it is what
rows are found by, and on SQLite only a lone INTEGER PRIMARY KEY numbers new rows. AUTO_INCREMENT
still hands each id out once, so `id` stays unique on both.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import BigInteger, Index, String, Table, bindparam
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from ticketera.kit.db import (
    MYSQL_TABLE_OPTIONS,
    Base,
    BigId,
    DriverStatementsBySize,
    UTCDateTime,
    execute_on_driver,
)

SYSTEM_ACTOR = "system"


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    entity: Mapped[str] = mapped_column(String(16))
    entity_id: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(160))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    from_status: Mapped[str | None] = mapped_column(String(24))
    to_status: Mapped[str] = mapped_column(String(24))
    reason: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (
        Index("ix_audit_log_entity_entity_id", "entity", "entity_id"),
        MYSQL_TABLE_OPTIONS,
    )


AUDIT_LOG = cast(Table, AuditEntry.__table__)
_AUDIT_COLUMNS = ("entity", "entity_id", "actor", "at", "from_status", "to_status", "reason")
# One multi-row INSERT per number of rows, run on the driver (an order writes three).
_INSERT_AUDIT_ROWS = DriverStatementsBySize(
    lambda size: AUDIT_LOG.insert().values(
        [{name: bindparam(f"{name}_{index}") for name in _AUDIT_COLUMNS} for index in range(size)]
    )
)
# One audit_log row's values, as `audit_row` builds them and `record_rows` writes them.
AuditRow = dict[str, object]


def audit_row(
    entity: str,
    entity_id: int,
    *,
    actor: str,
    at: datetime,
    from_status: str | None,
    to_status: str,
    reason: str | None = None,
) -> AuditRow:
    return {
        "entity": entity,
        "entity_id": entity_id,
        "actor": actor[:160],
        "at": at,
        "from_status": from_status,
        "to_status": to_status,
        "reason": reason,
    }


async def record_rows(session: AsyncSession, rows: list[AuditRow]) -> None:
    """Audit rows of any entities, in one INSERT."""
    if rows:
        params = {f"{name}_{index}": value for index, row in enumerate(rows) for name, value in row.items()}
        await execute_on_driver(session, _INSERT_AUDIT_ROWS.of_size(len(rows)), params)


async def record_changes(
    session: AsyncSession,
    entity: str,
    entity_ids: list[int],
    *,
    actor: str,
    at: datetime,
    from_status: str | None,
    to_status: str,
    reason: str | None = None,
) -> None:
    """Audit rows for entities that all moved between the same two states (one INSERT for all)."""
    if not entity_ids:
        return
    rows = [
        audit_row(
            entity, entity_id, actor=actor, at=at, from_status=from_status, to_status=to_status, reason=reason
        )
        for entity_id in entity_ids
    ]
    await record_rows(session, rows)
