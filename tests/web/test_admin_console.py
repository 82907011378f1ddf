"""The organizer console without a browser (httpx against the app): the login and its cookie, the
CSRF token of every form, the section builder's validation, the line's controls and the CSV
exports' escaping."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN, ADMIN_KEY, make_settings, minute_boundary_delay, serving
from tests.factories import ga_section, open_sale, place_order, take_hold
from ticketera.config import Settings
from ticketera.kit.csvexport import csv_line, safe_cell
from ticketera.orders.service import SaleMoment
from ticketera.web.admin.dashboard import sales_series

CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')

# The staff areas' cookies (web.sessions), of the area "admin".
SESSION_COOKIE, LOGIN_COOKIE = "admin_session", "admin_login"


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no CSRF field"
    return found.group(1)


async def log_in(client: httpx.AsyncClient, key: str = ADMIN_KEY) -> httpx.Response:
    form = await client.get("/admin/login")
    assert form.status_code == 200
    return await client.post("/admin/login", data={"csrf": csrf_of(form.text), "key": key, "next": "/admin"})


async def test_a_visitor_without_a_session_is_sent_to_the_login(client: httpx.AsyncClient) -> None:
    for path in (
        "/admin",
        "/admin/orders?email=a%40b.c",
        "/admin/events/1",
        "/admin/events/1/orders.csv",
        "/admin/no/such/page",
    ):
        response = await client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/admin/login?next=/admin")
    refused = await client.get("/admin/events/1/live.json")
    assert refused.status_code == 401


async def test_the_key_opens_a_strict_httponly_session_that_expires(client: httpx.AsyncClient) -> None:
    page = await client.get("/admin/login")
    assert 'data-testid="login-key"' in page.text
    assert "<title>" in page.text
    login_cookie = page.headers["set-cookie"]
    assert LOGIN_COOKIE in login_cookie
    assert "HttpOnly" in login_cookie
    assert "SameSite=strict" in login_cookie

    wrong = await log_in(client, key="not-the-key")
    assert wrong.status_code == 401
    assert SESSION_COOKIE not in client.cookies

    right = await log_in(client)
    assert right.status_code == 303
    assert right.headers["location"] == "/admin"
    cookie = next(c for c in right.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE + "="))
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/admin" in cookie
    assert "Max-Age=28800" in cookie
    assert "Secure" not in cookie  # plain http here: a Secure cookie would never come back
    home = await client.get("/admin")
    assert home.status_code == 200
    assert "<title>" in home.text
    assert (await client.get("/admin/no/such/page")).status_code == 404


async def test_the_session_cookie_is_secure_over_https(settings: Settings) -> None:
    async with serving(settings) as client:
        client.base_url = httpx.URL("https://ticketera.test")
        response = await log_in(client)
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE + "="))
    assert "Secure" in cookie


async def test_a_tampered_or_foreign_session_is_refused(settings: Settings, tmp_path: Path) -> None:
    async with serving(settings) as client:
        await log_in(client)
        token = client.cookies[SESSION_COOKIE]
        client.cookies.set(SESSION_COOKIE, token[:-2] + ("AA" if token[-2:] != "AA" else "BB"), path="/admin")
        assert (await client.get("/admin")).status_code == 303
    # A session opened with another admin key ends when the key changes.
    rotated = make_settings(settings.database_url or "", tmp_path, admin_api_key="a-new-admin-key")
    async with serving(rotated) as client:
        client.cookies.set(SESSION_COOKIE, token, path="/admin")
        assert (await client.get("/admin")).status_code == 303


async def test_every_post_needs_the_session_form_token(client: httpx.AsyncClient) -> None:
    await log_in(client)
    form = await client.get("/admin/events/new")
    body = {
        "name": "Sin token",
        "starts_at": "2030-12-13T21:00",
        "section_count": "1",
        "s0-name": "Campo",
        "s0-kind": "general_admission",
        "s0-price": "9000",
        "s0-capacity": "10",
        "step": "save",
        "max_tickets": "4",
        "admit_per_minute": "60",
        "max_active": "100",
        "access_minutes": "10",
    }
    for token in (None, "0" * 64):
        sent = body if token is None else {**body, "csrf": token}
        refused = await client.post("/admin/events/new", data=sent)
        assert refused.status_code == 403
    listed = (await client.get("/api/events", headers=ADMIN)).json()
    assert listed["total"] == 0
    accepted = await client.post("/admin/events/new", data={**body, "csrf": csrf_of(form.text)})
    assert accepted.status_code == 303
    event = (await client.get("/api/events", headers=ADMIN)).json()["items"][0]
    assert event["name"] == "Sin token"
    assert event["status"] == "draft"
    assert event["startsAt"] == "2030-12-14T00:00:00Z"  # 21:00 in Buenos Aires
    assert [(s["kind"], s["capacity"], s["price"]) for s in event["sections"]] == [
        ("general_admission", 10, "9000.00")
    ]
    # Log out needs the token too, then the session is gone.
    assert (await client.post("/admin/logout", data={})).status_code == 403
    out = await client.post("/admin/logout", data={"csrf": csrf_of(form.text)})
    assert out.status_code == 303
    assert SESSION_COOKIE not in client.cookies
    assert (await client.get("/admin")).status_code == 303


async def test_the_login_form_itself_needs_its_token(client: httpx.AsyncClient) -> None:
    await client.get("/admin/login")
    refused = await client.post("/admin/login", data={"key": ADMIN_KEY})
    assert refused.status_code == 403
    assert SESSION_COOKIE not in client.cookies


async def test_the_login_is_rate_limited_like_the_admin_api(settings: Settings) -> None:
    limited = settings.model_copy(update={"app_rate_limit": "3/minute"})
    async with serving(limited) as client:
        await asyncio.sleep(minute_boundary_delay())
        answers = [await log_in(client, key="guess") for _ in range(4)]
    assert [answer.status_code for answer in answers] == [401, 401, 401, 429]
    # A page for the person at the form, not the API's JSON: how long to wait, said and in the header.
    refused = answers[-1]
    wait = int(refused.headers["Retry-After"])
    assert 1 <= wait <= 60
    assert refused.headers["content-type"].startswith("text/html")
    assert "<title>" in refused.text
    assert re.search(r"Demasiados intentos\. Probá de nuevo en \d+ segundos?\.", refused.text)
    assert 'data-testid="login-key"' in refused.text


async def test_the_builder_shows_the_apis_rules_next_to_the_fields(client: httpx.AsyncClient) -> None:
    await log_in(client)
    form = await client.get("/admin/events/new")
    answer = await client.post(
        "/admin/events/new",
        data={
            "csrf": csrf_of(form.text),
            "name": "Con errores",
            "starts_at": "2001-01-01T21:00",
            "section_count": "2",
            "s0-name": "Platea",
            "s0-kind": "reserved",
            "s0-price": "-5",
            "s0-rows": "3",
            "s0-seats": "0",
            "s1-name": "platea",
            "s1-kind": "general_admission",
            "s1-price": "100",
            "s1-capacity": "5",
            "step": "save",
            "max_tickets": "4",
            "admit_per_minute": "60",
            "max_active": "100",
            "access_minutes": "10",
        },
    )
    assert answer.status_code == 422
    html = answer.text
    assert re.search(r'data-testid="error-s0-price">must be an amount such as 15000', html)
    assert re.search(r'data-testid="error-s0-seats">[^<]*greater than or equal to 1', html)
    # What was typed stays in the fields.
    assert 'value="Con errores"' in html
    assert 'value="platea"' in html
    assert (await client.get("/api/events", headers=ADMIN)).json()["total"] == 0


async def test_the_builder_adds_and_removes_sections_without_saving(client: httpx.AsyncClient) -> None:
    await log_in(client)
    token = csrf_of((await client.get("/admin/events/new")).text)
    base = {"csrf": token, "name": "x", "starts_at": "", "section_count": "1", "s0-name": "Platea"}
    added = await client.post("/admin/events/new", data={**base, "step": "add"})
    assert added.status_code == 200
    assert added.text.count('data-testid="builder-section"') == 2
    removed = await client.post("/admin/events/new", data={**base, "step": "remove-0"})
    assert removed.text.count('data-testid="builder-section"') == 0


async def test_the_line_controls_follow_the_queue_apis_rules(client: httpx.AsyncClient) -> None:
    event = await open_sale(client)
    await log_in(client)
    token = csrf_of((await client.get(f"/admin/events/{event['id']}")).text)
    url = f"/admin/events/{event['id']}/queue"
    assert (await client.post(url, data={"csrf": token, "admit_per_minute": "42"})).status_code == 303
    assert (await client.post(url, data={"csrf": token, "paused": "true"})).status_code == 303
    stats = (await client.get(f"/api/queue/{event['id']}/stats", headers=ADMIN)).json()
    assert stats["admitPerMinute"] == 42
    assert stats["paused"] is True
    assert (await client.post(url, data={"csrf": token, "admit_per_minute": "0"})).status_code == 422
    live = (await client.get(f"/admin/events/{event['id']}/live.json")).json()
    assert live["figures"]["rate"] == "42"
    assert live["linePaused"] is True


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+54 11", "'+54 11"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tTab", "'\tTab"),
        ("Ana Pérez", "Ana Pérez"),
        ("15000.00", "15000.00"),
        (None, ""),
    ],
)
def test_a_cell_a_spreadsheet_would_run_gets_a_quote(value: object, cell: str) -> None:
    assert safe_cell(value) == cell


def test_commas_quotes_and_line_breaks_stay_inside_their_cell() -> None:
    line = csv_line(['Pérez, "Ana"', "a\nb", 7])
    assert line == '"Pérez, ""Ana""","a\nb",7\r\n'
    assert next(csv.reader(io.StringIO(line))) == ['Pérez, "Ana"', "a\nb", "7"]


async def test_the_exports_stream_every_order_and_attendee_escaped(client: httpx.AsyncClient) -> None:
    event = await open_sale(client, sections=[ga_section(capacity=10)])
    section = event["sections"][0]["id"]
    buyers = [("=cmd|' /C calc'!A0", "evil@example.com"), ('Pérez, "Ana"', "ana@example.com")]
    for index, (name, email) in enumerate(buyers):
        hold = await take_hold(client, event, f"user-{index}", {"sectionId": section, "quantity": 2})
        placed = await place_order(client, hold, buyer={"email": email, "name": name})
        assert placed.status_code == 201, placed.text
    await log_in(client)
    orders_csv = await client.get(f"/admin/events/{event['id']}/orders.csv")
    assert orders_csv.status_code == 200
    assert orders_csv.headers["content-type"].startswith("text/csv")
    assert "attachment" in orders_csv.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(orders_csv.content.decode("utf-8-sig"))))
    assert [row["buyer_name"] for row in rows] == ["'=cmd|' /C calc'!A0", 'Pérez, "Ana"']
    assert {row["status"] for row in rows} == {"pending_payment"}
    assert rows[0]["total"] == "18000.00"
    # Attendees are valid tickets: none until an order is paid.
    attendees = await client.get(f"/admin/events/{event['id']}/attendees.csv")
    assert attendees.content.decode("utf-8-sig").splitlines() == [
        "ticket_id,section,seat,buyer_name,buyer_email,order_id,checked_in_at"
    ]


def test_the_sales_chart_runs_from_the_opening_through_each_stretch_to_now() -> None:
    opened = datetime(2030, 1, 1, 10, 0, tzinfo=UTC)
    now = opened + timedelta(hours=1)
    stretches = [
        SaleMoment(opened + timedelta(seconds=index), 2, Decimal("15000.00"), opened) for index in range(3)
    ]
    series = sales_series(stretches, now, since=opened)
    assert [point["tickets"] for point in series] == [0, 2, 4, 6, 6]
    assert series[0] == {"t": opened.isoformat(), "tickets": 0, "revenue": "0"}
    assert series[-1] == {"t": now.isoformat(), "tickets": 6, "revenue": "45000.00"}
    # A sale paid before the opening (onSaleAt moved later) starts the chart at its first payment.
    early = SaleMoment(opened - timedelta(minutes=3), 1, Decimal("9000.00"), opened - timedelta(minutes=5))
    assert sales_series([early], now, since=opened)[0]["t"] == (opened - timedelta(minutes=5)).isoformat()


async def test_a_drafts_dashboard_has_no_line_to_control(client: httpx.AsyncClient) -> None:
    draft = (
        await client.post(
            "/api/events",
            headers=ADMIN,
            json={"name": "Borrador", "startsAt": "2030-12-14T00:00:00Z", "status": "draft"},
        )
    ).json()
    await log_in(client)
    page = await client.get(f"/admin/events/{draft['id']}")
    assert page.status_code == 200
    assert "La fila se abre cuando el evento se publica" in page.text
    assert 'data-testid="admit-rate"' not in page.text
    assert 'data-testid="status-published"' in page.text
    live = (await client.get(f"/admin/events/{draft['id']}/live.json")).json()
    assert live["lineOpen"] is False
    assert live["figures"]["sold"] == "0"
    assert live["series"] == []


async def test_editing_changes_the_event_and_adds_sections(client: httpx.AsyncClient) -> None:
    event = await open_sale(client)
    await log_in(client)
    form = await client.get(f"/admin/events/{event['id']}/edit")
    assert 'value="Noche de Rock"' in form.text
    fields = dict(
        re.findall(
            r'name="(name|starts_at|max_tickets|admit_per_minute|max_active|access_minutes)" value="([^"]*)"',
            form.text,
        )
    )
    answer = await client.post(
        f"/admin/events/{event['id']}/edit",
        data={
            **fields,
            "csrf": csrf_of(form.text),
            "name": "Noche de Rock (2da fecha)",
            "venue": "Luna Park",
            "section_count": "1",
            "s0-name": "Pullman",
            "s0-kind": "reserved",
            "s0-price": "20000.50",
            "s0-rows": "28",
            "s0-seats": "2",
            "step": "save",
        },
    )
    assert answer.status_code == 303, answer.text
    changed = (await client.get(f"/api/events/{event['id']}", headers=ADMIN)).json()
    assert (changed["name"], changed["venue"], changed["startsAt"]) == (
        "Noche de Rock (2da fecha)",
        "Luna Park",
        event["startsAt"],
    )
    pullman = changed["sections"][-1]
    assert (pullman["name"], pullman["capacity"], pullman["price"]) == ("Pullman", 56, "20000.50")
    seats = (await client.get(f"/api/events/{event['id']}/seats?section={pullman['id']}")).json()["seats"]
    assert {seat["row"] for seat in seats} == {*"ABCDEFGHIJKLMNOPQRSTUVWXYZ", "AA", "AB"}


async def test_an_unpaid_order_cannot_be_refunded_and_the_page_says_why(client: httpx.AsyncClient) -> None:
    event = await open_sale(client, sections=[ga_section(capacity=10)])
    hold = await take_hold(client, event, "user-1", {"sectionId": event["sections"][0]["id"], "quantity": 1})
    order = (await place_order(client, hold)).json()
    await log_in(client)
    detail = await client.get(f"/admin/orders/{order['id']}")
    assert 'data-status="pending_payment"' in detail.text
    assert 'data-testid="refund"' not in detail.text
    refused = await client.post(
        f"/admin/orders/{order['id']}/refund", data={"csrf": csrf_of(detail.text), "confirmed": "yes"}
    )
    assert refused.status_code == 409
    assert "Only a paid order can be refunded" in refused.text
    # Without the confirmation, the refund asks first.
    unconfirmed = await client.post(
        f"/admin/orders/{order['id']}/refund", data={"csrf": csrf_of(detail.text)}
    )
    assert unconfirmed.headers["location"] == f"/admin/orders/{order['id']}/refund"
