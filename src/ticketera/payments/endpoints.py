"""HTTP routes of payments: MercadoPago's webhook and an organizer's refund."""

from __future__ import annotations

import contextlib
import re
from typing import Annotated, Any

import orjson
import structlog
from fastapi import APIRouter, Path, Request
from sqlalchemy.ext.asyncio import AsyncSession

from ticketera.kit.clock import utc_now
from ticketera.kit.db import MAX_ID
from ticketera.kit.errors import DomainError
from ticketera.kit.http import AdminOnly, CurrentClock, get_database, get_settings
from ticketera.orders.endpoints import order_out
from ticketera.orders.schemas import OrderOut
from ticketera.payments import service
from ticketera.payments.schemas import NotificationReceived
from ticketera.payments.signature import verify_signature
from ticketera.payments.tasks import NotificationPump, PaymentProcessor

log = structlog.get_logger(__name__)

router = APIRouter(tags=["payments"])
# MercadoPago's payment ids are ASCII digits (str.isdigit() would also take other scripts' digits).
PAYMENT_ID = re.compile(r"[0-9]{1,20}")


class MalformedNotification(DomainError):
    status_code = 400
    code = "malformed_notification"


def processor_of(request: Request) -> PaymentProcessor:
    processor: PaymentProcessor = request.app.state.payments
    return processor


@router.post("/api/webhooks/mercadopago", response_model=NotificationReceived)
async def mercadopago_notification(request: Request, clock: CurrentClock) -> NotificationReceived:
    """Verify, store in the inbox, answer: processing happens after the response, from the inbox."""
    query = request.query_params
    now = clock()
    if "topic" in query and "type" not in query:
        # Legacy IPN: unsigned, so it only ever makes us read the payment back from the API. Its
        # copies within a minute are one row, so a flood of them cannot flood MercadoPago in turn.
        topic, resource_id = query.get("topic", ""), query.get("id", "")
        if topic != "payment" or not PAYMENT_ID.fullmatch(resource_id):
            return NotificationReceived(received=True, processed=False)
        notification = service.IncomingNotification("ipn", topic, resource_id, None, None)
        marker = str(int(now.timestamp()) // 60)
    else:
        data_id = query.get("data.id")
        request_id = request.headers.get("x-request-id")
        verify_signature(
            header=request.headers.get("x-signature"),
            request_id=request_id,
            data_id=data_id,
            secret=get_settings(request).mp_webhook_secret or "",
            # Freshness is about the sender's wall clock against ours, not about business time.
            now=utc_now(),
            tolerance_seconds=get_settings(request).mp_webhook_tolerance_seconds,
        )
        body = await _json_body(request)
        topic = query.get("type") or str(body.get("type") or "")
        if not data_id:
            raise MalformedNotification("The notification has no data.id in its query.")
        if topic != "payment" or not PAYMENT_ID.fullmatch(data_id):
            # merchant_order and others: the payment notifications carry everything we act on.
            # Payment ids are numeric; anything else could never be read back, so it is not kept.
            log.info("notification.skipped", topic=topic, resource_id=data_id[:64])
            return NotificationReceived(received=True, processed=False)
        action = body.get("action")
        notification = service.IncomingNotification(
            "webhook", topic, data_id, str(action) if action else None, request_id
        )
        marker = ""

    async def store(session: AsyncSession) -> int:
        return await service.receive_notification(session, notification, now, unique_marker=marker)

    notification_id = await get_database(request).transaction(store)
    # Committed: processing may start now, behind this answer (see NotificationPump).
    pump: NotificationPump = request.app.state.notification_pump
    pump.submit(notification_id)
    return NotificationReceived(received=True, processed=None)


async def _json_body(request: Request) -> dict[str, Any]:
    with contextlib.suppress(orjson.JSONDecodeError):
        body = orjson.loads(await request.body() or b"{}")
        if isinstance(body, dict):
            return body
    return {}


@router.post("/api/orders/{order_id}/refund", response_model=OrderOut, dependencies=[AdminOnly])
async def refund_order(order_id: Annotated[int, Path(ge=1, le=MAX_ID)], request: Request) -> OrderOut:
    """Full refund through MercadoPago; the seats go back on sale once the money is returned."""
    return order_out(await processor_of(request).refund_order(order_id, actor="admin"))
