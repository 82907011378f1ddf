"""Bearer-token checks shared by admin, staff and later token-bearing endpoints."""

from __future__ import annotations

import hmac


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def secrets_match(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison, so response timing never leaks how much of a key was right."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())
