"""HTTP routes of the waiting room; the rules live in `service`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response, status
from sse_starlette import EventSourceResponse, ServerSentEvent

from ticketera.events.schemas import QueueSettingsIn
from ticketera.events.service import EventCancelled, EventNotFound
from ticketera.infra.ratelimit import Limiter, PublicRateLimit, RateLimited
from ticketera.kit.db import MAX_ID
from ticketera.kit.http import AdminOnly, AdminRequired, CurrentClock, WriteSession, component
from ticketera.kit.openapi import answers
from ticketera.kit.security import bearer_token
from ticketera.kit.tokens import InvalidToken
from ticketera.queue import service
from ticketera.queue.backend import CHECK_AGAIN_MIN_SECONDS
from ticketera.queue.errors import NotInQueue, QueueFull, QueueUnavailable
from ticketera.queue.identity import InvalidUserAssertion, is_anonymous
from ticketera.queue.schemas import JoinOut, JoinRequest, QueueStatsOut, QueueStatusOut
from ticketera.queue.service import WAITING_ROOM, WaitingRoom

router = APIRouter(
    prefix="/api/queue",
    tags=["waiting room"],
    dependencies=[PublicRateLimit],
    responses=answers(RateLimited),
)

EventId = Annotated[int, Path(ge=1, le=MAX_ID)]


Room = Annotated[WaitingRoom, Depends(component(WAITING_ROOM))]


@router.post(
    "/{event_id}/join",
    response_model=JoinOut,
    responses={
        201: {"model": JoinOut},
        **answers(
            InvalidToken,
            InvalidUserAssertion,
            EventNotFound,
            EventCancelled,
            QueueFull,
            QueueUnavailable,
            RateLimited,
        ),
    },
)
async def join(
    event_id: EventId,
    body: JoinRequest,
    room: Room,
    limiter: Limiter,
    response: Response,
    authorization: Annotated[
        str | None, Header(description="`Bearer <queueToken>` of an earlier join: the same place back")
    ] = None,
) -> JoinOut:
    """Take a place in line, or get one's own place back (see `ticketera.queue.identity`)."""
    user_id = room.identify(
        event_id,
        queue_token=bearer_token(authorization),
        user_id=body.user_id,
        user_assertion=body.user_assertion,
    )
    if not is_anonymous(user_id):
        # A newcomer's place is new by definition; the per-address limit already covers them.
        await limiter.enforce(limiter.per_user_join, "join", str(event_id), user_id)
    result = await room.join(event_id, user_id)
    response.status_code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
    return JoinOut(queue_token=result.queue_token, **QueueStatusOut.of(result.status).model_dump())


def _queue_user(room: WaitingRoom, event_id: int, authorization: str | None, token: str | None = None) -> str:
    given = token or bearer_token(authorization)
    return room.signer.verify_queue_token(given, event_id).user_id


@router.get(
    "/{event_id}/status",
    response_model=QueueStatusOut,
    responses=answers(InvalidToken, EventNotFound, NotInQueue, QueueUnavailable),
)
async def queue_status(
    event_id: EventId, room: Room, authorization: Annotated[str | None, Header()] = None
) -> QueueStatusOut:
    user_id = _queue_user(room, event_id, authorization)
    return QueueStatusOut.of(await room.status(event_id, user_id))


@router.get(
    "/{event_id}/stream",
    summary="Server-sent events: the user's place, pushed until admitted",
    response_class=EventSourceResponse,
    responses=answers(InvalidToken, EventNotFound, NotInQueue, QueueUnavailable),
)
async def stream(
    event_id: EventId,
    request: Request,
    room: Room,
    token: Annotated[
        str | None, Query(description="the queue token (EventSource cannot send headers)")
    ] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> EventSourceResponse:
    user_id = _queue_user(room, event_id, authorization, token)
    first = await room.status(event_id, user_id)  # errors (404, 503) answer before the stream opens

    async def updates() -> AsyncIterator[ServerSentEvent]:
        current = first
        while True:
            body = QueueStatusOut.of(current).model_dump(mode="json", by_alias=True)
            yield ServerSentEvent(data=orjson.dumps(body).decode(), event="status")
            if current.status != "waiting" or await request.is_disconnected():
                return
            # At the line's pace for this place: far back, a push a minute is news enough.
            await asyncio.sleep(current.check_again_seconds or CHECK_AGAIN_MIN_SECONDS)
            current = await room.status(event_id, user_id)

    return EventSourceResponse(updates(), ping=15)


@router.delete(
    "/{event_id}/me",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=answers(InvalidToken, EventNotFound, QueueUnavailable),
)
async def leave(
    event_id: EventId, room: Room, authorization: Annotated[str | None, Header()] = None
) -> Response:
    user_id = _queue_user(room, event_id, authorization)
    await room.leave(event_id, user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{event_id}/stats",
    response_model=QueueStatsOut,
    dependencies=[AdminOnly],
    responses=answers(AdminRequired, EventNotFound, QueueUnavailable),
)
async def stats(event_id: EventId, room: Room) -> QueueStatsOut:
    return QueueStatsOut.of(await room.stats(event_id))


@router.patch(
    "/{event_id}",
    response_model=QueueStatsOut,
    dependencies=[AdminOnly],
    responses=answers(AdminRequired, EventNotFound, EventCancelled, QueueUnavailable),
)
async def update_queue(
    event_id: EventId, body: QueueSettingsIn, session: WriteSession, clock: CurrentClock, room: Room
) -> QueueStatsOut:
    """Change the admission rate, the cap on active shoppers or the access time, or pause admission."""
    return QueueStatsOut.of(await service.change_queue_settings(session, room, event_id, body, clock=clock))
