"""The checkout page behind a preference's init_point: a plain HTML form where the buyer picks the outcome.

`GET /checkout/v1/redirect?pref_id=<id>` shows the items, the total, the payer's email and one radio
button per outcome (the test card holder names, and a cash slip). Submitting creates the payment as
MercadoPago would (the items' total, the preference's currency, external_reference and
notification_url), notifies, and sends the browser back to the matching back_url with MercadoPago's
query. A rejected payment goes to the failure URL, from where the buyer can come back and try again.
"""

from __future__ import annotations

from decimal import Decimal
from html import escape
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ticketera.mpsim.errors import MPError
from ticketera.mpsim.notifier import with_query
from ticketera.mpsim.state import Simulator, get_simulator
from ticketera.mpsim.store import OUTCOMES, Payment, Preference, back_url_key

router = APIRouter()
CurrentSimulator = Annotated[Simulator, Depends(get_simulator)]

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; color: #222; }
h1 { font-size: 1.3rem; } table { border-collapse: collapse; width: 100%; margin: 1rem 0; }
td, th { padding: .3rem .5rem; border-bottom: 1px solid #ddd; text-align: left; }
td.n, th.n { text-align: right; } .total { font-weight: bold; } fieldset { margin: 1rem 0; }
label { display: block; margin: .2rem 0; } button { font-size: 1rem; padding: .5rem 1.5rem; }
.note { color: #666; font-size: .9rem; }
"""


def _page(title: str, body: str, status_code: int = 200) -> HTMLResponse:
    html = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>{body}"
        '<p class="note">MercadoPago simulator (ticketera.mpsim): no real money moves.</p></body></html>'
    )
    return HTMLResponse(html, status_code=status_code)


def _money(amount: Decimal | float | int, currency: str) -> str:
    return f"{currency} {Decimal(str(amount)):,.2f}"


def _checkout_form(preference: Preference) -> str:
    data = preference.data
    currency = preference.currency_id
    rows = "".join(
        f"<tr><td>{escape(str(item.get('title') or ''))}</td><td class='n'>{item['quantity']}</td>"
        f"<td class='n'>{_money(item['unit_price'], currency)}</td>"
        f"<td class='n'>{_money(Decimal(str(item['unit_price'])) * item['quantity'], currency)}</td></tr>"
        for item in data["items"]
    )
    payer_email = (data.get("payer") or {}).get("email") or ""
    binary_mode = bool(data.get("binary_mode"))
    choices = "".join(
        f'<label><input type="radio" name="outcome" value="{outcome.code}"'
        f"{' checked' if outcome.code == 'APRO' else ''}> <b>{outcome.code}</b> {escape(outcome.label)}"
        f" <span class='note'>({outcome.status} / {outcome.status_detail})</span></label>"
        for outcome in OUTCOMES.values()
        if not (binary_mode and outcome.payment_type_id == "ticket")
    )
    reference = data.get("external_reference") or ""
    return (
        "<table><tr><th>Item</th><th class='n'>Qty</th><th class='n'>Unit price</th>"
        f"<th class='n'>Subtotal</th></tr>{rows}"
        f"<tr class='total'><td colspan='3'>Total</td><td class='n'>{_money(preference.total, currency)}"
        "</td></tr></table>"
        f"<p class='note'>Reference {escape(str(reference))} · preference {escape(preference.id)}</p>"
        '<form method="post" action="/checkout/v1/redirect">'
        f'<input type="hidden" name="pref_id" value="{escape(preference.id)}">'
        f'<label>Payer email <input type="email" name="email" value="{escape(payer_email)}"></label>'
        f"<fieldset><legend>Outcome (card holder name)</legend>{choices}</fieldset>"
        '<button type="submit">Pay</button></form>'
    )


def _back_url_query(payment: Payment) -> list[tuple[str, str]]:
    """MercadoPago's return query; buyer-controlled, so the service must never trust it as proof."""
    return [
        ("collection_id", str(payment.id)),
        ("collection_status", payment.status),
        ("payment_id", str(payment.id)),
        ("status", payment.status),
        ("external_reference", payment.external_reference or "null"),
        ("payment_type", payment.payment_type_id),
        ("merchant_order_id", str(payment.merchant_order_id or "null")),
        ("preference_id", payment.preference_id or "null"),
        ("site_id", "MLA"),
        ("processing_mode", "aggregator"),
        ("merchant_account_id", "null"),
    ]


def _error_page(error: MPError) -> HTMLResponse:
    titles = {404: "Unknown payment link", 410: "This payment link cannot be paid"}
    return _page(
        titles.get(error.status, "Payment not possible"), f"<p>{escape(error.message)}</p>", error.status
    )


@router.get("/checkout/v1/redirect", response_class=HTMLResponse)
async def checkout_page(pref_id: str, simulator: CurrentSimulator) -> HTMLResponse:
    try:
        preference = simulator.store.get_preference(pref_id)
    except MPError as error:
        return _error_page(error)
    problem = preference.payable_problem(simulator.clock())
    if problem is not None:
        return _page("This payment link cannot be paid", f"<p>{escape(problem)}</p>", 410)
    return _page("Checkout", _checkout_form(preference))


@router.post("/checkout/v1/redirect", response_model=None)
async def pay(request: Request, simulator: CurrentSimulator) -> Response:
    # Parsed by hand: FastAPI's Form() needs python-multipart, a dependency for one urlencoded form.
    form = {key: values[0] for key, values in parse_qs((await request.body()).decode()).items()}
    preference_id = form.get("pref_id") or request.query_params.get("pref_id") or ""
    try:
        payment = simulator.store.pay_preference(
            preference_id, form.get("outcome", "APRO"), payer_email=form.get("email") or None
        )
    except MPError as error:
        return _error_page(error)
    where = back_url_key(payment.status)
    back_url = simulator.store.get_preference(preference_id).back_urls.get(where)
    if back_url:
        return RedirectResponse(with_query(back_url, _back_url_query(payment)), status_code=302)
    again = f'<p><a href="/checkout/v1/redirect?pref_id={escape(preference_id)}">Try again</a></p>'
    return _page(
        f"Payment {payment.status}",
        f"<p>Payment {payment.id}: {escape(payment.status)} ({escape(payment.status_detail or '')}), "
        f"{_money(payment.amount, payment.currency_id)}. The preference has no {where} "
        f"back_url to return to.</p>{again if payment.status == 'rejected' else ''}",
    )
