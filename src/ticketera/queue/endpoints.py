"""HTTP routes of the waiting room; the rules live in `service`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from sse_starlette import EventSourceResponse, ServerSentEvent

from ticketera.events import service as events_service
from ticketera.events.schemas import EventPatch, QueueSettingsIn
from ticketera.kit.db import MAX_ID
from ticketera.kit.http import AdminOnly, CurrentClock, PublicRateLimit, WriteSession
from ticketera.kit.security import bearer_token
from ticketera.queue.backend import LineFigures
from ticketera.queue.schemas import JoinOut, JoinRequest, QueueStatsOut, QueueStatusOut
from ticketera.queue.service import EventQueueSettings, QueueStatus, WaitingRoom

router = APIRouter(prefix="/api/queue", tags=["waiting room"], dependencies=[PublicRateLimit])

EventId = Annotated[int, Path(ge=1, le=MAX_ID)]
STREAM_INTERVAL_SECONDS = 2.0


async def get_waiting_room(request: Request) -> WaitingRoom:
    room: WaitingRoom = request.app.state.waiting_room
    return room


Room = Annotated[WaitingRoom, Depends(get_waiting_room)]


def status_out(queue_status: QueueStatus) -> QueueStatusOut:
    return QueueStatusOut(
        status=queue_status.status,
        position=queue_status.position,
        ahead=queue_status.ahead,
        eta_seconds=queue_status.eta_seconds,
        pre_queue=queue_status.pre_queue,
        access_token=queue_status.access_token,
        access_expires_at=queue_status.access_expires_at,
    )


@router.post("/{event_id}/join", response_model=JoinOut, responses={201: {"model": JoinOut}})
async def join(
    event_id: EventId, body: JoinRequest, room: Room, request: Request, response: Response
) -> JoinOut:
    limiter = request.app.state.rate_limiter
    await limiter.enforce(limiter.per_user_join, "join", str(event_id), body.user_id)
    result = await room.join(event_id, body.user_id)
    response.status_code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
    return JoinOut(queue_token=result.queue_token, **status_out(result.status).model_dump())


def _queue_user(request: Request, room: WaitingRoom, event_id: int, token: str | None = None) -> str:
    given = token or bearer_token(request.headers.get("authorization"))
    return room.signer.verify_queue_token(given, event_id).user_id


@router.get("/{event_id}/status", response_model=QueueStatusOut)
async def queue_status(event_id: EventId, request: Request, room: Room) -> QueueStatusOut:
    user_id = _queue_user(request, room, event_id)
    return status_out(await room.status(event_id, user_id))


@router.get("/{event_id}/stream", summary="Server-sent events: the user's place, pushed until admitted")
async def stream(
    event_id: EventId,
    request: Request,
    room: Room,
    token: Annotated[
        str | None, Query(description="the queue token (EventSource cannot send headers)")
    ] = None,
) -> EventSourceResponse:
    user_id = _queue_user(request, room, event_id, token)
    first = await room.status(event_id, user_id)  # errors (404, 503) answer before the stream opens

    async def updates() -> AsyncIterator[ServerSentEvent]:
        current = first
        while True:
            body = status_out(current).model_dump(mode="json", by_alias=True)
            yield ServerSentEvent(data=orjson.dumps(body).decode(), event="status")
            if current.status != "waiting" or await request.is_disconnected():
                return
            await asyncio.sleep(STREAM_INTERVAL_SECONDS)
            current = await room.status(event_id, user_id)

    return EventSourceResponse(updates(), ping=15)


@router.delete("/{event_id}/me", status_code=status.HTTP_204_NO_CONTENT)
async def leave(event_id: EventId, request: Request, room: Room) -> Response:
    user_id = _queue_user(request, room, event_id)
    await room.leave(event_id, user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{event_id}/stats", response_model=QueueStatsOut, dependencies=[AdminOnly])
async def stats(event_id: EventId, room: Room) -> QueueStatsOut:
    settings = await room.settings_for(event_id, fresh=True)
    return stats_out(settings, await room.figures(event_id), room.backend.name)


@router.patch("/{event_id}", response_model=QueueStatsOut, dependencies=[AdminOnly])
async def update_queue(
    event_id: EventId, body: QueueSettingsIn, session: WriteSession, clock: CurrentClock, room: Room
) -> QueueStatsOut:
    """Change the admission rate, the cap on active shoppers or the access time, or pause admission."""
    view = await events_service.update_event(session, event_id, EventPatch(queue=body), clock=clock)
    settings = EventQueueSettings.of(view.event)
    room.forget_settings(event_id)
    return stats_out(settings, await room.figures(event_id), room.backend.name)


def stats_out(settings: EventQueueSettings, figures: LineFigures, backend: str) -> QueueStatsOut:
    return QueueStatsOut(
        event_id=settings.event_id,
        enabled=settings.enabled,
        paused=settings.paused,
        waiting=figures.waiting,
        pre_queue=figures.prequeue,
        admitted=figures.admitted_total,
        active_shoppers=figures.active,
        admit_per_minute=settings.admit_per_minute,
        max_active_shoppers=settings.max_active_shoppers,
        measured_admit_per_minute=figures.admitted_last_minute,
        released=figures.released,
        backend=backend,
    )
