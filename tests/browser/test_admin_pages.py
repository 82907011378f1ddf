"""An organizer runs an on-sale from the console in a real browser: logs in with the admin key,
builds an event (one section of numbered seats, one of general admission), publishes it, watches
the dashboard count a sale without a reload, finds the order and refunds it, downloads the CSV,
is refused a form posted without its token, and logs out. Axe and screenshots on every page."""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from playwright.sync_api import Page, expect

from tests.browser.conftest import LiveApp, check_page
from tests.conftest import ADMIN_KEY, SECRET_KEY
from ticketera.kit.tokens import TokenSigner


def log_in(page: Page) -> None:
    page.goto("/admin")
    expect(page).to_have_url(re.compile(r"/admin/login\?next=/admin$"))
    page.get_by_test_id("login-key").fill(ADMIN_KEY)
    page.get_by_test_id("login").click()
    expect(page).to_have_url(re.compile(r"/admin$"))


def buy_two_seats(live_app: LiveApp, event_id: int, email: str) -> dict[str, Any]:
    """A fan admitted by the line holds two seats and orders them through the API; the unpaid order."""
    seats = live_app.admin.get(f"/api/events/{event_id}/seats?status=available").json()["seats"][:2]
    token = TokenSigner(SECRET_KEY).access_token(event_id, "fan-1", datetime.now(UTC) + timedelta(minutes=10))
    hold = live_app.admin.post(
        f"/api/events/{event_id}/holds",
        headers={"X-Access-Token": token},
        json={"seatIds": [seat["id"] for seat in seats]},
    )
    assert hold.status_code == 201, hold.text
    response = live_app.admin.post(
        "/api/orders",
        headers={"Idempotency-Key": uuid.uuid4().hex},
        json={"holdId": hold.json()["holdId"], "buyer": {"email": email, "name": "Ana Pérez"}},
    )
    assert response.status_code == 201, response.text
    order: dict[str, Any] = response.json()
    return order


def test_an_organizer_builds_an_event_watches_a_sale_and_refunds_it(live_app: LiveApp, fans: Any) -> None:
    organizer = fans()
    page = organizer.tab()
    page.goto("/admin/orders")
    expect(page.get_by_role("heading", level=1)).to_have_text("Ingreso de organizadores")
    check_page(page, "admin-login")
    page.get_by_test_id("login-key").fill("not-the-key")
    page.get_by_test_id("login").click()
    expect(page.get_by_test_id("login-problem")).to_have_text("Esa no es la clave de administración.")
    log_in(page)
    expect(page).to_have_title(re.compile("^Eventos · Ticketera$"))
    check_page(page, "admin-events-empty")

    # The builder: a section of numbered seats, then "add a section" for general admission.
    page.get_by_test_id("new-event").click()
    name = f"Gran Rex {uuid.uuid4().hex[:4]}"
    page.get_by_test_id("event-name").fill(name)
    page.get_by_test_id("event-venue").fill("Teatro Gran Rex, Buenos Aires")
    page.get_by_test_id("event-starts").fill("2030-12-13T21:00")
    sections = page.get_by_test_id("builder-section")
    first = sections.nth(0)
    first.get_by_test_id("section-name").fill("Platea")
    first.get_by_test_id("section-reserved").check()
    first.get_by_test_id("section-price").fill("15000")
    first.get_by_test_id("section-rows").fill("3")
    first.get_by_test_id("section-seats").fill("8")
    page.get_by_test_id("add-section").click()
    expect(sections).to_have_count(2)
    # What was typed in the first section survived the round trip.
    expect(sections.nth(0).get_by_test_id("section-rows")).to_have_value("3")
    second = sections.nth(1)
    second.get_by_test_id("section-name").fill("Campo")
    second.get_by_test_id("section-general").check()
    expect(second.get_by_test_id("section-rows")).to_be_hidden()
    second.get_by_test_id("section-price").fill("abc")
    second.get_by_test_id("section-capacity").fill("100")
    page.get_by_test_id("save-event").click()
    # The API's rule, next to the field it is about; nothing else was lost.
    expect(page.get_by_test_id("error-s1-price")).to_contain_text("must be an amount")
    check_page(page, "admin-event-form")
    page.get_by_test_id("builder-section").nth(1).get_by_test_id("section-price").fill("9000")
    page.get_by_test_id("save-event").click()

    expect(page.get_by_role("heading", level=1)).to_have_text(name)
    expect(page.get_by_test_id("event-status")).to_have_attribute("data-status", "draft")
    event_id = int(re.findall(r"/admin/events/(\d+)", page.url)[0])
    event = live_app.admin.get(f"/api/events/{event_id}").json()
    assert [(s["name"], s["kind"], s["capacity"], s["price"]) for s in event["sections"]] == [
        ("Platea", "reserved", 24, "15000.00"),
        ("Campo", "general_admission", 100, "9000.00"),
    ]
    page.get_by_test_id("status-published").click()
    expect(page.get_by_test_id("event-status")).to_have_attribute("data-status", "published")
    expect(page.get_by_test_id("dash-sold")).to_have_text("0")
    expect(page.get_by_test_id("dash-waiting")).to_have_text("0")
    check_page(page, "admin-dashboard")
    page.get_by_role("link", name="Eventos", exact=True).click()
    row = page.locator(f'[data-testid="event-row"][data-event-id="{event_id}"]')
    expect(row.get_by_test_id("event-status")).to_have_text("Publicado")
    check_page(page, "admin-events")
    row.get_by_role("link", name=name, exact=True).click()

    # A sale: the dashboard counts it by itself, with no reload of the page.
    page.evaluate("() => { window.stillTheSamePage = true; }")
    email = f"ana.{uuid.uuid4().hex[:6]}@example.com"
    order = buy_two_seats(live_app, event_id, email)
    fan = fans().tab()
    fan.goto(order["checkoutUrl"])
    fan.get_by_label("APRO").check()
    fan.get_by_role("button", name="Pay").click()
    expect(fan.get_by_test_id("order-status")).to_have_text("paid")
    expect(page.get_by_test_id("dash-sold")).to_have_text("2")
    expect(page.get_by_test_id("dash-revenue")).to_have_text("$ 30.000")
    expect(page.get_by_test_id("dash-payments")).to_contain_text("Aprobado")
    expect(page.get_by_test_id("dash-checked-in")).to_have_text("0 / 2")
    expect(page.get_by_test_id("chart-tickets").locator("svg")).to_be_visible()
    expect(page.get_by_test_id("chart-revenue").locator("svg")).to_have_attribute(
        "aria-label", re.compile(r"\$ 30\.000")
    )
    assert page.evaluate("() => window.stillTheSamePage === true")
    check_page(page, "admin-dashboard-sold")

    # The line's controls, under the queue API's rules.
    page.get_by_test_id("admit-rate").fill("30")
    page.get_by_test_id("save-rate").click()
    expect(page.get_by_test_id("dash-rate")).to_have_text("30")
    page.get_by_test_id("line-pause").click()
    expect(page.get_by_test_id("dash-line-state")).to_have_text("Ingreso pausado")
    assert live_app.queue_stats(event_id)["paused"] is True

    # The CSV of orders downloads and has the order, its buyer and its total.
    with page.expect_download() as download_info:
        page.get_by_test_id("export-orders").click()
    download = download_info.value
    assert download.suggested_filename == f"event-{event_id}-orders.csv"
    text = download.path().read_text(encoding="utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(row["order_id"], row["buyer_email"], row["status"], row["total"]) for row in rows] == [
        (str(order["id"]), email, "paid", "30000.00")
    ]
    # And the attendees': one row per ticket, the two seats of that order, none let in yet.
    with page.expect_download() as download_info:
        page.get_by_test_id("export-attendees").click()
    download = download_info.value
    assert download.suggested_filename == f"event-{event_id}-attendees.csv"
    attendees = list(csv.DictReader(io.StringIO(download.path().read_text(encoding="utf-8-sig"))))
    assert (
        sorted((row["order_id"], row["section"], row["buyer_email"]) for row in attendees)
        == [(str(order["id"]), "Platea", email)] * 2
    )
    assert len({row["seat"] for row in attendees}) == 2
    assert all(row["checked_in_at"] == "" for row in attendees)

    # Find the order by the buyer's email, and refund it after a confirmation.
    page.get_by_role("link", name="Órdenes", exact=True).first.click()
    page.get_by_test_id("search-email").fill(email.upper())
    page.get_by_test_id("search").click()
    found = page.get_by_test_id("order-row")
    expect(found).to_have_count(1)
    expect(found).to_have_attribute("data-order-id", str(order["id"]))
    check_page(page, "admin-orders")
    found.get_by_role("link").click()
    expect(page.get_by_test_id("order-status")).to_have_attribute("data-status", "paid")
    check_page(page, "admin-order")
    page.get_by_test_id("refund").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"¿Devolver $ 30.000 a {email}?")
    check_page(page, "admin-refund-confirm")
    page.get_by_test_id("confirm").click()
    expect(page.get_by_test_id("notice")).to_have_text("Se envió la devolución.")
    expect(page.get_by_test_id("order-status")).to_have_attribute("data-status", "refunded")
    expect(page.get_by_test_id("refund-state")).to_have_text("Devuelta")
    check_page(page, "admin-order-refunded")
    assert live_app.admin.get(f"/api/orders/{order['id']}").json()["status"] == "refunded"

    # The dashboard follows the refund.
    page.goto(f"/admin/events/{event_id}")
    expect(page.get_by_test_id("dash-sold")).to_have_text("0")

    # A form posted without its token is refused, and changes nothing.
    page.locator('form[action$="/status"] input[name="csrf"]').first.evaluate("field => field.remove()")
    page.get_by_test_id("status-paused").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Este formulario venció")
    check_page(page, "admin-csrf-refused")
    assert live_app.admin.get(f"/api/events/{event_id}").json()["status"] == "published"

    # Cancelling asks first.
    page.goto(f"/admin/events/{event_id}")
    page.get_by_test_id("status-cancelled").click()
    check_page(page, "admin-cancel-confirm")
    page.get_by_role("link", name="No, mantenerlo").click()
    expect(page.get_by_test_id("event-status")).to_have_attribute("data-status", "published")

    page.goto(f"/admin/events/{event_id}/edit")
    expect(page.get_by_test_id("event-name")).to_have_value(name)
    check_page(page, "admin-event-edit")

    # Log out: the console is closed again.
    page.get_by_test_id("logout").click()
    expect(page.get_by_test_id("login-key")).to_be_visible()
    page.goto("/admin")
    expect(page).to_have_url(re.compile(r"/admin/login"))


def test_the_console_speaks_english_when_asked(live_app: LiveApp, fans: Any) -> None:
    page = fans("en-US").tab()
    page.goto("/admin")
    expect(page.get_by_role("heading", level=1)).to_have_text("Organizer login")
    log_in(page)
    expect(page.get_by_test_id("new-event")).to_have_text("New event")
