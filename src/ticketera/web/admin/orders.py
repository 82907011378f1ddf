"""Orders in the console: search (buyer email, order number, status, event), an order's detail
with its payments, and the refund (asked to confirm first; the same path as the admin API's refund,
`PaymentProcessor.refund_order`), whose state the detail then shows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from ticketera.events import service as events
from ticketera.kit.errors import DomainError
from ticketera.kit.http import CurrentClock, Db, component
from ticketera.orders import service as orders
from ticketera.orders.models import OrderReason, OrderStatus
from ticketera.payments import service as payments
from ticketera.payments.tasks import PAYMENTS, PaymentProcessor
from ticketera.web.admin.events import event_id_of, notice_text
from ticketera.web.admin.session import AdminPage, CurrentAdmin, CurrentForm

log = structlog.get_logger(__name__)

router = APIRouter(include_in_schema=False)

Payments = Annotated[PaymentProcessor, Depends(component(PAYMENTS))]


def order_status_label(_: Callable[[str], str], status: OrderStatus) -> str:
    """An order's status as the console says it, in the page's language."""
    return {
        OrderStatus.PENDING_PAYMENT: _("Awaiting payment"),
        OrderStatus.PAID: _("Paid"),
        OrderStatus.EXPIRED: _("Expired"),
        OrderStatus.CANCELLED: _("Cancelled before payment"),
        OrderStatus.REFUNDED: _("Refunded"),
    }[status]


def payment_status_label(_: Callable[[str], str], status: str) -> str:
    """MercadoPago's status of a payment, in the page's language (an unknown one as it came)."""
    return {
        "approved": _("Approved"),
        "pending": _("Pending"),
        "authorized": _("Authorized"),
        "in_process": _("Being reviewed"),
        "in_mediation": _("In dispute"),
        "rejected": _("Rejected"),
        "cancelled": _("Cancelled"),
        "refunded": _("Refunded"),
        "charged_back": _("Charged back"),
    }.get(status, status)


def reason_label(admin: AdminPage, reason: str | None) -> str:
    _ = admin._
    return (
        {
            OrderReason.ADMIN: _("By the organizer"),
            OrderReason.PAID_AFTER_EXPIRY: _("Paid after it expired, seats still free"),
            OrderReason.SEATS_LOST: _("Paid after it expired, seats already taken: refunded"),
            OrderReason.LIMIT_EXCEEDED: _("Paid after it expired, over the tickets per person: refunded"),
            OrderReason.CHARGED_BACK: _("The buyer's bank took the money back"),
            OrderReason.REFUNDED_AT_PROVIDER: _("Refunded from MercadoPago"),
        }.get(OrderReason(reason), reason)
        if reason
        else ""
    )


def settlement_label(admin: AdminPage, settlement: str) -> str:
    """What we did about a payment, as an organizer reads the refund's state."""
    _ = admin._
    return {
        "waiting": _("Nothing to do yet"),
        "sold": _("Paid this order"),
        "refund_due": _("Refund requested, being sent"),
        "refunded": _("Refunded"),
        "refund_failed": _("Refund failed: MercadoPago kept refusing it"),
        "reversed": _("Refunded or charged back at MercadoPago"),
    }.get(settlement, settlement)


@router.get("/admin/orders", response_class=HTMLResponse)
async def search(
    admin: CurrentAdmin,
    database: Db,
    clock: CurrentClock,
    email: Annotated[str, Query(max_length=254)] = "",
    order: Annotated[str, Query(max_length=20)] = "",
    status: Annotated[str, Query(max_length=32)] = "",
    event: Annotated[str, Query(max_length=20)] = "",
) -> HTMLResponse:
    _ = admin._
    now = clock()
    order_id = event_id_of(order.strip().lstrip("#"))
    event_id = event_id_of(event.strip())
    wanted = OrderStatus(status) if status in {s.value for s in OrderStatus} else None
    searched = bool(email.strip() or order.strip() or wanted or event_id)
    problem = ""
    if order.strip() and order_id is None:
        problem = _("An order number is a whole number, such as 1234.")

    async def find(session: AsyncSession) -> tuple[list[Any], list[Any]]:
        found = (
            await orders.search_orders(
                session,
                now=now,
                email=email.strip() or None,
                order_id=order_id,
                event_id=event_id,
                status=wanted,
            )
            if not problem
            else []
        )
        listed, _total = await events.list_event_views(
            session, include_drafts=True, status=None, limit=200, offset=0
        )
        return found, listed

    found, listed = await database.read(find)
    names = {view.event.id: view.event.name for view in listed}
    return admin.render(
        "admin/orders.html",
        title=_("Orders"),
        query={"email": email, "order": order, "status": status, "event": event},
        statuses=[(s.value, order_status_label(admin._, s)) for s in OrderStatus],
        events=[(view.event.id, view.event.name) for view in listed],
        searched=searched,
        problem=problem,
        results=[
            {
                "order": found_order,
                "status": shown.value,
                "status_label": order_status_label(admin._, shown),
                "event_name": names.get(found_order.event_id, f"#{found_order.event_id}"),
            }
            for found_order, shown in found
        ],
    )


async def _detail(
    admin: AdminPage, database: Db, order_id: int, clock: CurrentClock
) -> dict[str, Any] | None:
    now = clock()

    async def read(session: AsyncSession) -> dict[str, Any] | None:
        try:
            view = await orders.get_order(session, order_id, now)
        except orders.OrderNotFound:
            return None
        event = await events.find_event(session, view.order.event_id)
        return {"view": view, "event": event, "payments": await payments.payments_of_order(session, order_id)}

    found = await database.read(read)
    if found is None:
        return None
    view: orders.OrderView = found["view"]
    found["status_label"] = order_status_label(admin._, view.status)
    found["reason"] = reason_label(admin, view.order.status_reason)
    found["refundable"] = view.status is OrderStatus.PAID
    found["payment_rows"] = [
        {
            "payment": payment,
            "status": payment_status_label(admin._, payment.status),
            "settlement": settlement_label(admin, payment.settlement),
        }
        for payment in found["payments"]
    ]
    return found


def _order_not_found(admin: AdminPage) -> HTMLResponse:
    return admin.error(404, admin._("Order not found"), admin._("There is no order with that number."))


@router.get("/admin/orders/{order_id}", response_class=HTMLResponse)
async def order_detail(
    order_id: str,
    admin: CurrentAdmin,
    database: Db,
    clock: CurrentClock,
    notice: Annotated[str | None, Query(max_length=32)] = None,
) -> HTMLResponse:
    found_id = event_id_of(order_id)
    detail = await _detail(admin, database, found_id, clock) if found_id else None
    if detail is None:
        return _order_not_found(admin)
    return admin.render(
        "admin/order.html",
        title=admin._("Order %(id)s") % {"id": found_id},
        notice=notice_text(admin, notice),
        problem="",
        **detail,
    )


@router.get("/admin/orders/{order_id}/refund", response_class=HTMLResponse)
async def confirm_refund(
    order_id: str, admin: CurrentAdmin, database: Db, clock: CurrentClock
) -> HTMLResponse:
    found_id = event_id_of(order_id)
    detail = await _detail(admin, database, found_id, clock) if found_id else None
    if detail is None:
        return _order_not_found(admin)
    _ = admin._
    view: orders.OrderView = detail["view"]
    total = admin.page.locale.money(view.order.total, view.order.currency)
    return admin.render(
        "admin/confirm.html",
        title=_("Refund order %(id)s?") % {"id": found_id},
        question=_("Refund %(total)s to %(buyer)s?") % {"total": total, "buyer": view.order.buyer_email},
        explanation=_(
            "The whole amount goes back through MercadoPago, the tickets stop being valid and the seats go"
            " back on sale. This cannot be undone."
        ),
        action=f"/admin/orders/{found_id}/refund",
        fields={"confirmed": "yes"},
        confirm_label=_("Yes, refund it"),
        back_url=f"/admin/orders/{found_id}",
        back_label=_("No, go back"),
    )


@router.post("/admin/orders/{order_id}/refund", response_class=HTMLResponse)
async def refund(
    order_id: str, form: CurrentForm, database: Db, clock: CurrentClock, processor: Payments
) -> Response:
    admin = form.admin
    found_id = event_id_of(order_id)
    if found_id is None:
        return _order_not_found(admin)
    if form.get("confirmed") != "yes":
        return RedirectResponse(f"/admin/orders/{found_id}/refund", status_code=303)
    try:
        await processor.refund_order(found_id, actor="admin")
    except orders.OrderNotFound:
        return _order_not_found(admin)
    except DomainError as error:
        # Not refundable (not paid), MercadoPago refused or unreachable: the detail says so, and
        # a refund left due is retried by the worker.
        log.warning("admin.refund_failed", order_id=found_id, error=error.code)
        detail = await _detail(admin, database, found_id, clock)
        if detail is None:
            return _order_not_found(admin)
        _ = admin._
        return admin.render(
            "admin/order.html",
            status_code=error.status_code,
            title=_("Order %(id)s") % {"id": found_id},
            notice="",
            problem=_("The refund could not be completed: %(reason)s") % {"reason": error.message},
            **detail,
        )
    log.info("admin.order_refunded", order_id=found_id)
    return RedirectResponse(f"/admin/orders/{found_id}?notice=refunded", status_code=303)
