"""Tickets come with the sale: one signed code per seat or place, delivered as JSON, QR and PDF.

Everything goes through the shop's real port, paid through the MercadoPago simulator; the signing
keys are read from the database only to prove they are stored encrypted.
"""

from __future__ import annotations

import base64
import io
import itertools
from typing import Any

import pytest
import segno
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from PIL import Image
from sqlalchemy import select

from tests.conftest import ADMIN, services_of
from tests.shop import Shop, Simulator
from tests.tickets.pdf_text import page_count, pdf_text
from tests.tickets.sales import (
    bearer,
    checkin_key,
    claim_of,
    paid_order,
    scan,
    seat_ids,
    tickets_of,
    with_flipped_signature_byte,
)
from tests.waiting import notifications_processed
from ticketera.tickets import service as tickets_service
from ticketera.tickets.codes import CODE_LENGTH, ForgedCode, b64, unb64, verify_code
from ticketera.tickets.keys import StoredKey, TicketKeyring
from ticketera.tickets.models import EventKey

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


async def test_a_paid_order_has_one_signed_ticket_per_unit(shop: Shop, sim: Simulator) -> None:
    event = await shop.event()
    seats = await seat_ids(shop, event, 3)
    reserved = await paid_order(shop, sim, event, "ana", seat_ids=seats)
    general = await paid_order(shop, sim, event, "bob", quantity=2)

    reserved_tickets = await tickets_of(shop, reserved)
    general_tickets = await tickets_of(shop, general)
    assert len(reserved_tickets) == 3
    assert len(general_tickets) == 2
    # The seat labels printed on the tickets are the seats bought, one each.
    bought_labels = sorted(unit["label"] for unit in reserved["seats"])
    assert sorted(ticket["seat"] for ticket in reserved_tickets) == bought_labels == ["A-1", "A-2", "A-3"]
    assert {ticket["section"] for ticket in reserved_tickets} == {"Platea"}
    assert [ticket["seat"] for ticket in general_tickets] == [None, None]
    assert {ticket["section"] for ticket in general_tickets} == {"Campo"}

    public_key = unb64(await checkin_key(shop.http, event["id"]))
    everything = reserved_tickets + general_tickets
    codes = [ticket["code"] for ticket in everything]
    assert len(set(codes)) == 5
    for ticket in everything:
        assert ticket["status"] == "valid"
        assert ticket["checkedInAt"] is None
        assert len(ticket["code"]) == CODE_LENGTH
        # Small enough for a phone camera at arm's length (the module explains version 7).
        assert segno.make(ticket["code"], error="m", micro=False).version in range(1, 8)
        claim = verify_code(ticket["code"], public_key)
        assert claim.event_id == event["id"]
    assert sorted(verify_code(t["code"], public_key).seat_id for t in reserved_tickets) == sorted(seats)
    # Serials are random, so neither they nor the codes can be enumerated from one ticket.
    serials = sorted(claim_of(code).serial for code in codes)
    assert len(set(serials)) == 5
    assert all(b - a > 1000 for a, b in itertools.pairwise(serials))

    # The order itself lists the same tickets (admin view).
    as_admin = (await shop.http.get(f"/api/orders/{reserved['id']}", headers=ADMIN)).json()
    assert [ticket["code"] for ticket in as_admin["tickets"]] == [t["code"] for t in reserved_tickets]


async def test_an_unpaid_order_has_no_tickets(shop: Shop, sim: Simulator) -> None:
    event = await shop.event()
    order = await shop.buy(event, quantity=2)
    response = await shop.http.get(f"/api/orders/{order['id']}/tickets", headers=bearer(order["orderToken"]))
    assert response.status_code == 200
    assert response.json()["status"] == "pending_payment"
    assert response.json()["tickets"] == []
    pdf = await shop.http.get(f"/api/orders/{order['id']}/tickets.pdf", headers=bearer(order["orderToken"]))
    assert pdf.status_code == 404


async def test_an_orders_tickets_need_its_token(shop: Shop, sim: Simulator) -> None:
    event = await shop.event()
    order = await paid_order(shop, sim, event, "ana")
    other = await paid_order(shop, sim, event, "bob")
    for path in (f"/api/orders/{order['id']}/tickets", f"/api/orders/{order['id']}/tickets.pdf"):
        assert (await shop.http.get(path)).status_code == 401
        assert (await shop.http.get(path, headers=bearer("not-a-token"))).status_code == 401
        # A buyer's token opens that buyer's order only.
        assert (await shop.http.get(path, headers=bearer(other["orderToken"]))).status_code == 401
        assert (await shop.http.get(path, headers=bearer(order["orderToken"]))).status_code == 200
        assert (await shop.http.get(path, headers=ADMIN)).status_code == 200


async def test_the_printable_pdf_has_a_page_per_ticket_with_its_code(shop: Shop, sim: Simulator) -> None:
    event = await shop.event(name="Noche de Rock en el Luna")
    order = await paid_order(shop, sim, event, seat_ids=await seat_ids(shop, event, 2))
    tickets = await tickets_of(shop, order)

    response = await shop.http.get(
        f"/api/orders/{order['id']}/tickets.pdf", headers=bearer(order["orderToken"])
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pdf"
    assert f"tickets-{order['id']}.pdf" in response.headers["content-disposition"]
    pdf = response.content
    assert pdf.startswith(b"%PDF-")
    assert pdf.rstrip().endswith(b"%%EOF")
    assert page_count(pdf) == 2
    text = pdf_text(pdf)
    assert text.count("Noche de Rock en el Luna") == 2
    assert "Buyer: Ana Pérez <ana@example.com>" in text
    assert "Seat: A-1" in text
    assert "Seat: A-2" in text
    # The code is printed under its QR code (wrapped over lines), for a scanner that cannot read QR.
    unwrapped = text.replace("\n", "")
    assert all(ticket["code"] in unwrapped for ticket in tickets)


def _modules(png: bytes, *, scale: int = 8, border: int = 4) -> list[list[bool]]:
    """The dark modules of a QR image, read from the centre of each module's square of pixels."""
    image = Image.open(io.BytesIO(png)).convert("L")
    width, height = image.size
    assert width == height
    size = width // scale - 2 * border
    return [
        [
            image.getpixel(((border + x) * scale + scale // 2, (border + y) * scale + scale // 2)) == 0
            for x in range(size)
        ]
        for y in range(size)
    ]


async def test_qr_images_encode_the_code_and_refuse_what_is_not_one(shop: Shop, sim: Simulator) -> None:
    event = await shop.event()
    (ticket,) = await tickets_of(shop, await paid_order(shop, sim, event))
    code = ticket["code"]

    png = await shop.http.get(ticket["qrPng"])
    assert ticket["qrPng"] == f"/api/tickets/{code}/qr.png"
    assert png.status_code == 200
    assert png.headers["content-type"] == "image/png"
    assert png.content.startswith(PNG_MAGIC)
    assert "immutable" in png.headers["cache-control"]
    # The picture is the QR symbol of exactly this code, module by module.
    expected = [[bool(module) for module in row] for row in segno.make(code, error="m", micro=False).matrix]
    assert _modules(png.content) == expected

    svg = await shop.http.get(f"/api/tickets/{code}/qr.svg")
    assert svg.status_code == 200
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert b"<svg" in svg.content

    not_codes = [
        "not-a-code",
        code[:-1],  # one character short
        code + "A",
        "B" + code[1:],  # version byte 5, not 1
        "!" * CODE_LENGTH,  # not base64url
    ]
    for text in not_codes:
        for kind in ("png", "svg"):
            refused = await shop.http.get(f"/api/tickets/{text}/qr.{kind}")
            assert refused.status_code == 404, (text, kind)
    # A well-formed but forged code still gets its picture: an image proves nothing, the door decides.
    assert (
        await shop.http.get(f"/api/tickets/{with_flipped_signature_byte(code)}/qr.png")
    ).status_code == 200


async def test_the_checkin_key_exists_once_an_event_has_sold(shop: Shop, sim: Simulator) -> None:
    event = await shop.event()
    missing = await shop.http.get(f"/api/events/{event['id']}/checkin-key")
    assert missing.status_code == 404
    assert missing.json()["error"] == "checkin_key_not_found"
    assert (await shop.http.get("/api/events/999999/checkin-key")).status_code == 404

    await paid_order(shop, sim, event)
    response = await shop.http.get(f"/api/events/{event['id']}/checkin-key")
    assert response.status_code == 200
    body = response.json()
    assert body["eventId"] == event["id"]
    assert body["algorithm"] == "Ed25519"
    assert len(unb64(body["publicKey"])) == 32
    # Later sales sign with the same key: scanners download it once.
    await paid_order(shop, sim, event, "bob")
    assert await checkin_key(shop.http, event["id"]) == body["publicKey"]


async def test_each_event_signs_with_its_own_key(shop: Shop, sim: Simulator) -> None:
    first, second = await shop.event(), await shop.event()
    (ticket,) = await tickets_of(shop, await paid_order(shop, sim, first))
    await paid_order(shop, sim, second)
    first_key = await checkin_key(shop.http, first["id"])
    second_key = await checkin_key(shop.http, second["id"])
    assert first_key != second_key
    verify_code(ticket["code"], unb64(first_key))
    with pytest.raises(ForgedCode):
        verify_code(ticket["code"], unb64(second_key))


async def _stored_key(shop: Shop, event_id: int) -> EventKey:
    async with services_of(shop.app).database.read_session() as session:
        row: EventKey = (
            await session.execute(select(EventKey).where(EventKey.event_id == event_id))
        ).scalar_one()
        return row


async def test_signing_keys_are_stored_encrypted_with_the_secret_key(shop: Shop, sim: Simulator) -> None:
    event = await shop.event()
    (ticket,) = await tickets_of(shop, await paid_order(shop, sim, event))
    row = await _stored_key(shop, event["id"])
    stored = StoredKey(row.public_key, row.private_key_encrypted)
    assert row.public_key == await checkin_key(shop.http, event["id"])

    assert shop.settings.secret_key is not None
    opened = TicketKeyring(shop.settings.secret_key).private_key(event["id"], stored)
    raw: bytes = opened.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public_raw = opened.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert b64(public_raw) == row.public_key
    # The opened key is the one the ticket was signed with.
    verify_code(ticket["code"], public_raw)

    # Nothing of the raw key is in the stored text, in any spelling of it.
    sealed = unb64(row.private_key_encrypted.removeprefix("v1."))
    spellings = [b64(raw), base64.b64encode(raw).decode(), raw.hex(), raw.hex().upper()]
    assert all(spelling not in row.private_key_encrypted for spelling in spellings)
    assert raw not in sealed
    assert raw[:8] not in sealed

    # Another SECRET_KEY cannot open it, nor can the right one once it is moved to another event.
    with pytest.raises(InvalidTag):
        TicketKeyring("some-other-secret-key").private_key(event["id"], stored)
    with pytest.raises(InvalidTag):
        TicketKeyring(shop.settings.secret_key).private_key(event["id"] + 1, stored)


def _labels(tickets: list[dict[str, Any]]) -> list[str | None]:
    return [ticket["seat"] for ticket in tickets]


async def test_a_replayed_approval_issues_no_second_set_of_tickets(shop: Shop, sim: Simulator) -> None:
    event = await shop.event()
    await sim.configure(duplicates=3, duplicateSameRequestId=False)
    order = await paid_order(shop, sim, event, seat_ids=await seat_ids(shop, event, 2))
    await notifications_processed(shop, sim)  # every replay delivered and processed
    tickets = await tickets_of(shop, order)
    assert _labels(tickets) == ["A-1", "A-2"]


async def test_a_key_made_in_a_rolled_back_sale_never_signs_the_events_tickets(
    shop: Shop, sim: Simulator
) -> None:
    event = await shop.event()
    keyring: TicketKeyring = shop.payments.keyring

    class SaleFailed(Exception):
        """What a deadlock or a lost connection does to the first sale's transaction."""

    async def first_sale_rolled_back(session: Any) -> None:
        stored = await tickets_service.event_key(session, keyring, event["id"], shop.clock())
        keyring.private_key(event["id"], StoredKey(stored.public_key, stored.private_key_encrypted))
        raise SaleFailed

    with pytest.raises(SaleFailed):
        await services_of(shop.app).database.transaction(first_sale_rolled_back)
    order = await paid_order(shop, sim, event)
    (ticket,) = await tickets_of(shop, order)
    verify_code(ticket["code"], unb64(await checkin_key(shop.http, event["id"])))
    assert (await scan(shop.http, ticket["code"])).status_code == 200
