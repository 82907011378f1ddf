"""The console's door: the login with the admin key, the session cookie, CSRF tokens, log out.

The session is a signed token (`TokenSigner.admin_session`) in a cookie that is HttpOnly (no
script reads it), SameSite=Strict (no other site's page or link sends it: an organizer following
a link from an email logs in again, a small price for a console that refunds money), Secure when
the page came over https, scoped to `/admin`, and expiring after `SESSION_HOURS`. Nothing is
stored on the server: changing ADMIN_API_KEY ends every session at once (the token carries a tag
of the key it was opened with).

Every form carries a CSRF token derived from the session id and checked on every POST; the login
form, before there is a session, has one derived from a short-lived login cookie of its own, so a
foreign page cannot log a browser into a session of the attacker's choosing either.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

import structlog
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ticketera.config import Settings
from ticketera.infra.ratelimit import Limiter, RateLimited
from ticketera.kit.http import CurrentClock, CurrentSettings, Signer, client_ip
from ticketera.kit.security import secrets_match
from ticketera.kit.tokens import AdminSession, InvalidToken, TokenSigner
from ticketera.web.rendering import CurrentPage, Page, PageAnswer
from ticketera.web.sessions import retry_after_seconds, too_many_attempts

log = structlog.get_logger(__name__)

SESSION_COOKIE = "ticketera_admin"
LOGIN_COOKIE = "ticketera_admin_login"
COOKIE_PATH = "/admin"
SESSION_HOURS = 8  # a working day of an on-sale, then the key again
LOGIN_FORM_SECONDS = 3600
CSRF_FIELD = "csrf"
# A form larger than this is no form of ours (the event builder with its sections is a few kB).
MAX_FORM_BYTES = 64 * 1024
HOME = "/admin"

router = APIRouter(include_in_schema=False)


def _key_tag(signer: TokenSigner, admin_key: str | None) -> str:
    return signer.key_tag(admin_key or "")


def _secure(request: Request) -> bool:
    # Behind nginx, uvicorn's proxy headers have already made the scheme the browser's.
    return request.url.scheme == "https"


def _local_target(target: str | None) -> str:
    """Where to go after logging in: a console page only, never another site (`//evil.example`)."""
    if target and target.startswith(COOKIE_PATH) and not target.startswith(("//", "/\\")):
        return target
    return HOME


@dataclass(frozen=True)
class AdminPage:
    """A console page for a logged-in organizer: the page, the session and its form token."""

    page: Page
    session: AdminSession
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


def session_of(
    request: Request, signer: TokenSigner, settings: Settings, now: datetime
) -> AdminSession | None:
    if not settings.admin_api_key:
        return None
    try:
        return signer.verify_admin_session(
            request.cookies.get(SESSION_COOKIE), key_tag=_key_tag(signer, settings.admin_api_key), now=now
        )
    except InvalidToken:
        return None


def _to_login(request: Request) -> RedirectResponse:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/admin/login?next={quote(here)}", status_code=303)


async def current_admin(
    request: Request, page: CurrentPage, signer: Signer, settings: CurrentSettings, clock: CurrentClock
) -> AdminPage:
    """The logged-in organizer's page; a visitor without a valid session goes to the login."""
    session = session_of(request, signer, settings, clock())
    if session is None:
        raise PageAnswer(_to_login(request))
    return AdminPage(page, session, signer.csrf_token(session.session_id))


CurrentAdmin = Annotated[AdminPage, Depends(current_admin)]


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form, first value of each field (parsed here: FastAPI's Form() would need
    python-multipart for forms that never carry files)."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise PageAnswer(Response("form too large", status_code=413, media_type="text/plain"))
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return {}
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=2000)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {name: values[0] for name, values in fields.items()}


@dataclass(frozen=True)
class AdminForm:
    """A console form posted with its session's CSRF token."""

    admin: AdminPage
    values: dict[str, str]

    def get(self, name: str, default: str = "") -> str:
        return self.values.get(name, default)


async def submitted_form(request: Request, admin: CurrentAdmin, signer: Signer) -> AdminForm:
    """Every POST of the console: a session (else the login) and its form token (else 403)."""
    values = await read_form(request)
    if not signer.csrf_matches(admin.session.session_id, values.get(CSRF_FIELD)):
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
    page: Page, signer: TokenSigner, nonce: str, target: str, *, status_code: int = 200, problem: str = ""
) -> HTMLResponse:
    _ = page._
    return page.render(
        "admin/login.html",
        status_code=status_code,
        title=_("Organizer login"),
        csrf=signer.csrf_token("login:" + nonce),
        csrf_field=CSRF_FIELD,
        target=target,
        problem=problem,
    )


def _with_login_cookie(request: Request, response: Response, nonce: str) -> Response:
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=LOGIN_FORM_SECONDS,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    return response


@router.get("/admin/login", response_class=HTMLResponse)
async def login_form(
    request: Request,
    page: CurrentPage,
    signer: Signer,
    settings: CurrentSettings,
    clock: CurrentClock,
    target: Annotated[str, Query(alias="next", max_length=2000)] = HOME,
) -> Response:
    if session_of(request, signer, settings, clock()) is not None:
        return RedirectResponse(_local_target(target), status_code=303)
    nonce = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(16)
    return _with_login_cookie(request, _login_page(page, signer, nonce, _local_target(target)), nonce)


@router.post("/admin/login", response_class=HTMLResponse)
async def log_in(
    request: Request,
    page: CurrentPage,
    signer: Signer,
    settings: CurrentSettings,
    clock: CurrentClock,
    limiter: Limiter,
) -> Response:
    _ = page._
    form = await read_form(request)
    target = _local_target(form.get("next"))
    nonce = request.cookies.get(LOGIN_COOKIE) or ""
    if not nonce or not signer.csrf_matches("login:" + nonce, form.get(CSRF_FIELD)):
        nonce = secrets.token_urlsafe(16)
        page_ = _login_page(
            page,
            signer,
            nonce,
            target,
            status_code=403,
            problem=_("This form has expired. Enter the key again."),
        )
        return _with_login_cookie(request, page_, nonce)
    key = form.get("key", "")
    try:
        # Counted like a call to the admin API: per address under APP_RATE_LIMIT, the right key exempt.
        await limiter.limit_public_call(client_ip(request), f"Bearer {key}")
    except RateLimited as exc:
        log.warning("admin.login_rate_limited", ip=client_ip(request))
        wait = retry_after_seconds(exc.retry_after)
        # A page, not the API's JSON answer: a person typed the key, and is told how long to wait.
        refused = _login_page(
            page,
            signer,
            nonce,
            target,
            status_code=429,
            problem=too_many_attempts(page, wait),
        )
        refused.headers["Retry-After"] = str(wait)
        return refused
    if not secrets_match(key, settings.admin_api_key):
        log.warning("admin.login_refused", ip=client_ip(request))
        return _login_page(
            page, signer, nonce, target, status_code=401, problem=_("That is not the admin key.")
        )
    session_id = secrets.token_urlsafe(18)
    expires_at = clock() + timedelta(hours=SESSION_HOURS)
    token = signer.admin_session(session_id, _key_tag(signer, settings.admin_api_key), expires_at)
    log.info("admin.logged_in", ip=client_ip(request))
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=SESSION_HOURS * 3600,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    response.delete_cookie(LOGIN_COOKIE, path=COOKIE_PATH)
    return response


@router.post("/admin/logout")
async def log_out(request: Request, form: CurrentForm) -> Response:
    log.info("admin.logged_out", ip=client_ip(request))
    response = RedirectResponse("/admin/login", status_code=303)
    response.delete_cookie(
        SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict", secure=_secure(request)
    )
    return response
