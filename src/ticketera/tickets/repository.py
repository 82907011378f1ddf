"""All SQL of tickets, event keys and the email outbox."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, insert, or_, select, update
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
    session: AsyncSession, *, serial: int, event_id: int, at: datetime, device: str | None
) -> bool:
    """Check a valid ticket in, if nobody has yet: True for exactly one of many simultaneous scans.

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
        .values(checked_in_at=at, checked_in_device=device),
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


async def void_and_checked_in(
    session: AsyncSession, event_id: int, *, since: datetime | None
) -> list[tuple[int, TicketStatus, datetime | None, str | None]]:
    """The event's tickets a door must refuse (void, or already let in): serial, status, when and
    where checked in; with `since`, only those voided or checked in from then on."""
    statement = select(Ticket.serial, Ticket.status, Ticket.checked_in_at, Ticket.checked_in_device).where(
        Ticket.event_id == event_id,
        or_(Ticket.status == TicketStatus.VOID, Ticket.checked_in_at.is_not(None)),
    )
    if since is not None:
        statement = statement.where(or_(Ticket.voided_at >= since, Ticket.checked_in_at >= since))
    rows = (await session.execute(statement.order_by(Ticket.id))).all()
    return [(serial, TicketStatus(status), at, device) for serial, status, at, device in rows]
