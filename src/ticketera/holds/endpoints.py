"""HTTP routes of holds; the rules live in `service`."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Header, Path, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from ticketera.holds import service
from ticketera.holds.schemas import HeldUnitOut, HoldOut, HoldRequest
from ticketera.kit.db import MAX_ID
from ticketera.kit.errors import Forbidden
from ticketera.kit.http import CurrentClock, ReadSession, WriteSession, get_database, get_settings
from ticketera.kit.tokens import InvalidToken

router = APIRouter(tags=["holds"])

EventId = Annotated[int, Path(ge=1, le=MAX_ID)]
HoldId = Annotated[str, Path(min_length=3, max_length=32, pattern=r"^h_[A-Za-z0-9_-]+$")]


class AccessRequired(Forbidden):
    code = "access_required"


def shopper_of(request: Request, event_id: int, token: str | None) -> str:
    """The user named by a valid access token for this event (from the waiting room), or 403."""
    signer = request.app.state.waiting_room.signer
    try:
        return str(signer.verify_access_token(token, event_id, now=request.app.state.clock()).user_id)
    except InvalidToken as exc:
        raise AccessRequired(
            "Holding seats needs the X-Access-Token the waiting room gives when your turn comes.",
            reason=exc.message,
        ) from exc


@router.post("/api/events/{event_id}/holds", status_code=status.HTTP_201_CREATED, response_model=HoldOut)
async def hold_seats(
    event_id: EventId,
    body: HoldRequest,
    request: Request,
    clock: CurrentClock,
    x_access_token: Annotated[str | None, Header()] = None,
) -> HoldOut:
    user_id = shopper_of(request, event_id, x_access_token)
    hold_minutes = get_settings(request).hold_minutes

    async def plan(session: AsyncSession) -> service.HoldPlan:
        return await service.plan_hold(session, event_id=event_id, request=body, now=clock())

    async def take(session: AsyncSession, planned: service.HoldPlan, *, look_again: bool) -> HoldOut:
        view = await service.hold_units(
            session,
            plan=planned,
            user_id=user_id,
            now=clock(),
            hold_minutes=hold_minutes,
            look_again=look_again,
        )
        return hold_out(view)

    async def plan_and_take(session: AsyncSession) -> HoldOut:
        return await take(session, await plan(session), look_again=False)

    database = get_database(request)
    # Either way the write is a transaction run again if InnoDB gives up on it (deadlock victim,
    # lock-wait timeout), and a loser costs two reads and no lock.
    if database.backend == "sqlite":
        # One writer at a time: losers are refused from a read session and never queue behind it.
        planned = await database.read(plan)
        return await database.transaction(partial(take, planned=planned, look_again=True))
    # InnoDB reads without locks inside a write transaction too: planning there saves a second
    # transaction (a connection check-out and its round trips) per hold.
    return await database.transaction(plan_and_take)


@router.get("/api/holds/{hold_id}", response_model=HoldOut)
async def get_hold(hold_id: HoldId, session: ReadSession) -> HoldOut:
    return hold_out(await service.get_hold(session, hold_id))


@router.delete("/api/holds/{hold_id}", status_code=status.HTTP_204_NO_CONTENT)
async def release_hold(hold_id: HoldId, session: WriteSession, clock: CurrentClock) -> Response:
    await service.release_hold(session, hold_id, actor="buyer", now=clock())
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def hold_out(view: service.HoldView) -> HoldOut:
    return HoldOut(
        hold_id=view.public_id,
        event_id=view.event_id,
        status=view.status,
        expires_at=view.expires_at,
        seats=[held_unit_out(unit) for unit in view.units],
        quantity=view.quantity,
        total=view.total,
        currency=view.currency,
    )


def held_unit_out(unit: service.HeldUnit) -> HeldUnitOut:
    return HeldUnitOut(
        id=unit.id,
        section=unit.section_id,
        section_name=unit.section_name,
        row=unit.row,
        number=unit.number,
        label=unit.label,
        price=unit.price,
    )
