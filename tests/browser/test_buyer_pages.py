"""A fan buys in a real browser: from the list of events, through the line (paced, so they really
wait), two seats on the map, the simulator's APRO card, and back to two QR codes. Another fan
reloads mid-line and keeps their place; the pages for each state of an event."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from playwright.sync_api import Page, expect

from tests.browser.conftest import LiveApp, check_page
from tests.browser.sales import pay
from tests.conftest import SECRET_KEY
from ticketera.kit.tokens import TokenSigner

# What the waiting room shows in a figure before the first answer (an en dash).
NOT_YET_KNOWN = "\u2013"


def test_a_fan_goes_from_the_list_through_the_line_to_two_qr_codes(live_app: LiveApp, fans: Any) -> None:
    event = live_app.create_event(name="Los Piojos en el Estadio")
    # The line is paused: the fan joins and waits, two people ahead of them, until the organizer lets it move.
    live_app.set_queue(event["id"], paused=True)
    early_birds = [fans().tab() for _ in range(2)]
    for tab in early_birds:
        tab.goto(f"/events/{event['id']}/queue")
        expect(tab.get_by_test_id("queue-position")).not_to_have_text(NOT_YET_KNOWN)

    page = fans().tab()
    page.goto("/")
    expect(page).to_have_title(re.compile("Próximos eventos"))
    link = page.locator(f'[data-testid="event-link"][data-event-id="{event["id"]}"]')
    expect(link).to_contain_text("Los Piojos en el Estadio")
    check_page(page, "home")
    link.click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Los Piojos en el Estadio")
    expect(page.get_by_test_id("event-state")).to_have_attribute("data-state", "on_sale")
    expect(page.get_by_text("$ 15.000")).to_be_visible()
    check_page(page, "event-on-sale")
    page.get_by_test_id("join").click()

    expect(page).to_have_url(re.compile(rf"/events/{event['id']}/queue$"))
    expect(page.get_by_test_id("queue-position")).to_have_text("3")
    expect(page.get_by_test_id("queue-ahead")).to_have_text("2")
    expect(page.get_by_test_id("queue-eta")).not_to_have_text(NOT_YET_KNOWN)
    check_page(page, "queue-waiting")

    # One at a time, a second apart: the fan sees the line move before their turn comes.
    live_app.set_queue(event["id"], paused=False, admitPerMinute=60)
    expect(page).to_have_url(re.compile(rf"/events/{event['id']}/buy$"))

    seats = page.get_by_test_id("seat")
    expect(seats.first).to_be_visible()
    check_page(page, "buy-seat-map")
    # Two seats: one with the mouse, the next with the keyboard.
    first = page.locator('[data-testid="seat"][data-status="available"]').first
    first.click()
    expect(first).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Enter")
    chosen = page.locator('[data-testid="seat"][aria-pressed="true"]')
    expect(chosen).to_have_count(2)
    expect(page.get_by_text("$ 30.000")).to_be_visible()
    page.get_by_role("button", name="Reservar estas entradas").click()

    expect(page.get_by_test_id("hold-countdown")).to_have_text(re.compile(r"^\d+:\d\d$"))
    check_page(page, "buy-hold")
    page.get_by_test_id("buyer-email").fill("ana@example.com")
    page.get_by_test_id("buyer-name").fill("Ana Pérez")
    page.get_by_test_id("checkout").click()

    expect(page).to_have_url(re.compile(live_app.simulator_url))
    page.locator('input[name="outcome"][value="APRO"]').check()
    page.get_by_role("button", name="Pay").click()

    expect(page.get_by_test_id("order-status")).to_have_text("paid")
    expect(page.get_by_test_id("ticket-qr")).to_have_count(2)
    expect(page.get_by_test_id("tickets-pdf")).to_be_visible()
    # The two seats are sold for everyone now.
    sold = [s for s in live_app.admin.get(f"/api/events/{event['id']}/seats?status=sold").json()["seats"]]
    assert len(sold) == 2


def test_a_fan_who_reloads_mid_line_keeps_the_place(live_app: LiveApp, fans: Any) -> None:
    event = live_app.create_event()
    live_app.set_queue(event["id"], paused=True)
    first = fans().tab()
    first.goto(f"/events/{event['id']}/queue")
    expect(first.get_by_test_id("queue-position")).to_have_text("1")

    fan = fans()
    page = fan.tab()
    # The place comes live over server-sent events (polling is only the fallback).
    with page.expect_request(re.compile(r"/api/queue/\d+/stream\?token=")):
        page.goto(f"/events/{event['id']}/queue")
    expect(page.get_by_test_id("queue-position")).to_have_text("2")
    page.reload()
    expect(page.get_by_test_id("queue-position")).to_have_text("2")
    # A second tab of the same browser is the same fan, in the same place.
    other_tab = fan.tab()
    other_tab.goto(f"/events/{event['id']}/queue")
    expect(other_tab.get_by_test_id("queue-position")).to_have_text("2")
    assert live_app.queue_stats(event["id"])["waiting"] == 2


def test_the_line_tells_at_once_when_the_event_sells_out_or_is_cancelled(
    live_app: LiveApp, fans: Any
) -> None:
    event = live_app.create_event(sections=[{"name": "Campo", "price": "9000.00", "capacity": 1}])
    live_app.set_queue(event["id"], paused=True)
    page = fans().tab()
    page.goto(f"/events/{event['id']}/queue")
    expect(page.get_by_test_id("queue-position")).to_have_text("1")
    # Someone admitted earlier (an access token as the line gives one) takes the last place.
    token = TokenSigner(SECRET_KEY).access_token(
        event["id"], "~someone", datetime.now(UTC) + timedelta(minutes=5)
    )
    section = event["sections"][0]["id"]
    taken = live_app.admin.post(
        f"/api/events/{event['id']}/holds",
        headers={"X-Access-Token": token},
        json={"sectionId": section, "quantity": 1},
    )
    assert taken.status_code == 201, taken.text
    # Only held, the place may come back: the fan keeps waiting, told why nothing moves.
    expect(page.get_by_role("status")).to_contain_text("Agotado por ahora")
    expect(page.get_by_test_id("queue-position")).to_have_text("1")
    pay(live_app, taken.json()["holdId"])
    expect(page.get_by_role("status")).to_have_text("Agotado: no quedan entradas para este evento.")
    expect(page.get_by_test_id("queue-position")).to_be_hidden()
    expect(page.get_by_role("link", name="Volver al evento")).to_be_visible()
    check_page(page, "queue-sold-out")

    other = live_app.create_event()
    live_app.set_queue(other["id"], paused=True)
    page.goto(f"/events/{other['id']}/queue")
    expect(page.get_by_test_id("queue-position")).to_have_text("1")
    live_app.admin.patch(f"/api/events/{other['id']}", json={"status": "cancelled"})
    expect(page.get_by_role("status")).to_have_text("Este evento fue cancelado.")


def test_an_event_not_on_sale_yet_counts_down_and_lets_fans_wait(live_app: LiveApp, page: Page) -> None:
    opens = (datetime.now(UTC) + timedelta(days=2, hours=3)).replace(microsecond=0)
    event = live_app.create_event(onSaleAt=opens.isoformat())
    page.goto(f"/events/{event['id']}")
    expect(page.get_by_test_id("event-state")).to_have_attribute("data-state", "not_yet")
    expect(page.get_by_test_id("on-sale-countdown")).to_have_text(re.compile(r"^2 d 0[23]:\d\d:\d\d$"))
    expect(page.get_by_test_id("join")).to_be_visible()
    check_page(page, "event-not-on-sale-yet")


def test_paused_sold_out_and_cancelled_events_say_so(live_app: LiveApp, fans: Any) -> None:
    page = fans("en-US").tab()
    paused = live_app.create_event()
    live_app.admin.patch(f"/api/events/{paused['id']}", json={"status": "paused"})
    page.goto(f"/events/{paused['id']}")
    expect(page.get_by_test_id("event-state")).to_have_text("Sales paused")
    expect(page.get_by_test_id("join")).to_have_count(0)
    check_page(page, "event-paused-en")
    cancelled = live_app.create_event()
    live_app.admin.patch(f"/api/events/{cancelled['id']}", json={"status": "cancelled"})
    page.goto(f"/events/{cancelled['id']}")
    expect(page.get_by_test_id("event-state")).to_have_text("Cancelled")
    check_page(page, "event-cancelled-en")
    missing = page.goto("/events/999999")
    assert missing is not None
    assert missing.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("Event not found")
    check_page(page, "event-not-found-en")
