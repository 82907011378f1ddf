"""The door offline, beyond the signature: it knows the tickets voided and those let in at other
doors before the network went (read every half minute while online, kept on the phone), and the
page itself opens with no network after one visit (its service worker)."""

from __future__ import annotations

import re

import httpx
from playwright.sync_api import Page, Route, expect

from tests.browser.conftest import LiveApp, check_page
from tests.browser.test_door_pages import (
    STAFF,
    expect_answer,
    ga_section,
    log_in,
    scan,
    scan_result,
    sold_tickets,
    wait_until,
)


def test_offline_the_door_refuses_tickets_voided_or_used_elsewhere_before(
    live_app: LiveApp, page: Page
) -> None:
    event = live_app.create_event(name="Divididos en Obras", queue={"enabled": False})
    _, (used_elsewhere, fresh) = sold_tickets(live_app, event, sectionId=ga_section(event), quantity=2)
    refunded, (voided,) = sold_tickets(live_app, event, sectionId=ga_section(event), quantity=1)
    other_door = httpx.post(
        f"{live_app.base_url}/api/checkin",
        json={"code": used_elsewhere["code"], "deviceId": "Puerta 2"},
        headers=STAFF,
        timeout=30,
    )
    assert other_door.status_code == 200, other_door.text
    assert live_app.admin.post(f"/api/orders/{refunded['id']}/refund").status_code in (200, 202)
    wait_until(
        lambda: live_app.admin.get(f"/api/orders/{refunded['id']}").json()["status"] == "refunded",
        "the refund",
    )

    log_in(page)
    page.get_by_test_id("door-event").select_option(str(event["id"]))
    expect(page.get_by_test_id("door-known")).to_contain_text("1 anuladas, 1 ya usadas")
    page.get_by_test_id("door-code").focus()
    check_page(page, "door-known")

    # No network: the phone alone answers as the server would have.
    page.context.set_offline(True)
    expect(page.get_by_test_id("door-offline")).to_be_visible()
    scan(page, used_elsewhere["code"])
    expect_answer(page, "already_checked_in", re.compile(r"Ya usada a las \d\d:\d\d por Puerta 2"))
    scan(page, voided["code"])
    expect_answer(page, "void", "Anulada")
    expect(page.get_by_test_id("door-pending")).to_have_text("0")
    scan(page, fresh["code"])
    expect_answer(page, "ok", "sin conexión")
    expect(page.get_by_test_id("door-pending")).to_have_text("1")
    page.context.set_offline(False)
    expect(page.get_by_test_id("door-pending")).to_have_text("0")


def test_the_door_page_opens_offline_after_one_visit(live_app: LiveApp, page: Page) -> None:
    event = live_app.create_event(name="Babasónicos en el Gran Rex", queue={"enabled": False})
    _, (ticket,) = sold_tickets(live_app, event, sectionId=ga_section(event), quantity=1)
    log_in(page)
    page.get_by_test_id("door-event").select_option(str(event["id"]))
    expect(page.locator("#door-key-state")).to_have_text(re.compile("sin conexión"))
    # The worker has taken the page over (and so has kept it and its files).
    page.wait_for_function("() => navigator.serviceWorker.controller !== null")

    page.context.set_offline(True)
    # The worker's own requests are cut off too: what opens next comes from what it kept.
    probe = "fetch('/health').then(() => 'network').catch(() => 'offline')"
    assert page.context.service_workers[0].evaluate(probe) == "offline"
    reloaded = page.reload()
    assert reloaded is not None
    assert reloaded.from_service_worker
    expect(page).to_have_title(re.compile("Ingreso en puerta"))
    expect(page.get_by_test_id("door-offline")).to_be_visible()
    expect(page.get_by_test_id("door-event")).to_have_value(str(event["id"]))
    check_page(page, "door-offline-reloaded")
    scan(page, ticket["code"])
    expect_answer(page, "ok", "sin conexión")
    expect(page.get_by_test_id("door-pending")).to_have_text("1")

    page.context.set_offline(False)
    expect(page.get_by_test_id("door-pending")).to_have_text("0")


def test_logging_out_sends_the_scans_then_forgets_the_lists_and_the_offline_copy(
    live_app: LiveApp, page: Page
) -> None:
    event = live_app.create_event(name="Los Piojos en River", queue={"enabled": False})
    _, (ticket,) = sold_tickets(live_app, event, sectionId=ga_section(event), quantity=1)
    log_in(page)
    page.get_by_test_id("door-event").select_option(str(event["id"]))
    expect(page.get_by_test_id("door-known")).to_contain_text("0 anuladas")
    page.wait_for_function("() => navigator.serviceWorker.controller !== null")
    page.context.set_offline(True)
    scan(page, ticket["code"])
    expect_answer(page, "ok", "sin conexión")
    expect(page.get_by_test_id("door-pending")).to_have_text("1")
    page.keyboard.press("Escape")  # the answer covers the screen until dismissed
    expect(page.get_by_test_id("door-result")).to_be_hidden()

    # Back online and out at once: the sync the network's return starts, or the logout's own, sends
    # the scan before the session ends.
    page.context.set_offline(False)
    page.get_by_test_id("logout").click()
    expect(page.get_by_test_id("login-key")).to_be_visible()

    assert scan_result(live_app, ticket["code"]) == "already_checked_in"
    left = page.evaluate(
        """async () => ({
          storage: Object.keys(localStorage),
          pending: localStorage.getItem("ticketera.door.pending"),
          caches: await caches.keys(),
          workers: (await navigator.serviceWorker.getRegistrations()).length,
        })"""
    )
    assert [name for name in left["storage"] if ".known." in name or ".seen." in name] == [], left
    assert left["pending"] == "[]"
    assert [name for name in left["caches"] if name.startswith("ticketera-door-")] == [], left
    assert left["workers"] == 0


def test_an_event_chosen_before_the_script_ran_is_kept_for_the_next_opening(
    live_app: LiveApp, page: Page
) -> None:
    """A slow phone shows the form before its script runs: the event chosen then is the one the page
    keeps (it opened empty after a reload offline when the choice went unheard)."""
    event = live_app.create_event(name="Ciro y los Persas en Vélez", queue={"enabled": False})
    held: list[Route] = []

    def hold(route: Route) -> None:
        held.append(route)

    page.route(re.compile(r"/js/door\.js$"), hold)
    log_in(page)
    expect(page.get_by_test_id("door-event")).to_be_visible()

    def script_asked_for() -> bool:
        page.wait_for_timeout(20)  # Playwright hands routed requests over while it waits, not in time.sleep
        return bool(held)

    wait_until(script_asked_for, "the page asking for its script")
    page.get_by_test_id("door-event").select_option(str(event["id"]))
    held[0].continue_()
    page.unroute(re.compile(r"/js/door\.js$"))
    expect(page.locator("#door-key-state")).not_to_have_text("")
    page.reload()
    expect(page.get_by_test_id("door-event")).to_have_value(str(event["id"]))
