"""The organizer's console, `/admin`: log in with the admin key, then events (list, create and edit
with a section builder, publish, pause, resume, cancel), a live dashboard per event, orders (search,
detail, refund) and CSV exports.

Every page calls the same domain services as the admin API (`events.service`, `queue.service`,
`orders.service`, `payments`), never the API over HTTP. `session` is the door: the signed session
cookie, the CSRF token of every form, and the login's rate limit.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from ticketera.web.admin import dashboard, events, exports, orders, session
from ticketera.web.admin.session import CurrentAdmin

router = APIRouter(include_in_schema=False)
router.include_router(session.router)
router.include_router(events.router)
router.include_router(dashboard.router)
router.include_router(orders.router)
router.include_router(exports.router)


# Last: any other console address goes to the login first, so the console's address space says
# nothing to a visitor without a session; with one, it is a page that is not there.
@router.get("/admin/{anything:path}", response_class=HTMLResponse)
async def unknown_console_page(admin: CurrentAdmin) -> HTMLResponse:
    return admin.error(
        404,
        admin._("Not found"),
        admin._("What you are looking for does not exist or is no longer available."),
    )
