"""What buyers read: times in the venue's zone, not the server's; every name as it is written."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import make_settings
from tests.tickets.pdf_text import page_count, pdf_text
from ticketera.tickets.documents import UNICODE_FONTS, PrintedOrder, PrintedTicket, local_time, order_pdf

BUENOS_AIRES = ZoneInfo("America/Argentina/Buenos_Aires")


def test_a_late_show_is_printed_on_its_own_day_in_the_venues_zone() -> None:
    # 00:30 UTC on New Year's Day is still 21:30 on New Year's Eve in Buenos Aires.
    assert local_time(datetime(2031, 1, 1, 0, 30, tzinfo=UTC), BUENOS_AIRES) == "31/12/2030 21:30 (-03)"


def test_an_unknown_zone_stops_start_up(tmp_path: object) -> None:
    with pytest.raises(ValueError, match="display_timezone"):
        make_settings("sqlite+aiosqlite:///x.db", tmp_path, display_timezone="Mars/Olympus")  # type: ignore[arg-type]


def printed(buyer_name: str, *, tickets: int = 2) -> PrintedOrder:
    return PrintedOrder(
        order_id=7,
        event_name="Noche de Peñas",
        starts_at=datetime(2030, 3, 1, 21, tzinfo=UTC),
        venue="Estadio Único",
        buyer_name=buyer_name,
        buyer_email="ana@example.com",
        tickets=[PrintedTicket(f"CODE-{n}", "Campo", None, "valid") for n in range(tickets)],
        zone=BUENOS_AIRES,
    )


def test_a_latin1_order_is_printed_in_the_core_font_with_its_accents() -> None:
    # Spanish names need no font of their own: nothing parsed, nothing embedded.
    pdf = order_pdf(printed("José Muñoz Pérez"))
    assert b"/FontFile2" not in pdf
    assert b"/BaseFont /Helvetica" in pdf
    assert page_count(pdf) == 2
    text = pdf_text(pdf)
    assert "Noche de Peñas" in text
    assert "Estadio Único" in text
    assert "Buyer: José Muñoz Pérez <ana@example.com>" in text


@pytest.mark.skipif(not any(path.exists() for path in UNICODE_FONTS), reason="no Unicode font on this system")
def test_a_name_beyond_latin1_embeds_a_unicode_font_and_reads_back() -> None:
    pdf = order_pdf(printed("Łukasz Ωmega"))
    assert b"/FontFile2" in pdf
    text = pdf_text(pdf)
    assert "Buyer: Łukasz Ωmega <ana@example.com>" in text
    assert "Noche de Peñas" in text
