"""Staff logins for the pages: a key typed once, then a signed, expiring, HttpOnly session cookie,
and CSRF tokens on every form and every call the page's scripts make.

One `StaffSessions` per staff area (`door`, `admin`): each area signs with a key of its own
derived from SECRET_KEY, so a door cookie never opens the admin console, and neither can be
confused with the buyers' queue, access and order tokens. A session may carry a tag of the key it
was opened with (`key_tag`, a keyed digest, never the key): the console's and the door's do, so
changing ADMIN_API_KEY closes every console session at once, and changing STAFF_API_KEY (or
ADMIN_API_KEY) every door session opened with it.

The session is stateless (an HS256 JWT in the cookie: area, a random session id, expiry): nothing
to store or clean up, and every replica reads it. The price is that logging out deletes the
cookie but cannot revoke a copy of it before it expires; the cookie is HttpOnly and SameSite=Strict
and lives one shift, so a copy is hard to get and short-lived.

CSRF: a session's token is HMAC(session id); forms carry it in a hidden field and scripts in the
`X-CSRF-Token` header. Before login there is no session, so the login form is tied to a random
nonce in a short-lived cookie (double submit, signed): another site cannot log a phone into its
own session.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import parse_qs

import jwt
from fastapi import Request, Response

from ticketera.kit.security import secrets_match
from ticketera.kit.tokens import ALGORITHM
from ticketera.web.rendering import Page, PageAnswer


def retry_after_seconds(waited: float | None) -> int:
    """A rate limit's wait as the Retry-After header and the login pages say it: whole seconds, at
    least one."""
    return max(1, round(waited or 1))


def too_many_attempts(page: Page, wait: int) -> str:
    """What a login page says past the rate limit (the admin's and the door's)."""
    return page.locale.ngettext(
        "Too many attempts. Try again in %(num)d second.",
        "Too many attempts. Try again in %(num)d seconds.",
        wait,
    ) % {"num": wait}


CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf"
LOGIN_NONCE_SECONDS = 3600
# A form is a key and a token: anything much longer is not one of ours.
MAX_FORM_BYTES = 8192


@dataclass(frozen=True)
class StaffSession:
    session_id: str
    expires_at: datetime


class StaffSessions:
    """Issues and reads the session cookies of one staff area, and its CSRF tokens."""

    def __init__(self, secret_key: str, *, area: str, path: str, lifetime: timedelta) -> None:
        self.area = area
        self.path = path
        self.lifetime = lifetime
        self.cookie = f"{area}_session"
        self.login_cookie = f"{area}_login"
        label = f"ticketera.web.sessions:{area}".encode()
        self._key = hmac.new(secret_key.encode(), label, hashlib.sha256).digest()

    # -- the session --------------------------------------------------------------------------

    def key_tag(self, key: str) -> str:
        """A short keyed digest of the key a session is opened with: it tells which key opened it
        without the cookie ever carrying the key, and cannot be reversed without SECRET_KEY."""
        return self._mac(f"key:{key}")[:32]

    def issue(self, now: datetime, key_tag: str = "") -> tuple[str, StaffSession]:
        session = StaffSession(secrets.token_urlsafe(18), now + self.lifetime)
        claims = {
            "typ": self.area,
            "sid": session.session_id,
            "kt": key_tag,
            "exp": int(session.expires_at.timestamp()),
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM), session

    def read(self, request: Request, now: datetime, *key_tags: str) -> StaffSession | None:
        """The request's session, or None when there is none, it expired, it was not ours, or it
        was opened with another key than those `key_tags` name (none given: a session opened
        without a tag). Several, because the door opens with the staff key or the admin key."""
        token = request.cookies.get(self.cookie)
        if not token or len(token) > 1000:
            return None
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                options={"require": ["typ", "sid", "exp"], "verify_exp": False},
            )
        except jwt.PyJWTError:
            return None
        # Expiry against the app's clock, not the machine's: tests move time instead of waiting.
        expires_at = datetime.fromtimestamp(int(claims["exp"]), tz=now.tzinfo)
        if claims["typ"] != self.area or not isinstance(claims["sid"], str) or expires_at <= now:
            return None
        opened_with = str(claims.get("kt", "")).encode()
        if not any(hmac.compare_digest(opened_with, tag.encode()) for tag in key_tags or ("",)):
            return None
        return StaffSession(claims["sid"], expires_at)

    def start(self, request: Request, response: Response, now: datetime, key_tag: str = "") -> StaffSession:
        token, session = self.issue(now, key_tag)
        response.set_cookie(
            self.cookie,
            token,
            max_age=int(self.lifetime.total_seconds()),
            path=self.path,
            httponly=True,
            samesite="strict",
            secure=_secure(request),
        )
        response.delete_cookie(self.login_cookie, path=self.path)
        return session

    def end(self, response: Response) -> None:
        response.delete_cookie(self.cookie, path=self.path, httponly=True, samesite="strict")

    # -- CSRF ---------------------------------------------------------------------------------

    def csrf_token(self, session: StaffSession) -> str:
        return self._mac(f"csrf:{session.session_id}")

    def csrf_ok(self, session: StaffSession, given: str | None) -> bool:
        return secrets_match(given, self.csrf_token(session))

    def login_nonce(self, request: Request) -> str:
        """The login form's nonce: the browser's own if it has one (two open login tabs both work)."""
        nonce = request.cookies.get(self.login_cookie)
        return nonce if nonce and len(nonce) <= 64 else secrets.token_urlsafe(18)

    def login_token(self, nonce: str) -> str:
        return self._mac(f"login:{nonce}")

    def keep_login_nonce(self, request: Request, response: Response, nonce: str) -> None:
        response.set_cookie(
            self.login_cookie,
            nonce,
            max_age=LOGIN_NONCE_SECONDS,
            path=self.path,
            httponly=True,
            samesite="strict",
            secure=_secure(request),
        )

    def login_token_ok(self, request: Request, given: str | None) -> bool:
        nonce = request.cookies.get(self.login_cookie)
        return bool(nonce) and secrets_match(given, self._mac(f"login:{nonce}"))

    def _mac(self, message: str) -> str:
        return hmac.new(self._key, message.encode(), hashlib.sha256).hexdigest()


@functools.cache
def staff_sessions(secret_key: str, area: str, path: str, lifetime_seconds: int) -> StaffSessions:
    """One per process and area: the derived key is computed once."""
    return StaffSessions(secret_key, area=area, path=path, lifetime=timedelta(seconds=lifetime_seconds))


def _secure(request: Request) -> bool:
    # Behind nginx the proxy headers have already made the scheme the client's.
    return request.url.scheme == "https"


async def read_form(
    request: Request, *, max_bytes: int = MAX_FORM_BYTES, max_fields: int = 20
) -> dict[str, str]:
    """An urlencoded form, the first value of each field, blanks kept (a form with an empty field
    is told so next to it). A body past `max_bytes` is answered 413: no form of ours is that long.

    Parsed here rather than with FastAPI's `Form`, which needs python-multipart for forms that
    never carry files.
    """
    body = await request.body()
    if len(body) > max_bytes:
        raise PageAnswer(Response("form too large", status_code=413, media_type="text/plain"))
    if (
        request.headers.get("content-type", "").split(";")[0].strip().lower()
        != "application/x-www-form-urlencoded"
    ):
        return {}
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=max_fields)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {name: values[0] for name, values in fields.items() if values}
