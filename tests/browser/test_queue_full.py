"""A full line is told at once (QUEUE_MAX_SIZE=1 here); the page then tries again after the
answer's Retry-After by itself."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import LiveApp, check_page, live_app_fixture

live_app = live_app_fixture(queue_max_size=1)


def test_a_fan_who_finds_the_line_full_is_told_at_once(live_app: LiveApp, fans: Any) -> None:
    event = live_app.create_event()
    live_app.set_queue(event["id"], paused=True)
    first = fans().tab()
    first.goto(f"/events/{event['id']}/queue")
    expect(first.get_by_test_id("queue-position")).to_have_text("1")

    late = fans().tab()
    late.goto(f"/events/{event['id']}/queue")
    expect(late.get_by_role("status")).to_have_text(
        "La fila está llena en este momento. Vamos a reintentar solos en unos segundos."
    )
    check_page(late, "queue-full")
