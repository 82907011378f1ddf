"""Email to buyers: composed with the standard library, sent over SMTP with aiosmtplib.

`SMTP_URL` is `smtp://user:pass@host:587` (STARTTLS when the server offers it), `smtps://...:465`
(TLS from the first byte), or `smtp://host:25?starttls=false`. Without it (development), each email
is written as an `.eml` file under `<DATA_DIR>/outbox/`, openable in any mail client.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib
import structlog

log = structlog.get_logger(__name__)

SMTP_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    username: str | None
    password: str | None
    use_tls: bool
    start_tls: bool | None  # None: when the server offers it

    @classmethod
    def from_url(cls, url: str) -> SmtpServer:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("SMTP_URL must look like smtp://user:pass@host:587 or smtps://host:465")
        query = parse_qs(parts.query)
        use_tls = parts.scheme == "smtps"
        start_tls: bool | None = None
        if "starttls" in query:
            start_tls = query["starttls"][0].lower() in ("1", "true", "yes")
        return cls(
            host=parts.hostname,
            port=parts.port or (465 if use_tls else 587),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            use_tls=use_tls,
            start_tls=False if use_tls else start_tls,
        )


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def tickets_email(
    *,
    sender: str,
    to: str,
    buyer_name: str,
    event_name: str,
    order_id: int,
    order_url: str,
    pdf: bytes,
    message_key: str,
) -> EmailMessage:
    """The buyer's tickets: a short text and the PDF. The Message-ID comes from the outbox row, so
    a retried delivery is recognisably the same message to the receiving servers."""
    message = EmailMessage()
    message["Subject"] = f"Your tickets for {event_name} (order {order_id})"
    message["From"] = sender
    message["To"] = to
    domain = sender.rsplit("@", 1)[-1].strip(">").strip() or "ticketera.local"
    # Fixed, not make_msgid() (which adds a time and a random part): a resent copy carries the same id.
    message["Message-ID"] = f"<{message_key}@{domain}>"
    message.set_content(
        f"Hello {buyer_name},\n\n"
        f"Thank you for your purchase. Your tickets for {event_name} are attached as a PDF:\n"
        "show the QR code of each ticket at the door, on your phone or printed.\n\n"
        f"Order {order_id}: {order_url}\n\n"
        "Ticketera\n"
    )
    message.add_attachment(pdf, maintype="application", subtype="pdf", filename=f"tickets-{order_id}.pdf")
    return message


async def deliver(message: EmailMessage, *, smtp_url: str | None, outbox_dir: Path, file_name: str) -> str:
    """Send through SMTP, or write to the development outbox; returns where it went."""
    if not smtp_url:
        path = outbox_dir / f"{file_name}.eml"
        await asyncio.to_thread(_write_file, path, bytes(message))
        log.info("email.written", path=str(path), to=message["To"])
        return str(path)
    server = SmtpServer.from_url(smtp_url)
    await aiosmtplib.send(
        message,
        hostname=server.host,
        port=server.port,
        username=server.username,
        password=server.password,
        use_tls=server.use_tls,
        start_tls=server.start_tls,
        timeout=SMTP_TIMEOUT_SECONDS,
    )
    log.info("email.sent", to=message["To"], server=server.host)
    return f"smtp://{server.host}:{server.port}"
