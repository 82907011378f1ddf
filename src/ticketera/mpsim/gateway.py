"""What stands in front of the official-shaped API: request log, injected faults, bearer auth, idempotency.

An ASGI middleware rather than a FastAPI dependency because idempotency has to see the whole answer
(status, headers, body) to replay it byte for byte, and faults have to answer before any route runs.

Idempotency follows MercadoPago: a POST or PUT carrying `X-Idempotency-Key` is remembered under
(method, path, key). The same key with the same body replays the first answer; with a different body
it is a 409. Answers of 500 and above are not remembered, so a retry after a server error runs again.
A second request with a key whose first request is still running gets 423 (locked), as MercadoPago's.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ticketera.kit.clock import Clock, utc_now
from ticketera.kit.security import bearer_token, secrets_match
from ticketera.mpsim.errors import error_body
from ticketera.mpsim.store import format_date

OFFICIAL_PREFIXES = ("/v1/", "/checkout/preferences")
IDEMPOTENT_METHODS = frozenset({"POST", "PUT"})
MAX_IDEMPOTENCY_KEY_LENGTH = 64

log = structlog.get_logger(__name__)


def is_official_path(path: str) -> bool:
    return path.startswith(OFFICIAL_PREFIXES)


@dataclass
class Fault:
    id: int
    status: int | None
    remaining: int
    method: str | None = None
    path_prefix: str | None = None
    delay_seconds: float = 0.0

    def matches(self, method: str, path: str) -> bool:
        return (
            self.remaining > 0
            and (self.method is None or self.method.upper() == method)
            and (self.path_prefix is None or path.startswith(self.path_prefix))
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "remaining": self.remaining,
            "method": self.method,
            "pathPrefix": self.path_prefix,
            "delaySeconds": self.delay_seconds,
        }


@dataclass
class RequestRecord:
    method: str
    path: str
    query: str
    idempotency_key: str | None
    at: datetime
    status: int | None = None
    replayed: bool = False
    fault: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "status": self.status,
            "idempotencyKey": self.idempotency_key,
            "at": format_date(self.at),
            "replayed": self.replayed,
            "fault": self.fault,
        }


@dataclass
class StoredAnswer:
    fingerprint: str
    done: bool = False
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""


class Gateway:
    """The gateway's state: faults waiting to fire, the request log, remembered answers."""

    def __init__(self) -> None:
        self.faults: list[Fault] = []
        self.requests: list[RequestRecord] = []
        self.answers: dict[tuple[str, str, str], StoredAnswer] = {}
        self._fault_ids = itertools.count(1)

    def reset(self) -> None:
        self.faults.clear()
        self.requests.clear()
        self.answers.clear()

    def add_fault(
        self,
        *,
        status: int | None,
        count: int,
        method: str | None,
        path_prefix: str | None,
        delay_seconds: float,
    ) -> Fault:
        fault = Fault(next(self._fault_ids), status, count, method, path_prefix, delay_seconds)
        self.faults.append(fault)
        return fault

    def take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.matches(method, path):
                fault.remaining -= 1
                return fault
        return None


def _fingerprint(body: bytes) -> str:
    """Bodies that mean the same JSON are the same request, whatever their spacing or key order."""
    if not body.strip():
        return "{}"
    try:
        return json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"))
    except ValueError:
        return "raw:" + hashlib.sha256(body).hexdigest()


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    content = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})


def _delayed(send: Send, seconds: float) -> Send:
    async def send_later(message: Message) -> None:
        if message["type"] == "http.response.start":
            await asyncio.sleep(seconds)
        await send(message)

    return send_later


class OfficialApiMiddleware:
    def __init__(self, app: ASGIApp, *, gateway: Gateway, access_token: str, clock: Clock = utc_now) -> None:
        self.app = app
        self.gateway = gateway
        self.access_token = access_token
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_official_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        path: str = scope["path"]
        headers = Headers(scope=scope)
        key = headers.get("x-idempotency-key")
        record = RequestRecord(method, path, scope["query_string"].decode("latin-1"), key, self.clock())
        self.gateway.requests.append(record)

        async def log_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
            await send(message)

        send_logged: Send = log_status

        fault = self.gateway.take_fault(method, path)
        if fault is not None:
            record.fault = True
            log.info("mpsim.fault.fired", method=method, path=path, status=fault.status)
            if fault.status is not None and fault.status >= 400:
                if fault.delay_seconds > 0:
                    await asyncio.sleep(fault.delay_seconds)
                message = "Simulated failure" if fault.status >= 500 else "Simulated error"
                await _send_json(send_logged, fault.status, error_body(fault.status, message))
                return
            if fault.delay_seconds > 0:
                # No error status: the request runs at once and only its answer is held back, like a
                # payment MercadoPago made whose answer the client stopped waiting for.
                send_logged = _delayed(send_logged, fault.delay_seconds)
        if not secrets_match(bearer_token(headers.get("authorization")), self.access_token):
            await _send_json(send_logged, 401, error_body(401, "invalid access token", code="unauthorized"))
            return
        if method in IDEMPOTENT_METHODS and key is not None:
            await self._idempotent(scope, receive, send_logged, record, key)
            return
        await self.app(scope, receive, send_logged)

    async def _idempotent(
        self, scope: Scope, receive: Receive, send: Send, record: RequestRecord, key: str
    ) -> None:
        if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH:
            await _send_json(
                send,
                400,
                error_body(
                    400, "X-Idempotency-Key must be 1 to 64 characters", code="invalid_idempotency_key"
                ),
            )
            return
        body = await _read_body(receive)
        fingerprint = _fingerprint(body)
        slot = (record.method, record.path, key)
        stored = self.gateway.answers.get(slot)
        if stored is not None and not stored.done:
            # MercadoPago locks a key while its first request runs (the SDK maps 423 to
            # MPResourceLockedError, "retryable"); it does not queue the second request.
            await _send_json(
                send,
                423,
                error_body(
                    423,
                    "A request with this idempotency key is still in progress; retry later",
                    code="idempotency_key_locked",
                ),
            )
            return
        if stored is not None:
            if stored.fingerprint != fingerprint:
                await _send_json(
                    send,
                    409,
                    error_body(
                        409,
                        "The idempotency key was already used with a different request body",
                        code="idempotency_key_conflict",
                    ),
                )
                return
            record.replayed = True
            await send({"type": "http.response.start", "status": stored.status, "headers": stored.headers})
            await send({"type": "http.response.body", "body": stored.body})
            return

        answer = StoredAnswer(fingerprint)
        self.gateway.answers[slot] = answer
        body_sent = False

        async def replay_body() -> Message:
            nonlocal body_sent
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        def settle(chunks: list[bytes]) -> None:
            if answer.done:
                return
            answer.body = b"".join(chunks)
            answer.done = True
            if answer.status == 0 or answer.status >= 500:
                self.gateway.answers.pop(slot, None)

        held: list[Message] = []

        async def capture(message: Message) -> None:
            # The answer is remembered before any of it leaves, so a retry that arrives while a slow
            # network (a delay fault) still carries the first answer is replayed, not locked out.
            held.append(message)
            if message["type"] == "http.response.start":
                answer.status = message["status"]
                answer.headers = list(message.get("headers", []))
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                settle([sent.get("body", b"") for sent in held if sent["type"] == "http.response.body"])
                for pending in held:
                    await send(pending)
                held.clear()

        try:
            await self.app(scope, replay_body, capture)
        finally:
            if not answer.done:
                # The app failed before finishing its answer: nothing to replay.
                answer.status = 0
                settle([])
