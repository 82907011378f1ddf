"""Who stands in line: a place belongs to whoever joined, never to whoever knows a `userId`.

The rules, in the order a join applies them:

1. A join carrying the bearer queue token of an earlier join is that same person (a reload, a second
   tab): same identity, same place.
2. A `userId` is trusted only with a `userAssertion` the organizer's site signed for it with the
   secret it shares with us (`USER_ASSERTION_SECRET`), the pattern known-user integrations use:
   the same person on another device gets their place back.
3. Anything else is a newcomer with an anonymous identity of its own; a bare `userId` is a label
   and proves nothing.

Ticket limits (`maxTicketsPerUser`) count these identities: the access token names them.

An assertion is `v1.<expires>.<signature>`: `expires` in Unix seconds, at most a day ahead, and
`signature` the unpadded base64url HMAC-SHA256, keyed with the shared secret, of
`ticketera.user-assertion.v1|<userId>|<expires>`. The organizer's site makes one per signed-in user
in a few lines of any language (see the README); `ticketera user-assertion` prints one for tests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from datetime import datetime, timedelta

from ticketera.kit.errors import Unauthorized

# Anonymous identities start with a character no asserted `userId` may start with, so the two
# kinds can never name the same person.
ANONYMOUS_PREFIX = "~"
ASSERTION_MAX_LIFETIME = timedelta(days=1)
_VERSION = "v1"
_CONTEXT = b"ticketera.user-assertion.v1"
_ASSERTION = re.compile(r"v1\.([0-9]{1,12})\.([A-Za-z0-9_-]{43})")


class InvalidUserAssertion(Unauthorized):
    code = "invalid_user_assertion"


def anonymous_identity() -> str:
    """A fresh identity for a newcomer: 128 random bits nobody can guess or claim."""
    return ANONYMOUS_PREFIX + secrets.token_urlsafe(16)


def is_anonymous(identity: str) -> bool:
    return identity.startswith(ANONYMOUS_PREFIX)


class UserAssertions:
    """Checks (and, for the organizer's tests, makes) the signed statements that a user is who
    the organizer's site says."""

    def __init__(self, secret: str | None) -> None:
        self._key = secret.encode() if secret else None

    @property
    def accepted(self) -> bool:
        return self._key is not None

    def sign(self, user_id: str, expires_at: datetime) -> str:
        if self._key is None:
            raise InvalidUserAssertion("This deployment has no USER_ASSERTION_SECRET to sign with.")
        expires = int(expires_at.timestamp())
        return f"{_VERSION}.{expires}.{self._signature(self._key, user_id, expires)}"

    def verify(self, user_id: str, assertion: str, *, now: datetime) -> None:
        if self._key is None:
            raise InvalidUserAssertion(
                "This deployment does not accept user assertions (no USER_ASSERTION_SECRET)."
            )
        match = _ASSERTION.fullmatch(assertion)
        if match is None:
            raise InvalidUserAssertion("The user assertion is malformed.")
        expires = int(match.group(1))
        expected = self._signature(self._key, user_id, expires)
        if not hmac.compare_digest(expected, match.group(2)):
            raise InvalidUserAssertion("The user assertion was not signed for this user.")
        remaining = expires - now.timestamp()
        if remaining <= 0:
            raise InvalidUserAssertion("The user assertion has expired.")
        # A leaked assertion must not open someone's place for long: the organizer's site makes
        # a fresh one whenever it sends a user to the line.
        if remaining > ASSERTION_MAX_LIFETIME.total_seconds():
            raise InvalidUserAssertion("The user assertion lives longer than a day.")

    @staticmethod
    def _signature(key: bytes, user_id: str, expires: int) -> str:
        message = b"|".join((_CONTEXT, user_id.encode(), str(expires).encode()))
        digest = hmac.new(key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
