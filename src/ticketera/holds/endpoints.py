"""HTTP routes of holds; the rules live in `service`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Response, status

from ticketera.holds import service
from ticketera.holds.schemas import HoldOut, HoldRequest
from ticketera.holds.service import (
    HOLD_REFUSALS,
    HoldAlreadyOrdered,
    HoldNotFound,
)
from ticketera.kit.db import MAX_ID
from ticketera.kit.errors import InvalidInput
from ticketera.kit.http import CurrentClock, CurrentSettings, Db, ReadSession, Signer, WriteSession
from ticketera.kit.openapi import answers

router = APIRouter(tags=["holds"])

EventId = Annotated[int, Path(ge=1, le=MAX_ID)]
HoldId = Annotated[str, Path(min_length=3, max_length=32, pattern=r"^h_[A-Za-z0-9_-]+$")]


async def admitted_shopper(
    event_id: EventId,
    signer: Signer,
    clock: CurrentClock,
    x_access_token: Annotated[str | None, Header()] = None,
) -> str:
    """The user named by a valid access token for this event (from the waiting room), or 403."""
    return service.admitted_shopper(signer, x_access_token, event_id, clock()).user_id


AdmittedShopper = Annotated[str, Depends(admitted_shopper)]


@router.post(
    "/api/events/{event_id}/holds",
    status_code=status.HTTP_201_CREATED,
    response_model=HoldOut,
    responses=answers(*HOLD_REFUSALS, InvalidInput),
)
async def hold_seats(
    event_id: EventId,
    body: HoldRequest,
    user_id: AdmittedShopper,
    database: Db,
    clock: CurrentClock,
    settings: CurrentSettings,
) -> HoldOut:
    view = await service.hold_seats(
        database,
        event_id=event_id,
        request=body,
        user_id=user_id,
        clock=clock,
        hold_minutes=settings.hold_minutes,
    )
    return HoldOut.of(view)


@router.get("/api/holds/{hold_id}", response_model=HoldOut, responses=answers(HoldNotFound))
async def get_hold(hold_id: HoldId, session: ReadSession) -> HoldOut:
    return HoldOut.of(await service.get_hold(session, hold_id))


@router.delete(
    "/api/holds/{hold_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=answers(HoldNotFound, HoldAlreadyOrdered),
)
async def release_hold(hold_id: HoldId, session: WriteSession, clock: CurrentClock) -> Response:
    await service.release_hold(session, hold_id, actor="buyer", now=clock())
    return Response(status_code=status.HTTP_204_NO_CONTENT)
