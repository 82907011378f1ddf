"""Notifications as MercadoPago sends them: signed webhooks, legacy IPN calls, retries, and misbehaviour.

Every payment create or change becomes a webhook `POST <notification_url>?data.id=<id>&type=payment`
signed with `x-signature: ts=<ts>,v1=<hex>` and, unless the URL carries `source_news=webhooks`, a
legacy unsigned IPN `POST <notification_url>?topic=payment&id=<id>`. Each delivery runs in a
background task: an answer other than 200/201, or no answer within 22 s, is retried on the retry
schedule with `X-Retry: <n>`. The switches of `SimConfig` (duplicates, out-of-order, dropped,
delays, id casing, ts unit, a wrong secret) reproduce what a real receiver has to survive.

A retry keeps the notification's x-request-id and signs again with a fresh ts, as a new HTTP request
of the same notification would be.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import structlog

from ticketera.kit.clock import Clock, utc_now
from ticketera.mpsim.settings import SimConfig
from ticketera.mpsim.store import Payment, format_date

# MercadoPago waits this long for the receiver's 200/201 before counting the delivery as failed.
DELIVERY_TIMEOUT_SECONDS = 22.0
FIRST_EVENT_ID = 120000000001
DELIVERED_STATUSES = frozenset({200, 201})

NotificationKind = Literal["webhook", "ipn"]
NotificationState = Literal["pending", "held", "delivered", "dropped", "failing"]

log = structlog.get_logger(__name__)


def signature_manifest(data_id: str | None, request_id: str | None, ts: str) -> str:
    """`id:<data.id>;request-id:<x-request-id>;ts:<ts>;`, leaving out pairs whose value is absent."""
    parts = []
    if data_id:
        parts.append(f"id:{data_id}")
    if request_id:
        parts.append(f"request-id:{request_id}")
    parts.append(f"ts:{ts}")
    return ";".join(parts) + ";"


def sign(secret: str, data_id: str | None, request_id: str | None, ts: str) -> str:
    manifest = signature_manifest(data_id, request_id, ts)
    return hmac.new(secret.encode(), manifest.encode(), hashlib.sha256).hexdigest()


def signature_header(
    secret: str,
    data_id: str,
    request_id: str,
    moment: datetime,
    *,
    id_casing: Literal["original", "lower"] = "original",
    ts_unit: Literal["s", "ms"] = "s",
) -> str:
    ts = str(int(moment.timestamp() * 1000)) if ts_unit == "ms" else str(int(moment.timestamp()))
    signed_id = data_id.lower() if id_casing == "lower" else data_id
    return f"ts={ts},v1={sign(secret, signed_id, request_id, ts)}"


def with_query(url: str, params: list[tuple[str, str]]) -> str:
    """The URL with `params` appended to whatever query it already has."""
    parts = urlsplit(url)
    extra = urlencode(params)
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))


@dataclass
class Attempt:
    retry: int
    at: datetime
    status: int | None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"retry": self.retry, "status": self.status, "at": format_date(self.at), "error": self.error}


@dataclass
class Notification:
    id: int
    event_id: int
    kind: NotificationKind
    payment_id: int
    action: str
    url: str
    request_id: str
    body: dict[str, Any]
    created_at: datetime
    state: NotificationState = "pending"
    attempts: list[Attempt] = field(default_factory=list)
    next_attempt_at: datetime | None = None
    resend_of: int | None = None
    # Out-of-order release chains deliveries: each waits for the previous one's first attempt.
    first_attempt_done: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def data_id(self) -> str:
        return str(self.payment_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "eventId": self.event_id,
            "kind": self.kind,
            "paymentId": self.payment_id,
            "action": self.action,
            "url": self.url,
            "requestId": self.request_id,
            "state": self.state,
            "attempts": [attempt.to_json() for attempt in self.attempts],
            "nextAttemptAt": format_date(self.next_attempt_at) if self.next_attempt_at else None,
            "resendOf": self.resend_of,
            "createdAt": format_date(self.created_at),
            "body": self.body,
        }


class Notifier:
    def __init__(self, config: Callable[[], SimConfig], *, collector_id: int, clock: Clock = utc_now) -> None:
        self._config = config
        self._collector_id = collector_id
        self._clock = clock
        self.records: dict[int, Notification] = {}
        self._ids = itertools.count(1)
        self._event_ids = itertools.count(FIRST_EVENT_ID)
        self._delivering: dict[asyncio.Task[None], int] = {}
        self._http: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._client()

    def _client(self) -> httpx.AsyncClient:
        # Created on first use too, so an app driven in-process without its lifespan still delivers.
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=DELIVERY_TIMEOUT_SECONDS)
        return self._http

    async def close(self) -> None:
        await self._cancel_deliveries()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def reset(self) -> None:
        await self._cancel_deliveries()
        self.records.clear()

    def payment_changed(self, payment: Payment, action: str) -> None:
        """Queue the notifications MercadoPago would send for this create or change."""
        config = self._config()
        url = payment.notification_url or config.notification_url
        if not url:
            log.debug("mpsim.notification.no_url", payment_id=payment.id, action=action)
            return
        now = self._clock()
        event_id = next(self._event_ids)
        source_news = parse_qs(urlsplit(url).query).get("source_news", [])
        targets: list[tuple[NotificationKind, str, dict[str, Any]]] = []
        if "ipn" not in source_news:
            webhook_body = {
                "id": event_id,
                "live_mode": False,
                "type": "payment",
                "date_created": format_date(now),
                "user_id": self._collector_id,
                "api_version": "v1",
                "action": action,
                "data": {"id": str(payment.id)},
            }
            webhook_url = with_query(url, [("data.id", str(payment.id)), ("type", "payment")])
            targets.append(("webhook", webhook_url, webhook_body))
        if "webhooks" not in source_news:
            ipn_body = {"resource": str(payment.id), "topic": "payment"}
            targets.append(
                ("ipn", with_query(url, [("topic", "payment"), ("id", str(payment.id))]), ipn_body)
            )
        for kind, target, body in targets:
            request_id = str(uuid.uuid4())
            for copy in range(1 + config.duplicates):
                copy_request_id = (
                    request_id if copy == 0 or config.duplicate_same_request_id else str(uuid.uuid4())
                )
                record = self._record(kind, payment.id, action, target, copy_request_id, body, event_id)
                self._dispatch(record, config)

    def _record(
        self,
        kind: NotificationKind,
        payment_id: int,
        action: str,
        url: str,
        request_id: str,
        body: dict[str, Any],
        event_id: int,
        resend_of: int | None = None,
    ) -> Notification:
        record = Notification(
            id=next(self._ids),
            event_id=event_id,
            kind=kind,
            payment_id=payment_id,
            action=action,
            url=url,
            request_id=request_id,
            body=body,
            created_at=self._clock(),
            resend_of=resend_of,
        )
        self.records[record.id] = record
        return record

    def _dispatch(self, record: Notification, config: SimConfig) -> None:
        if config.drop_notifications:
            record.state = "dropped"
            log.info("mpsim.notification.dropped", notification_id=record.id, payment_id=record.payment_id)
        elif config.out_of_order:
            record.state = "held"
        else:
            self._spawn(
                record,
                self._deliver(
                    record, delay=config.notification_delay_seconds, schedule=config.retry_schedule
                ),
            )

    def release(self) -> list[Notification]:
        """Send the held notifications newest first, each after the previous one's first attempt."""
        held = sorted(
            (record for record in self.records.values() if record.state == "held"),
            key=lambda record: record.id,
            reverse=True,
        )
        schedule = self._config().retry_schedule
        previous: Notification | None = None
        for record in held:
            record.state = "pending"
            self._spawn(record, self._deliver(record, delay=0.0, schedule=schedule, after=previous))
            previous = record
        return held

    def resend(self, notification_id: int) -> Notification:
        """Send a notification again now, same x-request-id and body: a duplicate on demand."""
        original = self.records[notification_id]
        record = self._record(
            original.kind,
            original.payment_id,
            original.action,
            original.url,
            original.request_id,
            original.body,
            original.event_id,
            resend_of=original.id,
        )
        self._spawn(record, self._deliver(record, delay=0.0, schedule=self._config().retry_schedule))
        return record

    async def drain(self, within: float) -> bool:
        """Wait until no delivery is pending, in flight or waiting to be retried; held ones do not count."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while self._delivering:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            await asyncio.wait(set(self._delivering), timeout=remaining)
        return True

    def outstanding(self) -> set[int]:
        """Ids of the notifications whose delivery has not finished (held ones excluded)."""
        return set(self._delivering.values())

    def _spawn(self, record: Notification, delivery: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(delivery, name=f"mpsim-notification-{record.id}")
        # The dict keeps a reference: the loop holds tasks only weakly.
        self._delivering[task] = record.id
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._delivering.pop(task, None)

    async def _cancel_deliveries(self) -> None:
        tasks = list(self._delivering)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _deliver(
        self,
        record: Notification,
        *,
        delay: float,
        schedule: list[float],
        after: Notification | None = None,
    ) -> None:
        try:
            if after is not None:
                await after.first_attempt_done.wait()
            if delay > 0:
                await asyncio.sleep(delay)
            for retry in range(len(schedule) + 1):
                if retry:
                    wait = schedule[retry - 1]
                    record.next_attempt_at = self._clock() + timedelta(seconds=wait)
                    await asyncio.sleep(wait)
                    record.next_attempt_at = None
                if await self._attempt(record, retry):
                    return
            log.warning(
                "mpsim.notification.gave_up",
                notification_id=record.id,
                payment_id=record.payment_id,
                attempts=len(record.attempts),
            )
        finally:
            # A cancelled or failed first attempt must not block the deliveries chained after it.
            record.first_attempt_done.set()

    async def _attempt(self, record: Notification, retry: int) -> bool:
        config = self._config()
        now = self._clock()
        headers = {"Content-Type": "application/json", "x-request-id": record.request_id}
        if record.kind == "webhook":
            headers["x-signature"] = signature_header(
                config.webhook_secret,
                record.data_id,
                record.request_id,
                now,
                id_casing=config.id_casing,
                ts_unit=config.ts_unit,
            )
        if retry:
            headers["X-Retry"] = str(retry)
        status: int | None = None
        error: str | None = None
        try:
            response = await self._client().post(record.url, content=json.dumps(record.body), headers=headers)
            status = response.status_code
        except httpx.HTTPError as exc:
            error = type(exc).__name__
        record.attempts.append(Attempt(retry=retry, at=now, status=status, error=error))
        delivered = status in DELIVERED_STATUSES
        record.state = "delivered" if delivered else "failing"
        record.first_attempt_done.set()
        log.info(
            "mpsim.notification.delivered" if delivered else "mpsim.notification.failed",
            notification_id=record.id,
            kind=record.kind,
            payment_id=record.payment_id,
            retry=retry,
            status=status,
            error=error,
        )
        return delivered
