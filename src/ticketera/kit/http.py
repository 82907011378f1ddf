"""Request-boundary dependencies shared by every domain's endpoints.

Dependencies are `async def` even when they do not await: FastAPI runs plain `def` dependencies in
a thread pool, a thread hop per request that costs more than the dependency itself.

The write-session dependency runs with `scope="function"` so the commit happens before the
response is sent: a client never sees 201 for work that then failed to commit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from ticketera.config import Settings
from ticketera.kit.clock import Clock
from ticketera.kit.db import Database
from ticketera.kit.errors import Unauthorized
from ticketera.kit.security import bearer_token, secrets_match


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


async def get_clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


async def _write_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with get_database(request).write_session() as session:
        yield session


async def _read_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with get_database(request).read_session() as session:
        yield session


def is_admin(request: Request) -> bool:
    token = bearer_token(request.headers.get("authorization"))
    return secrets_match(token, get_settings(request).admin_api_key)


class AdminRequired(Unauthorized):
    def __init__(self) -> None:
        super().__init__("This call needs Authorization: Bearer <ADMIN_API_KEY>.")


async def require_admin(request: Request) -> None:
    if not is_admin(request):
        raise AdminRequired()


class StaffRequired(Unauthorized):
    def __init__(self) -> None:
        super().__init__("This call needs Authorization: Bearer <STAFF_API_KEY> (or the admin key).")


async def require_staff(request: Request) -> None:
    """Door staff (STAFF_API_KEY) or an admin: scanning and the door's figures."""
    token = bearer_token(request.headers.get("authorization"))
    staff_key = get_settings(request).staff_api_key
    if not (secrets_match(token, staff_key) or is_admin(request)):
        raise StaffRequired()


def client_ip(request: Request) -> str:
    # Behind nginx, uvicorn's proxy-headers support has already put the real client here.
    return request.client.host if request.client else "unknown"


async def _public_rate_limit(request: Request) -> None:
    """The app's own per-IP limit (APP_RATE_LIMIT) on public calls; admins are not limited."""
    if is_admin(request):
        return
    limiter = request.app.state.rate_limiter
    await limiter.enforce(limiter.per_ip, "ip", client_ip(request))


WriteSession = Annotated[AsyncSession, Depends(_write_session, scope="function")]
ReadSession = Annotated[AsyncSession, Depends(_read_session, scope="function")]
CurrentClock = Annotated[Clock, Depends(get_clock)]
AdminOnly = Depends(require_admin)
StaffOnly = Depends(require_staff)
PublicRateLimit = Depends(_public_rate_limit)
