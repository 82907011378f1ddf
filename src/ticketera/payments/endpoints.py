"""HTTP routes of payments: MercadoPago's webhook and an organizer's refund."""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Path, Request

from ticketera.infra.mercadopago import PaymentsUnavailable
from ticketera.kit.clock import utc_now
from ticketera.kit.db import MAX_ID
from ticketera.kit.http import AdminOnly, AdminRequired, CurrentClock, CurrentSettings, component
from ticketera.kit.openapi import answers
from ticketera.orders.schemas import OrderOut
from ticketera.orders.service import OrderNotFound, OrderNotRefundable
from ticketera.payments import service
from ticketera.payments.schemas import NotificationReceived
from ticketera.payments.signature import InvalidSignature, verify_signature
from ticketera.payments.tasks import (
    NOTIFICATION_PUMP,
    PAYMENTS,
    NotificationPump,
    PaymentProcessor,
    PaymentProviderRefused,
)

router = APIRouter(tags=["payments"])

Payments = Annotated[PaymentProcessor, Depends(component(PAYMENTS))]
Pump = Annotated[NotificationPump, Depends(component(NOTIFICATION_PUMP))]


@router.post(
    "/api/webhooks/mercadopago",
    response_model=NotificationReceived,
    responses=answers(service.MalformedNotification, InvalidSignature),
)
async def mercadopago_notification(
    request: Request, payments: Payments, pump: Pump, settings: CurrentSettings, clock: CurrentClock
) -> NotificationReceived:
    """Verify, store in the inbox, answer: processing happens after the response, from the inbox."""
    query = request.query_params
    now = clock()
    if "topic" in query and "type" not in query:
        notification = service.legacy_ipn(query.get("topic", ""), query.get("id", ""), now)
    else:
        data_id = query.get("data.id")
        request_id = request.headers.get("x-request-id")
        verify_signature(
            header=request.headers.get("x-signature"),
            request_id=request_id,
            data_id=data_id,
            secret=settings.mp_webhook_secret or "",
            # Freshness is about the sender's wall clock against ours, not about business time.
            now=utc_now(),
            tolerance_seconds=settings.mp_webhook_tolerance_seconds,
        )
        body = await _json_body(request)
        action = body.get("action")
        notification = service.signed_notification(
            data_id,
            topic=query.get("type") or str(body.get("type") or ""),
            action=str(action) if action else None,
            request_id=request_id,
        )
    if notification is None:
        return NotificationReceived(received=True, processed=False)
    notification_id = await payments.receive(notification)
    if notification_id is not None:
        # Committed: processing may start now, behind this answer (see NotificationPump).
        pump.submit(notification_id)
    return NotificationReceived(received=True, processed=None)


async def _json_body(request: Request) -> dict[str, Any]:
    with contextlib.suppress(orjson.JSONDecodeError):
        body = orjson.loads(await request.body() or b"{}")
        if isinstance(body, dict):
            return body
    return {}


@router.post(
    "/api/orders/{order_id}/refund",
    response_model=OrderOut,
    dependencies=[AdminOnly],
    responses=answers(
        AdminRequired, OrderNotFound, OrderNotRefundable, PaymentProviderRefused, PaymentsUnavailable
    ),
)
async def refund_order(order_id: Annotated[int, Path(ge=1, le=MAX_ID)], payments: Payments) -> OrderOut:
    """Full refund through MercadoPago; the seats go back on sale once the money is returned."""
    return OrderOut.of(await payments.refund_order(order_id, actor="admin"))
