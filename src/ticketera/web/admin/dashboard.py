"""An event's live dashboard: tickets sold and revenue over time, the line (waiting, admitted,
active, admission rate) with its controls, payments by status, check-ins.

The page is complete when it arrives; `static/js/admin-dashboard.js` then asks `live.json` every few
seconds and updates the figures and redraws the charts in place, without a reload. Both are built by
`live_figures`, so the first paint and every refresh say the same thing in the same words.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from ticketera.events import service as events
from ticketera.events.models import EventStatus
from ticketera.events.schemas import QueueSettingsIn
from ticketera.kit.errors import DomainError
from ticketera.kit.http import CurrentClock, CurrentSettings, Db, component
from ticketera.orders import service as orders
from ticketera.payments import service as payments
from ticketera.queue import service as queue
from ticketera.queue.errors import QueueUnavailable
from ticketera.queue.schemas import QueueStatsOut
from ticketera.tickets import service as tickets
from ticketera.web.admin.events import (
    event_id_of,
    event_not_found,
    notice_text,
    status_actions,
    status_label,
)
from ticketera.web.admin.orders import order_status_label, payment_status_label
from ticketera.web.admin.session import CurrentAdmin, CurrentForm, session_of
from ticketera.web.rendering import Page, current_page, problem_page

log = structlog.get_logger(__name__)

router = APIRouter(include_in_schema=False)

Room = Annotated[queue.WaitingRoom, Depends(component(queue.WAITING_ROOM))]
# How often the page asks for fresh figures; the charts keep at most this many points.
REFRESH_SECONDS = 3
MAX_CHART_POINTS = 240
# A figure the line cannot give now (Redis down): an en dash, as the waiting room shows it.
UNKNOWN = "\u2013"


def sales_series(sales: list[orders.SaleMoment], now: datetime, *, since: datetime) -> list[dict[str, Any]]:
    """Cumulative tickets and revenue at the end of each stretch of time the database summed
    (`orders.sales_of_event`: at most MAX_CHART_POINTS of them, plus one for sales before `since`),
    from zero when the sale opened (`since`, or the first sale if earlier) to now."""
    if not sales:
        return []
    start = min(since, sales[0].first_paid_at or sales[0].paid_at)
    points: list[tuple[datetime, int, Decimal]] = []
    tickets_total, revenue = 0, Decimal(0)
    for sale in sales:
        tickets_total += sale.tickets
        revenue += sale.total
        points.append((sale.paid_at, tickets_total, revenue))
    series = [{"t": start.isoformat(), "tickets": 0, "revenue": "0"}]
    series += [
        {"t": moment.isoformat(), "tickets": count, "revenue": str(money)} for moment, count, money in points
    ]
    series.append(
        {"t": max(now, points[-1][0]).isoformat(), "tickets": tickets_total, "revenue": str(revenue)}
    )
    return series


def sale_opened(view: events.EventView) -> datetime:
    """Where the sales chart starts: when the sale opened (or the event was made, without onSaleAt)."""
    return view.event.on_sale_at or view.event.created_at


async def live_figures(
    page: Page, database: Db, room: queue.WaitingRoom, event_id: int, now: datetime, clock: CurrentClock
) -> dict[str, Any] | None:
    """Everything the dashboard shows, as text ready to put on the page (money and statuses in the
    page's language), plus the chart's points. None when there is no such event."""
    _ = page._
    locale = page.locale

    async def read(session: AsyncSession) -> dict[str, Any] | None:
        try:
            view = await events.get_event_view(session, event_id, include_drafts=True, clock=clock)
        except events.EventNotFound:
            return None
        return {
            "view": view,
            "sales": await orders.sales_of_event(
                session, event_id, since=sale_opened(view), until=now, buckets=MAX_CHART_POINTS
            ),
            "orders": await orders.event_order_counts(session, event_id, now),
            "payments": await payments.payment_counts_of_event(session, event_id),
            "checkins": await tickets.checkin_figures(session, event_id),
        }

    found = await database.read(read)
    if found is None:
        return None
    view: events.EventView = found["view"]
    currency = view.event.currency
    sold = sum(section.sold for section in view.sections)
    revenue = sum((sale.total for sale in found["sales"]), Decimal(0))
    draft = view.event.status == EventStatus.DRAFT
    line: dict[str, Any] | None = None
    if not draft:  # the waiting room knows no drafts: nobody can line up for one
        try:
            line = QueueStatsOut.of(await room.stats(event_id)).model_dump()
        except QueueUnavailable:
            line = None
    checked_in = sum(figure.checked_in for figure in found["checkins"])
    valid = sum(figure.sold for figure in found["checkins"])
    return {
        "eventId": event_id,
        "status": view.event.status,
        "statusLabel": status_label(page._, view.event.status),
        "figures": {
            "sold": str(sold),
            "revenue": locale.money(revenue, currency),
            "available": str(view.available),
            "capacity": str(view.capacity),
            "held": str(sum(section.held for section in view.sections)),
            "checkedIn": f"{checked_in} / {valid}",
            "waiting": str(line["waiting"]) if line else UNKNOWN,
            "preQueue": str(line["pre_queue"]) if line else UNKNOWN,
            "admitted": str(line["admitted"]) if line else UNKNOWN,
            "active": str(line["active_shoppers"]) if line else UNKNOWN,
            "rate": str(line["admit_per_minute"]) if line else UNKNOWN,
            "measuredRate": str(line["measured_admit_per_minute"]) if line else UNKNOWN,
            "lineState": (
                _("The line opens once the event is published")
                if draft
                else _("Line unavailable")
                if line is None
                else _("Line off: buyers go straight in")
                if not line["enabled"]
                else _("Admission paused")
                if line["paused"]
                else _("Admitting")
            ),
            "updated": locale.time_of_day(now),
        },
        "lineOpen": line is not None,
        "linePaused": bool(line and line["paused"]),
        "admitPerMinute": line["admit_per_minute"] if line else "",
        "orders": [
            {"label": order_status_label(_, status), "value": str(count)}
            for status, count in found["orders"].items()
        ],
        "payments": [
            {"label": payment_status_label(_, status), "value": str(count)}
            for status, count in sorted(found["payments"].items())
        ],
        "checkins": [
            {"label": figure.section_name, "value": f"{figure.checked_in} / {figure.sold}"}
            for figure in found["checkins"]
        ],
        "series": sales_series(found["sales"], now, since=sale_opened(view)),
        "view": view,
    }


@router.get("/admin/events/{event_id}", response_class=HTMLResponse)
async def dashboard(
    event_id: str,
    admin: CurrentAdmin,
    database: Db,
    room: Room,
    clock: CurrentClock,
    settings: CurrentSettings,
    notice: Annotated[str | None, Query(max_length=32)] = None,
) -> HTMLResponse:
    found_id = event_id_of(event_id)
    if found_id is None:
        return event_not_found(admin)
    try:
        live = await live_figures(admin.page, database, room, found_id, clock(), clock)
    except DomainError as error:
        return problem_page(admin.page, error, back_url="/admin")
    if live is None:
        return event_not_found(admin)
    view: events.EventView = live.pop("view")
    _ = admin._
    return admin.render(
        "admin/dashboard.html",
        title=_("Dashboard: %(event)s") % {"event": view.event.name},
        event=view.event,
        live=live,
        actions=status_actions(admin, view.event.status),
        notice=notice_text(admin, notice),
        page_data={
            "liveUrl": f"/admin/events/{found_id}/live.json",
            "refreshSeconds": REFRESH_SECONDS,
            "series": live["series"],
            "money": admin.page.locale.money_format(view.event.currency),
            "language": admin.page.language,
            "zone": settings.display_timezone,
            "messages": {
                "tickets": _("Tickets sold"),
                "revenue": _("Revenue"),
                "noSales": _("No sales yet."),
                "chart": _("%(what)s over time: %(value)s at %(time)s"),
                "stale": _("Could not refresh; showing figures from %(time)s. Retrying…"),
                "updated": _("Figures refresh by themselves; last at %(time)s."),
            },
        },
    )


@router.get("/admin/events/{event_id}/live.json")
async def live_json(
    event_id: str,
    request: Request,
    database: Db,
    room: Room,
    clock: CurrentClock,
    settings: CurrentSettings,
) -> Response:
    """The dashboard's figures for its script. Answers 401 rather than the login page, so the
    script can tell a session that ran out from a network error (it reloads into the login)."""
    now = clock()
    if session_of(request, settings, now) is None:
        return JSONResponse(
            {"error": "login_required"}, status_code=401, headers={"Cache-Control": "no-store"}
        )
    found_id = event_id_of(event_id)
    page = await current_page(request, settings)
    live = await live_figures(page, database, room, found_id, now, clock) if found_id else None
    if live is None:
        return JSONResponse(
            {"error": "event_not_found"}, status_code=404, headers={"Cache-Control": "no-store"}
        )
    live.pop("view")
    return JSONResponse(live, headers={"Cache-Control": "no-store"})


@router.post("/admin/events/{event_id}/queue", response_class=HTMLResponse)
async def change_line(
    event_id: str, form: CurrentForm, database: Db, room: Room, clock: CurrentClock
) -> Response:
    """The line's controls: a new admission rate, or pause / resume admission, under the queue admin
    API's rules (`queue.service.change_queue_settings`)."""
    admin = form.admin
    found_id = event_id_of(event_id)
    if found_id is None:
        return event_not_found(admin)
    body: dict[str, Any] = {}
    if form.get("paused") in ("true", "false"):
        body["paused"] = form.get("paused") == "true"
    if form.get("admit_per_minute"):
        text = form.get("admit_per_minute").strip()
        body["admitPerMinute"] = int(text) if text.isdecimal() and len(text) < 10 else text
    _ = admin._
    try:
        change = QueueSettingsIn.model_validate(body)
    except ValidationError as error:
        message = str(error.errors()[0].get("msg", "")).removeprefix("Value error, ")
        return admin.error(422, _("That admission rate cannot be used"), f"admitPerMinute: {message}")

    async def apply(session: AsyncSession) -> None:
        await queue.change_queue_settings(session, room, found_id, change, clock=clock)

    try:
        await database.transaction(apply)
    except events.EventNotFound:
        return event_not_found(admin)
    except DomainError as error:
        return admin.error(error.status_code, _("The line could not be changed"), error.message)
    log.info("admin.queue_changed", event_id=found_id, fields=sorted(body))
    return RedirectResponse(f"/admin/events/{found_id}?notice=queue", status_code=303)
