"""Signed tokens handed to buyers (JWT, HS256, keyed with a key derived from SECRET_KEY).

- The queue token names (event, user) and never expires: joining again, from any tab or device,
  hands out the very same token, and it lets its holder read their place in line.
- The access token names (event, user) and expires `accessMinutes` after the turn was claimed:
  purchase endpoints check it with no database or Redis round trip.
- The order token names one order and lets the buyer read it (and later its tickets).

Staff sessions (the console's and the door's cookies) are not these: see `ticketera.web.sessions`.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime

import jwt

from ticketera.kit.errors import Unauthorized

ALGORITHM = "HS256"
QUEUE_TOKEN = "queue"  # noqa: S105 - a token kind, not a secret
ACCESS_TOKEN = "access"  # noqa: S105 - a token kind, not a secret
ORDER_TOKEN = "order"  # noqa: S105 - a token kind, not a secret


class InvalidToken(Unauthorized):
    code = "invalid_token"


@dataclass(frozen=True)
class TokenClaims:
    event_id: int
    user_id: str
    expires_at: datetime | None


class TokenSigner:
    def __init__(self, secret_key: str) -> None:
        # A 256-bit key of its own, derived from SECRET_KEY: tokens of this kind can never be
        # confused with other values signed with the same secret.
        self._key = hmac.new(secret_key.encode(), b"ticketera.kit.tokens", hashlib.sha256).digest()

    def queue_token(self, event_id: int, user_id: str) -> str:
        # No issued-at or expiry: the same (event, user) always gets the same token.
        return jwt.encode(
            {"typ": QUEUE_TOKEN, "eid": event_id, "sub": user_id}, self._key, algorithm=ALGORITHM
        )

    def access_token(self, event_id: int, user_id: str, expires_at: datetime) -> str:
        claims = {"typ": ACCESS_TOKEN, "eid": event_id, "sub": user_id, "exp": int(expires_at.timestamp())}
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def order_token(self, order_id: int) -> str:
        return jwt.encode({"typ": ORDER_TOKEN, "oid": order_id}, self._key, algorithm=ALGORITHM)

    def verify_order_token(self, token: str | None, order_id: int) -> None:
        if not token:
            raise InvalidToken("An order token is required.")
        try:
            claims = jwt.decode(token, self._key, algorithms=[ALGORITHM], options={"require": ["typ", "oid"]})
        except jwt.PyJWTError as exc:
            raise InvalidToken("The order token is not valid.") from exc
        if claims["typ"] != ORDER_TOKEN or claims["oid"] != order_id:
            raise InvalidToken("The order token is not valid for this order.")

    def verify_queue_token(self, token: str | None, event_id: int) -> TokenClaims:
        return self._verify(token, event_id, QUEUE_TOKEN, now=None)

    def verify_access_token(self, token: str | None, event_id: int | None, *, now: datetime) -> TokenClaims:
        """The claims of a live access token for `event_id` (None: for whichever event it names)."""
        return self._verify(token, event_id, ACCESS_TOKEN, now=now)

    def _verify(
        self, token: str | None, event_id: int | None, kind: str, *, now: datetime | None
    ) -> TokenClaims:
        if not token:
            raise InvalidToken(f"A {kind} token is required.")
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                # Expiry is checked below against the app's clock, so tests can move time.
                options={"verify_exp": False, "require": ["typ", "eid", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"The {kind} token is not valid.") from exc
        named = claims["eid"]
        wrong_event = event_id is not None and named != event_id
        if (
            claims["typ"] != kind
            or wrong_event
            or not isinstance(named, int)
            or not isinstance(claims["sub"], str)
        ):
            raise InvalidToken(f"The {kind} token is not valid for this event.")
        expires_at = None
        if "exp" in claims:
            expires_at = datetime.fromtimestamp(int(claims["exp"]), tz=UTC)
        if now is not None and (expires_at is None or expires_at <= now):
            raise InvalidToken(f"The {kind} token has expired.")
        return TokenClaims(named, claims["sub"], expires_at)
