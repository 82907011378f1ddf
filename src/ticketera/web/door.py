"""The door's page, `/door`: staff log in with the staff key, pick the event and scan, online and off.

Which credential the page's script uses to check tickets in: the same-origin endpoints below
(`POST /door/scan`, `POST /door/batch`), authorised by the HttpOnly session cookie and a CSRF
header, never the staff key itself. Handing the bearer to the script would put the one key every
door shares (it does not expire, and it also works against the API from anywhere) within reach of
any script that runs on the page or of anyone who opens the phone's developer tools, and keeping it
across reloads would mean localStorage, readable by the same; a cookie the script cannot read, that
expires after a shift and is sent only to these paths and only from this site, leaks far less. The
endpoints call the very service functions of `/api/checkin` and `/api/checkin/batch` and answer
the same bodies, so the page and outside scanners see one behaviour.

Offline, the script needs no credential at all: it verifies codes with the event's public key,
which is public (`GET /api/events/{id}/checkin-key`), and keeps its scans until it can send them.

Content-Security-Policy: the page keeps the site's strict one. The camera needs none of it
(`getUserMedia` into a `<video>` through `srcObject` is not a fetched URL), BarcodeDetector and
WebCrypto run in the page, and nothing here uses a worker.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from ticketera.events import service as events
from ticketera.events.models import EventStatus
from ticketera.infra.ratelimit import Limiter, RateLimited
from ticketera.kit.errors import DomainError, Forbidden, Unauthorized
from ticketera.kit.http import CurrentClock, CurrentSettings, Db, client_ip, component
from ticketera.kit.security import secrets_match
from ticketera.tickets import service as tickets
from ticketera.tickets.schemas import CheckinBatchIn, CheckinIn, batch_body, scan_body
from ticketera.web.rendering import CurrentPage, Page, problem_page
from ticketera.web.sessions import (
    CSRF_FIELD,
    CSRF_HEADER,
    StaffSession,
    StaffSessions,
    read_form,
    retry_after_seconds,
    staff_sessions,
    too_many_attempts,
)

log = structlog.get_logger(__name__)

router = APIRouter(include_in_schema=False)

DOOR_PATH = "/door"
# One shift at the door; then the key is asked again.
SESSION_LIFETIME = timedelta(hours=12)
# Events that started up to this long ago are still on the list: the doors stay open during the show.
STILL_AT_THE_DOOR = timedelta(hours=12)
EVENTS_LIMIT = 200

TicketKeys = Annotated[tickets.PublicKeys, Depends(component(tickets.TICKET_KEYS))]


async def door_sessions(settings: CurrentSettings) -> StaffSessions:
    assert settings.secret_key, "secrets are filled in by load_settings()"
    return staff_sessions(settings.secret_key, "door", DOOR_PATH, int(SESSION_LIFETIME.total_seconds()))


DoorSessions = Annotated[StaffSessions, Depends(door_sessions)]


class DoorLoginRequired(Unauthorized):
    code = "door_login_required"


class CsrfFailed(Forbidden):
    code = "csrf_failed"


async def door_staff(request: Request, sessions: DoorSessions, clock: CurrentClock) -> StaffSession:
    """The script's calls: a live door session and its CSRF header, or 401/403 the script explains."""
    session = sessions.read(request, clock())
    if session is None:
        raise DoorLoginRequired("Log in at /door again.")
    if not sessions.csrf_ok(session, request.headers.get(CSRF_HEADER)):
        raise CsrfFailed("The page's CSRF token is missing or not this session's.")
    return session


DoorStaff = Annotated[StaffSession, Depends(door_staff)]


@router.get("/door", response_class=HTMLResponse)
async def door_page(
    request: Request,
    page: CurrentPage,
    sessions: DoorSessions,
    database: Db,
    clock: CurrentClock,
    settings: CurrentSettings,
) -> HTMLResponse:
    now = clock()
    session = sessions.read(request, now)
    if session is None:
        return _login_page(page, sessions)
    try:
        async with database.read_session() as db_session:
            views, _total = await events.list_event_views(
                db_session, include_drafts=False, status=None, limit=EVENTS_LIMIT, offset=0, clock=clock
            )
    except DomainError as error:
        return problem_page(page, error, back_url=DOOR_PATH)
    at_the_door = sorted(
        (
            view.event
            for view in views
            if view.event.status != EventStatus.CANCELLED and view.event.starts_at > now - STILL_AT_THE_DOOR
        ),
        key=lambda event: event.starts_at,
    )
    return page.render(
        "door.html",
        title=page._("Door check-in"),
        events=at_the_door,
        csrf=sessions.csrf_token(session),
        page_data=_page_data(page, sessions.csrf_token(session), settings.display_timezone),
    )


@router.post("/door/login", response_class=HTMLResponse)
async def log_in(
    request: Request,
    page: CurrentPage,
    sessions: DoorSessions,
    settings: CurrentSettings,
    clock: CurrentClock,
    limiter: Limiter,
) -> Response:
    # The app's per-IP limit (APP_RATE_LIMIT): guessing the key costs time, on top of its length.
    # Counted here rather than as the API's dependency so that the refusal is a page saying how long
    # to wait (with Retry-After), not the API's JSON.
    try:
        await limiter.limit_public_call(client_ip(request), request.headers.get("authorization"))
    except RateLimited as exc:
        wait = retry_after_seconds(exc.retry_after)
        log.warning("door.login_rate_limited")
        refused = _login_page(page, sessions, error=too_many_attempts(page, wait), status=429)
        refused.headers["Retry-After"] = str(wait)
        return refused
    form = await read_form(request)
    if not sessions.login_token_ok(request, form.get(CSRF_FIELD)):
        log.info("door.login_refused", reason="csrf")
        return _login_page(page, sessions, error=page._("The form expired. Type the key again."), status=403)
    key = form.get("key", "").strip()
    # Each compared in constant time; the admin key opens the door too, as it does the check-in API.
    if not (secrets_match(key, settings.staff_api_key) or secrets_match(key, settings.admin_api_key)):
        log.info("door.login_refused", reason="key")
        return _login_page(page, sessions, error=page._("That is not the staff key."), status=401)
    response = RedirectResponse(DOOR_PATH, status_code=303)
    sessions.start(request, response, clock())
    log.info("door.logged_in")
    return response


@router.post("/door/logout")
async def log_out(request: Request, sessions: DoorSessions, clock: CurrentClock) -> Response:
    session = sessions.read(request, clock())
    form = await read_form(request)
    if session is not None and not sessions.csrf_ok(session, form.get(CSRF_FIELD)):
        # Another site cannot sign the door out; a session that already ended is simply gone.
        return RedirectResponse(DOOR_PATH, status_code=303)
    response = RedirectResponse(DOOR_PATH, status_code=303)
    sessions.end(response)
    log.info("door.logged_out")
    return response


@router.post("/door/scan")
async def scan(
    body: CheckinIn, staff: DoorStaff, database: Db, keys: TicketKeys, clock: CurrentClock
) -> JSONResponse:
    """`POST /api/checkin` for the page, on its session."""
    result = await tickets.scan(
        database, keys, body.code, at=clock(), device=body.device_id, door_event_id=body.event_id
    )
    return JSONResponse(scan_body(result), status_code=tickets.SCAN_STATUS[result.result])


@router.post("/door/batch")
async def batch(body: CheckinBatchIn, staff: DoorStaff, database: Db, keys: TicketKeys) -> dict[str, Any]:
    """`POST /api/checkin/batch` for the page: the scans it made offline."""
    scans = [
        tickets.OfflineScan(item.code, item.scanned_at, item.device_id or body.device_id)
        for item in body.scans
    ]
    results = await tickets.scan_offline_batch(database, keys, scans, door_event_id=body.event_id)
    log.info("door.synced", scans=len(scans), event_id=body.event_id)
    return batch_body(results)


def _login_page(
    page: Page, sessions: StaffSessions, *, error: str | None = None, status: int = 200
) -> HTMLResponse:
    nonce = sessions.login_nonce(page.request)
    response = page.render(
        "door_login.html",
        title=page._("Door: log in"),
        error=error,
        csrf=sessions.login_token(nonce),
        status_code=status,
    )
    sessions.keep_login_nonce(page.request, response, nonce)
    return response


def _page_data(page: Page, csrf: str, zone: str) -> dict[str, Any]:
    _ = page._
    return {
        "csrf": csrf,
        "language": page.language,
        "zone": zone,
        "scanUrl": "/door/scan",
        "batchUrl": "/door/batch",
        "keyUrl": "/api/events/{id}/checkin-key",
        "messages": {
            "okTitle": _("Valid ticket"),
            "okOffline": _("Checked offline: it syncs when the network returns."),
            "figures": _("Admitted here: %(count)s · to sync: %(pending)s"),
            "refuseTitle": _("Do not let in"),
            "already": _("Already used at %(time)s by %(door)s."),
            "alreadyNoDoor": _("Already used at %(time)s."),
            "alreadyHere": _("Already scanned on this phone at %(time)s."),
            "void": _("Void: the order was refunded or cancelled."),
            "otherEvent": _("This ticket is for another event."),
            "invalid": _("Not a valid ticket: it was not issued by us."),
            "seat": _("%(section)s · seat %(seat)s"),
            "next": _("Scan the next ticket, or tap to continue."),
            "chooseEvent": _("Choose the event first."),
            "noKey": _("This event has no tickets yet, so it cannot be checked offline."),
            "keyKept": _("Ready to check this event offline too."),
            "offline": _("Offline: tickets are checked on this phone and sync when the network returns."),
            "syncing": _("Sending the scans made offline…"),
            "synced": _("Scans made offline sent: %(count)s."),
            "conflict": _("Ticket …%(code)s, scanned here offline at %(time)s: %(reason)s"),
            "sessionEnded": _("Your session ended. Log in again; the scans on this phone are kept."),
            "failed": _("The server did not answer. Try again."),
            "cameraDenied": _("The camera could not be opened."),
            "cameraStart": _("Scan with the camera"),
            "cameraStop": _("Stop the camera"),
        },
    }
