"""Every page route, gathered for `create_app`: the static files, the language switch, the buyer's
pages, the organizer's console and the door's."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import RedirectResponse

from ticketera.web import admin, buyer, door, orders, static
from ticketera.web.i18n import LANGUAGE_COOKIE, LOCALES

# A year: the switch is a preference, not a session.
LANGUAGE_COOKIE_SECONDS = 365 * 24 * 3600

language_router = APIRouter(include_in_schema=False)


@language_router.get("/lang/{language}")
async def switch_language(
    language: Annotated[str, Path(max_length=8)],
    next_page: Annotated[str, Query(alias="next", max_length=2000)] = "/",
) -> RedirectResponse:
    """The header's language links: remember the choice, go back to the page it was made on."""
    # Only a path on this site: `//evil.example` or `https://...` would make the switch an open redirect.
    target = next_page if next_page.startswith("/") and not next_page.startswith(("//", "/\\")) else "/"
    response = RedirectResponse(target, status_code=303)
    if language in LOCALES:
        response.set_cookie(
            LANGUAGE_COOKIE, language, max_age=LANGUAGE_COOKIE_SECONDS, samesite="lax", httponly=True
        )
    return response


router = APIRouter(include_in_schema=False)
router.include_router(static.router)
router.include_router(language_router)
router.include_router(buyer.router)
router.include_router(orders.router)
router.include_router(admin.router)
router.include_router(door.router)
