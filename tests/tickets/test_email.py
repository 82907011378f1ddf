"""The buyer's tickets email: queued with the sale, sent by the worker through a real SMTP server
(aiosmtpd, started by the test), once only, retried with backoff while the server is down, and
written as an .eml file in development when no SMTP_URL is set.

The worker's sender (`TicketMailer.send_due`) is run by hand, on the shop's clock, so retry
deadlines are passed by moving the clock rather than by waiting.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.policy
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import select

from tests.conftest import ADMIN, DatabaseUnderTest, services_of
from tests.fakes import FakeClock
from tests.shop import Shop, Simulator, eventually, serving_shop
from tests.test_cli import free_port
from tests.tickets.pdf_text import page_count, pdf_text
from tests.tickets.sales import paid_order, seat_ids, tickets_of
from ticketera.kit.db import Database, DatabaseUnavailable, create_engine
from ticketera.ops.tasks import run_worker
from ticketera.tickets.models import OutboxEmail
from ticketera.tickets.tasks import SEND_CONCURRENCY, EmailSweep, TicketMailer

EVENT_NAME = "Noche de Rock"


class Mailbox:
    """A real SMTP server (aiosmtpd, in its own thread) on a loopback port, keeping what it accepts.

    Started only when a test says so, so the same port can first be a server that is down.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.received: list[Envelope] = []
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        # Plain SMTP: the test server offers no TLS.
        return f"smtp://127.0.0.1:{self.port}?starttls=false"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        # Recorded before the 250 goes out: once the sender's call returns, the message is here.
        self.received.append(envelope)
        return "250 Message accepted for delivery"

    async def start(self) -> None:
        controller = Controller(self, hostname="127.0.0.1", port=self.port)
        # start() blocks until the server answers a probe connection; in a thread, so the shop
        # (served by this event loop) keeps running meanwhile.
        await asyncio.to_thread(controller.start)
        self._controller = controller

    async def stop(self) -> None:
        if self._controller is not None:
            await asyncio.to_thread(self._controller.stop)
            self._controller = None

    def messages(self) -> list[EmailMessage]:
        parsed = []
        for envelope in self.received:
            assert isinstance(envelope.content, bytes)
            parsed.append(parse(envelope.content))
        return parsed


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


@pytest.fixture
async def mailbox() -> AsyncIterator[Mailbox]:
    box = Mailbox(free_port())
    try:
        yield box
    finally:
        await box.stop()


@pytest.fixture
async def mail_shop(
    db: DatabaseUnderTest,
    tmp_path: Path,
    sim: Simulator,
    simulator_url: str,
    shop_clock: FakeClock,
    mailbox: Mailbox,
) -> AsyncIterator[Shop]:
    """The shop, sending email to `mailbox` (which the test starts)."""
    async with serving_shop(db, tmp_path, simulator_url, shop_clock, smtp_url=mailbox.url) as shop:
        yield shop


def mailer_of(shop: Shop) -> TicketMailer:
    """The worker's email sender, as the shop built it (its database, clock and order reader)."""
    return services_of(shop.app).mailer


async def outbox(shop: Shop) -> list[OutboxEmail]:
    async with services_of(shop.app).database.read_session() as session:
        return list((await session.execute(select(OutboxEmail).order_by(OutboxEmail.id))).scalars())


def check_tickets_email(
    message: EmailMessage, shop: Shop, order: dict[str, Any], tickets: list[dict[str, Any]]
) -> None:
    """The buyer's email: addressed to them, naming the event and order, with a readable PDF of
    every ticket attached."""
    assert message["To"] == "ana@example.com"
    assert message["Subject"] == f"Your tickets for {EVENT_NAME} (order {order['id']})"
    assert message["Message-ID"]
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    text = body.get_content()
    assert "Hello Ana Pérez" in text
    assert f"{shop.settings.effective_public_base_url}/orders/{order['id']}" in text
    (attachment,) = list(message.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_filename() == f"tickets-{order['id']}.pdf"
    pdf = attachment.get_content()
    assert isinstance(pdf, bytes)
    assert pdf.startswith(b"%PDF-")
    assert page_count(pdf) == len(tickets)
    printed = pdf_text(pdf)
    assert printed.count(EVENT_NAME) == len(tickets)
    unwrapped = printed.replace("\n", "")
    assert all(ticket["code"] in unwrapped for ticket in tickets)


async def test_the_tickets_email_reaches_the_smtp_server_with_the_pdf(
    mail_shop: Shop, sim: Simulator, mailbox: Mailbox
) -> None:
    shop = mail_shop
    await mailbox.start()
    event = await shop.event(name=EVENT_NAME)
    order = await paid_order(shop, sim, event, seat_ids=await seat_ids(shop, event, 2))
    tickets = await tickets_of(shop, order)
    (queued,) = await outbox(shop)
    # Queued by the sale itself, not sent by it: the request never waits on a mail server.
    assert (queued.state, queued.attempts, queued.to_address) == ("pending", 0, "ana@example.com")
    assert mailbox.received == []

    assert await mailer_of(shop).send_due() == 1

    (envelope,) = mailbox.received
    assert envelope.mail_from == "tickets@localhost"
    assert envelope.rcpt_tos == ["ana@example.com"]
    (message,) = mailbox.messages()
    check_tickets_email(message, shop, order, tickets)
    (sent,) = await outbox(shop)
    assert (sent.state, sent.attempts, sent.last_error) == ("sent", 1, None)
    assert sent.sent_at == shop.clock.now


async def test_the_email_is_sent_once_however_often_the_worker_sweeps(
    mail_shop: Shop, sim: Simulator, mailbox: Mailbox
) -> None:
    shop = mail_shop
    await mailbox.start()
    event = await shop.event(name=EVENT_NAME)
    await paid_order(shop, sim, event)
    mailer = mailer_of(shop)
    assert await mailer.send_due() == 1
    assert await mailer.send_due() == 0
    # Past any lease or backoff: a sent email is never due again.
    shop.clock.advance(24 * 3600)
    assert await mailer.send_due() == 0
    assert len(mailbox.received) == 1


async def test_two_workers_sweeping_at_once_send_each_email_once(
    mail_shop: Shop, sim: Simulator, mailbox: Mailbox, db: DatabaseUnderTest
) -> None:
    shop = mail_shop
    await mailbox.start()
    event = await shop.event(name=EVENT_NAME)
    orders = [await paid_order(shop, sim, event, f"fan-{number}") for number in range(4)]
    # The second worker has its own connection pool, as a second `ticketera worker` process would.
    other_database = Database(create_engine(db.url, pool_size=2))
    try:
        other = dataclasses.replace(mailer_of(shop), database=other_database)
        sent = await asyncio.gather(mailer_of(shop).send_due(), other.send_due(), mailer_of(shop).send_due())
    finally:
        await other_database.dispose()
    assert sum(sent) == len(orders)
    subjects = Counter(str(message["Subject"]) for message in mailbox.messages())
    assert subjects == {f"Your tickets for {EVENT_NAME} (order {order['id']})": 1 for order in orders}
    assert {row.state for row in await outbox(shop)} == {"sent"}
    assert {row.attempts for row in await outbox(shop)} == {1}


async def test_a_mail_server_that_is_down_is_retried_with_backoff(
    mail_shop: Shop, sim: Simulator, mailbox: Mailbox
) -> None:
    shop = mail_shop  # its SMTP_URL points at `mailbox`'s port, where nothing listens yet
    event = await shop.event(name=EVENT_NAME)
    order = await paid_order(shop, sim, event)
    mailer = mailer_of(shop)
    started = shop.clock.now

    assert await mailer.send_due() == 0
    (failed,) = await outbox(shop)
    assert (failed.state, failed.attempts) == ("pending", 1)
    assert failed.last_error
    assert failed.next_attempt_at == started + timedelta(seconds=30)
    # Not hammered: until the backoff has passed, the sweep leaves it alone.
    shop.clock.advance(29)
    assert await mailer.send_due() == 0
    assert (await outbox(shop))[0].attempts == 1

    shop.clock.advance(1)
    assert await mailer.send_due() == 0
    (again,) = await outbox(shop)
    assert again.attempts == 2
    # The gap doubles.
    assert again.next_attempt_at == shop.clock.now + timedelta(seconds=60)

    await mailbox.start()
    assert await mailer.send_due() == 0  # up now, but not due yet
    assert mailbox.received == []
    shop.clock.advance(60)
    assert await mailer.send_due() == 1
    (message,) = mailbox.messages()
    check_tickets_email(message, shop, order, await tickets_of(shop, order))
    (sent,) = await outbox(shop)
    assert (sent.state, sent.attempts, sent.last_error) == ("sent", 3, None)
    assert await mailer.send_due() == 0
    assert len(mailbox.received) == 1


async def test_without_smtp_the_email_is_written_to_the_outbox_folder(shop: Shop, sim: Simulator) -> None:
    assert shop.settings.smtp_url is None
    event = await shop.event(name=EVENT_NAME)
    order = await paid_order(shop, sim, event, quantity=2)
    mailer = mailer_of(shop)
    assert await mailer.send_due() == 1
    assert await mailer.send_due() == 0

    folder = shop.settings.data_dir / "outbox"
    written = sorted(folder.iterdir())
    assert [path.name for path in written] == [f"order-{order['id']}-tickets.eml"]
    check_tickets_email(parse(written[0].read_bytes()), shop, order, await tickets_of(shop, order))
    (sent,) = await outbox(shop)
    assert sent.state == "sent"


async def test_an_order_refunded_before_its_email_goes_out_is_not_emailed(shop: Shop, sim: Simulator) -> None:
    event = await shop.event(name=EVENT_NAME)
    order = await paid_order(shop, sim, event)
    refunded = await shop.http.post(f"/api/orders/{order['id']}/refund", headers=ADMIN)
    assert refunded.status_code == 200
    assert await mailer_of(shop).send_due() == 0
    (skipped,) = await outbox(shop)
    assert skipped.state == "skipped"
    assert not (shop.settings.data_dir / "outbox").exists()


async def test_the_emails_link_opens_the_buyers_order_page(shop: Shop, sim: Simulator) -> None:
    event = await shop.event(name=EVENT_NAME)
    await paid_order(shop, sim, event)
    assert await mailer_of(shop).send_due() == 1
    message = parse(next((shop.settings.data_dir / "outbox").glob("*.eml")).read_bytes())
    text = message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    (link,) = [word for word in text.split() if "/orders/" in word]
    page = await shop.http.get(link, headers={"Accept-Language": "en"})
    assert page.status_code == 200
    assert "Paid: here are your tickets" in page.text
    # Fixed by the outbox row, so a resent copy is recognisably the same message.
    (sent,) = await outbox(shop)
    assert message["Message-ID"] == f"<ticketera-email-{sent.id}@localhost>"


async def emails_waiting(shop: Shop, sim: Simulator, mailbox: Mailbox, *, orders: int) -> TicketMailer:
    """`orders` paid orders of different buyers, their emails due; the worker's sender."""
    await mailbox.start()
    event = await shop.event(name=EVENT_NAME)
    for number in range(orders):
        await paid_order(shop, sim, event, f"fan-{number}")
    return mailer_of(shop)


async def test_a_backlog_is_sent_batch_after_batch_without_waiting_for_the_next_pass(
    mail_shop: Shop, sim: Simulator, mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sell-out pays orders faster than one batch a pass sends their emails: the worker sends the
    next batch at once while a full one went out, and waits for its interval only once caught up."""
    shop = mail_shop
    mailer = await emails_waiting(shop, sim, mailbox, orders=5)
    sweeps: list[EmailSweep] = []
    batch_of_two = mailer.sweep

    async def sweep(**options: Any) -> EmailSweep:
        sweeps.append(await batch_of_two(**{**options, "limit": 2}))
        return sweeps[-1]

    monkeypatch.setattr(mailer, "sweep", sweep)
    services = services_of(shop.app)
    stop = asyncio.Event()
    worker = asyncio.create_task(
        run_worker(services.database, shop.clock, interval=3600, mailer=mailer, stop=stop)
    )
    try:

        async def all_sent() -> bool:
            return len(mailbox.received) == 5

        await eventually(all_sent)
    finally:
        # The sweep that sent the last email ends before the worker does (a cancel could cut it
        # off between its send and its return).
        stop.set()
        await asyncio.wait_for(worker, timeout=30)
    assert [(done.due, done.sent) for done in sweeps[:3]] == [(2, 2), (2, 2), (1, 1)]
    assert [queued.state for queued in await outbox(shop)] == ["sent"] * 5


def test_a_full_batch_that_all_failed_is_no_backlog_to_hurry() -> None:
    # SMTP down: each email waits for its own retry, and the worker for its interval.
    assert EmailSweep(due=20, sent=0, limit=20).more_waiting is False
    assert EmailSweep(due=20, sent=3, limit=20).more_waiting is True
    assert EmailSweep(due=7, sent=7, limit=20).more_waiting is False


async def test_a_stopping_worker_ends_the_sends_under_way_and_leaves_the_rest_due(
    mail_shop: Shop, sim: Simulator, mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cut off between its sending and its record, an email would go out twice: a stop lets the
    sends under way end and starts no other."""
    shop = mail_shop
    mailer = await emails_waiting(shop, sim, mailbox, orders=6)
    stop = asyncio.Event()
    real_send = mailer.send

    async def send_then_stop(email_id: int) -> bool:
        sent = await real_send(email_id)
        stop.set()
        return sent

    monkeypatch.setattr(mailer, "send", send_then_stop)
    first = await mailer.sweep(stop=stop)
    # The first SEND_CONCURRENCY sends had started before the stop; none after it.
    assert (first.due, first.sent) == (6, SEND_CONCURRENCY)
    assert len(mailbox.received) == SEND_CONCURRENCY
    monkeypatch.setattr(mailer, "send", real_send)
    rest = await mailer.sweep()
    assert (rest.due, rest.sent) == (6 - SEND_CONCURRENCY, 6 - SEND_CONCURRENCY)
    assert [queued.state for queued in await outbox(shop)] == ["sent"] * 6


async def test_a_failing_send_is_raised_once_every_send_of_the_sweep_has_ended(
    mail_shop: Shop, sim: Simulator, mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop = mail_shop
    mailer = await emails_waiting(shop, sim, mailbox, orders=3)
    ended: list[int] = []

    async def send(email_id: int) -> bool:
        if not ended:
            ended.append(email_id)
            raise DatabaseUnavailable()
        await asyncio.sleep(0.05)  # still sending when the first has failed
        ended.append(email_id)
        return True

    monkeypatch.setattr(mailer, "send", send)
    with pytest.raises(DatabaseUnavailable):
        await mailer.sweep()
    assert len(ended) == 3
