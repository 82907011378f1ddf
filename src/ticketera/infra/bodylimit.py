"""A bound on request bodies, in the app itself, whatever sits in front of it.

A body declared larger than the limit (Content-Length) is answered 413 before a byte of it is read;
one that does not declare its size (chunked) is counted as it arrives and refused the moment it
passes the limit, so a 200 MB upload never lands in memory. nginx has its own limit; this one
holds when the app is reached without it (a replica's port, a misconfigured proxy).

Hand-written because Starlette has no body limit of its own, and the few packages that add one
(as middleware that buffers the body first) would read what they are meant to refuse.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAYLOAD_TOO_LARGE = "payload_too_large"


class PayloadTooLarge(HTTPException):
    """Raised from the body stream itself: FastAPI re-raises an HTTPException met while reading a
    body (any other error there becomes a 400), and the app's handler renders it as the contract says."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large_message(limit))


def too_large_message(limit: int) -> str:
    return f"The request body is larger than this call takes ({limit:,} bytes at most)."


class BodySizeLimitMiddleware:
    def __init__(
        self, app: ASGIApp, *, max_bytes: int, bulk_max_bytes: int, bulk_paths: Iterable[str]
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.bulk_max_bytes = bulk_max_bytes
        self._bulk = re.compile("|".join(f"(?:{path})" for path in bulk_paths))

    def limit_for(self, scope: Scope) -> int:
        if scope["method"] == "POST" and self._bulk.fullmatch(scope["path"]):
            return self.bulk_max_bytes
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            response = JSONResponse(
                {"error": PAYLOAD_TOO_LARGE, "message": too_large_message(limit)},
                status_code=413,
                headers={"Connection": "close"},
            )
            await response(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(limit)
            return message

        await self.app(scope, counted, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
