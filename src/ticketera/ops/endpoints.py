"""Health endpoints for operators and load balancers."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ticketera.ops.service import health_report

router = APIRouter(tags=["operations"])


@router.get("/health", summary="Health of the service and its dependencies (the deployment guide's shape)")
async def health(request: Request) -> JSONResponse:
    state = request.app.state
    report = await health_report(state.database, state.redis, state.started_at)
    return JSONResponse(report.body, status_code=200 if report.healthy else 503)


@router.get("/health/live", summary="Liveness: the process is up and its event loop answers")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/health/ready", summary="Readiness: the database answers, so this replica can take traffic")
async def ready(request: Request) -> JSONResponse:
    if await request.app.state.database.ping():
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": "not_ready", "reason": "database_unreachable"}, status_code=503)
