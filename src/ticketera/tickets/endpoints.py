"""HTTP routes of tickets and check-in; the rules live in `service`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response
from fastapi.responses import JSONResponse

from ticketera.events.service import EventNotFound
from ticketera.kit.db import MAX_ID
from ticketera.kit.errors import NotFound
from ticketera.kit.http import (
    CurrentClock,
    Db,
    LagTolerantSession,
    ReadSession,
    StaffOnly,
    StaffRequired,
    component,
)
from ticketera.kit.openapi import Answers, answers
from ticketera.tickets import service
from ticketera.tickets.codes import MalformedCode, read_code
from ticketera.tickets.documents import qr_png, qr_svg
from ticketera.tickets.schemas import (
    CheckinBatchIn,
    CheckinBatchOut,
    CheckinFiguresOut,
    CheckinIn,
    CheckinKeyOut,
    ScanOut,
    SectionCheckinOut,
    batch_body,
    scan_body,
)
from ticketera.tickets.service import SCAN_STATUS, TICKET_KEYS, EventKeyNotFound, PublicKeys

router = APIRouter(tags=["tickets"])

TicketKeys = Annotated[PublicKeys, Depends(component(TICKET_KEYS))]
EventId = Annotated[int, Path(ge=1, le=MAX_ID)]
# An image of a code never changes: clients and proxies may keep it for good.
IMMUTABLE = {"Cache-Control": "public, max-age=31536000, immutable"}


class TicketCodeNotFound(NotFound):
    code = "ticket_code_invalid"


def image(media_type: str) -> Answers:
    return {200: {"content": {media_type: {}}, "description": "The QR code"}, **answers(TicketCodeNotFound)}


# Every scan answers with its result, under the status the result maps to.
SCAN_ANSWERS: Answers = {
    status: {"model": ScanOut, "description": f"`{result.value}`"} for result, status in SCAN_STATUS.items()
}


def _well_formed(code: str) -> str:
    try:
        read_code(code)
    except MalformedCode as exc:
        raise TicketCodeNotFound("This is not a ticket code.") from exc
    return code


@router.get("/api/tickets/{code}/qr.png", response_class=Response, responses=image("image/png"))
async def ticket_qr_png(code: str) -> Response:
    return Response(qr_png(_well_formed(code)), media_type="image/png", headers=IMMUTABLE)


@router.get("/api/tickets/{code}/qr.svg", response_class=Response, responses=image("image/svg+xml"))
async def ticket_qr_svg(code: str) -> Response:
    return Response(qr_svg(_well_formed(code)), media_type="image/svg+xml", headers=IMMUTABLE)


@router.get(
    "/api/events/{event_id}/checkin-key", response_model=CheckinKeyOut, responses=answers(EventKeyNotFound)
)
async def checkin_key(event_id: EventId, session: ReadSession) -> CheckinKeyOut:
    """The event's public key: enough for a scanner to verify codes with no connection at all."""
    return CheckinKeyOut(event_id=event_id, public_key=await service.public_key_of(session, event_id))


@router.post(
    "/api/checkin",
    dependencies=[StaffOnly],
    response_class=JSONResponse,
    responses={**SCAN_ANSWERS, **answers(StaffRequired)},
)
async def check_in(body: CheckinIn, database: Db, keys: TicketKeys, clock: CurrentClock) -> JSONResponse:
    result = await service.scan(
        database, keys, body.code, at=clock(), device=body.device_id, door_event_id=body.event_id
    )
    return JSONResponse(scan_body(result), status_code=service.SCAN_STATUS[result.result])


@router.post(
    "/api/checkin/batch",
    dependencies=[StaffOnly],
    response_model=None,
    responses={200: {"model": CheckinBatchOut}, **answers(StaffRequired)},
)
async def check_in_batch(
    body: CheckinBatchIn, database: Db, keys: TicketKeys, clock: CurrentClock
) -> dict[str, Any]:
    """Scans a device made while offline, applied in time order; conflicts are reported per scan."""
    scans = [
        service.OfflineScan(scan.code, scan.scanned_at, scan.device_id or body.device_id)
        for scan in body.scans
    ]
    results = await service.scan_offline_batch(
        database, keys, scans, door_event_id=body.event_id, now=clock()
    )
    return batch_body(results)


@router.get(
    "/api/events/{event_id}/checkin",
    response_model=CheckinFiguresOut,
    dependencies=[StaffOnly],
    responses=answers(StaffRequired, EventNotFound),
)
async def checkin_figures(event_id: EventId, session: LagTolerantSession) -> CheckinFiguresOut:
    sections = await service.checkin_figures(session, event_id)
    return CheckinFiguresOut(
        event_id=event_id,
        sold=sum(section.sold for section in sections),
        checked_in=sum(section.checked_in for section in sections),
        sections=[
            SectionCheckinOut(
                section_id=section.section_id,
                section=section.section_name,
                sold=section.sold,
                checked_in=section.checked_in,
            )
            for section in sections
        ],
    )
