"""Per-event Ed25519 signing keys, stored encrypted with a key derived from SECRET_KEY.

AES-256-GCM (from `cryptography`) with the event id as associated data, so a stored key cannot be
moved to another event's row and still decrypt. The encryption key is HKDF-SHA256 of SECRET_KEY:
rotating SECRET_KEY without re-encrypting makes existing events' keys unreadable (new tickets
could not be issued for them), which is why it is derived with its own label and documented.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ticketera.tickets.codes import b64, unb64

_PREFIX = "v1."
_NONCE_BYTES = 12


@dataclass(frozen=True)
class StoredKey:
    public_key: str  # base64url of the 32 raw bytes, as published to scanners
    private_key_encrypted: str


class TicketKeyring:
    """Makes, encrypts and opens events' signing keys; keeps the opened ones for the process."""

    def __init__(self, secret_key: str) -> None:
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=b"ticketera", info=b"ticket-signing-keys/v1"
        ).derive(secret_key.encode())
        self._cipher = AESGCM(derived)
        # Keyed by the stored public key too: a key made in a transaction that then rolled back
        # must never be used to sign for the key that was stored in the end.
        self._opened: dict[tuple[int, str], Ed25519PrivateKey] = {}

    def new_key(self, event_id: int) -> StoredKey:
        private_key = Ed25519PrivateKey.generate()
        raw_private = private_key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._cipher.encrypt(nonce, raw_private, _associated(event_id))
        public = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return StoredKey(public_key=b64(public), private_key_encrypted=_PREFIX + b64(nonce + sealed))

    def private_key(self, event_id: int, stored: StoredKey) -> Ed25519PrivateKey:
        opened = self._opened.get((event_id, stored.public_key))
        if opened is None:
            if not stored.private_key_encrypted.startswith(_PREFIX):
                raise ValueError("unknown key encryption format")
            blob = unb64(stored.private_key_encrypted.removeprefix(_PREFIX))
            raw = self._cipher.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], _associated(event_id))
            opened = Ed25519PrivateKey.from_private_bytes(raw)
            self._opened[(event_id, stored.public_key)] = opened
        return opened


def _associated(event_id: int) -> bytes:
    return b"event:%d" % event_id
