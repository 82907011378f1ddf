"""`create_simulator(settings)`: the simulator as one ASGI app.

Routes: the official-shaped API (`api.py`), the checkout page behind init_point (`checkout.py`) and the
control API for tests (`control.py`). Official-API requests pass through `gateway.py` first (request
log, faults, bearer auth, idempotency). Errors on official paths always come in MercadoPago's shape,
including unknown paths and unparsable path parameters.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ticketera.kit.clock import Clock, utc_now
from ticketera.mpsim import api, checkout, control
from ticketera.mpsim.errors import MPError, error_response
from ticketera.mpsim.gateway import OfficialApiMiddleware, is_official_path
from ticketera.mpsim.settings import SimulatorConfigError, SimulatorSettings
from ticketera.mpsim.state import Simulator

log = structlog.get_logger(__name__)


def create_simulator(settings: SimulatorSettings | None = None, *, clock: Clock = utc_now) -> FastAPI:
    settings = settings or SimulatorSettings()
    if not settings.mp_access_token or not settings.mp_webhook_secret:
        raise SimulatorConfigError(
            "The MercadoPago simulator needs MP_ACCESS_TOKEN (the bearer it accepts) and "
            "MP_WEBHOOK_SECRET (the key it signs notifications with)."
        )
    simulator = Simulator(settings, clock=clock)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await simulator.notifier.start()
        log.info("mpsim.started", public_url=settings.public_url)
        try:
            yield
        finally:
            await simulator.notifier.close()
            log.info("mpsim.stopped")

    app = FastAPI(
        title="MercadoPago simulator",
        summary="A local stand-in for MercadoPago's REST API, checkout and webhooks (ticketera.mpsim).",
        lifespan=lifespan,
    )
    app.state.simulator = simulator
    app.add_middleware(
        OfficialApiMiddleware, gateway=simulator.gateway, access_token=settings.mp_access_token, clock=clock
    )
    app.include_router(api.router)
    app.include_router(checkout.router)
    app.include_router(control.router)

    @app.exception_handler(MPError)
    async def _mp_error(request: Request, exc: MPError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if is_official_path(request.url.path):
            return error_response(MPError(exc.status_code, str(exc.detail)))
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> Response:
        if is_official_path(request.url.path):
            return error_response(MPError(400, "Invalid request parameters", code="invalid_parameters"))
        return await request_validation_exception_handler(request, exc)

    return app
