"""The checkout page behind init_point: what the buyer sees, what paying does, where it returns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from tests.mpsim.conftest import WebhookReceiver, create_preference, notifications
from ticketera.mpsim.store import OUTCOMES

RETURN_QUERY_KEYS = {
    "collection_id",
    "collection_status",
    "payment_id",
    "status",
    "external_reference",
    "payment_type",
    "merchant_order_id",
    "preference_id",
}


async def pay(mp: httpx.AsyncClient, preference: dict[str, Any], outcome: str, **form: str) -> httpx.Response:
    return await mp.post(
        "/checkout/v1/redirect",
        data={"pref_id": preference["id"], "outcome": outcome, **form},
        follow_redirects=False,
    )


async def browse(url: str, **params: str) -> httpx.Response:
    """The buyer's browser: no bearer token."""
    async with httpx.AsyncClient() as browser:
        # httpx replaces a URL's own query with `params`, even an empty one.
        return await browser.get(url, params=params or None)


class ShownPage(HTMLParser):
    """What a browser makes of a page: the elements it creates, the form's values and the text."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.values: dict[str, str] = {}
        self.text = ""
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        attributes = dict(attrs)
        if tag == "input" and attributes.get("type") != "radio":
            self.values[attributes.get("name") or ""] = attributes.get("value") or ""

    def handle_data(self, data: str) -> None:
        self.text += data


def returned_to(response: httpx.Response) -> tuple[str, dict[str, str]]:
    assert response.status_code == 302, response.text
    location = urlsplit(response.headers["location"])
    return f"{location.scheme}://{location.netloc}{location.path}", dict(parse_qsl(location.query))


async def test_page_shows_items_total_payer_and_outcomes(mp: httpx.AsyncClient) -> None:
    preference = await create_preference(mp)

    page = await browse(preference["init_point"])

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "Platea A-1" in page.text
    assert "ARS 1,500.50" in page.text
    assert "ARS 3,001.00" in page.text
    assert 'value="buyer@example.com"' in page.text
    for code in OUTCOMES:
        assert f'value="{code}"' in page.text
    assert 'action="/checkout/v1/redirect"' in page.text


async def test_what_the_preference_says_is_shown_as_text_never_as_markup(mp: httpx.AsyncClient) -> None:
    script = '<script>alert("owned")</script>'
    title, reference, currency = f"Platea {script}", f"order-'{script}'", f'AR"S{script}'
    email = f'">{script}@x.test'  # would close the value attribute and open a script
    preference = await create_preference(
        mp,
        items=[{"title": title, "quantity": 1, "unit_price": 10, "currency_id": currency}],
        payer={"email": email},
        external_reference=reference,
        back_urls={},
        auto_return="",
    )

    page = await browse(preference["init_point"])
    result = await pay(mp, preference, "OTHE")  # no back_url: the result is shown, with the amount

    shown, shown_result = ShownPage(page.text), ShownPage(result.text)
    assert page.status_code == result.status_code == 200
    assert "<script>" not in page.text
    assert "<script>" not in result.text
    assert "script" not in shown.tags + shown_result.tags
    assert title in shown.text
    assert reference in shown.text
    assert f"{currency} 10.00" in shown.text
    assert shown.values == {"pref_id": preference["id"], "email": email}
    assert f"{currency} 10.00" in shown_result.text


async def test_paying_creates_the_payment_notifies_and_returns_to_success(
    mp: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    preference = await create_preference(mp, notification_url=f"{receiver.url}?source_news=webhooks")

    url, query = returned_to(await pay(mp, preference, "APRO", email="ana@example.com"))
    payment = (await mp.get(f"/v1/payments/{query['payment_id']}")).json()
    (delivery,) = await receiver.wait_for(1)

    assert url == "http://shop.test/return/success"
    assert set(query) >= RETURN_QUERY_KEYS
    assert query["order"] == "42"  # the back_url's own query survives
    assert query["collection_id"] == query["payment_id"] == str(payment["id"])
    assert query["collection_status"] == query["status"] == "approved"
    assert query["external_reference"] == "order-42"
    assert query["payment_type"] == "credit_card"
    assert query["preference_id"] == preference["id"]
    assert query["merchant_order_id"] == payment["order"]["id"]
    assert payment["transaction_amount"] == 3001
    assert payment["currency_id"] == "ARS"
    assert payment["external_reference"] == "order-42"
    assert payment["preference_id"] == preference["id"]
    assert payment["payer"]["email"] == "ana@example.com"
    assert (payment["status"], payment["status_detail"]) == ("approved", "accredited")
    assert delivery.query["data.id"] == str(payment["id"])


@pytest.mark.parametrize(
    ("outcome", "status", "payment_type"),
    [("CONT", "in_process", "credit_card"), ("CASH", "pending", "ticket")],
)
async def test_waiting_outcomes_return_to_pending(
    mp: httpx.AsyncClient, outcome: str, status: str, payment_type: str
) -> None:
    preference = await create_preference(mp)

    url, query = returned_to(await pay(mp, preference, outcome))

    assert url == "http://shop.test/return/pending"
    assert (query["status"], query["payment_type"]) == (status, payment_type)


async def test_a_rejected_buyer_returns_to_failure_and_can_try_again(mp: httpx.AsyncClient) -> None:
    preference = await create_preference(mp)

    failed_url, failed = returned_to(await pay(mp, preference, "FUND"))
    success_url, succeeded = returned_to(await pay(mp, preference, "APRO"))
    search = (
        await mp.get("/v1/payments/search", params={"external_reference": "order-42", "criteria": "asc"})
    ).json()

    assert failed_url == "http://shop.test/return/failure"
    assert failed["status"] == "rejected"
    assert success_url == "http://shop.test/return/success"
    assert [payment["status"] for payment in search["results"]] == ["rejected", "approved"]
    # Both attempts belong to the preference's one merchant order.
    assert failed["merchant_order_id"] == succeeded["merchant_order_id"]


async def test_without_a_back_url_the_result_is_shown(mp: httpx.AsyncClient) -> None:
    preference = await create_preference(mp, back_urls={}, auto_return="")

    page = await pay(mp, preference, "OTHE")

    assert page.status_code == 200
    assert "Payment rejected" in page.text
    assert "Try again" in page.text


@pytest.mark.parametrize(
    ("window", "phrase"),
    [
        ({"expiration_date_to": "2020-01-01T00:00:00.000-03:00"}, "expired"),
        ({"expiration_date_from": (datetime.now(UTC) + timedelta(days=1)).isoformat()}, "opens"),
    ],
    ids=["expired", "not-yet-open"],
)
async def test_a_link_outside_its_window_refuses_payment(
    mp: httpx.AsyncClient, window: dict[str, str], phrase: str
) -> None:
    preference = await create_preference(mp, expires=True, **window)

    page = await browse(preference["init_point"])
    paid = await pay(mp, preference, "APRO")
    search = (await mp.get("/v1/payments/search")).json()

    assert page.status_code == 410
    assert phrase in page.text
    assert paid.status_code == 410
    assert search["paging"]["total"] == 0
    assert await notifications(mp) == []


async def test_a_link_inside_its_window_can_be_paid(mp: httpx.AsyncClient) -> None:
    now = datetime.now(UTC)
    preference = await create_preference(
        mp,
        expires=True,
        expiration_date_from=(now - timedelta(hours=1)).isoformat(),
        expiration_date_to=(now + timedelta(hours=1)).isoformat(),
    )

    url, _ = returned_to(await pay(mp, preference, "APRO"))

    assert url == "http://shop.test/return/success"


async def test_unknown_link_is_404(mp: httpx.AsyncClient, sim: str) -> None:
    page = await browse(f"{sim}/checkout/v1/redirect", pref_id="nope")

    assert page.status_code == 404
    assert "Unknown payment link" in page.text


async def test_binary_mode_offers_no_cash_and_never_waits(mp: httpx.AsyncClient) -> None:
    preference = await create_preference(mp, binary_mode=True)

    page = await browse(preference["init_point"])
    url, query = returned_to(await pay(mp, preference, "CONT"))

    assert 'value="CASH"' not in page.text
    assert url == "http://shop.test/return/failure"
    assert query["status"] == "rejected"
