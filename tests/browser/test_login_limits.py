"""Guessing keys at the console's and the door's login runs into the app's per-address limit: the
person at the form is told in words how long to wait, on a page that passes axe like every other.

The app here allows three public calls a minute per address (APP_RATE_LIMIT=3/minute), so the
fourth wrong key in a row is refused without being compared."""

from __future__ import annotations

import re
import time

from playwright.sync_api import Page, expect

from tests.browser.conftest import check_page, live_app_fixture
from tests.conftest import minute_boundary_delay

live_app = live_app_fixture(app_rate_limit="3/minute")

TOO_MANY = re.compile(r"^Demasiados intentos\. Probá de nuevo en \d+ segundos?\.$")


def guess(page: Page, login_page: str, times: int) -> None:
    for _ in range(times):
        page.goto(login_page)
        page.get_by_test_id("login-key").fill("a-guess")
        page.get_by_test_id("login").click()


def test_the_console_login_says_how_long_to_wait(page: Page) -> None:
    time.sleep(minute_boundary_delay())  # this test's guesses and the next one's in one minute
    guess(page, "/admin/login", times=4)
    expect(page.get_by_test_id("login-problem")).to_have_text(TOO_MANY)
    expect(page.get_by_test_id("login-key")).to_have_attribute("aria-invalid", "true")
    check_page(page, "admin-login-too-many")


def test_the_door_login_says_how_long_to_wait(page: Page) -> None:
    # One limit per address for both logins: after the console's guesses, the first is refused.
    guess(page, "/door", times=4)
    expect(page.get_by_role("alert")).to_have_text(TOO_MANY)
    expect(page.get_by_test_id("login-key")).to_have_attribute("aria-invalid", "true")
    check_page(page, "door-login-too-many")
