"""The rules of tickets: issued with the sale, voided with the refund, checked in once.

Issuing runs inside the transaction that sells the units, so a paid order always has its tickets
and its email queued, or none of it happened. Check-in is one conditional UPDATE: of many
simultaneous scans of one code exactly one gets `ok`. Services flush but never commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import cast

import structlog
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession

from ticketera.events import service as events_service
from ticketera.holds.service import HeldUnit
from ticketera.kit.components import Component
from ticketera.kit.db import MAX_ID, Database
from ticketera.kit.errors import NotFound
from ticketera.kit.leases import LeasedWork
from ticketera.tickets import repository
from ticketera.tickets.codes import (
    ForgedCode,
    MalformedCode,
    TicketClaim,
    claimed_event,
    new_serial,
    sign_code,
    unb64,
    verify_code,
)
from ticketera.tickets.keys import StoredKey, TicketKeyring
from ticketera.tickets.models import EmailState, EventKey, OutboxEmail, Ticket, TicketStatus

log = structlog.get_logger(__name__)

TICKETS_EMAIL = "tickets"
EMAIL_LEASE = timedelta(minutes=2)
MAX_EMAIL_ATTEMPTS = 12
# The outbox: one sender per email under a lease; a failed send is retried 30 s, 1 min, 2 min ...
# capped at an hour (a mail server restarting is waited for, not hammered), then left failed.
OUTBOX = LeasedWork(
    cast(Table, OutboxEmail.__table__),
    pending=EmailState.PENDING,
    failed=EmailState.FAILED,
    finished_at="sent_at",
    finished_states=(EmailState.SENT, EmailState.SKIPPED),
    lease=EMAIL_LEASE,
    retry_base_seconds=30,
    max_attempts=MAX_EMAIL_ATTEMPTS,
)


class EventKeyNotFound(NotFound):
    code = "checkin_key_not_found"


async def event_key(session: AsyncSession, keyring: TicketKeyring, event_id: int, now: datetime) -> EventKey:
    """The event's signing key, made on its first sale."""
    stored = await repository.find_event_key(session, event_id)
    if stored is None:
        fresh = keyring.new_key(event_id)
        stored = await repository.store_event_key_once(
            session,
            {
                "event_id": event_id,
                "public_key": fresh.public_key,
                "private_key_encrypted": fresh.private_key_encrypted,
                "created_at": now,
            },
        )
    return stored


async def issue_for_order(
    session: AsyncSession,
    keyring: TicketKeyring,
    *,
    order_id: int,
    event_id: int,
    buyer_email: str,
    units: Sequence[HeldUnit],
    now: datetime,
) -> int:
    """One signed ticket per unit sold, and the buyer's email queued; in the selling transaction."""
    stored = await event_key(session, keyring, event_id, now)
    signing_key = keyring.private_key(event_id, StoredKey(stored.public_key, stored.private_key_encrypted))
    rows = []
    for unit in units:
        claim = TicketClaim(serial=new_serial(), event_id=event_id, seat_id=unit.id)
        rows.append(
            {
                "serial": claim.serial,
                "code": sign_code(signing_key, claim),
                "event_id": event_id,
                "order_id": order_id,
                "seat_id": unit.id,
                "section_id": unit.section_id,
                "section_name": unit.section_name,
                "seat_label": unit.label,
                "status": TicketStatus.VALID,
                "issued_at": now,
            }
        )
    await repository.insert_tickets(session, rows)
    await repository.enqueue_email(
        session,
        {
            "purpose": f"{TICKETS_EMAIL}:{order_id}",
            "order_id": order_id,
            "to_address": buyer_email,
            "state": EmailState.PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        },
    )
    log.info("tickets.issued", order_id=order_id, event_id=event_id, tickets=len(rows))
    return len(rows)


async def void_for_order(session: AsyncSession, order_id: int, now: datetime) -> int:
    voided = await repository.void_order_tickets(session, order_id, now)
    if voided:
        log.info("tickets.voided", order_id=order_id, tickets=voided)
    return voided


async def tickets_of_order(session: AsyncSession, order_id: int) -> list[Ticket]:
    return await repository.tickets_of_order(session, order_id)


async def public_key_of(session: AsyncSession, event_id: int) -> str:
    stored = await repository.find_event_key(session, event_id)
    if stored is None:
        raise EventKeyNotFound(f"Event {event_id} has no tickets yet, so no check-in key.")
    return stored.public_key


# -- check-in ------------------------------------------------------------------------------------


class ScanResult(StrEnum):
    OK = "ok"
    ALREADY_CHECKED_IN = "already_checked_in"
    VOID = "void"
    INVALID = "invalid"


SCAN_STATUS = {
    ScanResult.OK: 200,
    ScanResult.ALREADY_CHECKED_IN: 409,
    ScanResult.VOID: 410,
    ScanResult.INVALID: 404,
}


@dataclass(frozen=True)
class Scan:
    result: ScanResult
    ticket: Ticket | None = None
    reason: str | None = None


class PublicKeys:
    """Events' public keys, read once per process: they never change once made."""

    def __init__(self) -> None:
        self._known: dict[int, bytes] = {}

    async def of(self, session: AsyncSession, event_id: int) -> bytes | None:
        key = self._known.get(event_id)
        if key is None:
            stored = await repository.find_event_key(session, event_id)
            if stored is None:
                return None
            key = self._known[event_id] = unb64(stored.public_key)
        return key


TICKET_KEYS = Component[PublicKeys]("ticket_keys")


async def scan(
    database: Database,
    keys: PublicKeys,
    code: str,
    *,
    at: datetime,
    device: str | None,
    door_event_id: int | None,
) -> Scan:
    """One scan at the door, in its own transaction (run again if InnoDB gives up on it); `at` is
    the server's time now, both when it was scanned and when the server learned of it."""

    async def check(session: AsyncSession) -> Scan:
        return await check_in(
            session, keys, code, at=at, recorded_at=at, device=device, door_event_id=door_event_id
        )

    return await database.transaction(check)


async def scan_offline_batch(
    database: Database,
    keys: PublicKeys,
    scans: Sequence[OfflineScan],
    *,
    door_event_id: int | None,
    now: datetime,
) -> list[Scan]:
    """A device's offline scans, applied in one transaction (see `check_in_batch`)."""

    async def apply(session: AsyncSession) -> list[Scan]:
        return await check_in_batch(session, keys, scans, door_event_id=door_event_id, now=now)

    return await database.transaction(apply)


async def check_in(
    session: AsyncSession,
    keys: PublicKeys,
    code: str,
    *,
    at: datetime,
    recorded_at: datetime,
    device: str | None,
    door_event_id: int | None = None,
) -> Scan:
    """Admit the holder of `code` once. The signature is checked before the database is asked, so
    forged codes cost no write; the conditional update decides between simultaneous scans.

    `at` is when the code was scanned (the phone's time for a scan made offline), `recorded_at` the
    server's time now: the doors ask for what the server learned since their last read."""
    try:
        event_id = claimed_event(code)
        if not 0 < event_id <= MAX_ID:
            raise MalformedCode("no event has this id")
        key = await keys.of(session, event_id)
        if key is None:
            raise ForgedCode("no event has this key")
        claim = verify_code(code, key)
    except (MalformedCode, ForgedCode) as exc:
        return Scan(ScanResult.INVALID, reason=str(exc))
    if door_event_id is not None and claim.event_id != door_event_id:
        return Scan(ScanResult.INVALID, reason="this ticket is for another event")
    admitted = await repository.mark_checked_in(
        session, serial=claim.serial, event_id=claim.event_id, at=at, device=device, recorded_at=recorded_at
    )
    ticket = await repository.find_by_serial(session, claim.serial)
    if ticket is None or ticket.event_id != claim.event_id or ticket.seat_id != claim.seat_id:
        return Scan(ScanResult.INVALID, reason="no such ticket")
    if admitted:
        log.info("checkin.ok", ticket_serial=ticket.serial, event_id=ticket.event_id, device=device)
        return Scan(ScanResult.OK, ticket)
    if device is not None and ticket.checked_in_device == device and ticket.checked_in_at == at:
        # The same scan uploaded again (a device retrying after a lost answer): not a second entry.
        return Scan(ScanResult.OK, ticket, reason="replayed")
    if ticket.status == TicketStatus.VOID:
        return Scan(ScanResult.VOID, ticket, reason="the order was refunded or cancelled")
    return Scan(ScanResult.ALREADY_CHECKED_IN, ticket)


@dataclass(frozen=True)
class OfflineScan:
    code: str
    scanned_at: datetime
    device: str | None


async def check_in_batch(
    session: AsyncSession,
    keys: PublicKeys,
    scans: Sequence[OfflineScan],
    *,
    door_event_id: int | None,
    now: datetime,
) -> list[Scan]:
    """Scans a device made offline, applied in the order they happened; results in input order.

    A ticket scanned twice (by two offline devices, or offline and online) is admitted at its first
    scan in time among those applied, and every later one is reported as a conflict.
    """
    order = sorted(range(len(scans)), key=lambda index: _aware(scans[index].scanned_at))
    results: dict[int, Scan] = {}
    for index in order:
        scan = scans[index]
        results[index] = await check_in(
            session,
            keys,
            scan.code,
            at=_aware(scan.scanned_at),
            recorded_at=now,
            device=scan.device,
            door_event_id=door_event_id,
        )
    return [results[index] for index in range(len(scans))]


def _aware(moment: datetime) -> datetime:
    """A device clock without a zone is taken as UTC, the zone every time here is in."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class DoorKnowledge:
    """What a door keeps to answer offline what the signature alone cannot tell: tickets voided, and
    tickets let in (when, by which door), by serial."""

    void: list[int]
    checked_in: list[tuple[int, datetime, str | None]]


async def door_knowledge(session: AsyncSession, event_id: int, *, since: datetime | None) -> DoorKnowledge:
    """The event's void and checked-in tickets (voided or recorded by the server since `since`, when
    given; 404 for no event)."""
    await events_service.require_event(session, event_id)
    rows = await repository.void_and_checked_in(session, event_id, since=since)
    return DoorKnowledge(
        void=[serial for serial, status, _at, _device in rows if status is TicketStatus.VOID],
        checked_in=[
            (serial, at, device)
            for serial, status, at, device in rows
            if status is not TicketStatus.VOID and at is not None
        ],
    )


async def checkin_figures(session: AsyncSession, event_id: int) -> list[repository.SectionFigures]:
    """Sold and checked-in tickets per section of an event (404 when there is no such event)."""
    await events_service.require_event(session, event_id)
    return await repository.checkin_figures(session, event_id)
