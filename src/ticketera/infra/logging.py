"""structlog set-up and the request-id middleware.

Every line is structured: JSON lines in production and staging (and always in the log file under
LOG_DIR, which `ticketera logs` reads), readable coloured lines on a development console. The
standard library's loggers (uvicorn, SQLAlchemy, Alembic) go through the same processors.

No line carries a secret: tracebacks are rendered without frame locals (a handler's locals hold
the request's headers), fields named like credentials are masked, and the configured secrets
(admin and staff keys, SECRET_KEY, MercadoPago's token and webhook secret) are masked wherever
they appear in a value, an error message included. Every field is cut at MAX_FIELD_CHARS and a
traceback at MAX_TRACEBACK_FRAMES, so an error is one bounded line.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import re
import sys
import time
import uuid
from collections.abc import Iterable, MutableMapping
from pathlib import Path
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ticketera.kit.errors import INTERNAL_ERROR_BODY

LOG_FILE_NAME = "ticketera.log"
# A client-supplied id is echoed only if it is short and plain, so it cannot forge log content.
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

log = structlog.get_logger(__name__)

REDACTED = "[redacted]"
MAX_FIELD_CHARS = 2000
MAX_TRACEBACK_FRAMES = 12
# Field names that hold credentials, whatever their value looks like (compared lower-cased).
SECRET_FIELDS = frozenset(
    {
        "authorization",
        "cookie",
        "set-cookie",
        "x-signature",
        "x-access-token",
        "password",
        "secret",
        "token",
        "api_key",
    }
)
SECRET_FIELD_SUFFIXES = ("_token", "_secret", "_password", "_api_key", "secret_key")
# Third-party loggers whose INFO lines say nothing an operator acts on (fontTools: dozens per PDF).
QUIET_LIBRARIES = ("fontTools", "fpdf", "httpx", "aiosmtplib", "asyncio")
# A secret shorter than this is not masked inside other text: it would mask ordinary words.
MIN_MASKED_SECRET = 8


class Redactor:
    """A structlog processor that masks credentials and bounds every value, recursively."""

    def __init__(self, secrets: Iterable[str | None]) -> None:
        self._secrets = sorted(
            {secret for secret in secrets if secret and len(secret) >= MIN_MASKED_SECRET},
            key=len,
            reverse=True,
        )

    def __call__(
        self, _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in list(event_dict.items()):
            event_dict[key] = self._clean(key, value)
        return event_dict

    def _clean(self, key: object, value: Any) -> Any:
        if isinstance(key, str) and _is_secret_field(key) and value not in (None, ""):
            return REDACTED
        if isinstance(value, str):
            return self._text(value)
        if isinstance(value, dict):
            return {k: self._clean(k, v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._clean(None, item) for item in value]
        return value

    def _text(self, value: str) -> str:
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        if len(value) > MAX_FIELD_CHARS:
            value = value[:MAX_FIELD_CHARS] + f"... [{len(value) - MAX_FIELD_CHARS} more characters]"
        return value


def _is_secret_field(key: str) -> bool:
    lowered = key.lower()
    return lowered in SECRET_FIELDS or lowered.endswith(SECRET_FIELD_SUFFIXES)


def configure_logging(
    *,
    json_console: bool,
    level: str = "INFO",
    log_dir: Path | None = None,
    cache_loggers: bool = True,
    secrets: Iterable[str | None] = (),
) -> None:
    """`secrets`: values never to be written (masked wherever they appear). `cache_loggers=False`
    only for tests, which capture logs by swapping processors later."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    structlog.configure(
        # Calls below the level stop at the first processor, before any work is done for them.
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=cache_loggers,
    )
    json_renderer = structlog.processors.JSONRenderer()
    console_renderer: structlog.types.Processor = (
        json_renderer if json_console else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    redactor = Redactor(secrets)
    # Frames without their locals: a request handler's locals include its headers (the admin key).
    traceback_dict = structlog.processors.ExceptionRenderer(
        structlog.tracebacks.ExceptionDictTransformer(show_locals=False, max_frames=MAX_TRACEBACK_FRAMES)
    )

    def formatter(renderer: structlog.types.Processor) -> logging.Formatter:
        # The exception is rendered to data or text first, so the redactor sees its messages too.
        render_exception = (
            traceback_dict if renderer is json_renderer else structlog.processors.format_exc_info
        )
        return structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                render_exception,
                redactor,
                renderer,
            ],
        )

    console = logging.StreamHandler()
    console.setFormatter(formatter(console_renderer))
    handlers: list[logging.Handler] = [console]
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        # WatchedFileHandler reopens the file after logrotate moves it; several workers append safely.
        file_handler = logging.handlers.WatchedFileHandler(log_dir / LOG_FILE_NAME, encoding="utf-8")
        file_handler.setFormatter(formatter(json_renderer))
        handlers.append(file_handler)

    root = logging.getLogger()
    root.handlers = handlers
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    # httpx logs every request at INFO (the health command and tests would drown in it); fontTools
    # writes dozens of lines per PDF rendered. Their warnings and errors still come through.
    for library in QUIET_LIBRARIES:
        logging.getLogger(library).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    # Our middleware logs each request once, with its request id; uvicorn's access log would repeat it.
    logging.getLogger("uvicorn.access").disabled = True


class RequestIdMiddleware:
    """The outer request boundary.

    Takes `X-Request-ID` or makes one, echoes it, binds it to every log line of the request, logs
    one `http.request` line per request, and turns an unexpected exception into the contract's 500
    body (still carrying the request id, so a user's report can be matched to the log).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        started = time.perf_counter()
        status_code = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status_code, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status_code = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            except Exception as exc:
                log.exception("http.unhandled_error", error=type(exc).__name__)
                if response_started:
                    raise
                body = json.dumps(INTERNAL_ERROR_BODY).encode()
                await send_with_id(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send_with_id({"type": "http.response.body", "body": body})
            finally:
                route = scope.get("route")
                log.info(
                    "http.request",
                    method=scope["method"],
                    path=scope["path"],
                    route=getattr(route, "path", None),
                    status=status_code,
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                )


def _incoming_request_id(scope: Scope) -> str | None:
    for key, value in scope.get("headers", []):
        if key == b"x-request-id":
            text = value.decode("latin-1").strip()
            return text if _SAFE_REQUEST_ID.match(text) else None
    return None
