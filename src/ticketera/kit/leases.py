"""Work kept in a table and taken with a lease: the payment inbox, the email outbox, and later queues.

A row is due while its state is pending and `next_attempt_at` has come. Taking it is one
conditional UPDATE (still pending, still due) that counts the attempt and pushes `next_attempt_at`
to the end of the lease: of two processes asking at once exactly one gets it, and if the taker
dies the lease runs out and the row is due again. Finishing records the outcome: a final state, or
pending again after a backoff (30 s, 1 min, 2 min ...) until `max_attempts`, then failed.

Hand-written because the rows are the business's own (a payment notification, a buyer's email):
they live in our database, in the same transactions as the work that queues them, and a task queue
library (arq, Celery, procrastinate) would keep a second copy in its own store.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ticketera.kit.db import UTCDateTime, execute_core
from ticketera.kit.resilience import backoff_seconds

MAX_ERROR_LENGTH = 300


@dataclass(frozen=True)
class Retry:
    """What to do after a failed attempt: try again at `at`, or give up (state failed)."""

    gave_up: bool
    at: datetime


class LeasedWork:
    """The leased rows of one table: its columns `id`, `state`, `attempts`, `next_attempt_at`,
    `last_error`, and a column stamped when the row reaches one of `finished_states`."""

    def __init__(
        self,
        table: Table,
        *,
        pending: StrEnum,
        failed: StrEnum,
        finished_at: str,
        finished_states: Collection[StrEnum],
        lease: timedelta,
        retry_base_seconds: float,
        retry_cap_seconds: float = 3600,
        max_attempts: int,
    ) -> None:
        self.table = table
        self.pending = pending
        self.failed = failed
        self.lease = lease
        self.retry_base_seconds = retry_base_seconds
        self.retry_cap_seconds = retry_cap_seconds
        self.max_attempts = max_attempts
        self._finished_at = finished_at
        self._finished_states = frozenset(state.value for state in finished_states)
        columns = table.c
        now = bindparam("now", type_=UTCDateTime())
        due = (columns.state == pending.value) & (columns.next_attempt_at <= now)
        # Built once: every webhook answered and every email sent runs them.
        self._claim = (
            update(table)
            .where(columns.id == bindparam("job_id"), due)
            .values(
                attempts=columns.attempts + 1,
                next_attempt_at=bindparam("lease_until", type_=UTCDateTime()),
            )
        )
        self._due = select(columns.id).where(due).order_by(columns.next_attempt_at).limit(bindparam("limit"))

    async def due(self, session: AsyncSession, now: datetime, *, limit: int) -> list[int]:
        """Ids of rows due now, the longest waiting first (a sweep's work list; each still has to
        be claimed)."""
        result = await execute_core(session, self._due, {"now": now, "limit": limit})
        return [int(job_id) for job_id in result.scalars()]

    async def claim(self, session: AsyncSession, job_id: int, *, now: datetime) -> bool:
        """Take a due row for the length of the lease; False when it is not due or someone has it."""
        params = {"job_id": job_id, "now": now, "lease_until": now + self.lease}
        return int((await execute_core(session, self._claim, params)).rowcount) == 1

    def after_failure(self, attempts: int, now: datetime, *, give_up: bool = False) -> Retry:
        """The backoff after attempt number `attempts` failed, or giving up past `max_attempts`."""
        at = now + timedelta(
            seconds=backoff_seconds(attempts, base=self.retry_base_seconds, cap=self.retry_cap_seconds)
        )
        return Retry(gave_up=give_up or attempts >= self.max_attempts, at=at)

    async def finish(
        self, session: AsyncSession, job_id: int, *, state: StrEnum, now: datetime, error: str | None = None
    ) -> None:
        """Record a final state (done, sent, skipped...)."""
        await self._set(session, job_id, state=state, now=now, error=error)

    async def record_failure(
        self, session: AsyncSession, job_id: int, retry: Retry, *, now: datetime, error: str
    ) -> None:
        """Record a failed attempt: pending again at the retry time, or failed for good."""
        if retry.gave_up:
            await self._set(session, job_id, state=self.failed, now=now, error=error)
        else:
            await self._set(
                session, job_id, state=self.pending, now=now, error=error, next_attempt_at=retry.at
            )

    async def _set(
        self,
        session: AsyncSession,
        job_id: int,
        *,
        state: StrEnum,
        now: datetime,
        error: str | None,
        next_attempt_at: datetime | None = None,
    ) -> None:
        values: dict[str, Any] = {
            "state": state.value,
            "last_error": error[:MAX_ERROR_LENGTH] if error else None,
        }
        if state == self.pending:
            values["next_attempt_at"] = next_attempt_at or now
        elif state.value in self._finished_states:
            values[self._finished_at] = now
        await execute_core(session, update(self.table).where(self.table.c.id == job_id).values(**values))
