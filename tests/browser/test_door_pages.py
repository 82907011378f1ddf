"""The door in a real browser: staff log in with the staff key, pick the event and scan tickets sold
through the shop and paid in the simulator: ok, already used (when and at which door), void after a
refund, another event's; then offline (codes verified in the browser with the event's public key),
a forged code, and back online the sync that the server counts, with its conflict shown."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from playwright.sync_api import Page, expect

from tests.browser.conftest import LiveApp, check_page
from tests.conftest import STAFF_KEY
from tests.tickets.sales import with_flipped_signature_byte

STAFF = {"Authorization": f"Bearer {STAFF_KEY}"}
# Within a browser test's own patience (see conftest's TIMEOUT_MS).
WAIT_SECONDS = 30


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Ask again until `condition` holds (an order the webhook sells, a refund the provider confirms)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.05)


def sold_tickets(
    app: LiveApp, event: dict[str, Any], **items: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Tickets of a real sale: a place in the (open) line, a hold, an order, the simulator's APRO,
    the webhook; `items` is the hold's body (`seatIds` or `sectionId` and `quantity`)."""
    joined = httpx.post(f"{app.base_url}/api/queue/{event['id']}/join", json={}, timeout=30).json()
    hold = app.admin.post(
        f"/api/events/{event['id']}/holds", headers={"X-Access-Token": joined["accessToken"]}, json=items
    )
    assert hold.status_code == 201, hold.text
    order = app.admin.post(
        "/api/orders",
        headers={"Idempotency-Key": uuid.uuid4().hex},
        json={"holdId": hold.json()["holdId"], "buyer": {"email": "ana@example.com", "name": "Ana Pérez"}},
    ).json()
    preference = httpx.URL(order["checkoutUrl"]).params["pref_id"]
    paid = httpx.post(
        f"{app.simulator_url}/_sim/payments", json={"preferenceId": preference, "outcome": "APRO"}, timeout=30
    )
    assert paid.status_code < 300, paid.text
    wait_until(lambda: app.admin.get(f"/api/orders/{order['id']}").json()["status"] == "paid", "the payment")
    tickets = app.admin.get(
        f"/api/orders/{order['id']}/tickets", headers={"Authorization": f"Bearer {order['orderToken']}"}
    )
    assert tickets.status_code == 200, tickets.text
    found: list[dict[str, Any]] = tickets.json()["tickets"]
    return order, found


def first_seats(app: LiveApp, event: dict[str, Any], count: int) -> list[int]:
    seats = app.admin.get(f"/api/events/{event['id']}/seats", params={"status": "available"}).json()["seats"]
    return [int(seat["id"]) for seat in seats[:count]]


def ga_section(event: dict[str, Any]) -> int:
    return int(next(s["id"] for s in event["sections"] if s["kind"] == "general_admission"))


def log_in(page: Page, key: str = STAFF_KEY) -> None:
    page.goto("/door")
    page.get_by_test_id("login-key").fill(key)
    page.get_by_test_id("login").click()


def scan(page: Page, code: str) -> None:
    """As a keyboard-wedge scanner does: the code typed into the focused field, then Enter."""
    expect(page.get_by_test_id("door-code")).to_be_focused()
    page.keyboard.type(code)
    page.keyboard.press("Enter")


def expect_answer(page: Page, result: str, words: str | re.Pattern[str]) -> None:
    answer = page.get_by_test_id("door-result")
    expect(answer).to_be_visible()
    expect(answer).to_have_attribute("data-result", result)
    expect(answer).to_contain_text(words)
    # Ready for the next ticket at once.
    expect(page.get_by_test_id("door-code")).to_be_focused()
    expect(page.get_by_test_id("door-code")).to_have_value("")


def test_the_door_scans_online_then_offline_and_syncs_with_its_conflicts(
    live_app: LiveApp, page: Page
) -> None:
    event = live_app.create_event(name="La Renga en Huracán", queue={"enabled": False})
    elsewhere = live_app.create_event(name="Otra fecha", queue={"enabled": False})
    _, seated = sold_tickets(live_app, event, seatIds=first_seats(live_app, event, 1))
    _, standing = sold_tickets(live_app, event, sectionId=ga_section(event), quantity=2)
    refunded, voided = sold_tickets(live_app, event, sectionId=ga_section(event), quantity=1)
    _, foreign = sold_tickets(live_app, elsewhere, sectionId=ga_section(elsewhere), quantity=1)
    refund = live_app.admin.post(f"/api/orders/{refunded['id']}/refund")
    assert refund.status_code in (200, 202), refund.text
    wait_until(
        lambda: live_app.admin.get(f"/api/orders/{refunded['id']}").json()["status"] == "refunded",
        "the refund",
    )

    page.goto("/door")
    expect(page).to_have_title(re.compile("Puerta: ingresar"))
    check_page(page, "door-login")
    log_in(page)
    expect(page.get_by_test_id("door-event")).to_be_visible()
    page.get_by_test_id("door-event").select_option(str(event["id"]))
    expect(page.locator("#door-key-state")).to_have_text(re.compile("sin conexión"))
    page.get_by_test_id("door-name").fill("Puerta 1")
    page.get_by_test_id("door-name").press("Tab")
    page.get_by_test_id("door-code").focus()
    check_page(page, "door-ready")

    ticket = seated[0]
    scan(page, ticket["code"])
    expect_answer(page, "ok", "Entrada válida")
    expect(page.get_by_test_id("door-result")).to_contain_text(f"Platea · asiento {ticket['seat']}")
    expect(page.get_by_test_id("door-count")).to_have_text("1")
    expect(page.locator("#door-result-offline")).to_be_hidden()
    check_page(page, "door-ok")

    scan(page, ticket["code"])
    expect_answer(page, "already_checked_in", re.compile(r"Ya usada a las \d\d:\d\d por Puerta 1"))
    check_page(page, "door-already-used")

    scan(page, voided[0]["code"])
    expect_answer(page, "void", "Anulada")

    scan(page, foreign[0]["code"])
    expect_answer(page, "invalid", "otro evento")
    check_page(page, "door-other-event")

    # The network goes; the page goes on with the key it kept.
    page.context.set_offline(True)
    expect(page.get_by_test_id("door-offline")).to_be_visible()
    offline_ok, conflicting = standing
    scan(page, offline_ok["code"])
    expect_answer(page, "ok", "sin conexión")
    expect(page.get_by_test_id("door-pending")).to_have_text("1")
    expect(page.get_by_test_id("door-result")).to_contain_text("por sincronizar: 1")
    expect(page.locator("#door-result-offline")).to_have_text("Sin conexión")
    check_page(page, "door-offline-ok")

    scan(page, offline_ok["code"])
    expect_answer(page, "already_checked_in", "en este teléfono")
    expect(page.get_by_test_id("door-pending")).to_have_text("1")

    scan(page, with_flipped_signature_byte(conflicting["code"]))
    expect_answer(page, "invalid", "no la emitimos")
    check_page(page, "door-offline-forged")

    scan(page, conflicting["code"])
    expect_answer(page, "ok", "sin conexión")
    expect(page.get_by_test_id("door-pending")).to_have_text("2")
    # Meanwhile another door, online, lets the same ticket in.
    other_door = httpx.post(
        f"{live_app.base_url}/api/checkin",
        json={"code": conflicting["code"], "deviceId": "Puerta 2"},
        headers=STAFF,
        timeout=30,
    )
    assert other_door.status_code == 200, other_door.text

    page.context.set_offline(False)
    expect(page.get_by_test_id("door-pending")).to_have_text("0")
    expect(page.get_by_test_id("door-offline")).to_be_hidden()
    # The conflict is not left under the last answer.
    expect(page.get_by_test_id("door-result")).to_be_hidden()
    conflicts = page.get_by_test_id("door-conflicts")
    expect(conflicts).to_contain_text(conflicting["code"][-6:])
    expect(conflicts).to_contain_text(re.compile(r"Ya usada a las \d\d:\d\d por Puerta 2"))
    page.get_by_test_id("door-code").focus()
    check_page(page, "door-synced-conflict")

    # The server counted them: the seat, the offline entry and the other door's.
    figures = httpx.get(
        f"{live_app.base_url}/api/events/{event['id']}/checkin", headers=STAFF, timeout=30
    ).json()
    assert figures["checkedIn"] == 3
    assert scan_result(live_app, offline_ok["code"]) == "already_checked_in"


def scan_result(app: LiveApp, code: str) -> str:
    answer = httpx.post(f"{app.base_url}/api/checkin", json={"code": code}, headers=STAFF, timeout=30)
    result: str = answer.json()["result"]
    return result


def test_a_wrong_key_is_refused_and_logging_out_asks_for_the_key_again(live_app: LiveApp, page: Page) -> None:
    log_in(page, "not-the-key")
    expect(page.get_by_role("alert")).to_have_text("Esa no es la clave del personal.")
    expect(page.get_by_test_id("login-key")).to_be_focused()
    check_page(page, "door-login-refused")

    page.get_by_test_id("login-key").fill(STAFF_KEY)
    page.get_by_test_id("login").click()
    expect(page.get_by_test_id("door-code")).to_be_focused()
    page.get_by_test_id("logout").click()
    expect(page.get_by_test_id("login-key")).to_be_visible()
    page.goto("/door")
    expect(page.get_by_test_id("login-key")).to_be_visible()


def test_the_camera_button_is_there_only_where_the_browser_reads_qr_codes(
    live_app: LiveApp, fans: Any
) -> None:
    page = fans("en-US").tab()
    log_in(page)
    expect(page).to_have_title(re.compile("Door check-in"))
    expect(page.get_by_test_id("door-code")).to_be_focused()
    readable = page.evaluate(
        """async () => 'BarcodeDetector' in window
            && (await BarcodeDetector.getSupportedFormats()).includes('qr_code')"""
    )
    camera = page.get_by_test_id("door-camera")
    if readable:
        expect(camera).to_be_visible()
    else:
        expect(camera).to_be_hidden()
