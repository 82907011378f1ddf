"""The official-shaped REST API: preferences, payments, refunds, as MercadoPago answers them.

Bodies are read here as plain JSON objects, not as FastAPI body parameters: MercadoPago answers a bad
body with its own error shape and one cause code (see `errors.py`), never with FastAPI's 422. The
store then checks each body (and the search query) with the pydantic models of `bodies.py`, which turn
a failure into that error. The store rather than the route, because a payment that does not exist is a
404 whatever the body says, and a preference update is checked together with the preference it
changes. Auth, faults and idempotency happen before these routes, in `gateway.py`.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from ticketera.mpsim.errors import IDEMPOTENCY_KEY_MISSING, MPError
from ticketera.mpsim.state import Simulator, get_simulator

router = APIRouter()
CurrentSimulator = Annotated[Simulator, Depends(get_simulator)]


async def json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object; an empty body is `{}` (the SDK sends none for a full refund)."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise MPError(400, "The request body is not valid JSON", code="invalid_json") from exc
    if not isinstance(value, dict):
        raise MPError(400, "The request body must be a JSON object", code="invalid_json")
    return value


def require_idempotency_key(request: Request) -> None:
    if not request.headers.get("x-idempotency-key"):
        raise MPError(400, "Header X-Idempotency-Key can't be null", code=IDEMPOTENCY_KEY_MISSING)


@router.post("/checkout/preferences", status_code=201)
async def create_preference(request: Request, simulator: CurrentSimulator) -> dict[str, Any]:
    return simulator.store.create_preference(await json_object(request)).data


@router.get("/checkout/preferences/{preference_id}")
async def get_preference(preference_id: str, simulator: CurrentSimulator) -> dict[str, Any]:
    return simulator.store.get_preference(preference_id).data


@router.put("/checkout/preferences/{preference_id}")
async def update_preference(
    preference_id: str, request: Request, simulator: CurrentSimulator
) -> dict[str, Any]:
    return simulator.store.update_preference(preference_id, await json_object(request)).data


@router.post("/v1/payments", status_code=201)
async def create_payment(request: Request, simulator: CurrentSimulator) -> dict[str, Any]:
    require_idempotency_key(request)
    return simulator.store.create_payment(await json_object(request)).to_api()


# Declared before /v1/payments/{payment_id}, which would otherwise take "search" for an id.
@router.get("/v1/payments/search")
async def search_payments(request: Request, simulator: CurrentSimulator) -> dict[str, Any]:
    return simulator.store.search_payments(request.query_params)


@router.get("/v1/payments/{payment_id}")
async def get_payment(payment_id: str, simulator: CurrentSimulator) -> dict[str, Any]:
    return simulator.store.get_payment(payment_id).to_api()


@router.put("/v1/payments/{payment_id}")
async def update_payment(payment_id: str, request: Request, simulator: CurrentSimulator) -> dict[str, Any]:
    return simulator.store.update_payment(payment_id, await json_object(request)).to_api()


@router.post("/v1/payments/{payment_id}/refunds", status_code=201)
async def create_refund(payment_id: str, request: Request, simulator: CurrentSimulator) -> dict[str, Any]:
    require_idempotency_key(request)
    return simulator.store.refund_payment(payment_id, await json_object(request)).to_api()


@router.get("/v1/payments/{payment_id}/refunds")
async def list_refunds(payment_id: str, simulator: CurrentSimulator) -> list[dict[str, Any]]:
    return [refund.to_api() for refund in simulator.store.get_payment(payment_id).refunds]


@router.get("/v1/payments/{payment_id}/refunds/{refund_id}")
async def get_refund(payment_id: str, refund_id: str, simulator: CurrentSimulator) -> dict[str, Any]:
    for refund in simulator.store.get_payment(payment_id).refunds:
        if str(refund.id) == refund_id:
            return refund.to_api()
    raise MPError(404, "Refund not found", code="not_found")
