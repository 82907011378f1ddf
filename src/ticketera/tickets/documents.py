"""What a buyer holds: QR images of ticket codes (segno) and a printable PDF per order (fpdf2)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING

import segno

if TYPE_CHECKING:
    from fpdf import FPDF

# Medium error correction survives a scuffed phone screen or a creased print-out and keeps our
# 119-character codes at QR version 7, which phone cameras read from arm's length.
QR_ERROR = "m"
# The PDF core font when every text of the order is Latin-1 (Spanish and Portuguese names, accents
# and ñ included): nothing to parse or embed. Parsing and subsetting a TrueType font cost 60% of an
# order's PDF (31 of 73 ms for three tickets), and the tickets emails of a sell-out are made by
# the worker at the pace orders are paid. A Unicode font when some text is not (any other name),
# when the system has one.
CORE_FONT = "Helvetica"
UNICODE_FONTS = (
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    Path("/usr/share/fonts/TTF/DejaVuSans.ttf"),
)


def qr_png(code: str, *, scale: int = 8) -> bytes:
    buffer = io.BytesIO()
    segno.make(code, error=QR_ERROR, micro=False).save(buffer, kind="png", scale=scale, border=4)
    return buffer.getvalue()


def qr_svg(code: str, *, scale: int = 8) -> bytes:
    buffer = io.BytesIO()
    segno.make(code, error=QR_ERROR, micro=False).save(
        buffer, kind="svg", scale=scale, border=4, xmldecl=False, svgns=True
    )
    return buffer.getvalue()


@dataclass(frozen=True)
class PrintedTicket:
    code: str
    section: str
    seat: str | None
    status: str


@dataclass(frozen=True)
class PrintedOrder:
    order_id: int
    event_name: str
    starts_at: datetime
    venue: str | None
    buyer_name: str
    buyer_email: str
    tickets: Sequence[PrintedTicket]
    zone: tzinfo = UTC


def order_pdf(order: PrintedOrder) -> bytes:
    """One A4 page per ticket: event, date, venue, section, seat, buyer and the QR code."""
    # Imported when a PDF is first made: fpdf2 and the font tools it loads are 24 MB of each web
    # worker's memory, which an on-sale (when nobody prints yet) does not need.
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_title(f"Tickets - {order.event_name}")
    pdf.set_author("Ticketera")
    font = _font(pdf, order)
    for number, ticket in enumerate(order.tickets, start=1):
        pdf.add_page()
        pdf.set_font(font, size=22)
        pdf.multi_cell(0, 11, _text(font, order.event_name), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font(font, size=13)
        lines = [
            local_time(order.starts_at, order.zone),
            order.venue or "",
            f"Section: {ticket.section}",
            f"Seat: {ticket.seat}" if ticket.seat else "General admission",
            f"Buyer: {order.buyer_name} <{order.buyer_email}>",
            f"Order {order.order_id} - ticket {number} of {len(order.tickets)}",
        ]
        if ticket.status != "valid":
            lines.append(f"VOID ({ticket.status})")
        for line in filter(None, lines):
            pdf.cell(0, 8, _text(font, line), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(6)
        pdf.image(io.BytesIO(qr_png(ticket.code)), x=pdf.l_margin, w=90, h=90)
        pdf.ln(4)
        pdf.set_font(font, size=7)
        pdf.multi_cell(0, 4, ticket.code, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def local_time(moment: datetime, zone: tzinfo) -> str:
    """`31/12/2030 21:00 (-03)`: the day and hour where the event happens."""
    local = moment.astimezone(zone)
    return f"{local:%d/%m/%Y %H:%M} ({local:%Z})"


def _font(pdf: FPDF, order: PrintedOrder) -> str:
    if _all_latin1(order):
        return CORE_FONT
    for path in UNICODE_FONTS:
        if path.exists():
            pdf.add_font("TicketSans", fname=str(path))
            return "TicketSans"
    return CORE_FONT


def _all_latin1(order: PrintedOrder) -> bool:
    texts = [order.event_name, order.venue or "", order.buyer_name, order.buyer_email]
    for ticket in order.tickets:
        texts += [ticket.section, ticket.seat or "", ticket.code]
    try:
        "".join(texts).encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def _text(font: str, text: str) -> str:
    if font == CORE_FONT:
        return text.encode("latin-1", "replace").decode("latin-1")
    return text
