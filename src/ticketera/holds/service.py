"""The rules of holds: who may hold what, for how long, and how a hold ends.

A unit belongs to at most one live hold or one order; the conditional writes in `repository`
guarantee it. Services flush but never commit: the caller's transaction decides.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from ticketera.events import repository as events_repository
from ticketera.events.models import Event, EventStatus, SectionKind, seat_label
from ticketera.events.service import EventCancelled, EventNotFound, SectionNotFound
from ticketera.holds import repository
from ticketera.holds.models import Hold, HoldStatus
from ticketera.holds.schemas import HoldRequest
from ticketera.kit.audit import SYSTEM_ACTOR, record_changes
from ticketera.kit.errors import Conflict, InvalidInput, NotFound
from ticketera.kit.money import to_money

log = structlog.get_logger(__name__)

AUDIT_ENTITY = "hold"
EXPIRY_BATCH = 500


class SeatsUnavailable(Conflict):
    code = "seats_unavailable"


class LimitExceeded(Conflict):
    code = "limit_exceeded"


class SalesClosed(Conflict):
    code = "sales_closed"


class HoldNotFound(NotFound):
    code = "hold_not_found"


class HoldAlreadyOrdered(Conflict):
    code = "hold_ordered"


@dataclass(frozen=True)
class HeldUnit:
    id: int
    section_id: int
    section_name: str
    row: str | None
    number: int | None
    price: Decimal

    @property
    def label(self) -> str | None:
        return seat_label(self.row, self.number) if self.row is not None and self.number is not None else None


@dataclass(frozen=True)
class HoldView:
    hold: Hold
    units: list[HeldUnit]
    event_id: int


def new_public_id() -> str:
    return "h_" + secrets.token_urlsafe(18)


def ensure_on_sale(event: Event | None, event_id: int, now: datetime) -> Event:
    """Only a published event whose sale has opened sells anything."""
    if event is None or event.status == EventStatus.DRAFT.value:
        raise EventNotFound(f"Event {event_id} does not exist.")
    if event.status == EventStatus.CANCELLED.value:
        raise EventCancelled(f"Event {event_id} is cancelled.")
    if event.status == EventStatus.PAUSED.value:
        raise SalesClosed("Sales for this event are paused.", reason="paused")
    if event.on_sale_at is not None and now < event.on_sale_at:
        raise SalesClosed(
            "Sales for this event have not opened yet.",
            reason="not_on_sale",
            onSaleAt=event.on_sale_at.isoformat(),
        )
    if now >= event.starts_at:
        raise SalesClosed("This event has already started.", reason="started")
    return event


async def hold_units(
    session: AsyncSession,
    *,
    event_id: int,
    user_id: str,
    request: HoldRequest,
    now: datetime,
    hold_minutes: int,
) -> HoldView:
    event = ensure_on_sale(await events_repository.find_event(session, event_id), event_id, now)
    wanted = len(request.seat_ids) if request.seat_ids is not None else request.quantity or 0
    # Refuse early what is visibly gone, with one read and no lock: in a rush most attempts lose,
    # and a loser should cost one query. What looks free here is decided by the conditional write.
    if request.seat_ids is not None:
        await _refuse_taken_seats(session, event_id, request.seat_ids, now)
    else:
        assert request.section_id is not None
        assert request.quantity is not None
        await _refuse_sold_out(session, event_id, request.section_id, request.quantity, now)
    await repository.lock_shopper(session, event_id, user_id)
    already = await repository.count_buyer_units(session, event_id, user_id, now)
    if already + wanted > event.max_tickets_per_user:
        raise LimitExceeded(
            f"At most {event.max_tickets_per_user} tickets per buyer for this event.",
            limit=event.max_tickets_per_user,
            alreadyHeldOrBought=already,
            requested=wanted,
        )
    until = now + timedelta(minutes=hold_minutes)
    hold = await repository.add_hold(
        session,
        Hold(
            public_id=new_public_id(),
            event_id=event_id,
            user_id=user_id,
            status=HoldStatus.ACTIVE.value,
            quantity=wanted,
            total=Decimal(0),
            currency=event.currency,
            expires_at=until,
        ),
    )
    if request.seat_ids is not None:
        await _take_seats(session, hold, request.seat_ids, now)
    else:
        assert request.section_id is not None
        assert request.quantity is not None
        await _take_places(session, hold, request.section_id, request.quantity, now)
    units = await units_of(session, hold.id)
    hold.total = to_money(sum((unit.price for unit in units), Decimal(0)))
    await record_changes(
        session,
        AUDIT_ENTITY,
        [hold.id],
        actor=f"user:{user_id}",
        at=now,
        from_status=None,
        to_status=HoldStatus.ACTIVE.value,
    )
    await session.flush()
    log.info("hold.created", event_id=event_id, hold_id=hold.id, units=wanted)
    return HoldView(hold, units, event_id)


async def _refuse_taken_seats(
    session: AsyncSession, event_id: int, seat_ids: list[int], now: datetime
) -> None:
    states = await repository.reserved_seat_states(session, event_id=event_id, seat_ids=seat_ids, now=now)
    unknown = sorted(set(seat_ids) - set(states))
    if unknown:
        raise InvalidInput("seatIds", f"not reserved seats of this event: {unknown}")
    taken = sorted(seat_id for seat_id, free in states.items() if not free)
    if taken:
        raise SeatsUnavailable(
            "Some of these seats were taken by someone else.", seats=taken, requested=sorted(seat_ids)
        )


async def _refuse_sold_out(
    session: AsyncSession, event_id: int, section_id: int, quantity: int, now: datetime
) -> None:
    sections = await events_repository.sections_of_event(session, event_id)
    section = next((candidate for candidate in sections if candidate.id == section_id), None)
    if section is None:
        raise SectionNotFound(f"Event {event_id} has no section {section_id}.")
    if section.kind != SectionKind.GENERAL_ADMISSION.value:
        raise InvalidInput("sectionId", "a reserved section is held by seatIds, not by quantity")
    if (
        await repository.count_free_places(session, section_id=section_id, now=now, enough=quantity)
        < quantity
    ):
        raise SeatsUnavailable(
            f"Not enough places left in {section.name}.", section=section_id, requested=quantity
        )


async def _take_seats(session: AsyncSession, hold: Hold, seat_ids: list[int], now: datetime) -> None:
    taken = await repository.take_seats(
        session, hold_id=hold.id, event_id=hold.event_id, seat_ids=seat_ids, now=now, until=hold.expires_at
    )
    if taken == len(seat_ids):
        return
    known = await repository.existing_reserved_seats(session, event_id=hold.event_id, seat_ids=seat_ids)
    unknown = sorted(set(seat_ids) - known)
    if unknown:
        raise InvalidInput("seatIds", f"not reserved seats of this event: {unknown}")
    # Our own partial write is still in this transaction: what is not free besides it is the answer.
    taken_by_us = {unit.id for unit in await units_of(session, hold.id)}
    not_free = await repository.seats_not_free(session, event_id=hold.event_id, seat_ids=seat_ids, now=now)
    unavailable = sorted(set(not_free) - taken_by_us) or sorted(set(seat_ids) - taken_by_us)
    raise SeatsUnavailable(
        "Some of these seats were taken by someone else.", seats=unavailable, requested=sorted(seat_ids)
    )


async def _take_places(
    session: AsyncSession, hold: Hold, section_id: int, quantity: int, now: datetime
) -> None:
    taken = await repository.take_places(
        session, hold_id=hold.id, section_id=section_id, quantity=quantity, now=now, until=hold.expires_at
    )
    if taken < quantity:
        raise SeatsUnavailable(
            "Not enough places left in this section.", section=section_id, requested=quantity
        )


async def units_of(session: AsyncSession, hold_id: int) -> list[HeldUnit]:
    """The units that name this hold (held, sold to its order, or lapsed and not retaken)."""
    return [
        HeldUnit(unit_id, section_id, section_name, row, number, price)
        for unit_id, section_id, section_name, row, number, price in await repository.units_of_hold(
            session, hold_id
        )
    ]


async def get_hold(session: AsyncSession, public_id: str) -> HoldView:
    hold = await repository.find_hold(session, public_id)
    if hold is None:
        raise HoldNotFound("This hold does not exist.")
    return HoldView(hold, await units_of(session, hold.id), hold.event_id)


async def release_hold(session: AsyncSession, public_id: str, *, actor: str, now: datetime) -> None:
    """Give a hold's units back at once. Releasing twice, or an expired hold, is fine."""
    hold = await repository.find_hold(session, public_id, lock=True)
    if hold is None:
        raise HoldNotFound("This hold does not exist.")
    if hold.status == HoldStatus.ORDERED.value:
        raise HoldAlreadyOrdered("This hold became an order; cancel the order instead.")
    if hold.status != HoldStatus.ACTIVE.value:
        return
    freed = await repository.free_units_of_hold(session, hold.id, now)
    await repository.mark_holds(
        session, [hold.id], from_status=HoldStatus.ACTIVE.value, to_status=HoldStatus.RELEASED.value, now=now
    )
    await record_changes(
        session,
        AUDIT_ENTITY,
        [hold.id],
        actor=actor,
        at=now,
        from_status=HoldStatus.ACTIVE.value,
        to_status=HoldStatus.RELEASED.value,
    )
    log.info("hold.released", hold_id=hold.id, units=freed)


async def expire_overdue_holds(session: AsyncSession, now: datetime, *, batch: int = EXPIRY_BATCH) -> int:
    """Record as expired the active holds past their deadline (their units are free already)."""
    overdue = await repository.overdue_hold_ids(session, now, limit=batch)
    if overdue:
        await repository.mark_holds(
            session, overdue, from_status=HoldStatus.ACTIVE.value, to_status=HoldStatus.EXPIRED.value, now=now
        )
        await record_changes(
            session,
            AUDIT_ENTITY,
            overdue,
            actor=SYSTEM_ACTOR,
            at=now,
            from_status=HoldStatus.ACTIVE.value,
            to_status=HoldStatus.EXPIRED.value,
            reason="deadline",
        )
    tidied = await repository.tidy_lapsed_units(session, now, limit=batch * 10)
    if overdue or tidied:
        log.info("holds.expired", holds=len(overdue), units=tidied)
    return len(overdue)
