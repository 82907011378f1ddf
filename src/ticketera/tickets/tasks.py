"""Sending the tickets email from the outbox: claim, render, send, record; never inside a transaction.

An email is claimed with a lease (a conditional update) so two workers never send the same one at
once, and marked sent right after the SMTP server accepted it. The only window for a second copy
is a crash between the server's acceptance and that mark; the Message-ID is stable, so a receiving
server or client can tell the copies apart. Failures are retried with backoff, then left FAILED.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from pathlib import Path

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from ticketera.config import Settings
from ticketera.events import repository as events_repository
from ticketera.kit.clock import Clock
from ticketera.kit.db import Database
from ticketera.kit.resilience import backoff_seconds
from ticketera.kit.tokens import TokenSigner
from ticketera.orders import repository as orders_repository
from ticketera.tickets import mail, repository, service
from ticketera.tickets.documents import PrintedOrder, PrintedTicket, order_pdf
from ticketera.tickets.models import EmailState

log = structlog.get_logger(__name__)

SWEEP_BATCH = 20


async def printable_order(session: AsyncSession, order_id: int, *, zone: tzinfo) -> PrintedOrder | None:
    order = await orders_repository.find_order(session, order_id)
    if order is None:
        return None
    event = await events_repository.find_event(session, order.event_id)
    tickets = await repository.tickets_of_order(session, order_id)
    return PrintedOrder(
        order_id=order.id,
        event_name=event.name if event is not None else f"Event {order.event_id}",
        starts_at=event.starts_at if event is not None else order.created_at,
        venue=event.venue if event is not None else None,
        buyer_name=order.buyer_name,
        buyer_email=order.buyer_email,
        tickets=[PrintedTicket(t.code, t.section_name, t.seat_label, t.status) for t in tickets],
        zone=zone,
    )


@dataclass
class TicketMailer:
    database: Database
    clock: Clock
    sender: str
    smtp_url: str | None
    outbox_dir: Path
    public_base_url: str
    # Signs the order token of the link to the buyer's order page.
    signer: TokenSigner
    zone: tzinfo

    async def send(self, email_id: int) -> bool:
        """Send one due email if nobody else is; True once it is sent."""
        now = self.clock()

        async def claim(session: AsyncSession) -> bool:
            return await repository.claim_email(
                session, email_id, now=now, lease_until=now + service.EMAIL_LEASE
            )

        if not await self.database.transaction(claim):
            return False

        async def load(session: AsyncSession) -> tuple[int, str, int, PrintedOrder | None]:
            email = await repository.find_email(session, email_id)
            assert email is not None
            return (
                email.attempts,
                email.to_address,
                email.order_id,
                await printable_order(session, email.order_id, zone=self.zone),
            )

        attempts, to_address, order_id, printed = await self.database.read(load)
        if printed is not None and printed.tickets and all(t.status != "valid" for t in printed.tickets):
            log.info("email.skipped", email_id=email_id, order_id=order_id, reason="tickets_void")
            await self._finish(email_id, EmailState.SKIPPED)
            return False
        try:
            if printed is None or not printed.tickets:
                raise LookupError(f"order {order_id} has no tickets to send")
            # Rendering takes tens of milliseconds of CPU: off the event loop, which is also serving.
            pdf = await asyncio.to_thread(order_pdf, printed)
            message = mail.tickets_email(
                sender=self.sender,
                to=to_address,
                buyer_name=printed.buyer_name,
                event_name=printed.event_name,
                order_id=order_id,
                order_url=f"{self.public_base_url}/orders/{order_id}?token={self.signer.order_token(order_id)}",
                pdf=pdf,
                message_key=f"ticketera-email-{email_id}",
            )
            await mail.deliver(
                message,
                smtp_url=self.smtp_url,
                outbox_dir=self.outbox_dir,
                file_name=f"order-{order_id}-tickets",
            )
        except Exception as exc:
            gave_up = attempts >= service.MAX_EMAIL_ATTEMPTS
            log.warning(
                "email.failed",
                email_id=email_id,
                attempts=attempts,
                error=type(exc).__name__,
                gave_up=gave_up,
            )
            await self._finish(
                email_id,
                EmailState.FAILED if gave_up else EmailState.PENDING,
                next_attempt_at=_retry_at(attempts, self.clock()),
                error=f"{type(exc).__name__}: {exc}",
            )
            return False
        await self._finish(email_id, EmailState.SENT)
        return True

    async def send_due(self, *, limit: int = SWEEP_BATCH) -> int:
        now = self.clock()

        async def due(session: AsyncSession) -> list[int]:
            return await repository.due_email_ids(session, now, limit=limit)

        sent = 0
        for email_id in await self.database.read(due):
            sent += await self.send(email_id)
        return sent

    async def _finish(
        self,
        email_id: int,
        state: EmailState,
        *,
        next_attempt_at: datetime | None = None,
        error: str | None = None,
    ) -> None:
        now = self.clock()

        async def finish(session: AsyncSession) -> None:
            await repository.finish_email(
                session, email_id, state=state, now=now, next_attempt_at=next_attempt_at, error=error
            )

        await self.database.transaction(finish)


def _retry_at(attempts: int, now: datetime) -> datetime:
    """30 s, 1 min, 2 min ... capped at an hour: a mail server restarting is waited for, not hammered."""
    return now + timedelta(seconds=backoff_seconds(attempts, base=30, cap=3600))


def build_ticket_mailer(settings: Settings, database: Database, clock: Clock) -> TicketMailer:
    return TicketMailer(
        database=database,
        clock=clock,
        sender=settings.mail_from,
        smtp_url=settings.smtp_url,
        outbox_dir=settings.data_dir / "outbox",
        public_base_url=settings.effective_public_base_url,
        signer=TokenSigner(settings.secret_key or ""),
        zone=settings.zone,
    )
