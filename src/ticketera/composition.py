"""The composition root: every long-lived object of a process, built in one place.

The web app (`main.create_app`'s lifespan) and the background worker (`ticketera worker`) both call
`build_services`; handlers receive what it built through the typed dependencies of `kit.http`
(`Db`, `CurrentClock`, `Signer`, and each domain's own, e.g. `queue`'s `Room`), never from
`request.app.state`. This module imports every domain and no domain imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import partial

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from ticketera.config import Settings
from ticketera.events import service as events_service
from ticketera.infra.ratelimit import RATE_LIMITER, RateLimiter
from ticketera.infra.redis import REDIS, RedisConnection
from ticketera.kit.clock import Clock
from ticketera.kit.components import Component, Components
from ticketera.kit.db import Database, engine_for
from ticketera.kit.http import CLOCK, DATABASE, SETTINGS, SIGNER
from ticketera.kit.replicas import replica_set_for
from ticketera.kit.tokens import TokenSigner
from ticketera.orders import service as orders_service
from ticketera.orders.service import CHECKOUT
from ticketera.payments.spool import NotificationSpool
from ticketera.payments.tasks import (
    NOTIFICATION_PUMP,
    PAYMENTS,
    NotificationPump,
    PaymentProcessor,
    build_payment_processor,
)
from ticketera.queue.backend import QueueBackend
from ticketera.queue.identity import UserAssertions
from ticketera.queue.memory import MemoryQueueBackend
from ticketera.queue.redis_backend import RedisQueueBackend
from ticketera.queue.service import WAITING_ROOM, EventQueueSettings, WaitingRoom
from ticketera.tickets.service import TICKET_KEYS, PublicKeys
from ticketera.tickets.tasks import TicketMailer, build_ticket_mailer

log = structlog.get_logger(__name__)

# The worker process needs few connections: it runs one batch at a time.
WORKER_POOL_SIZE = 2
# Under DATA_DIR: where web processes keep webhooks while the database is down (a volume in containers).
WEBHOOK_SPOOL_FOLDER = "webhook-spool"


class Role(StrEnum):
    WEB = "web"
    WORKER = "worker"


@dataclass
class Services:
    """What one process shares between its requests (web) or passes (worker)."""

    settings: Settings
    clock: Clock
    database: Database
    redis: RedisConnection | None
    signer: TokenSigner
    waiting_room: WaitingRoom
    rate_limiter: RateLimiter
    payments: PaymentProcessor
    notification_pump: NotificationPump
    ticket_keys: PublicKeys
    mailer: TicketMailer

    def probe_open_breakers(self, interval: float) -> None:
        """An open breaker asks its dependency every `interval` seconds and closes as soon as it
        answers, instead of waiting out its open time for a request to try (the guide's thresholds
        still decide when it opens)."""
        self.database.breaker.probe_in_background(self.database.answers, interval=interval)
        self.payments.gateway.breaker.probe_in_background(self.payments.gateway.answers, interval=interval)
        if self.redis is not None:
            self.redis.breaker.probe_in_background(self.redis.answers, interval=interval)

    def register(self, components: Components) -> None:
        """Hand these objects to the handlers (see `kit.http.component`)."""
        components.provide(SERVICES, self)
        components.provide(SETTINGS, self.settings)
        components.provide(CLOCK, self.clock)
        components.provide(DATABASE, self.database)
        components.provide(REDIS, self.redis)
        components.provide(SIGNER, self.signer)
        components.provide(WAITING_ROOM, self.waiting_room)
        components.provide(RATE_LIMITER, self.rate_limiter)
        components.provide(PAYMENTS, self.payments)
        components.provide(CHECKOUT, self.payments)
        components.provide(NOTIFICATION_PUMP, self.notification_pump)
        components.provide(TICKET_KEYS, self.ticket_keys)

    async def close(self) -> None:
        await self.database.breaker.stop_probing()
        await self.payments.gateway.breaker.stop_probing()
        if self.redis is not None:
            await self.redis.breaker.stop_probing()
        await self.waiting_room.backend.close()
        await self.payments.gateway.close()
        if self.redis is not None:
            await self.redis.close()
        await self.database.dispose()


# The whole set, for tests and tools that drive a running app from outside (never for handlers,
# which name the one object they need).
SERVICES = Component[Services]("services")


def build_services(settings: Settings, clock: Clock, *, role: Role = Role.WEB) -> Services:
    engine = engine_for(settings, pool_size=None if role is Role.WEB else WORKER_POOL_SIZE)
    # Replicas serve web requests only: the worker's reads decide its writes.
    replicas = replica_set_for(settings, engine) if role is Role.WEB else None
    database = Database(engine, replicas=replicas)
    redis_url = settings.effective_redis_url
    redis = RedisConnection(redis_url, cluster=settings.redis_cluster) if redis_url else None
    assert settings.secret_key, "secrets are filled in by load_settings()"
    signer = TokenSigner(settings.secret_key)
    room = build_waiting_room(settings, database, redis, signer, clock)
    payments = build_payment_processor(settings, database, clock)
    # A paid order frees its buyer's shopping slot in the waiting room. Without Redis the room lives
    # in the web process alone: a worker's own in-process room has nobody in it.
    if role is Role.WEB or redis is not None:
        payments.on_paid = room.finish_shopping
    if role is Role.WEB:
        # Webhooks land on web processes; this one keeps those the database cannot take, and drains them.
        payments.spool = NotificationSpool(settings.data_dir / WEBHOOK_SPOOL_FOLDER)
    services = Services(
        settings=settings,
        clock=clock,
        database=database,
        redis=redis,
        signer=signer,
        waiting_room=room,
        rate_limiter=RateLimiter(
            per_ip=settings.app_rate_limit,
            per_user_join=settings.queue_join_rate_limit,
            redis_url=redis_url,
            cluster=settings.redis_cluster,
            breaker=redis.breaker if redis is not None else None,
            unlimited_key=settings.admin_api_key,
        ),
        payments=payments,
        notification_pump=NotificationPump(payments),
        ticket_keys=PublicKeys(),
        mailer=build_ticket_mailer(
            settings,
            database,
            clock,
            load_order=partial(orders_service.printable_order, zone=settings.zone),
        ),
    )
    if settings.breaker_probe_seconds > 0:
        services.probe_open_breakers(settings.breaker_probe_seconds)
    if settings.db_unresponsive_seconds > 0:
        database.watch_for_freezes(settings.db_unresponsive_seconds)
    database.check_replicas(settings.db_unresponsive_seconds)
    return services


def build_waiting_room(
    settings: Settings, database: Database, redis: RedisConnection | None, signer: TokenSigner, clock: Clock
) -> WaitingRoom:
    """The waiting room on Redis when one is configured, else in this process."""
    backend: QueueBackend = RedisQueueBackend(redis) if redis is not None else MemoryQueueBackend()

    async def load_queue_settings(event_id: int) -> EventQueueSettings | None:
        async def read(session: AsyncSession) -> EventQueueSettings | None:
            event = await events_service.find_event(session, event_id)
            return EventQueueSettings.of(event) if event is not None else None

        return await database.read(read)

    return WaitingRoom(
        backend,
        signer,
        load_settings=load_queue_settings,
        clock=clock,
        max_waiting=settings.effective_queue_max_size,
        claim_seconds=settings.queue_claim_seconds,
        assertions=UserAssertions(settings.user_assertion_secret),
    )
