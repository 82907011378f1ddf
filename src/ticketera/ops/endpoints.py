"""Health and metrics endpoints for operators, load balancers and Prometheus."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException

from ticketera.ops.metrics import METRICS_PATH, MetricsExporter
from ticketera.ops.service import health_report

router = APIRouter(tags=["operations"])


@router.get("/health", summary="Health of the service and its dependencies (the deployment guide's shape)")
async def health(request: Request) -> JSONResponse:
    state = request.app.state
    gateway = getattr(state, "payment_gateway", None)
    report = await health_report(
        state.database,
        state.redis,
        state.started_at,
        payments_breaker=gateway.breaker if gateway is not None else None,
    )
    return JSONResponse(report.body, status_code=200 if report.healthy else 503)


@router.get("/health/live", summary="Liveness: the process is up and its event loop answers")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/health/ready", summary="Readiness: the database answers, so this replica can take traffic")
async def ready(request: Request) -> JSONResponse:
    if await request.app.state.database.ping():
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": "not_ready", "reason": "database_unreachable"}, status_code=503)


@router.get(
    METRICS_PATH,
    summary="Prometheus metrics: requests by route, queues, holds, orders, breakers, pool, memory",
    response_class=PlainTextResponse,
)
async def metrics(request: Request) -> Response:
    # Open like /health, as the contract lists it: counts and event ids, nothing about a buyer.
    exporter: MetricsExporter | None = getattr(request.app.state, "metrics", None)
    if exporter is None:
        raise HTTPException(404, "Metrics are not installed in this app (see install_metrics).")
    body, headers = await exporter.render(
        request.headers.get("accept", ""), request.headers.get("accept-encoding", "")
    )
    return Response(body, headers=headers)
