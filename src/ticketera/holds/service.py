"""The rules of holds: who may hold what, for how long, and how a hold ends.

A unit belongs to at most one live hold or one order; the conditional writes in `repository`
guarantee it. Services flush but never commit: the caller's transaction decides.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from ticketera.events.models import EventStatus, SectionKind
from ticketera.events.service import EventCancelled, EventNotFound, SectionNotFound
from ticketera.holds import repository
from ticketera.holds.models import Hold, HoldStatus
from ticketera.holds.repository import HeldUnit as HeldUnit  # what other domains know a unit as
from ticketera.holds.schemas import HoldRequest, QuantityHold, SeatHold
from ticketera.kit.audit import SYSTEM_ACTOR, AuditRow, audit_row, record_changes, record_rows
from ticketera.kit.clock import Clock
from ticketera.kit.db import Database
from ticketera.kit.errors import Conflict, DomainError, Forbidden, InvalidInput, NotFound
from ticketera.kit.money import to_money
from ticketera.kit.tokens import InvalidToken, TokenClaims, TokenSigner

log = structlog.get_logger(__name__)

AUDIT_ENTITY = "hold"
EXPIRY_BATCH = 500


class AccessRequired(Forbidden):
    code = "access_required"


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


class HoldExpired(Conflict):
    code = "hold_expired"


@dataclass(frozen=True)
class HoldView:
    id: int
    public_id: str
    event_id: int
    status: str
    expires_at: datetime
    quantity: int
    total: Decimal
    currency: str
    units: list[HeldUnit]

    @classmethod
    def of(cls, hold: Hold, units: list[HeldUnit]) -> HoldView:
        return cls(
            hold.id,
            hold.public_id,
            hold.event_id,
            hold.status,
            hold.expires_at,
            hold.quantity,
            hold.total,
            hold.currency,
            units,
        )


def new_public_id() -> str:
    return "h_" + secrets.token_urlsafe(18)


def ensure_on_sale(sale: repository.Sale | None, event_id: int, now: datetime) -> repository.Sale:
    """Only a published event whose sale has opened sells anything."""
    if sale is None or sale.status == EventStatus.DRAFT:
        raise EventNotFound(f"Event {event_id} does not exist.")
    if sale.status == EventStatus.CANCELLED:
        raise EventCancelled(f"Event {event_id} is cancelled.")
    if sale.status == EventStatus.PAUSED:
        raise SalesClosed("Sales for this event are paused.", reason="paused")
    if sale.on_sale_at is not None and now < sale.on_sale_at:
        raise SalesClosed(
            "Sales for this event have not opened yet.",
            reason="not_on_sale",
            onSaleAt=sale.on_sale_at.isoformat(),
        )
    if now >= sale.starts_at:
        raise SalesClosed("This event has already started.", reason="started")
    return sale


# Every refusal a hold can meet, in whichever request it is taken (a hold, an express purchase).
HOLD_REFUSALS: tuple[type[DomainError], ...] = (
    AccessRequired,
    EventNotFound,
    SectionNotFound,
    EventCancelled,
    SalesClosed,
    SeatsUnavailable,
    LimitExceeded,
)


def admitted_shopper(
    signer: TokenSigner, access_token: str | None, event_id: int | None, now: datetime
) -> TokenClaims:
    """Who may hold seats: the user a live access token from the waiting room names, for its event
    (`event_id`, or whichever it names); anyone else is refused."""
    try:
        return signer.verify_access_token(access_token, event_id, now=now)
    except InvalidToken as exc:
        raise AccessRequired(
            "Holding seats needs the X-Access-Token the waiting room gives when your turn comes.",
            reason=exc.message,
        ) from exc


@dataclass(frozen=True)
class HoldPlan:
    """What a buyer asked for, checked against what looked free a moment ago."""

    sale: repository.Sale
    wanted: list[HeldUnit]
    by_seat: bool


async def hold_seats(
    database: Database, *, event_id: int, request: HoldRequest, user_id: str, clock: Clock, hold_minutes: int
) -> HoldView:
    """A buyer's hold, in the transaction shape the backend needs (each run again from scratch if
    InnoDB gives up on it: a deadlock victim or a lock-wait timeout). A loser costs two reads and
    no lock either way."""

    async def plan(session: AsyncSession, *, count_places: bool = True) -> HoldPlan:
        return await plan_hold(
            session, event_id=event_id, form=request.root, now=clock(), count_places=count_places
        )

    async def take(session: AsyncSession, planned: HoldPlan, *, look_again: bool) -> HoldView:
        return await hold_units(
            session,
            plan=planned,
            user_id=user_id,
            now=clock(),
            hold_minutes=hold_minutes,
            look_again=look_again,
        )

    async def plan_and_take(session: AsyncSession) -> HoldView:
        return await take(session, await plan(session, count_places=False), look_again=False)

    if database.backend == "sqlite":
        # One writer at a time: losers are refused from a read session and never queue behind it.
        planned = await database.read(plan)
        return await database.transaction(partial(take, planned=planned, look_again=True))
    # InnoDB reads without locks inside a write transaction too: planning there saves a second
    # transaction (a connection check-out and its round trips) per hold.
    return await database.transaction(plan_and_take)


async def plan_hold(
    session: AsyncSession,
    *,
    event_id: int,
    form: SeatHold | QuantityHold,
    now: datetime,
    count_places: bool = True,
) -> HoldPlan:
    """Refuse what is visibly gone, with two reads and no lock (in a read session on SQLite, at the
    start of the write transaction on MariaDB, whose reads take no locks either).

    In a rush most attempts lose: a loser should cost two queries and never wait for a writer.
    What looks free here is decided afterwards by `hold_units`' conditional write.

    Without `count_places`, general-admission places are not counted here: for a caller that takes
    them next in the same transaction (MariaDB), whose pick of free places (`hold_units`) is the
    count, and comes before any lock, so a loser still costs two reads.
    """
    sale = ensure_on_sale(await repository.find_sale(session, event_id), event_id, now)
    if isinstance(form, SeatHold):
        return HoldPlan(sale, await _free_seats_or_refuse(session, sale, form.seat_ids, now), by_seat=True)
    wanted = await _free_places_or_refuse(
        session, sale, form.section_id, form.quantity, now, count=count_places
    )
    return HoldPlan(sale, wanted, by_seat=False)


async def would_pass_ticket_limit(
    session: AsyncSession, *, event_id: int, user_id: str, quantity: int, now: datetime
) -> bool:
    """Whether `quantity` more units would take the buyer past maxTicketsPerUser, counted under the
    buyer's row lock (held until the transaction ends, as when a hold is taken)."""
    sale = await repository.find_sale(session, event_id)
    if sale is None:
        return False
    await repository.lock_shopper(session, event_id, user_id, now)
    already = await repository.count_buyer_units(session, event_id, user_id, now)
    return already + quantity > sale.max_tickets_per_user


async def wait_for_buyers_purchases(session: AsyncSession, *, event_id: int, user_id: str) -> None:
    """Wait for any purchase of this buyer's in this event still in its transaction to end (held
    under the buyer's lock, `repository.lock_shopper`, until it commits or rolls back)."""
    await repository.wait_for_shopper(session, event_id, user_id)


async def hold_units(
    session: AsyncSession,
    *,
    plan: HoldPlan,
    user_id: str,
    now: datetime,
    hold_minutes: int,
    look_again: bool = True,
    becomes_order: bool = False,
) -> HoldView:
    """Take the planned units for a buyer: 6 statements, each built once (see `repository`), under
    the buyer's own lock for the ticket limit; 5 for an express purchase's (`becomes_order`); one
    fewer for the buyer's first hold in the event on MariaDB (nothing to count against the limit).

    General-admission places are picked first, before the buyer's lock: the pick (FOR UPDATE SKIP
    LOCKED on MariaDB) is the last look, so a buyer who arrives after the sell-out leaves after it
    without taking a lock or writing anything. Reserved seats are looked at once more with
    `look_again`, when the plan was made in an earlier transaction: it may be a few milliseconds
    old, and in a rush the writers ahead of us took most of what it saw free.

    `becomes_order`: the hold is an express purchase's, ordered in this same transaction. It is
    written as ordered at once (nobody can see it before the commit), and its audit rows are left
    for the order to write with its own in one INSERT (`express_audit_rows`).
    """
    sale, wanted = plan.sale, plan.wanted
    event_id = sale.event_id
    picked: list[int] = []
    if plan.by_seat and look_again:
        await _free_seats_or_refuse(session, sale, [unit.id for unit in wanted], now)
    elif not plan.by_seat:
        picked = await _pick_places_or_refuse(session, wanted, now)
    quantity = len(wanted)
    first_hold = await repository.lock_shopper(session, event_id, user_id, now)
    # A buyer's first hold in the event has nothing held or bought to count (see `Shopper`).
    already = 0 if first_hold else await repository.count_buyer_units(session, event_id, user_id, now)
    if already + quantity > sale.max_tickets_per_user:
        raise LimitExceeded(
            f"At most {sale.max_tickets_per_user} tickets per buyer for this event.",
            limit=sale.max_tickets_per_user,
            alreadyHeldOrBought=already,
            requested=quantity,
        )
    public_id = new_public_id()
    until = now + timedelta(minutes=hold_minutes)
    total = to_money(sum((unit.price for unit in wanted), Decimal(0)))
    status = HoldStatus.ORDERED if becomes_order else HoldStatus.ACTIVE
    hold_id = await repository.insert_hold(
        session,
        {
            "public_id": public_id,
            "event_id": event_id,
            "user_id": user_id,
            "status": status,
            "quantity": quantity,
            "total": total,
            "currency": sale.currency,
            "expires_at": until,
            "created_at": now,
            "updated_at": now,
        },
    )
    if plan.by_seat:
        await _take_seats(session, hold_id, event_id, [unit.id for unit in wanted], now, until)
        units = wanted
    else:
        units = await _take_places(session, hold_id, wanted, picked, now, until)
    if not becomes_order:
        await record_rows(session, [_created_audit_row(hold_id, user_id, now)])
    log.info("hold.created", event_id=event_id, hold_id=hold_id, units=quantity)
    return HoldView(hold_id, public_id, event_id, status, until, quantity, total, sale.currency, units)


def _created_audit_row(hold_id: int, user_id: str, now: datetime) -> AuditRow:
    return audit_row(
        AUDIT_ENTITY, hold_id, actor=f"user:{user_id}", at=now, from_status=None, to_status=HoldStatus.ACTIVE
    )


async def _free_seats_or_refuse(
    session: AsyncSession, sale: repository.Sale, seat_ids: list[int], now: datetime
) -> list[HeldUnit]:
    states = await repository.reserved_seat_states(
        session, event_id=sale.event_id, seat_ids=seat_ids, now=now
    )
    unknown = sorted(set(seat_ids) - set(states))
    if unknown:
        raise InvalidInput("seatIds", f"not reserved seats of this event: {unknown}")
    taken = sorted(seat.id for seat in states.values() if not seat.free)
    if taken:
        raise SeatsUnavailable(
            "Some of these seats were taken by someone else.", seats=taken, requested=sorted(seat_ids)
        )
    return [
        HeldUnit(
            seat.id,
            seat.section_id,
            sale.sections[seat.section_id].name,
            seat.row,
            seat.number,
            sale.sections[seat.section_id].price,
        )
        for seat in sorted(states.values(), key=lambda seat: seat.id)
    ]


async def _free_places_or_refuse(
    session: AsyncSession,
    sale: repository.Sale,
    section_id: int,
    quantity: int,
    now: datetime,
    *,
    count: bool = True,
) -> list[HeldUnit]:
    """Placeholders for `quantity` places of the section (which ones is decided when taking them);
    counted first unless not `count` (see `plan_hold`)."""
    section = sale.sections.get(section_id)
    if section is None:
        raise SectionNotFound(f"Event {sale.event_id} has no section {section_id}.")
    if section.kind != SectionKind.GENERAL_ADMISSION:
        raise InvalidInput("sectionId", "a reserved section is held by seatIds, not by quantity")
    if (
        count
        and await repository.count_free_places(session, section_id=section_id, now=now, enough=quantity)
        < quantity
    ):
        raise _not_enough_places(section_id, quantity)
    return [HeldUnit(0, section.id, section.name, None, None, section.price) for _ in range(quantity)]


def _not_enough_places(section_id: int, quantity: int) -> SeatsUnavailable:
    return SeatsUnavailable("Not enough places left in this section.", section=section_id, requested=quantity)


async def _pick_places_or_refuse(session: AsyncSession, wanted: list[HeldUnit], now: datetime) -> list[int]:
    section_id = wanted[0].section_id
    picked = await repository.pick_places(session, section_id=section_id, quantity=len(wanted), now=now)
    if len(picked) < len(wanted):
        raise _not_enough_places(section_id, len(wanted))
    return picked


async def _take_seats(
    session: AsyncSession, hold_id: int, event_id: int, seat_ids: list[int], now: datetime, until: datetime
) -> None:
    taken = await repository.take_seats(
        session, hold_id=hold_id, event_id=event_id, seat_ids=seat_ids, now=now, until=until
    )
    if taken == len(seat_ids):
        return
    # Someone took one between our look and our write. Our own partial write is still in this
    # transaction (and is rolled back with it): what is not free besides it is the answer.
    taken_by_us = {unit.id for unit in await units_of(session, hold_id)}
    not_free = await repository.seats_not_free(session, event_id=event_id, seat_ids=seat_ids, now=now)
    unavailable = sorted(set(not_free) - taken_by_us) or sorted(set(seat_ids) - taken_by_us)
    raise SeatsUnavailable(
        "Some of these seats were taken by someone else.", seats=unavailable, requested=sorted(seat_ids)
    )


async def _take_places(
    session: AsyncSession,
    hold_id: int,
    wanted: list[HeldUnit],
    picked: list[int],
    now: datetime,
    until: datetime,
) -> list[HeldUnit]:
    section_id = wanted[0].section_id
    taken = await repository.take_units(session, hold_id=hold_id, unit_ids=picked, now=now, until=until)
    # The picked places are this transaction's (locked on MariaDB, one writer on SQLite): a
    # shortfall here would be a bug, still refused rather than sold short.
    if taken < len(picked):
        raise _not_enough_places(section_id, len(wanted))
    return [
        HeldUnit(unit_id, section_id, wanted[0].section_name, None, None, wanted[0].price)
        for unit_id in picked
    ]


async def units_of(session: AsyncSession, hold_id: int) -> list[HeldUnit]:
    """The units that name this hold (held, sold to its order, or lapsed and not retaken)."""
    return await repository.units_of_hold(session, hold_id)


async def get_hold(session: AsyncSession, public_id: str) -> HoldView:
    hold = await repository.find_hold(session, public_id)
    if hold is None:
        raise HoldNotFound("This hold does not exist.")
    return HoldView.of(hold, await units_of(session, hold.id))


async def release_hold(session: AsyncSession, public_id: str, *, actor: str, now: datetime) -> None:
    """Give a hold's units back at once. Releasing twice, or an expired hold, is fine."""
    hold = await repository.find_hold(session, public_id, lock=True)
    if hold is None:
        raise HoldNotFound("This hold does not exist.")
    if hold.status == HoldStatus.ORDERED:
        raise HoldAlreadyOrdered("This hold became an order; cancel the order instead.")
    if hold.status != HoldStatus.ACTIVE:
        return
    freed = await repository.free_units_of_hold(session, hold.id, now)
    await repository.mark_holds(
        session, [hold.id], from_status=HoldStatus.ACTIVE, to_status=HoldStatus.RELEASED, now=now
    )
    await record_changes(
        session,
        AUDIT_ENTITY,
        [hold.id],
        actor=actor,
        at=now,
        from_status=HoldStatus.ACTIVE,
        to_status=HoldStatus.RELEASED,
    )
    log.info("hold.released", hold_id=hold.id, units=freed)


# -- what an order does with a hold ----------------------------------------------------------------


# What an order needs of its hold; the order takes it from `lock_for_order`, or from `just_taken`.
LockedHold = repository.LockedHold


def just_taken(view: HoldView, user_id: str) -> LockedHold:
    """A hold this transaction took a moment ago, as an order takes it: nobody else can see it
    before the commit, let alone lock it, so no lock is asked for (an express purchase)."""
    return LockedHold(
        view.id,
        HoldStatus(view.status),
        view.expires_at,
        view.event_id,
        user_id,
        view.quantity,
        view.total,
        view.currency,
    )


async def lock_for_order(session: AsyncSession, public_id: str) -> repository.LockedHold:
    """The hold row, locked until the transaction ends: one order per hold, even when two requests
    race for it."""
    hold = await repository.lock_hold(session, public_id)
    if hold is None:
        raise HoldNotFound("This hold does not exist.")
    return hold


async def keep_for_order(
    session: AsyncSession, hold: repository.LockedHold, *, now: datetime, until: datetime
) -> None:
    """Keep a live hold's units until the order must be paid (`until`), or refuse the order."""
    if hold.status != HoldStatus.ACTIVE or hold.expires_at <= now:
        raise HoldExpired("This hold has expired or was released; hold the seats again.")
    live = await repository.extend_hold_units(session, hold.id, now=now, until=until)
    if live != hold.quantity:
        raise HoldExpired("Some seats of this hold are no longer held; hold the seats again.")


async def mark_ordered(
    session: AsyncSession, hold: repository.LockedHold, *, order_id: int, actor: str, now: datetime
) -> AuditRow:
    """The hold became order `order_id` (the order now owns its units' deadline). Returns the
    hold's audit row for the caller to write with its own: one INSERT for both on the hot path."""
    await repository.mark_hold_ordered(session, hold.id, now)
    return _ordered_audit_row(hold.id, order_id=order_id, actor=actor, now=now)


def express_audit_rows(
    hold: repository.LockedHold, *, order_id: int, actor: str, now: datetime
) -> list[AuditRow]:
    """The audit rows of a hold taken with `becomes_order` (created, then ordered), for the order to
    write with its own."""
    return [
        _created_audit_row(hold.id, hold.user_id, now),
        _ordered_audit_row(hold.id, order_id=order_id, actor=actor, now=now),
    ]


def _ordered_audit_row(hold_id: int, *, order_id: int, actor: str, now: datetime) -> AuditRow:
    return audit_row(
        AUDIT_ENTITY,
        hold_id,
        actor=actor,
        at=now,
        from_status=HoldStatus.ACTIVE,
        to_status=HoldStatus.ORDERED,
        reason=f"order:{order_id}",
    )


async def sell_units(session: AsyncSession, *, hold_id: int, order_id: int, now: datetime) -> int:
    """Mark sold every unit that still names this hold and nobody has taken since; how many."""
    return await repository.sell_units(session, hold_id=hold_id, order_id=order_id, now=now)


async def release_units(session: AsyncSession, *, hold_id: int, order_id: int, now: datetime) -> int:
    """Put an order's units back on sale (unpaid: still held by its hold; refunded: sold to it)."""
    return await repository.release_units(session, hold_id=hold_id, order_id=order_id, now=now)


async def count_live_holds(session: AsyncSession, now: datetime) -> tuple[int, int]:
    """Holds still holding (active, deadline not passed) and the units they hold (for /metrics)."""
    return await repository.count_live_holds(session, now)


async def expire_overdue_holds(session: AsyncSession, now: datetime, *, batch: int = EXPIRY_BATCH) -> int:
    """Record as expired the active holds past their deadline (their units are free already)."""
    overdue = await repository.overdue_hold_ids(session, now, limit=batch)
    if overdue:
        await repository.mark_holds(
            session, overdue, from_status=HoldStatus.ACTIVE, to_status=HoldStatus.EXPIRED, now=now
        )
        await record_changes(
            session,
            AUDIT_ENTITY,
            overdue,
            actor=SYSTEM_ACTOR,
            at=now,
            from_status=HoldStatus.ACTIVE,
            to_status=HoldStatus.EXPIRED,
            reason="deadline",
        )
    tidied = await repository.tidy_lapsed_units(session, now, limit=batch * 10)
    if overdue or tidied:
        log.info("holds.expired", holds=len(overdue), units=tidied)
    return len(overdue)
