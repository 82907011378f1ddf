"""Ticket codes: Ed25519-signed, URL-safe, verifiable offline with the event's public key alone.

A code is base64url (no padding) of `version | serial | event id | seat id | signature`: one byte,
three unsigned 64-bit big-endian integers, and the 64-byte Ed25519 signature of everything before
it. 89 bytes, 119 characters: a version 7 QR code at medium error correction. The serial is random,
so codes cannot be enumerated; the signature means only the holder of the event's private key could
have made one. A scanner needs nothing but this module and the public key
(`GET /api/events/{id}/checkin-key`): it depends on `cryptography` only, on purpose.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

CODE_VERSION = 1
_PAYLOAD = struct.Struct(">BQQQ")
SIGNATURE_BYTES = 64
CODE_BYTES = _PAYLOAD.size + SIGNATURE_BYTES
CODE_LENGTH = len(base64.urlsafe_b64encode(b"\0" * CODE_BYTES).rstrip(b"="))
MAX_SERIAL = 2**63 - 1


class MalformedCode(ValueError):
    """Not a ticket code at all: wrong length, alphabet or version."""


class ForgedCode(ValueError):
    """Shaped like a code, but not signed by this event's key."""


@dataclass(frozen=True)
class TicketClaim:
    """What a code says about its ticket; trustworthy only after `verify`."""

    serial: int
    event_id: int
    seat_id: int


def new_serial() -> int:
    """A ticket's random serial: 63 bits from the OS CSPRNG (never 0)."""
    return secrets.randbelow(MAX_SERIAL) + 1


def b64(data: bytes) -> str:
    """Unpadded base64url, as codes and published public keys are written."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    """The bytes of unpadded base64url (binascii.Error or ValueError when it is not)."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_code(private_key: Ed25519PrivateKey, claim: TicketClaim) -> str:
    payload = _PAYLOAD.pack(CODE_VERSION, claim.serial, claim.event_id, claim.seat_id)
    return b64(payload + private_key.sign(payload))


def read_code(code: str) -> tuple[TicketClaim, bytes, bytes]:
    """Split a code into its claim, signed payload and signature, without checking the signature."""
    if len(code) != CODE_LENGTH:
        raise MalformedCode(f"a ticket code has {CODE_LENGTH} characters")
    try:
        raw = unb64(code)
    except (binascii.Error, ValueError) as exc:
        raise MalformedCode("a ticket code is base64url") from exc
    if len(raw) != CODE_BYTES:
        raise MalformedCode(f"a ticket code has {CODE_BYTES} bytes")
    payload, signature = raw[: _PAYLOAD.size], raw[_PAYLOAD.size :]
    version, serial, event_id, seat_id = _PAYLOAD.unpack(payload)
    if version != CODE_VERSION:
        raise MalformedCode(f"unknown ticket code version {version}")
    return TicketClaim(serial, event_id, seat_id), payload, signature


def claimed_event(code: str) -> int:
    """The event a code says it is for: which public key to verify it with."""
    return read_code(code)[0].event_id


def verify_code(code: str, public_key: Ed25519PublicKey | bytes) -> TicketClaim:
    """The code's claim if `public_key` signed it; MalformedCode or ForgedCode otherwise."""
    claim, payload, signature = read_code(code)
    key = Ed25519PublicKey.from_public_bytes(public_key) if isinstance(public_key, bytes) else public_key
    try:
        key.verify(signature, payload)
    except InvalidSignature as exc:
        raise ForgedCode("the code was not signed by this event's key") from exc
    return claim
