"""Sending the tickets email from the outbox: claim, render, send, record; never inside a transaction.

An email is claimed with a lease (a conditional update) so two workers never send the same one at
once, and marked sent right after the SMTP server accepted it. The only window for a second copy
is a crash between the server's acceptance and that mark; the Message-ID is stable, so a receiving
server or client can tell the copies apart. Failures are retried with backoff, then left FAILED.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from ticketera.config import Settings
from ticketera.kit.clock import Clock
from ticketera.kit.db import Database
from ticketera.kit.leases import Retry
from ticketera.kit.lifecycle import stopped
from ticketera.kit.tokens import TokenSigner
from ticketera.tickets import mail, repository, service
from ticketera.tickets.documents import PrintedOrder, order_pdf
from ticketera.tickets.models import EmailState

log = structlog.get_logger(__name__)

SWEEP_BATCH = 20
# Emails of one sweep in flight at once.
SEND_CONCURRENCY = 4

# Reads an order's tickets as the PDF prints them (None: no such order). Tickets know orders only by
# id: the orders domain provides this (`orders.service.printable_order`), wired by the composition root.
OrderLoader = Callable[[AsyncSession, int], Awaitable[PrintedOrder | None]]


@dataclass(frozen=True)
class EmailSweep:
    due: int
    sent: int
    limit: int

    @property
    def more_waiting(self) -> bool:
        """A full batch went out: more are likely due (a sell-out pays thousands of orders in
        minutes), so the next sweep should not wait. A batch that all failed (SMTP down) is no
        backlog to hurry: each email waits for its own retry."""
        return self.due >= self.limit and self.sent > 0


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
    load_order: OrderLoader

    async def send(self, email_id: int) -> bool:
        """Send one due email if nobody else is; True once it is sent."""
        now = self.clock()

        async def claim(session: AsyncSession) -> bool:
            return await service.OUTBOX.claim(session, email_id, now=now)

        if not await self.database.transaction(claim):
            return False

        async def load(session: AsyncSession) -> tuple[int, str, int, PrintedOrder | None]:
            email = await repository.find_email(session, email_id)
            assert email is not None
            return (
                email.attempts,
                email.to_address,
                email.order_id,
                await self.load_order(session, email.order_id),
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
            retry = service.OUTBOX.after_failure(attempts, self.clock())
            log.warning(
                "email.failed",
                email_id=email_id,
                attempts=attempts,
                error=type(exc).__name__,
                gave_up=retry.gave_up,
            )
            await self._record_failure(email_id, retry, error=f"{type(exc).__name__}: {exc}")
            return False
        await self._finish(email_id, EmailState.SENT)
        return True

    async def send_due(self, *, limit: int = SWEEP_BATCH) -> int:
        """Send the emails due now, at most `limit`; how many were sent."""
        return (await self.sweep(limit=limit)).sent

    async def sweep(self, *, limit: int = SWEEP_BATCH, stop: asyncio.Event | None = None) -> EmailSweep:
        """Send the emails due now, at most `limit`, SEND_CONCURRENCY at a time: while one renders
        its PDF, others wait on the SMTP server or the database. Once `stop` is set, the sends under
        way end and the others stay due."""
        now = self.clock()

        async def due(session: AsyncSession) -> list[int]:
            return await service.OUTBOX.due(session, now, limit=limit)

        found = await self.database.read(due)
        slots = asyncio.Semaphore(SEND_CONCURRENCY)

        async def send_one(email_id: int) -> bool:
            async with slots:
                return False if stopped(stop) else await self.send(email_id)

        # Every send ends before a failure is raised (the database or SMTP gone: the worker's
        # outage notice takes the first), so none is left running behind the sweep.
        outcomes = await asyncio.gather(*(send_one(email_id) for email_id in found), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return EmailSweep(due=len(found), sent=sum(1 for outcome in outcomes if outcome is True), limit=limit)

    async def _finish(self, email_id: int, state: EmailState) -> None:
        now = self.clock()

        async def finish(session: AsyncSession) -> None:
            await service.OUTBOX.finish(session, email_id, state=state, now=now)

        await self.database.transaction(finish)

    async def _record_failure(self, email_id: int, retry: Retry, *, error: str) -> None:
        now = self.clock()

        async def record(session: AsyncSession) -> None:
            await service.OUTBOX.record_failure(session, email_id, retry, now=now, error=error)

        await self.database.transaction(record)


def build_ticket_mailer(
    settings: Settings, database: Database, clock: Clock, *, load_order: OrderLoader
) -> TicketMailer:
    return TicketMailer(
        database=database,
        clock=clock,
        sender=settings.mail_from,
        smtp_url=settings.smtp_url,
        outbox_dir=settings.data_dir / "outbox",
        public_base_url=settings.effective_public_base_url,
        signer=TokenSigner(settings.secret_key or ""),
        load_order=load_order,
    )
