"""create_app(): settings, logging, middleware, error rendering, routers and the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from pydantic.alias_generators import to_camel
from starlette.exceptions import HTTPException

from ticketera import __version__
from ticketera.composition import Role, build_services
from ticketera.config import AppEnv, Settings, load_settings
from ticketera.events.endpoints import router as events_router
from ticketera.holds.endpoints import router as holds_router
from ticketera.infra.bodylimit import PAYLOAD_TOO_LARGE, BodySizeLimitMiddleware
from ticketera.infra.logging import RequestIdMiddleware, configure_logging
from ticketera.kit.clock import Clock, utc_now
from ticketera.kit.errors import DomainError
from ticketera.kit.http import CLOCK, SETTINGS, components_of
from ticketera.ops.endpoints import router as ops_router
from ticketera.ops.metrics import install_metrics
from ticketera.ops.service import PROCESS_STARTED
from ticketera.ops.tasks import run_worker
from ticketera.orders.endpoints import events_router as event_orders_router
from ticketera.orders.endpoints import router as orders_router
from ticketera.orders.page import router as order_page_router
from ticketera.payments.endpoints import router as payments_router
from ticketera.queue.endpoints import router as queue_router
from ticketera.queue.tasks import run_admission_ticker
from ticketera.tickets.endpoints import router as tickets_router

log = structlog.get_logger(__name__)

# The bulk calls that may send more than MAX_BODY_BYTES: an organizer's event or section (a venue's
# seats) and a door device's offline check-ins.
BULK_PATHS = (r"/api/events", r"/api/events/[0-9]+/sections", r"/api/checkin/batch")


def create_app(settings: Settings | None = None, *, clock: Clock = utc_now) -> FastAPI:
    settings = settings or load_settings()
    configure_logging(
        json_console=settings.is_production_like,
        level=settings.log_level,
        log_dir=settings.log_dir,
        cache_loggers=settings.app_env is not AppEnv.TEST,
        secrets=settings.secret_values(),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = build_services(settings, clock, role=Role.WEB)
        services.register(components_of(app))
        if services.redis is not None:
            for risk in await services.redis.persistence_risks():
                log.warning("redis.persistence_risk", risk=risk)
        background: list[asyncio.Task[None]] = [
            asyncio.create_task(services.notification_pump.run(), name="payment-notifications")
        ]
        if settings.queue_ticker:
            background.append(
                asyncio.create_task(
                    run_admission_ticker(
                        services.waiting_room,
                        services.database,
                        clock,
                        tick_seconds=settings.queue_tick_seconds,
                    ),
                    name="queue-admission-ticker",
                )
            )
        if settings.runs_worker_in_process:
            background.append(
                asyncio.create_task(
                    run_worker(
                        services.database,
                        clock,
                        interval=settings.worker_interval_seconds,
                        payments=services.payments,
                        mailer=services.mailer,
                    ),
                    name="expiry-worker",
                )
            )
        # Everything alive now (modules, mappers, routes) lives as long as the process: moving it out
        # of the collector's reach makes full collections cheap. Measured on a 5,000-seat map read,
        # p95 fell from about 57 ms to 28 ms (p50 unchanged). Not in tests, which build hundreds of
        # short-lived apps whose frozen cycles would never be freed.
        if settings.app_env is not AppEnv.TEST:
            gc.collect()
            gc.freeze()
        log.info(
            "app.started",
            env=settings.app_env.value,
            database=services.database.backend,
            redis="configured" if services.redis else "not_configured",
            version=__version__,
        )
        try:
            yield
        finally:
            for task in background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await services.close()
            log.info("app.stopped")

    app = FastAPI(
        title="Ticketera",
        version=__version__,
        summary="Ticket sales for high-demand on-sales: waiting room, holds, payments, tickets.",
        lifespan=lifespan,
    )
    components = components_of(app)
    components.provide(SETTINGS, settings)
    components.provide(CLOCK, clock)
    components.provide(PROCESS_STARTED, time.monotonic())

    if settings.allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.allowed_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                "X-Access-Token",
                "X-Request-ID",
            ],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    # Inside the request-id middleware, so a 413 carries its request id like any other answer.
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        bulk_max_bytes=settings.max_bulk_body_bytes,
        bulk_paths=BULK_PATHS,
    )
    app.add_middleware(RequestIdMiddleware)
    _install_error_handlers(app)
    app.include_router(ops_router)
    app.include_router(events_router)
    app.include_router(queue_router)
    app.include_router(holds_router)
    app.include_router(orders_router)
    app.include_router(event_orders_router)
    app.include_router(payments_router)
    app.include_router(tickets_router)
    app.include_router(order_page_router)
    # Last, so its timing covers every other middleware too.
    install_metrics(app)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def domain_error(_request: Request, exc: DomainError) -> JSONResponse:
        headers: dict[str, str] = {}
        if exc.status_code == 401:
            headers["WWW-Authenticate"] = "Bearer"
        if exc.retry_after is not None:
            headers["Retry-After"] = str(max(1, round(exc.retry_after)))
        return JSONResponse(exc.to_body(), status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [_field_error(error) for error in exc.errors()]
        first = fields[0] if fields else {"field": "body", "message": "invalid request"}
        body = {
            "error": "validation_error",
            "message": f"{first['field']}: {first['message']}",
            "fields": fields,
        }
        return JSONResponse(body, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        codes = {
            404: "not_found",
            405: "method_not_allowed",
            413: PAYLOAD_TOO_LARGE,
            415: "unsupported_media_type",
        }
        code = codes.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return JSONResponse(
            {"error": code, "message": message}, status_code=exc.status_code, headers=exc.headers
        )

    # Unexpected exceptions are turned into the contract's 500 by RequestIdMiddleware, which sits
    # inside Starlette's own error middleware and so can still add the request id.


def _field_error(error: Any) -> dict[str, str]:
    """A pydantic error as `{"field": "sections[0].price", "message": ...}`."""
    location = [part for part in error.get("loc", ()) if part not in ("body", "query", "path", "header")]
    field = ""
    for part in location:
        if isinstance(part, int):
            field += f"[{part}]"
        elif not isinstance(part, str) or part.startswith(("function-", "json-or-python")):
            continue
        else:
            part = to_camel(part) if "_" in part else part
            field += f".{part}" if field else part
    kind = error.get("type", "")
    if kind == "json_invalid":
        return {"field": "body", "message": "the request body is not valid JSON"}
    if kind == "extra_forbidden":
        return {"field": field or "body", "message": "unknown field"}
    if kind == "missing" and not field:
        return {"field": "body", "message": "a JSON body is required"}
    if not field and kind in ("model_attributes_type", "dict_type", "model_type"):
        return {"field": "body", "message": "the request body must be a JSON object"}
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    return {"field": field or "body", "message": message}
