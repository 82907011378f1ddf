"""A hold runs out on screen: the countdown reaches zero, the buyer is told, the seats are let go.

The app holds for one minute (HOLD_MINUTES=1, the shortest); the browser's clock is moved past it
(Playwright's clock), so the test waits on what the page shows, not on a minute going by."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import LiveApp, check_page, live_app_fixture

live_app = live_app_fixture(hold_minutes=1)


def test_a_hold_that_runs_out_is_told_and_its_seats_go_back(live_app: LiveApp, fans: Any) -> None:
    event = live_app.create_event(queue={"enabled": False})
    page = fans().tab()
    page.clock.install()
    page.goto(f"/events/{event['id']}/queue")
    expect(page).to_have_url(re.compile(rf"/events/{event['id']}/buy$"))

    seat = page.locator('[data-testid="seat"][data-status="available"]').first
    seat_id = seat.get_attribute("data-seat-id")
    seat.focus()
    page.keyboard.press("Space")
    expect(seat).to_have_attribute("aria-pressed", "true")
    page.get_by_role("button", name="Reservar estas entradas").click()
    countdown = page.get_by_test_id("hold-countdown")
    expect(countdown).to_have_text(re.compile(r"^(1:00|0:5\d)$"))
    held = live_app.admin.get(f"/api/events/{event['id']}/seats", params={"status": "held"}).json()["seats"]
    assert [str(s["id"]) for s in held] == [seat_id]

    page.clock.fast_forward("01:05")
    expect(page.get_by_role("alert")).to_have_text(re.compile("Tu reserva venció"))
    expect(page.get_by_test_id("buyer-email")).to_be_hidden()
    expect(page.locator('[data-testid="seat"][aria-pressed="true"]')).to_have_count(0)
    check_page(page, "buy-hold-expired")
    # Let go at once by the page, not only when the server's clock gets there.
    expect(page.locator(f'[data-testid="seat"][data-seat-id="{seat_id}"]')).to_have_attribute(
        "data-status", "available"
    )
