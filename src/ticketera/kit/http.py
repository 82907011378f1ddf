"""Request-boundary dependencies shared by every domain's endpoints, and how handlers get the app's
long-lived objects.

The composition root (`ticketera.composition`) builds the database, the clock, the signer, the
payment processor and the rest once per process and registers each under a typed `Component` key;
a handler names what it needs in its signature (`database: Db`, `clock: CurrentClock`) and never
reads `request.app.state` itself. A domain declares the key and the alias of what it owns (the
waiting room in `queue`, the payment processor in `payments`), so no domain imports the root, and
the root imports every domain: the graph README draws stays acyclic.

Dependencies are `async def` even when they do not await: FastAPI runs plain `def` dependencies in
a thread pool, a thread hop per request that costs more than the dependency itself.

The write-session dependency runs with `scope="function"` so the commit happens before the
response is sent: a client never sees 201 for work that then failed to commit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, TypeVar, cast

from fastapi import Depends, FastAPI, Request
from sqlalchemy.ext.asyncio import AsyncSession

from ticketera.config import Settings
from ticketera.kit.clock import Clock
from ticketera.kit.components import Component, Components
from ticketera.kit.db import Database
from ticketera.kit.errors import Unauthorized
from ticketera.kit.security import bearer_token, secrets_match
from ticketera.kit.tokens import TokenSigner

T = TypeVar("T")


def components_of(app: FastAPI) -> Components:
    """The app's registry, made on first use (create_app and the lifespan fill it)."""
    found = getattr(app.state, "components", None)
    if found is None:
        found = app.state.components = Components()
    return cast(Components, found)


def component(key: Component[T]) -> Callable[[Request], Awaitable[T]]:
    """A FastAPI dependency that hands a handler the object registered under `key`."""

    async def provide(request: Request) -> T:
        return components_of(request.app).get(key)

    provide.__name__ = f"provide_{key.name}"
    return provide


SETTINGS = Component[Settings]("settings")
CLOCK = Component[Clock]("clock")
DATABASE = Component[Database]("database")
# Signs and verifies queue, access and order tokens (HMAC of SECRET_KEY).
SIGNER = Component[TokenSigner]("signer")

CurrentSettings = Annotated[Settings, Depends(component(SETTINGS))]
CurrentClock = Annotated[Clock, Depends(component(CLOCK))]
Db = Annotated[Database, Depends(component(DATABASE))]
Signer = Annotated[TokenSigner, Depends(component(SIGNER))]


async def _write_session(database: Db) -> AsyncIterator[AsyncSession]:
    async with database.write_session() as session:
        yield session


async def _read_session(database: Db) -> AsyncIterator[AsyncSession]:
    async with database.read_session() as session:
        yield session


async def admin_caller(request: Request, settings: CurrentSettings) -> bool:
    """Whether the caller sent the admin key as a bearer token."""
    return secrets_match(bearer_token(request.headers.get("authorization")), settings.admin_api_key)


IsAdmin = Annotated[bool, Depends(admin_caller)]


async def _lag_tolerant_session(database: Db, is_admin: IsAdmin) -> AsyncIterator[AsyncSession]:
    # An admin reads back the events they have just created or changed: the primary, always.
    sessions = database.read_session() if is_admin else database.replica_session()
    async with sessions as session:
        yield session


class AdminRequired(Unauthorized):
    def __init__(self) -> None:
        super().__init__("This call needs Authorization: Bearer <ADMIN_API_KEY>.")


async def require_admin(is_admin: IsAdmin) -> None:
    if not is_admin:
        raise AdminRequired()


class StaffRequired(Unauthorized):
    def __init__(self) -> None:
        super().__init__("This call needs Authorization: Bearer <STAFF_API_KEY> (or the admin key).")


async def require_staff(request: Request, settings: CurrentSettings, is_admin: IsAdmin) -> None:
    """Door staff (STAFF_API_KEY) or an admin: scanning and the door's figures."""
    token = bearer_token(request.headers.get("authorization"))
    if not (is_admin or secrets_match(token, settings.staff_api_key)):
        raise StaffRequired()


def client_ip(request: Request) -> str:
    # Behind nginx, uvicorn's proxy-headers support has already put the real client here.
    return request.client.host if request.client else "unknown"


WriteSession = Annotated[AsyncSession, Depends(_write_session, scope="function")]
ReadSession = Annotated[AsyncSession, Depends(_read_session, scope="function")]
# For the reads that tolerate DB_REPLICA_MAX_LAG_SECONDS of lag (the public listing, an event's
# detail, its seat map, the door's figures): a read replica when one is fit (kit.replicas). Never for
# a read that decides a write or follows the caller's own write: those take ReadSession.
LagTolerantSession = Annotated[AsyncSession, Depends(_lag_tolerant_session, scope="function")]
AdminOnly = Depends(require_admin)
StaffOnly = Depends(require_staff)
