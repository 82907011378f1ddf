"""The buyer's order page in a browser: Spanish by default, the language switch, paying in the
simulator and coming back to the tickets, and the page for a link that opens no order."""

from __future__ import annotations

import re
import sqlite3
import uuid
from typing import Any

import httpx
from playwright.sync_api import Page, expect

from tests.browser.conftest import LiveApp, check_page


def place_order(app: LiveApp, quantity: int = 2) -> dict[str, Any]:
    """An order for `quantity` general-admission places of a fresh event whose line is off."""
    event = app.create_event(queue={"enabled": False})
    section = next(s for s in event["sections"] if s["kind"] == "general_admission")
    # Not the admin client: a bearer on a join is taken as an earlier join's queue token.
    joined = httpx.post(f"{app.base_url}/api/queue/{event['id']}/join", json={}, timeout=30).json()
    hold = app.admin.post(
        f"/api/events/{event['id']}/holds",
        headers={"X-Access-Token": joined["accessToken"]},
        json={"sectionId": section["id"], "quantity": quantity},
    )
    assert hold.status_code == 201, hold.text
    order = app.admin.post(
        "/api/orders",
        headers={"Idempotency-Key": uuid.uuid4().hex},
        json={"holdId": hold.json()["holdId"], "buyer": {"email": "ana@example.com", "name": "Ana Pérez"}},
    )
    assert order.status_code == 201, order.text
    placed: dict[str, Any] = order.json()
    return placed


def test_an_order_is_paid_in_the_simulator_and_shows_its_tickets(live_app: LiveApp, page: Page) -> None:
    order = place_order(live_app)
    page.goto(f"/orders/{order['id']}?token={order['orderToken']}")
    expect(page).to_have_title(re.compile("Esperando tu pago"))
    expect(page.get_by_test_id("order-status")).to_have_text("pending_payment")
    expect(page.locator("html")).to_have_attribute("lang", "es")
    expect(page.get_by_text("$ 18.000")).to_be_visible()
    check_page(page, "order-pending")

    page.get_by_role("link", name="Pagar con MercadoPago").click()
    page.locator('input[name="outcome"][value="APRO"]').check()
    page.get_by_role("button", name="Pay").click()

    expect(page.get_by_test_id("order-status")).to_have_text("paid")
    expect(page.get_by_test_id("ticket-qr")).to_have_count(2)
    for qr in page.get_by_test_id("ticket-qr").all():
        expect(qr).to_have_js_property("complete", True)
        assert qr.evaluate("image => image.naturalWidth") > 0
    expect(page.get_by_test_id("tickets-pdf")).to_have_attribute("href", re.compile(r"tickets\.pdf\?token="))
    check_page(page, "order-paid")

    page.get_by_role("link", name="English").click()
    expect(page).to_have_title(re.compile("Paid: here are your tickets"))
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_text("ARS 18,000")).to_be_visible()
    # The choice is kept: the next page is in English too, whatever the browser prefers.
    page.goto("/orders/1?token=nope")
    expect(page).to_have_title(re.compile("Order not found"))


def test_a_rejected_payment_can_be_paid_again_and_a_refund_shows(live_app: LiveApp, page: Page) -> None:
    order = place_order(live_app, quantity=1)
    page.goto(f"/orders/{order['id']}?token={order['orderToken']}")
    page.get_by_role("link", name="Pagar con MercadoPago").click()
    page.locator('input[name="outcome"][value="OTHE"]').check()
    page.get_by_role("button", name="Pay").click()

    expect(page).to_have_title(re.compile("Tu pago no fue aprobado"))
    expect(page.get_by_test_id("order-status")).to_have_text("pending_payment")
    check_page(page, "order-rejected")
    page.get_by_role("link", name="Volver a pagar con MercadoPago").click()
    page.locator('input[name="outcome"][value="APRO"]').check()
    page.get_by_role("button", name="Pay").click()
    expect(page.get_by_test_id("order-status")).to_have_text("paid")
    expect(page.get_by_test_id("ticket-qr")).to_have_count(1)

    refund = live_app.admin.post(f"/api/orders/{order['id']}/refund")
    assert refund.status_code in (200, 202), refund.text
    page.reload()
    expect(page.get_by_test_id("order-status")).to_have_text("refunded")
    expect(page.get_by_text("Anulada")).to_be_visible()
    check_page(page, "order-refunded")


def test_an_order_not_paid_in_time_and_a_cancelled_one_say_so(live_app: LiveApp, page: Page) -> None:
    expired = place_order(live_app, quantity=1)
    # Time gone by is the one scene the API cannot set: the order's time to pay is moved into the
    # past, as the hold's minutes running out would (an unpaid order expires by query).
    with sqlite3.connect(live_app.database) as database:
        database.execute(
            "UPDATE orders SET expires_at = '2000-01-01 00:00:00.000000' WHERE id = ?", (expired["id"],)
        )
    page.goto(f"/orders/{expired['id']}?token={expired['orderToken']}")
    expect(page).to_have_title(re.compile("Esta orden venció antes de pagarse"))
    expect(page.get_by_test_id("order-status")).to_have_text("expired")
    expect(page.get_by_text("Se terminó el tiempo para pagar")).to_be_visible()
    expect(page.get_by_role("link", name="Pagar con MercadoPago")).to_have_count(0)
    page.get_by_role("link", name="Volver al evento").click()
    expect(page).to_have_url(re.compile(rf"/events/{expired['eventId']}$"))
    page.go_back()
    check_page(page, "order-expired")

    cancelled = place_order(live_app, quantity=1)
    answer = live_app.admin.post(f"/api/orders/{cancelled['id']}/cancel")
    assert answer.status_code == 200, answer.text
    page.goto(f"/orders/{cancelled['id']}?token={cancelled['orderToken']}")
    expect(page).to_have_title(re.compile("Esta orden fue cancelada"))
    expect(page.get_by_text("No se cobró nada por esta orden.")).to_be_visible()
    expect(page.get_by_role("link", name="Pagar con MercadoPago")).to_have_count(0)
    check_page(page, "order-cancelled")


def test_a_link_that_opens_no_order_says_so(live_app: LiveApp, page: Page) -> None:
    order = place_order(live_app, quantity=1)
    for url in (
        f"/orders/{order['id']}?token=forged",
        f"/orders/{order['id']}",
        "/orders/not-a-number?token=x",
        f"/orders/{order['id'] + 1000}?token={order['orderToken']}",
    ):
        response = page.goto(url)
        assert response is not None
        assert response.status == 404, url
        expect(page.get_by_role("heading", level=1)).to_have_text("Orden no encontrada")
    check_page(page, "order-not-found")
