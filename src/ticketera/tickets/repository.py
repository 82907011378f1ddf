"""All SQL of tickets, event keys and the email outbox."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import CompoundSelect, Select, and_, case, func, insert, or_, select, union_all, update
from sqlalchemy.ext.asyncio import AsyncSession

from ticketera.kit.db import execute_core, insert_unless_present
from ticketera.tickets.models import EventKey, OutboxEmail, Ticket, TicketStatus


async def find_event_key(session: AsyncSession, event_id: int) -> EventKey | None:
    return (await session.execute(select(EventKey).where(EventKey.event_id == event_id))).scalar_one_or_none()


async def store_event_key_once(session: AsyncSession, values: dict[str, Any]) -> EventKey:
    """Store an event's key unless one is there already; return the one that is stored.

    Two first sales of an event racing each other both end up with the same key: the primary key
    decides, and the loser's freshly made key is simply never used.
    """
    await insert_unless_present(session, EventKey, values, "event_id")
    stored = await find_event_key(session, int(values["event_id"]))
    assert stored is not None
    return stored


async def insert_tickets(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert(Ticket), list(rows))


async def tickets_of_order(session: AsyncSession, order_id: int) -> list[Ticket]:
    statement = select(Ticket).where(Ticket.order_id == order_id).order_by(Ticket.id)
    return list((await session.execute(statement)).scalars())


async def void_order_tickets(session: AsyncSession, order_id: int, now: datetime) -> int:
    result = await session.execute(
        update(Ticket)
        .where(Ticket.order_id == order_id, Ticket.status == TicketStatus.VALID)
        .values(status=TicketStatus.VOID, voided_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def find_by_serial(session: AsyncSession, serial: int) -> Ticket | None:
    return (await session.execute(select(Ticket).where(Ticket.serial == serial))).scalar_one_or_none()


async def mark_checked_in(
    session: AsyncSession,
    *,
    serial: int,
    event_id: int,
    at: datetime,
    device: str | None,
    recorded_at: datetime,
) -> bool:
    """Check a valid ticket in, if nobody has yet: True for exactly one of many simultaneous scans.
    `at` is when it was scanned, `recorded_at` the server's time now (they differ for offline scans).

    One conditional UPDATE: the row lock (InnoDB) or the write lock (SQLite) makes the second scan
    see `checked_in_at` already set and match nothing, with no read-then-write window between them.
    """
    result = await execute_core(
        session,
        update(Ticket)
        .where(
            Ticket.serial == serial,
            Ticket.event_id == event_id,
            Ticket.status == TicketStatus.VALID,
            Ticket.checked_in_at.is_(None),
        )
        .values(checked_in_at=at, checked_in_device=device, checkin_recorded_at=recorded_at),
    )
    return int(result.rowcount) == 1


@dataclass(frozen=True)
class SectionFigures:
    section_id: int
    section_name: str
    sold: int
    checked_in: int


async def checkin_figures(session: AsyncSession, event_id: int) -> list[SectionFigures]:
    valid = Ticket.status == TicketStatus.VALID
    statement = (
        select(
            Ticket.section_id,
            func.min(Ticket.section_name),
            func.count(),
            func.sum(case((and_(Ticket.checked_in_at.is_not(None)), 1), else_=0)),
        )
        .where(Ticket.event_id == event_id, valid)
        .group_by(Ticket.section_id)
        .order_by(Ticket.section_id)
    )
    return [
        SectionFigures(int(section_id), str(name), int(sold), int(checked_in or 0))
        for section_id, name, sold, checked_in in (await session.execute(statement)).all()
    ]


# -- the email outbox ---------------------------------------------------------------------------


async def enqueue_email(session: AsyncSession, values: dict[str, Any]) -> None:
    """Queue an email unless one for the same purpose is queued or sent already."""
    await insert_unless_present(session, OutboxEmail, values, "purpose")


async def find_email(session: AsyncSession, email_id: int) -> OutboxEmail | None:
    return (await session.execute(select(OutboxEmail).where(OutboxEmail.id == email_id))).scalar_one_or_none()


KnownRow = tuple[int, TicketStatus, datetime | None, str | None]


async def void_and_checked_in(
    session: AsyncSession, event_id: int, *, since: datetime | None
) -> list[KnownRow]:
    """The event's tickets a door must refuse (void, or already let in): serial, status, when and
    where checked in; with `since`, only those the server voided or learned were let in from then
    on (by its own clock: a scan made offline long ago but synced now is news to the other doors)."""
    statement = known_statement(event_id) if since is None else known_since_statement(event_id, since)
    rows: dict[int, KnownRow] = {}
    for _id, serial, status, at, device in (await session.execute(statement)).all():
        # A ticket let in and then voided comes from both halves of the read: once is enough.
        rows.setdefault(serial, (serial, TicketStatus(status), at, device))
    return list(rows.values())


_KNOWN_COLUMNS = (Ticket.id, Ticket.serial, Ticket.status, Ticket.checked_in_at, Ticket.checked_in_device)


def known_statement(event_id: int) -> Select[int, int, TicketStatus, datetime | None, str | None]:
    """A door's first read, of the whole event: once per phone and event, so reading every ticket of
    the event (by ix_tickets_event_id_status_section_id) is acceptable."""
    return (
        select(*_KNOWN_COLUMNS)
        .where(
            Ticket.event_id == event_id,
            or_(Ticket.status == TicketStatus.VOID, Ticket.checked_in_at.is_not(None)),
        )
        .order_by(Ticket.id)
    )


def known_since_statement(
    event_id: int, since: datetime
) -> CompoundSelect[int, int, TicketStatus, datetime | None, str | None]:
    """The doors' incremental read: two range reads, each served by its own index
    (ix_tickets_event_id_checkin_recorded_at, ix_tickets_event_id_voided_at), rather than one
    condition with OR that only the event_id prefix of an index could narrow (the whole event).
    A `voided_at` is only ever written with the status void, so the second half needs no status."""
    recorded = select(*_KNOWN_COLUMNS).where(Ticket.event_id == event_id, Ticket.checkin_recorded_at >= since)
    voided = select(*_KNOWN_COLUMNS).where(Ticket.event_id == event_id, Ticket.voided_at >= since)
    return union_all(recorded, voided).order_by(Ticket.id)
