"""The door's page, `/door`: staff log in with the staff key, pick the event and scan, online and off.

Which credential the page's script uses to check tickets in: the same-origin endpoints below
(`POST /door/scan`, `POST /door/batch`), authorised by the HttpOnly session cookie and a CSRF
header, never the staff key itself. Handing the bearer to the script would put the one key every
door shares (it does not expire, and it also works against the API from anywhere) within reach of
any script that runs on the page or of anyone who opens the phone's developer tools, and keeping it
across reloads would mean localStorage, readable by the same; a cookie the script cannot read, that
expires after a shift and is sent only to these paths and only from this site, leaks far less. The
cookie carries a tag of the key it was opened with (the staff key or the admin key), so changing
that key ends it at once. The
endpoints call the very service functions of `/api/checkin` and `/api/checkin/batch` and answer
the same bodies, so the page and outside scanners see one behaviour.

Offline, the script needs no credential at all: it verifies codes with the event's public key,
which is public (`GET /api/events/{id}/checkin-key`), and keeps its scans until it can send them.

Content-Security-Policy: the page keeps the site's strict one. The camera needs none of it
(`getUserMedia` into a `<video>` through `srcObject` is not a fetched URL), BarcodeDetector and
WebCrypto run in the page. The service worker (`/door/sw.js`, scope `/door`) needs `worker-src
'self'`, which the site's policy has, and is itself served under that policy (a worker obeys its
own script's, not the page's).

What a phone knows offline beyond the signature: the event's void tickets and those already let in
at any door (`GET /door/events/{id}/known`, read every half minute while online and kept in
localStorage), so a refunded ticket or one used at another door is refused without the server.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from ticketera.config import Settings
from ticketera.events import service as events
from ticketera.events.models import EventStatus
from ticketera.infra.ratelimit import Limiter, RateLimited
from ticketera.kit.db import MAX_ID
from ticketera.kit.errors import DomainError, Forbidden, Unauthorized
from ticketera.kit.http import CurrentClock, CurrentSettings, Db, client_ip, component
from ticketera.kit.security import secrets_match
from ticketera.tickets import service as tickets
from ticketera.tickets.schemas import CheckinBatchIn, CheckinIn, batch_body, scan_body
from ticketera.web.rendering import CONTENT_SECURITY_POLICY, CurrentPage, Page, problem_page
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
from ticketera.web.static import STATIC_DIR, VERSION, static_url

log = structlog.get_logger(__name__)

router = APIRouter(include_in_schema=False)

DOOR_PATH = "/door"
# One shift at the door; then the key is asked again.
SESSION_LIFETIME = timedelta(hours=12)
# Events that started up to this long ago are still on the list: the doors stay open during the show.
STILL_AT_THE_DOOR = timedelta(hours=12)
EVENTS_LIMIT = 200

# What the page needs to open offline (js/door-sw.js keeps them once the page was seen online).
DOOR_FILES = (
    "site.css",
    "door.css",
    "favicon.svg",
    "js/door.js",
    "js/door-store.js",
    "js/format.js",
    "js/page-data.js",
    "js/ticket-code.js",
)
SERVICE_WORKER = (STATIC_DIR / "js" / "door-sw.js").read_text(encoding="utf-8")

TicketKeys = Annotated[tickets.PublicKeys, Depends(component(tickets.TICKET_KEYS))]


async def door_sessions(settings: CurrentSettings) -> StaffSessions:
    assert settings.secret_key, "secrets are filled in by load_settings()"
    return staff_sessions(settings.secret_key, "door", DOOR_PATH, int(SESSION_LIFETIME.total_seconds()))


DoorSessions = Annotated[StaffSessions, Depends(door_sessions)]


def _key_tags(sessions: StaffSessions, settings: Settings) -> tuple[str, str]:
    """The tags of the keys that open the door now, the staff key's and the admin key's: a session
    opened with a key that has since been changed matches neither, so rotating a leaked key ends
    the door sessions it opened. An unset key is tagged as the empty key, which no login accepts."""
    return sessions.key_tag(settings.staff_api_key or ""), sessions.key_tag(settings.admin_api_key or "")


def _session(
    request: Request, sessions: StaffSessions, settings: Settings, now: datetime
) -> StaffSession | None:
    return sessions.read(request, now, *_key_tags(sessions, settings))


class DoorLoginRequired(Unauthorized):
    code = "door_login_required"


class CsrfFailed(Forbidden):
    code = "csrf_failed"


async def door_staff(
    request: Request, sessions: DoorSessions, settings: CurrentSettings, clock: CurrentClock
) -> StaffSession:
    """The script's calls: a live door session and its CSRF header, or 401/403 the script explains."""
    session = _session(request, sessions, settings, clock())
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
    session = _session(request, sessions, settings, now)
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
        # What the service worker keeps for offline visits (never the login form).
        headers={"X-Door-Page": "scan"},
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
    # Tagged with the key typed (the one that matched): the session lasts as long as that key does.
    sessions.start(request, response, clock(), sessions.key_tag(key))
    log.info("door.logged_in")
    return response


@router.post("/door/logout")
async def log_out(
    request: Request, sessions: DoorSessions, settings: CurrentSettings, clock: CurrentClock
) -> Response:
    session = _session(request, sessions, settings, clock())
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
async def batch(
    body: CheckinBatchIn, staff: DoorStaff, database: Db, keys: TicketKeys, clock: CurrentClock
) -> dict[str, Any]:
    """`POST /api/checkin/batch` for the page: the scans it made offline."""
    scans = [
        tickets.OfflineScan(item.code, item.scanned_at, item.device_id or body.device_id)
        for item in body.scans
    ]
    results = await tickets.scan_offline_batch(
        database, keys, scans, door_event_id=body.event_id, now=clock()
    )
    log.info("door.synced", scans=len(scans), event_id=body.event_id)
    return batch_body(results)


@router.get("/door/events/{event_id}/known")
async def known(
    event_id: str,
    staff: DoorStaff,
    database: Db,
    clock: CurrentClock,
    since: Annotated[datetime | None, Query(description="only what changed from then on")] = None,
) -> JSONResponse:
    """What the signature cannot tell offline: the event's void tickets, and those let in (when, by
    which door), by serial. The page asks every KNOWN_REFRESH_SECONDS while online and keeps the
    answer in localStorage. Serials are 64-bit: sent as strings, which JavaScript numbers cannot
    hold exactly."""
    if not event_id.isdecimal() or not 1 <= int(event_id) <= MAX_ID:
        return JSONResponse({"error": "event_not_found", "message": "No such event."}, status_code=404)
    as_of = clock()
    try:
        async with database.read_session() as session:
            found = await tickets.door_knowledge(session, int(event_id), since=since)
    except DomainError as error:
        return JSONResponse({"error": error.code, "message": str(error)}, status_code=error.status_code)
    return JSONResponse(
        {
            "eventId": int(event_id),
            # The next ask's `since`, less a margin (KNOWN_MARGIN_SECONDS in js/door.js) for scans
            # written a moment before this read but committed after it.
            "asOf": as_of.isoformat(),
            "void": [str(serial) for serial in found.void],
            "checkedIn": [
                {"serial": str(serial), "at": at.isoformat(), "door": device}
                for serial, at, device in found.checked_in
            ],
        },
        headers={"Cache-Control": "no-store"},
    )


@router.get("/door/sw.js")
async def service_worker() -> Response:
    """The door's service worker: the page and its files open offline after one online visit. It
    names the static files of this build (their addresses carry its hash), so a new build is a new
    worker that fetches the new files and drops the old ones."""
    body = SERVICE_WORKER.replace("__VERSION__", json.dumps(VERSION)).replace(
        "__FILES__", json.dumps([static_url(name) for name in DOOR_FILES])
    )
    return Response(
        body,
        media_type="text/javascript",
        headers={
            # A worker is held to the policy of its own script's response, not the page's: without
            # this one it could fetch, or import scripts from, anywhere.
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            # Served under /door/ but controlling /door itself (the page's address has no slash).
            "Service-Worker-Allowed": DOOR_PATH,
            # Browsers check for a new worker on each visit; it must not come from a cache.
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
        },
    )


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
        "knownUrl": "/door/events/{id}/known",
        "workerUrl": "/door/sw.js",
        "workerScope": DOOR_PATH,
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
            "known": _("Known offline: %(void)s void, %(used)s already used (as of %(time)s)."),
        },
    }
