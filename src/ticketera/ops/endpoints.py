"""Health and metrics endpoints for operators, load balancers and Prometheus."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from ticketera.infra.redis import REDIS, RedisConnection
from ticketera.kit.http import Db, component
from ticketera.ops.metrics import METRICS_EXPORTER, METRICS_PATH, MetricsExporter
from ticketera.ops.service import PROCESS_STARTED, health_report
from ticketera.payments.tasks import PAYMENTS, PaymentProcessor

router = APIRouter(tags=["operations"])

Redis = Annotated[RedisConnection | None, Depends(component(REDIS))]
Payments = Annotated[PaymentProcessor, Depends(component(PAYMENTS))]
StartedAt = Annotated[float, Depends(component(PROCESS_STARTED))]
Exporter = Annotated[MetricsExporter, Depends(component(METRICS_EXPORTER))]


@router.get(
    "/health",
    summary="Health of the service and its dependencies (the deployment guide's shape)",
    responses={503: {"description": "The database is unreachable: the same report, status `error`"}},
)
async def health(database: Db, redis: Redis, payments: Payments, started_at: StartedAt) -> JSONResponse:
    report = await health_report(database, redis, started_at, payments_breaker=payments.gateway.breaker)
    return JSONResponse(report.body, status_code=200 if report.healthy else 503)


@router.get("/health/live", summary="Liveness: the process is up and its event loop answers")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/health/ready",
    summary="Readiness: the database answers, so this replica can take traffic",
    responses={503: {"description": "`not_ready`: the database does not answer"}},
)
async def ready(database: Db) -> JSONResponse:
    if await database.ping():
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": "not_ready", "reason": "database_unreachable"}, status_code=503)


@router.get(
    METRICS_PATH,
    summary="Prometheus metrics: requests by route, queues, holds, orders, breakers, pool, memory",
    response_class=PlainTextResponse,
)
async def metrics(request: Request, exporter: Exporter) -> Response:
    # Open like /health, as the contract lists it: counts and event ids, nothing about a buyer.
    body, headers = await exporter.render(
        request.headers.get("accept", ""), request.headers.get("accept-encoding", "")
    )
    return Response(body, headers=headers)
