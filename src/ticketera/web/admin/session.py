"""The console's door: the login with the admin key, the session cookie, CSRF tokens, log out.

The session is the staff areas' (`web.sessions`, area `admin`): a signed cookie that is HttpOnly (no
script reads it), SameSite=Strict (no other site's page or link sends it: an organizer following
a link from an email logs in again, a small price for a console that refunds money), Secure when
the page came over https, scoped to `/admin`, and expiring after `SESSION_HOURS`. Nothing is
stored on the server; the session carries a tag of the admin key it was opened with, so changing
ADMIN_API_KEY ends every session at once.

Every form carries a CSRF token derived from the session id and checked on every POST; the login
form, before there is a session, has one derived from a short-lived login cookie of its own, so a
foreign page cannot log a browser into a session of the attacker's choosing either.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

import structlog
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ticketera.config import Settings
from ticketera.infra.ratelimit import Limiter, RateLimited
from ticketera.kit.http import CurrentClock, CurrentSettings, client_ip
from ticketera.kit.security import secrets_match
from ticketera.web.rendering import CurrentPage, Page, PageAnswer
from ticketera.web.sessions import (
    CSRF_FIELD,
    StaffSession,
    StaffSessions,
    read_form,
    retry_after_seconds,
    staff_sessions,
    too_many_attempts,
)

log = structlog.get_logger(__name__)

AREA = "admin"
COOKIE_PATH = "/admin"
SESSION_HOURS = 8  # a working day of an on-sale, then the key again
# A form larger than this is no form of ours (the event builder with its sections is a few kB).
MAX_FORM_BYTES = 64 * 1024
MAX_FORM_FIELDS = 2000
HOME = "/admin"

router = APIRouter(include_in_schema=False)


def admin_sessions(settings: Settings) -> StaffSessions:
    return staff_sessions(settings.secret_key, AREA, COOKIE_PATH, SESSION_HOURS * 3600)


def _key_tag(sessions: StaffSessions, settings: Settings) -> str:
    return sessions.key_tag(settings.admin_api_key or "")


def _local_target(target: str | None) -> str:
    """Where to go after logging in: a console page only, never another site (`//evil.example`)."""
    if target and target.startswith(COOKIE_PATH) and not target.startswith(("//", "/\\")):
        return target
    return HOME


@dataclass(frozen=True)
class AdminPage:
    """A console page for a logged-in organizer: the page, the session and its form token."""

    page: Page
    session: StaffSession
    csrf: str

    def _(self, message: str) -> str:
        return self.page._(message)

    def render(self, template: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
        return self.page.render(
            template, status_code=status_code, csrf=self.csrf, csrf_field=CSRF_FIELD, admin=True, **context
        )

    def error(self, status_code: int, title: str, message: str, **context: Any) -> HTMLResponse:
        return self.render(
            "error.html",
            status_code=status_code,
            title=title,
            message=message,
            back_url=HOME,
            layout="admin/layout.html",
            back_text=self.page._("Back to the events"),
            **context,
        )


def session_of(request: Request, settings: Settings, now: datetime) -> StaffSession | None:
    if not settings.admin_api_key:
        return None
    sessions = admin_sessions(settings)
    return sessions.read(request, now, _key_tag(sessions, settings))


def _to_login(request: Request) -> RedirectResponse:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/admin/login?next={quote(here)}", status_code=303)


async def current_admin(
    request: Request, page: CurrentPage, settings: CurrentSettings, clock: CurrentClock
) -> AdminPage:
    """The logged-in organizer's page; a visitor without a valid session goes to the login."""
    session = session_of(request, settings, clock())
    if session is None:
        raise PageAnswer(_to_login(request))
    return AdminPage(page, session, admin_sessions(settings).csrf_token(session))


CurrentAdmin = Annotated[AdminPage, Depends(current_admin)]


async def read_console_form(request: Request) -> dict[str, str]:
    return await read_form(request, max_bytes=MAX_FORM_BYTES, max_fields=MAX_FORM_FIELDS)


@dataclass(frozen=True)
class AdminForm:
    """A console form posted with its session's CSRF token."""

    admin: AdminPage
    values: dict[str, str]

    def get(self, name: str, default: str = "") -> str:
        return self.values.get(name, default)


async def submitted_form(request: Request, admin: CurrentAdmin, settings: CurrentSettings) -> AdminForm:
    """Every POST of the console: a session (else the login) and its form token (else 403)."""
    values = await read_console_form(request)
    if not admin_sessions(settings).csrf_ok(admin.session, values.get(CSRF_FIELD)):
        log.warning("admin.csrf_refused", path=request.url.path, ip=client_ip(request))
        _ = admin.page._
        raise PageAnswer(
            admin.error(
                403,
                _("This form has expired"),
                _("The page was open too long or came from somewhere else. Open it again and repeat."),
            )
        )
    return AdminForm(admin, values)


CurrentForm = Annotated[AdminForm, Depends(submitted_form)]


def _login_page(
    page: Page,
    sessions: StaffSessions,
    target: str,
    *,
    status_code: int = 200,
    problem: str = "",
    wait: int | None = None,
) -> HTMLResponse:
    """The login form, with its token tied to the browser's login cookie (set again here)."""
    _ = page._
    nonce = sessions.login_nonce(page.request)
    response = page.render(
        "admin/login.html",
        status_code=status_code,
        title=_("Organizer login"),
        csrf=sessions.login_token(nonce),
        csrf_field=CSRF_FIELD,
        target=target,
        problem=problem,
    )
    if wait is not None:
        response.headers["Retry-After"] = str(wait)
    sessions.keep_login_nonce(page.request, response, nonce)
    return response


@router.get("/admin/login", response_class=HTMLResponse)
async def login_form(
    request: Request,
    page: CurrentPage,
    settings: CurrentSettings,
    clock: CurrentClock,
    target: Annotated[str, Query(alias="next", max_length=2000)] = HOME,
) -> Response:
    if session_of(request, settings, clock()) is not None:
        return RedirectResponse(_local_target(target), status_code=303)
    return _login_page(page, admin_sessions(settings), _local_target(target))


@router.post("/admin/login", response_class=HTMLResponse)
async def log_in(
    request: Request,
    page: CurrentPage,
    settings: CurrentSettings,
    clock: CurrentClock,
    limiter: Limiter,
) -> Response:
    _ = page._
    sessions = admin_sessions(settings)
    form = await read_console_form(request)
    target = _local_target(form.get("next"))
    if not sessions.login_token_ok(request, form.get(CSRF_FIELD)):
        return _login_page(
            page, sessions, target, status_code=403, problem=_("This form has expired. Enter the key again.")
        )
    key = form.get("key", "")
    try:
        # Counted like a call to the admin API: per address under APP_RATE_LIMIT, the right key exempt.
        await limiter.limit_public_call(client_ip(request), f"Bearer {key}")
    except RateLimited as exc:
        log.warning("admin.login_rate_limited", ip=client_ip(request))
        wait = retry_after_seconds(exc.retry_after)
        # A page, not the API's JSON answer: a person typed the key, and is told how long to wait.
        return _login_page(
            page, sessions, target, status_code=429, problem=too_many_attempts(page, wait), wait=wait
        )
    if not secrets_match(key, settings.admin_api_key):
        log.warning("admin.login_refused", ip=client_ip(request))
        return _login_page(page, sessions, target, status_code=401, problem=_("That is not the admin key."))
    log.info("admin.logged_in", ip=client_ip(request))
    response = RedirectResponse(target, status_code=303)
    sessions.start(request, response, clock(), _key_tag(sessions, settings))
    return response


@router.post("/admin/logout")
async def log_out(request: Request, form: CurrentForm, settings: CurrentSettings) -> Response:
    log.info("admin.logged_out", ip=client_ip(request))
    response = RedirectResponse("/admin/login", status_code=303)
    admin_sessions(settings).end(response)
    return response
