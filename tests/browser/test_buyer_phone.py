"""The buyer's pages as the on-sale's closing gaps left them: the seat map on a 360-px touch phone
(seats a thumb can hit, the map scrolling inside its card, +/- to resize it, taps and the keyboard),
general admission whose figures follow holds and sales without a reload (sold out for now while
places are only held), and a line the organizer paused, said as such."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import Page, expect

from tests.browser.conftest import PHONE, LiveApp, check_page
from tests.browser.sales import hold, pay

# What the waiting room shows in a figure before the first answer (an en dash).
NOT_YET_KNOWN = "\u2013"
OPEN_LINE = {"enabled": False, "admitPerMinute": 600, "maxActiveShoppers": 100, "accessMinutes": 10}


def seat_width(page: Page, index: int = 0) -> float:
    box = page.get_by_test_id("seat").nth(index).bounding_box()
    assert box is not None
    return float(box["width"])


def test_a_fan_picks_seats_by_touch_on_a_phone(live_app: LiveApp, fans: Any) -> None:
    event = live_app.create_event(
        queue=OPEN_LINE,
        sections=[
            {"name": "Platea", "price": "15000.00", "rows": [{"label": r, "seats": 20} for r in "ABCD"]}
        ],
    )
    phone = fans(viewport=PHONE, has_touch=True).tab()
    phone.goto(f"/events/{event['id']}/queue")
    expect(phone).to_have_url(re.compile(rf"/events/{event['id']}/buy$"))
    expect(phone.get_by_test_id("seat").first).to_be_visible()

    # A seat a thumb can hit (a seat every 44 px, 24 px the least), the map wider than its card and
    # scrolling inside it: the page itself never scrolls sideways.
    assert seat_width(phone) >= 36
    card = phone.locator("[data-seat-map]")
    assert card.evaluate("(element) => element.scrollWidth > element.clientWidth")
    assert phone.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    check_page(phone, "buy-seat-map-phone")

    # Taps, also on a seat out of view at first (the card scrolls to it).
    first = phone.locator('[data-testid="seat"][data-status="available"]').first
    first.tap()
    expect(first).to_have_attribute("aria-pressed", "true")
    last_of_row = phone.get_by_test_id("seat").nth(19)
    last_of_row.tap()
    expect(last_of_row).to_have_attribute("aria-pressed", "true")
    assert phone.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    last_of_row.tap()
    expect(last_of_row).to_have_attribute("aria-pressed", "false")

    # Smaller, down to the 24-px minimum and no further; larger again.
    before = seat_width(phone)
    zoom_out = phone.get_by_test_id("zoom-out")
    zoom_out.tap()
    assert seat_width(phone) < before
    while zoom_out.is_enabled():
        zoom_out.tap()
    assert seat_width(phone) >= 21.5  # 22 px of seat inside a 2-px outline: 24 px across
    phone.get_by_test_id("zoom-in").tap()
    expect(zoom_out).to_be_enabled()
    assert seat_width(phone) > 24

    # The keyboard still works: the seat tapped has the focus, the arrow moves, Enter chooses.
    first.focus()
    phone.keyboard.press("ArrowRight")
    phone.keyboard.press("Enter")
    expect(phone.locator('[data-testid="seat"][aria-pressed="true"]')).to_have_count(2)
    phone.get_by_role("button", name="Reservar estas entradas").tap()
    expect(phone.get_by_test_id("hold-countdown")).to_have_text(re.compile(r"^\d+:\d\d$"))


def test_general_admission_left_follows_holds_and_sales_without_a_reload(
    live_app: LiveApp, fans: Any
) -> None:
    event = live_app.create_event(
        queue=OPEN_LINE, sections=[{"name": "Campo", "price": "9000.00", "capacity": 2}]
    )
    section = event["sections"][0]["id"]
    event_page = fans().tab()
    event_page.goto(f"/events/{event['id']}")
    left = event_page.get_by_test_id("section-left")
    expect(left).to_have_text("2")
    shopper = fans().tab()
    shopper.goto(f"/events/{event['id']}/queue")
    expect(shopper).to_have_url(re.compile(rf"/events/{event['id']}/buy$"))
    expect(shopper.get_by_test_id("section-left")).to_have_text("quedan 2")

    # Someone holds both places: gone for now, not for good (an unpaid hold comes back).
    held = hold(live_app, event["id"], sectionId=section, quantity=2)
    expect(left).to_have_text("Agotado por ahora, pueden liberarse entradas")
    expect(event_page.get_by_test_id("event-state")).to_have_attribute("data-state", "sold_out_for_now")
    expect(event_page.get_by_test_id("join")).to_be_visible()
    expect(shopper.get_by_test_id("section-left")).to_contain_text("Agotado por ahora")
    check_page(event_page, "event-sold-out-for-now")
    event_page.set_viewport_size(PHONE)
    assert event_page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]

    # Let go: on sale again, on both pages, without a reload by the fan.
    assert live_app.admin.delete(f"/api/holds/{held['holdId']}").status_code == 204
    expect(event_page.get_by_test_id("event-state")).to_have_attribute("data-state", "on_sale")
    expect(event_page.get_by_test_id("section-left")).to_have_text("2")
    expect(shopper.get_by_test_id("section-left")).to_have_text("quedan 2")

    # Held and paid: sold out for good.
    pay(live_app, hold(live_app, event["id"], sectionId=section, quantity=2)["holdId"])
    expect(event_page.get_by_test_id("event-state")).to_have_attribute("data-state", "sold_out")
    expect(event_page.get_by_test_id("section-left")).to_have_text("Agotado")
    expect(shopper.get_by_test_id("section-left")).to_have_text("Agotado")


def test_a_line_paused_by_the_organizer_says_so(live_app: LiveApp, page: Page) -> None:
    event = live_app.create_event()
    live_app.set_queue(event["id"], paused=True)
    page.goto(f"/events/{event['id']}/queue")
    expect(page.get_by_test_id("queue-position")).to_have_text("1")
    expect(page.get_by_role("status")).to_have_text(re.compile("^La fila está pausada por el organizador"))
    # No estimate while nobody moves: the API gives none, the page says why.
    expect(page.get_by_test_id("queue-eta")).to_have_text("en pausa")
    check_page(page, "queue-paused")

    live_app.set_queue(event["id"], paused=False)
    expect(page).to_have_url(re.compile(rf"/events/{event['id']}/buy$"))
