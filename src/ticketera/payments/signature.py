"""MercadoPago's webhook signature: `x-signature: ts=<ts>,v1=<hex>` over a manifest.

manifest = `id:<data.id from the query>;request-id:<x-request-id>;ts:<ts>;` (a pair whose value is
absent is left out), v1 = hex(HMAC-SHA256(webhook secret, manifest)). Tolerated disagreements, from
MERCADOPAGO.md: alphanumeric ids signed lowercased or in their original casing (both are tried), and
`ts` in seconds or milliseconds (above 1e11 it is milliseconds). Stale timestamps are refused so a
captured notification cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import datetime

from ticketera.kit.errors import Unauthorized

MILLISECONDS_THRESHOLD = 100_000_000_000
# ASCII only: str.isdigit() also takes digits of other scripts, which int() may then refuse.
_TS = re.compile(r"[0-9]{1,16}")
_V1 = re.compile(r"[0-9a-fA-F]{64}")


class InvalidSignature(Unauthorized):
    code = "invalid_signature"


def parse_signature(header: str | None) -> tuple[str, str]:
    """The (ts, v1) pair of an `x-signature` header; InvalidSignature when it is malformed."""
    if not header:
        raise InvalidSignature("The x-signature header is missing.")
    parts: dict[str, str] = {}
    for piece in header.split(","):
        key, sep, value = piece.strip().partition("=")
        if sep:
            parts[key.strip().lower()] = value.strip()
    ts, v1 = parts.get("ts", ""), parts.get("v1", "")
    if not _TS.fullmatch(ts) or not _V1.fullmatch(v1):
        raise InvalidSignature("The x-signature header must carry ts=<digits>,v1=<64 hex digits>.")
    return ts, v1


def manifest(data_id: str | None, request_id: str | None, ts: str) -> str:
    text = ""
    if data_id:
        text += f"id:{data_id};"
    if request_id:
        text += f"request-id:{request_id};"
    return text + f"ts:{ts};"


def sign(secret: str, message: str) -> str:
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def verify_signature(
    *,
    header: str | None,
    request_id: str | None,
    data_id: str | None,
    secret: str,
    now: datetime,
    tolerance_seconds: float,
) -> None:
    """Raise InvalidSignature unless the notification was signed with `secret`, recently."""
    ts, v1 = parse_signature(header)
    sent_at = int(ts) / 1000 if int(ts) > MILLISECONDS_THRESHOLD else int(ts)
    if abs(now.timestamp() - sent_at) > tolerance_seconds:
        raise InvalidSignature("The notification's timestamp is too far from now; refusing a replay.")
    candidates = [data_id]
    if data_id and data_id.lower() != data_id:
        candidates.append(data_id.lower())
    # Every candidate is compared (no early exit) so the time taken says nothing about which failed.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(sign(secret, manifest(candidate, request_id, ts)), v1.lower())
    if not matched:
        raise InvalidSignature("The notification's signature does not match.")
