"""The control API tests use to steer the simulator, under `/_sim/` (no auth; JSON in camelCase).

State
  GET    /_sim/health
         200 {"status": "ok", "payments": n, "preferences": n, "notifications": n}
  POST   /_sim/reset
         204; clears preferences, payments, the idempotency store, faults, notifications (deliveries
         in flight are cancelled) and the request log; restores the default config. Ids keep counting.
  GET    /_sim/config
         200 the config below
  PATCH  /_sim/config   any subset of
         {"idCasing": "original"|"lower",    how data.id enters the signed manifest
          "tsUnit": "s"|"ms",                unit of ts in x-signature
          "duplicates": 0..20,               extra copies of each notification
          "duplicateSameRequestId": true,    copies reuse the x-request-id (false: fresh ones)
          "outOfOrder": false,               notifications are held until /_sim/notifications/release
          "dropNotifications": false,        recorded as "dropped", never sent
          "notificationDelaySeconds": 0,     wait before the first attempt
          "retrySchedule": [900, 1800, ...], seconds before retry 1, 2, ...; then it gives up
          "webhookSecret": "...",            HMAC key used to sign (a wrong one tests rejection)
          "notificationUrl": null}           for payments that name no notification_url
         200 the whole new config; 422 {"detail": [...]} on an unknown key or a bad value

Faults: the next matching official-API requests (never /_sim nor the checkout page)
  POST   /_sim/faults
         {"status"?: 500|503|429|..., "count": 1, "method"?: "POST", "pathPrefix"?: "/v1/payments",
          "delaySeconds"?: 0}
         201 {"id", "status", "remaining", "method", "pathPrefix", "delaySeconds"}
         A matching request sleeps delaySeconds, then gets `status` in MercadoPago's error shape, and
         nothing happens. With no status (or one below 400) the request runs at once and only its
         answer is held back delaySeconds: a client timeout whose request still took effect, which is
         what idempotency keys are for (a retry with the same key waits for, then replays, that answer).
  GET    /_sim/faults     200 [fault, ...]
  DELETE /_sim/faults     204

Payments
  POST   /_sim/payments
         {"preferenceId": "...", "outcome": "APRO"|"CONT"|"OTHE"|"CALL"|"FUND"|"SECU"|"EXPI"|"FORM"|"CASH",
          "payerEmail"?: "...", "ignoreExpiry"?: false}
         201 the payment as GET /v1/payments/{id} returns it: exactly what the checkout form does.
         404 unknown preference, 410 expired link (unless ignoreExpiry), 400 unknown outcome.
  POST   /_sim/payments/{id}/status
         {"status": "approved"|"authorized"|"in_process"|"pending"|"rejected"|"cancelled"|"expired"|
                    "refunded"|"charged_back"|"in_mediation", "statusDetail"?: "..."}
         200 the payment, after an admin move with its notification: approved sets date_approved;
         cancelled of a waiting payment is cancelled/expired ("expired" is a shorthand for it);
         refunded refunds what is left; charged_back is charged_back/settled.

Notifications
  GET    /_sim/notifications[?paymentId=]
         200 [{"id", "eventId", "kind": "webhook"|"ipn", "paymentId", "action", "url", "requestId",
               "state": "pending"|"held"|"delivered"|"dropped"|"failing",
               "attempts": [{"retry", "status", "at", "error"}], "nextAttemptAt", "resendOf",
               "createdAt", "body"}], oldest first
  POST   /_sim/notifications/release
         200 [released, ...]: held ones are sent newest first, each after the previous one's first attempt
  POST   /_sim/notifications/{id}/resend
         201 a new record with the same body and x-request-id, sent now
  POST   /_sim/notifications/drain?timeout=5
         200 {"drained": true} once nothing is pending, in flight or waiting for a retry (held ones do
         not count); 504 {"drained": false, "outstanding": [ids]} when the timeout passes first

Requests
  GET    /_sim/requests
         200 [{"method", "path", "query", "status", "idempotencyKey", "at", "replayed", "fault"}] for
         every official-API request, oldest first
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from ticketera.mpsim.errors import MPError
from ticketera.mpsim.settings import SimConfig
from ticketera.mpsim.state import Simulator, get_simulator

router = APIRouter(prefix="/_sim", tags=["simulator control"])
CurrentSimulator = Annotated[Simulator, Depends(get_simulator)]
MAX_DRAIN_SECONDS = 600.0


class _ControlModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class FaultIn(_ControlModel):
    status: int | None = Field(default=None, ge=100, le=599)
    count: int = Field(default=1, ge=1, le=100_000)
    method: str | None = None
    path_prefix: str | None = None
    delay_seconds: float = Field(default=0.0, ge=0, le=600)


class SimulatedPaymentIn(_ControlModel):
    preference_id: str
    outcome: str = "APRO"
    payer_email: str | None = None
    ignore_expiry: bool = False


class StatusMoveIn(_ControlModel):
    status: str
    status_detail: str | None = None


@router.get("/health")
async def health(simulator: CurrentSimulator) -> dict[str, Any]:
    return {
        "status": "ok",
        "payments": len(simulator.store.payments),
        "preferences": len(simulator.store.preferences),
        "notifications": len(simulator.notifier.records),
    }


@router.post("/reset", status_code=204)
async def reset(simulator: CurrentSimulator) -> Response:
    await simulator.reset()
    return Response(status_code=204)


@router.get("/config")
async def get_config(simulator: CurrentSimulator) -> dict[str, Any]:
    return simulator.config.to_json()


@router.patch("/config", response_model=None)
async def patch_config(
    changes: Annotated[dict[str, Any], Body()], simulator: CurrentSimulator
) -> dict[str, Any] | JSONResponse:
    try:
        simulator.config = SimConfig.model_validate({**simulator.config.to_json(), **changes})
    except ValidationError as exc:
        return JSONResponse({"detail": jsonable_encoder(exc.errors(include_url=False))}, status_code=422)
    return simulator.config.to_json()


@router.get("/faults")
async def list_faults(simulator: CurrentSimulator) -> list[dict[str, Any]]:
    return [fault.to_json() for fault in simulator.gateway.faults]


@router.post("/faults", status_code=201)
async def add_fault(fault: FaultIn, simulator: CurrentSimulator) -> dict[str, Any]:
    return simulator.gateway.add_fault(
        status=fault.status,
        count=fault.count,
        method=fault.method,
        path_prefix=fault.path_prefix,
        delay_seconds=fault.delay_seconds,
    ).to_json()


@router.delete("/faults", status_code=204)
async def clear_faults(simulator: CurrentSimulator) -> Response:
    simulator.gateway.faults.clear()
    return Response(status_code=204)


@router.post("/payments", status_code=201)
async def simulate_payment(payment: SimulatedPaymentIn, simulator: CurrentSimulator) -> dict[str, Any]:
    return simulator.store.pay_preference(
        payment.preference_id,
        payment.outcome,
        payer_email=payment.payer_email,
        ignore_expiry=payment.ignore_expiry,
    ).to_api()


@router.post("/payments/{payment_id}/status")
async def move_payment(payment_id: str, move: StatusMoveIn, simulator: CurrentSimulator) -> dict[str, Any]:
    return simulator.store.move_payment(payment_id, move.status, move.status_detail).to_api()


@router.get("/notifications")
async def list_notifications(
    simulator: CurrentSimulator, payment_id: Annotated[int | None, Query(alias="paymentId")] = None
) -> list[dict[str, Any]]:
    return [
        record.to_json()
        for record in simulator.notifier.records.values()
        if payment_id is None or record.payment_id == payment_id
    ]


@router.post("/notifications/release")
async def release_notifications(simulator: CurrentSimulator) -> list[dict[str, Any]]:
    return [record.to_json() for record in simulator.notifier.release()]


@router.post("/notifications/drain", response_model=None)
async def drain_notifications(
    simulator: CurrentSimulator, wait_seconds: Annotated[float, Query(alias="timeout")] = 5.0
) -> dict[str, Any] | JSONResponse:
    if await simulator.notifier.drain(min(max(wait_seconds, 0.0), MAX_DRAIN_SECONDS)):
        return {"drained": True}
    outstanding = sorted(simulator.notifier.outstanding())
    return JSONResponse({"drained": False, "outstanding": outstanding}, status_code=504)


@router.post("/notifications/{notification_id}/resend", status_code=201)
async def resend_notification(notification_id: int, simulator: CurrentSimulator) -> dict[str, Any]:
    if notification_id not in simulator.notifier.records:
        raise MPError(404, f"Notification {notification_id} not found", code="not_found")
    return simulator.notifier.resend(notification_id).to_json()


@router.get("/requests")
async def list_requests(simulator: CurrentSimulator) -> list[dict[str, Any]]:
    return [record.to_json() for record in simulator.gateway.requests]
