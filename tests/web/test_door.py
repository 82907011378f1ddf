"""The door's login without a browser: the staff key, the session cookie (HttpOnly, SameSite,
scoped, expiring), CSRF on the login and logout forms and on the script's calls."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from starlette.requests import Request

from tests.conftest import ADMIN_KEY, SECRET_KEY, STAFF_KEY, make_settings, minute_boundary_delay, serving
from tests.fakes import FakeClock
from ticketera.config import Settings
from ticketera.web.door import SESSION_LIFETIME
from ticketera.web.rendering import CONTENT_SECURITY_POLICY
from ticketera.web.sessions import StaffSessions

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
# A code of the right length and alphabet that no event signed.
NOBODYS_CODE = "A" * 119


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the form has no CSRF field"
    return found.group(1)


async def log_in(client: httpx.AsyncClient, key: str = STAFF_KEY) -> httpx.Response:
    login_page = await client.get("/door")
    return await client.post("/door/login", data={"key": key, "csrf": csrf_of(login_page.text)}, headers=FORM)


async def test_without_a_session_the_door_asks_for_the_key(client: httpx.AsyncClient) -> None:
    answer = await client.get("/door")
    assert answer.status_code == 200
    assert 'data-testid="login-key"' in answer.text
    assert 'type="password"' in answer.text
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    assert answer.headers["cache-control"] == "no-store"
    nonce_cookie = answer.headers["set-cookie"]
    assert "door_login=" in nonce_cookie
    assert "HttpOnly" in nonce_cookie
    assert "SameSite=strict" in nonce_cookie


@pytest.mark.parametrize("key", [STAFF_KEY, ADMIN_KEY])
async def test_the_staff_key_opens_a_session_cookie_the_script_cannot_read(
    client: httpx.AsyncClient, key: str
) -> None:
    answer = await log_in(client, key)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/door"
    cookie = next(
        value for value in answer.headers.get_list("set-cookie") if value.startswith("door_session=")
    )
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/door" in cookie
    assert f"Max-Age={int(SESSION_LIFETIME.total_seconds())}" in cookie
    door = await client.get("/door")
    assert 'data-testid="door-code"' in door.text
    # The staff key itself is nowhere in the page the script reads.
    assert STAFF_KEY not in door.text
    assert ADMIN_KEY not in door.text


async def test_a_wrong_key_or_a_login_form_from_elsewhere_is_refused(client: httpx.AsyncClient) -> None:
    wrong = await log_in(client, "not-the-key")
    assert wrong.status_code == 401
    assert "door_session" not in client.cookies
    # Another site's form: no nonce cookie of ours behind its token.
    forged = await client.post("/door/login", data={"key": STAFF_KEY, "csrf": "x" * 64}, headers=FORM)
    assert forged.status_code == 403
    assert "door_session" not in client.cookies
    without_token = await client.post("/door/login", data={"key": STAFF_KEY}, headers=FORM)
    assert without_token.status_code == 403


async def test_the_scripts_calls_need_the_session_and_its_csrf_header(client: httpx.AsyncClient) -> None:
    body = {"code": NOBODYS_CODE}
    assert (await client.post("/door/scan", json=body)).json()["error"] == "door_login_required"
    await log_in(client)
    token = csrf_of((await client.get("/door")).text)
    refused = await client.post("/door/scan", json=body)
    assert refused.status_code == 403
    assert refused.json()["error"] == "csrf_failed"
    wrong = await client.post("/door/scan", json=body, headers={"X-CSRF-Token": "0" * 64})
    assert wrong.status_code == 403
    # With both, the scan reaches the check-in service and gets its answer.
    scanned = await client.post("/door/scan", json=body, headers={"X-CSRF-Token": token})
    assert scanned.status_code == 404
    assert scanned.json()["result"] == "invalid"
    batch = await client.post(
        "/door/batch",
        json={"scans": [{"code": NOBODYS_CODE, "scannedAt": "2030-03-01T12:00:00Z"}]},
        headers={"X-CSRF-Token": token},
    )
    assert batch.status_code == 200
    assert batch.json()["counts"] == {"invalid": 1}
    # The bearer API does not take the cookie instead of the key.
    assert (await client.post("/api/checkin", json=body)).status_code == 401


async def test_logging_out_needs_the_sessions_token_and_ends_it(client: httpx.AsyncClient) -> None:
    await log_in(client)
    token = csrf_of((await client.get("/door")).text)
    await client.post("/door/logout", data={"csrf": "forged"}, headers=FORM)
    assert 'data-testid="door-code"' in (await client.get("/door")).text
    out = await client.post("/door/logout", data={"csrf": token}, headers=FORM)
    assert out.status_code == 303
    assert 'data-testid="login-key"' in (await client.get("/door")).text


async def test_a_session_ends_after_a_shift(clocked_client: httpx.AsyncClient, clock: FakeClock) -> None:
    await log_in(clocked_client)
    clock.advance(SESSION_LIFETIME.total_seconds() - 1)
    assert 'data-testid="door-code"' in (await clocked_client.get("/door")).text
    clock.advance(1)
    assert 'data-testid="login-key"' in (await clocked_client.get("/door")).text


def with_cookie(name: str, value: str) -> Request:
    cookie = f"{name}={value}".encode()
    return Request({"type": "http", "method": "GET", "path": "/door", "headers": [(b"cookie", cookie)]})


def test_a_session_of_another_area_or_secret_opens_nothing() -> None:
    now = datetime(2030, 3, 1, tzinfo=UTC)
    door = StaffSessions(SECRET_KEY, area="door", path="/door", lifetime=timedelta(hours=1))
    admin = StaffSessions(SECRET_KEY, area="admin", path="/admin", lifetime=timedelta(hours=1))
    elsewhere = StaffSessions("another secret", area="door", path="/door", lifetime=timedelta(hours=1))
    token, session = door.issue(now)

    assert door.read(with_cookie("door_session", token), now) == session
    assert door.read(with_cookie("door_session", token), now + timedelta(hours=1)) is None
    assert admin.read(with_cookie("admin_session", token), now) is None
    assert elsewhere.read(with_cookie("door_session", token), now) is None
    assert door.read(with_cookie("door_session", token[:-2] + "xx"), now) is None
    assert door.csrf_ok(session, door.csrf_token(session))
    assert not admin.csrf_ok(session, door.csrf_token(session))


async def test_too_many_attempts_get_a_page_that_says_how_long_to_wait(settings: Settings) -> None:
    limited = settings.model_copy(update={"app_rate_limit": "3/minute"})
    async with serving(limited) as client:
        await asyncio.sleep(minute_boundary_delay())
        answers = [await log_in(client, key="guess") for _ in range(4)]
        english = await client.post(
            "/door/login", data={"key": "guess", "csrf": "x"}, headers={**FORM, "Accept-Language": "en"}
        )
    assert [answer.status_code for answer in answers] == [401, 401, 401, 429]
    refused = answers[-1]
    wait = int(refused.headers["Retry-After"])
    assert 1 <= wait <= 60
    assert refused.headers["content-type"].startswith("text/html")
    assert "<title>" in refused.text
    assert re.search(r"Demasiados intentos\. Probá de nuevo en \d+ segundos?\.", refused.text)
    assert 'data-testid="login-key"' in refused.text
    assert english.status_code == 429
    assert re.search(r"Too many attempts\. Try again in \d+ seconds?\.", english.text)


async def test_what_the_door_knows_for_offline_needs_the_session(client: httpx.AsyncClient) -> None:
    refused = await client.get("/door/events/1/known")
    await log_in(client)
    page = await client.get("/door")
    csrf = re.search(r'"csrf":"([^"]+)"', page.text)
    assert csrf
    missing = await client.get("/door/events/999999/known", headers={"X-CSRF-Token": csrf.group(1)})
    worker = await client.get("/door/sw.js")

    assert refused.status_code == 401
    assert missing.status_code == 404
    assert page.headers["X-Door-Page"] == "scan"
    assert "worker-src 'self'" in page.headers["Content-Security-Policy"]
    assert worker.headers["Service-Worker-Allowed"] == "/door"
    assert worker.headers["content-type"].startswith("text/javascript")
    assert "__FILES__" not in worker.text
    assert "/js/door.js" in worker.text
    # A worker obeys the policy of its own script's response, not the page's.
    assert worker.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY


@pytest.mark.parametrize(("key", "setting"), [(STAFF_KEY, "staff_api_key"), (ADMIN_KEY, "admin_api_key")])
async def test_changing_the_key_a_door_session_was_opened_with_ends_it(
    settings: Settings, tmp_path: Path, key: str, setting: str
) -> None:
    async with serving(settings) as client:
        assert (await log_in(client, key)).status_code == 303
        token = client.cookies["door_session"]
    # The other key changing leaves it open; its own key changing (a leaked key rotated) ends it.
    other = "admin_api_key" if setting == "staff_api_key" else "staff_api_key"
    for changed, still_open in ((other, True), (setting, False)):
        rotated = make_settings(settings.database_url or "", tmp_path, **{changed: "a-new-key"})
        async with serving(rotated) as client:
            client.cookies.set("door_session", token, path="/door")
            page = await client.get("/door")
            known = await client.get("/door/events/1/known", headers={"X-CSRF-Token": csrf_of(page.text)})
        assert ('data-testid="door-code"' in page.text) is still_open, changed
        assert (known.status_code != 401) is still_open, changed
