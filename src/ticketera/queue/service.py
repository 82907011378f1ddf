"""The rules of the waiting room: who may join, what a user is told, who is let in and when.

The order of the line and the atomic steps live in the backends (`ticketera.queue.backend`); this
module decides what to ask of them and how to answer users.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from ticketera.events import service as events_service
from ticketera.events.models import Event, EventStatus
from ticketera.events.schemas import EventPatch, QueueSettingsIn
from ticketera.events.service import EventCancelled, EventNotFound
from ticketera.kit.cache import TtlCache
from ticketera.kit.clock import Clock
from ticketera.kit.components import Component
from ticketera.kit.tokens import TokenSigner
from ticketera.queue.backend import (
    AdmissionPolicy,
    LineFigures,
    QueueBackend,
    QueueEntry,
    UserState,
    check_again_seconds,
    eta_seconds,
)
from ticketera.queue.errors import NotInQueue, QueueFull
from ticketera.queue.identity import UserAssertions, anonymous_identity

log = structlog.get_logger(__name__)

# How long an event's queue settings and measured rate are reused before being read again: live
# changes reach every replica within this time, and a join costs no database read.
SETTINGS_TTL_SECONDS = 2.0
RELEASE_ATTEMPTS = 5
# An event's line is kept this long after the event starts (late admissions at the door, an
# organizer's look back), then forgotten: past events hold no memory in Redis.
LINE_KEPT_AFTER_START = timedelta(days=3)
# How often each process sets that deadline again, so keys made since get it too.
EXPIRY_REFRESH_SECONDS = 60.0


@dataclass(frozen=True)
class EventQueueSettings:
    """What the waiting room needs to know of an event, read from the database."""

    event_id: int
    status: EventStatus
    on_sale_at: datetime | None
    starts_at: datetime
    enabled: bool
    admit_per_minute: int
    max_active_shoppers: int
    access_minutes: int
    paused: bool

    @classmethod
    def of(cls, event: Event) -> EventQueueSettings:
        return cls(
            event_id=event.id,
            status=EventStatus(event.status),
            on_sale_at=event.on_sale_at,
            starts_at=event.starts_at,
            enabled=event.queue_enabled,
            admit_per_minute=event.queue_admit_per_minute,
            max_active_shoppers=event.queue_max_active_shoppers,
            access_minutes=event.queue_access_minutes,
            paused=event.queue_paused,
        )

    @property
    def admitting(self) -> bool:
        """Admission runs for published events whose queue is not paused."""
        return self.status is EventStatus.PUBLISHED and not self.paused


@dataclass(frozen=True)
class QueueStatus:
    """A user's place as the contract shows it."""

    status: str
    position: int | None
    ahead: int | None
    eta_seconds: int | None
    pre_queue: bool = False
    access_token: str | None = None
    access_expires_at: datetime | None = None
    # The organizer paused admission (PATCH /api/queue/{id}): the place is kept, nobody moves.
    paused: bool = False
    # When a waiting user should ask again (backend.check_again_seconds); None once not waiting.
    check_again_seconds: int | None = None


@dataclass(frozen=True)
class JoinResult:
    queue_token: str
    status: QueueStatus
    created: bool


SettingsLoader = Callable[[int], Awaitable[EventQueueSettings | None]]


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def draw_order(users: list[str]) -> list[str]:
    """A uniformly random order from the operating system's CSPRNG: nobody can predict or buy a place."""
    order = list(users)
    secrets.SystemRandom().shuffle(order)
    return order


class WaitingRoom:
    def __init__(
        self,
        backend: QueueBackend,
        signer: TokenSigner,
        *,
        load_settings: SettingsLoader,
        clock: Clock,
        max_waiting: int,
        claim_seconds: int,
        assertions: UserAssertions | None = None,
    ) -> None:
        self.backend = backend
        self.signer = signer
        self.assertions = assertions or UserAssertions(None)
        self._load_settings = load_settings
        self._clock = clock
        self.max_waiting = max_waiting
        self.claim_seconds = claim_seconds
        self._settings_cache: TtlCache[int, EventQueueSettings | None] = TtlCache(SETTINGS_TTL_SECONDS)
        self._figures_cache: TtlCache[int, LineFigures] = TtlCache(SETTINGS_TTL_SECONDS)
        self._released: set[int] = set()
        self._expiry_set_at: dict[int, float] = {}  # event id -> monotonic time

    async def settings_for(self, event_id: int, *, fresh: bool = False) -> EventQueueSettings:
        settings = await self._settings_cache.get(
            event_id, lambda: self._load_settings(event_id), fresh=fresh
        )
        if settings is None or settings.status is EventStatus.DRAFT:
            raise EventNotFound(f"Event {event_id} does not exist.")
        return settings

    def forget_settings(self, event_id: int) -> None:
        self._settings_cache.forget(event_id)

    def identify(
        self,
        event_id: int,
        *,
        queue_token: str | None,
        user_id: str | None,
        user_assertion: str | None,
    ) -> str:
        """Who is joining, by the rules of `ticketera.queue.identity`: the holder of an earlier
        join's queue token, a user the organizer's site vouches for, or a newcomer."""
        if queue_token is not None:
            return self.signer.verify_queue_token(queue_token, event_id).user_id
        if user_id is not None and user_assertion is not None:
            self.assertions.verify(user_id, user_assertion, now=self._clock())
            return user_id
        return anonymous_identity()

    async def join(self, event_id: int, user_id: str) -> JoinResult:
        """`user_id` is the identity `identify` found: joining again keeps the same place."""
        settings = await self.settings_for(event_id)
        if settings.status is EventStatus.CANCELLED:
            raise EventCancelled(f"Event {event_id} is cancelled.")
        now = self._clock()
        token = self.signer.queue_token(event_id, user_id)
        if not settings.enabled:
            return JoinResult(token, self._open_access(settings, user_id, now), created=True)
        outcome = await self.backend.join(
            event_id,
            user_id,
            now_ms=to_ms(now),
            on_sale_ms=to_ms(settings.on_sale_at) if settings.on_sale_at else None,
            max_waiting=self.max_waiting,
        )
        if outcome.full:
            log.info("queue.full", event_id=event_id, max_waiting=self.max_waiting)
            raise QueueFull()
        if outcome.created:
            log.info("queue.joined", event_id=event_id, state=outcome.entry.state.value)
        status = await self._describe(settings, user_id, outcome.entry, ahead=outcome.ahead, now=now)
        return JoinResult(token, status, created=outcome.created)

    async def status(self, event_id: int, user_id: str) -> QueueStatus:
        settings = await self.settings_for(event_id)
        now = self._clock()
        if not settings.enabled:
            return self._open_access(settings, user_id, now)
        view = await self.backend.view(event_id, user_id, now_ms=to_ms(now))
        if view is None:
            raise NotInQueue()
        return await self._describe(settings, user_id, view.entry, ahead=view.ahead, now=now)

    async def leave(self, event_id: int, user_id: str) -> bool:
        settings = await self.settings_for(event_id)
        if not settings.enabled:
            return False
        left = await self.backend.leave(event_id, user_id, now_ms=to_ms(self._clock()))
        if left:
            log.info("queue.left", event_id=event_id)
        return left

    async def finish_shopping(self, event_id: int, user_id: str) -> bool:
        """The user completed their purchase: their slot goes to the next in line."""
        return await self.backend.finish(event_id, user_id, now_ms=to_ms(self._clock()))

    async def stats(self, event_id: int) -> QueueStats:
        """The line as an organizer sees it: settings read fresh, figures, the backend."""
        settings = await self.settings_for(event_id, fresh=True)
        return QueueStats(settings, await self.figures(event_id), self.backend.name)

    async def figures(self, event_id: int) -> LineFigures:
        await self.settings_for(event_id)
        return await self.backend.figures(event_id, now_ms=to_ms(self._clock()))

    async def _describe(
        self,
        settings: EventQueueSettings,
        user_id: str,
        entry: QueueEntry,
        *,
        ahead: int | None,
        now: datetime,
    ) -> QueueStatus:
        state = entry.state
        if state is UserState.ADMITTED:
            # Asking for one's place after being let in is claiming the turn: the access clock starts.
            claimed = await self.backend.claim(
                settings.event_id, user_id, now_ms=to_ms(now), access_ms=settings.access_minutes * 60_000
            )
            if claimed is None:
                return QueueStatus("expired", None, None, None)
            entry, state = claimed, claimed.state
        if state is UserState.SHOPPING:
            expires_at = datetime.fromtimestamp(entry.deadline_ms / 1000, tz=now.tzinfo)
            token = self.signer.access_token(settings.event_id, user_id, expires_at)
            return QueueStatus("admitted", None, 0, 0, access_token=token, access_expires_at=expires_at)
        if state is UserState.PREQUEUE:
            until_sale = (
                max(0, int((settings.on_sale_at - now).total_seconds())) if settings.on_sale_at else 0
            )
            return QueueStatus(
                "waiting",
                None,
                None,
                until_sale,
                pre_queue=True,
                paused=settings.paused,
                check_again_seconds=check_again_seconds(until_sale, claim_seconds=self.claim_seconds),
            )
        if state is UserState.WAITING:
            if ahead is None:
                view = await self.backend.view(settings.event_id, user_id, now_ms=to_ms(now))
                ahead = view.ahead if view is not None else None
            ahead = ahead or 0
            # By place also while paused: a resumption reaches the front first, where it matters.
            check_again = check_again_seconds(
                ahead / (settings.admit_per_minute / 60), claim_seconds=self.claim_seconds
            )
            if settings.paused:
                # Nobody is let in until the organizer resumes: any estimate would be a promise we
                # cannot keep, so none is given.
                return QueueStatus(
                    "waiting", ahead + 1, ahead, None, paused=True, check_again_seconds=check_again
                )
            rate = (await self._cached_figures(settings.event_id, now)).admission_rate_per_second(
                settings.admit_per_minute
            )
            return QueueStatus(
                "waiting", ahead + 1, ahead, eta_seconds(ahead, rate), check_again_seconds=check_again
            )
        return QueueStatus(state.value, None, None, None)

    async def _cached_figures(self, event_id: int, now: datetime) -> LineFigures:
        return await self._figures_cache.get(
            event_id, lambda: self.backend.figures(event_id, now_ms=to_ms(now))
        )

    def _open_access(self, settings: EventQueueSettings, user_id: str, now: datetime) -> QueueStatus:
        """No queue for this event: every user is let in at once, with a token like any other."""
        expires_at = now.replace(microsecond=0) + timedelta(minutes=settings.access_minutes)
        token = self.signer.access_token(settings.event_id, user_id, expires_at)
        return QueueStatus("admitted", None, 0, 0, access_token=token, access_expires_at=expires_at)

    async def admission_step(self, settings: EventQueueSettings, *, tick: int) -> list[str]:
        """Release the pre-queue when the sale opens, then admit the next users of the line."""
        now = self._clock()
        if settings.on_sale_at is not None and now < settings.on_sale_at:
            return []
        # Released once the sale is open, also when onSaleAt was cleared after people had pre-queued.
        if settings.event_id not in self._released:
            if not await self.backend.is_released(settings.event_id):
                await self.release_prequeue(settings.event_id)
            if await self.backend.is_released(settings.event_id):
                self._released.add(settings.event_id)
        policy = AdmissionPolicy(
            admit_per_minute=settings.admit_per_minute,
            max_active=settings.max_active_shoppers,
            claim_ms=self.claim_seconds * 1000,
            paused=not settings.admitting,
        )
        admitted = await self.backend.admit(settings.event_id, policy, now_ms=to_ms(now), tick=tick)
        await self._keep_until_over(settings)
        if admitted:
            log.info("queue.admitted", event_id=settings.event_id, count=len(admitted))
        return admitted

    async def _keep_until_over(self, settings: EventQueueSettings) -> None:
        last = self._expiry_set_at.get(settings.event_id)
        if last is not None and time.monotonic() - last < EXPIRY_REFRESH_SECONDS:
            return
        forget_at = settings.starts_at + LINE_KEPT_AFTER_START
        await self.backend.expire_at(settings.event_id, at_ms=to_ms(forget_at))
        self._expiry_set_at[settings.event_id] = time.monotonic()

    async def release_prequeue(self, event_id: int) -> None:
        for _ in range(RELEASE_ATTEMPTS):
            members = await self.backend.prequeue_members(event_id)
            if await self.backend.release_prequeue(
                event_id, draw_order(members), now_ms=to_ms(self._clock())
            ):
                log.info("queue.prequeue_released", event_id=event_id, users=len(members))
                return
        log.warning("queue.prequeue_release_retrying", event_id=event_id)


@dataclass(frozen=True)
class QueueStats:
    settings: EventQueueSettings
    figures: LineFigures
    backend: str


async def change_queue_settings(
    session: AsyncSession, room: WaitingRoom, event_id: int, change: QueueSettingsIn, *, clock: Clock
) -> QueueStats:
    """An organizer's change to the line (admission rate, cap on shoppers, access time, pause):
    stored on the event, and this process stops using the settings it had cached."""
    view = await events_service.update_event(session, event_id, EventPatch(queue=change), clock=clock)
    room.forget_settings(event_id)
    # The backend's figures, not room.figures(): that loads the settings through another session,
    # which cannot see this uncommitted change and would cache the old ones (a pause unseen by the
    # line's status for SETTINGS_TTL_SECONDS).
    figures = await room.backend.figures(event_id, now_ms=to_ms(clock()))
    return QueueStats(EventQueueSettings.of(view.event), figures, room.backend.name)


WAITING_ROOM = Component[WaitingRoom]("waiting_room")
