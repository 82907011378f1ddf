"""HTTP routes of events and inventory; the rules live in `service`."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Path, Query, status
from fastapi.responses import Response

from ticketera.events import service
from ticketera.events.models import EventStatus, SeatStatus
from ticketera.events.schemas import (
    EventCreate,
    EventOut,
    EventPage,
    EventPatch,
    SeatMap,
    SectionIn,
    SectionOut,
)
from ticketera.events.service import (
    DuplicateSection,
    EventCancelled,
    EventNotFound,
    InvalidStatusTransition,
    SectionNotFound,
)
from ticketera.infra.ratelimit import PublicRateLimit, RateLimited
from ticketera.kit.db import MAX_ID
from ticketera.kit.errors import InvalidInput
from ticketera.kit.http import (
    AdminOnly,
    AdminRequired,
    CurrentClock,
    IsAdmin,
    LagTolerantSession,
    WriteSession,
)
from ticketera.kit.openapi import answers

router = APIRouter(prefix="/api/events", tags=["events"])

EventId = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=EventOut,
    dependencies=[AdminOnly],
    responses=answers(AdminRequired, InvalidInput),
)
async def create_event(body: EventCreate, session: WriteSession, clock: CurrentClock) -> EventOut:
    return EventOut.of(await service.create_event(session, body, clock=clock))


@router.get("", response_model=EventPage, dependencies=[PublicRateLimit], responses=answers(RateLimited))
async def list_events(
    is_admin: IsAdmin,
    session: LagTolerantSession,
    clock: CurrentClock,
    event_status: Annotated[EventStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> EventPage:
    views, total = await service.list_event_views(
        session,
        include_drafts=is_admin,
        status=event_status,
        limit=limit,
        offset=offset,
        clock=clock,
    )
    return EventPage(items=[EventOut.of(view) for view in views], total=total, limit=limit, offset=offset)


@router.get(
    "/{event_id}",
    response_model=EventOut,
    dependencies=[PublicRateLimit],
    responses=answers(EventNotFound, RateLimited),
)
async def get_event(
    event_id: EventId, is_admin: IsAdmin, session: LagTolerantSession, clock: CurrentClock
) -> EventOut:
    view = await service.get_event_view(session, event_id, include_drafts=is_admin, clock=clock)
    return EventOut.of(view)


@router.patch(
    "/{event_id}",
    response_model=EventOut,
    dependencies=[AdminOnly],
    responses=answers(AdminRequired, EventNotFound, EventCancelled, InvalidStatusTransition, InvalidInput),
)
async def update_event(
    event_id: EventId, body: EventPatch, session: WriteSession, clock: CurrentClock
) -> EventOut:
    return EventOut.of(await service.update_event(session, event_id, body, clock=clock))


@router.post(
    "/{event_id}/sections",
    status_code=status.HTTP_201_CREATED,
    response_model=SectionOut,
    dependencies=[AdminOnly],
    responses=answers(AdminRequired, EventNotFound, EventCancelled, DuplicateSection, InvalidInput),
)
async def add_section(event_id: EventId, body: SectionIn, session: WriteSession) -> SectionOut:
    view = await service.add_section(session, event_id, body)
    return SectionOut.of(view)


@router.get(
    "/{event_id}/seats",
    response_model=None,
    responses={200: {"model": SeatMap}, **answers(EventNotFound, SectionNotFound, RateLimited)},
    dependencies=[PublicRateLimit],
)
async def get_seat_map(
    event_id: EventId,
    is_admin: IsAdmin,
    session: LagTolerantSession,
    clock: CurrentClock,
    section: Annotated[int | None, Query(ge=1, le=MAX_ID, description="only this section's seats")] = None,
    seat_status: Annotated[SeatStatus | None, Query(alias="status")] = None,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_ID, description="cursor: the nextAfter of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=service.SEAT_MAP_MAX_LIMIT)] = service.SEAT_MAP_MAX_LIMIT,
) -> Response:
    # Seat maps run to tens of thousands of entries: built as plain dicts and encoded by orjson,
    # skipping per-seat model validation (SeatMap above documents the shape).
    seats, next_after = await service.seat_map(
        session,
        event_id,
        include_drafts=is_admin,
        section_id=section,
        status=seat_status,
        after_id=after,
        limit=limit,
        clock=clock,
    )
    body = {"eventId": event_id, "seats": seats, "nextAfter": next_after}
    return Response(orjson.dumps(body), media_type="application/json")
