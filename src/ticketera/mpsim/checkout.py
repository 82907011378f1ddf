"""The checkout page behind a preference's init_point: a plain HTML form where the buyer picks the outcome.

`GET /checkout/v1/redirect?pref_id=<id>` shows the items, the total, the payer's email and one radio
button per outcome (the test card holder names, and a cash slip). Submitting creates the payment as
MercadoPago would (the items' total, the preference's currency, external_reference and
notification_url), notifies, and sends the browser back to the matching back_url with MercadoPago's
query. A rejected payment goes to the failure URL, from where the buyer can come back and try again.

The pages are the Jinja2 templates in `templates/`, autoescaped: item titles, the payer's email, the
reference and the currency all come from whoever created the preference.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Annotated, Any, NamedTuple
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined

from ticketera.mpsim.errors import MPError
from ticketera.mpsim.notifier import with_query
from ticketera.mpsim.state import Simulator, get_simulator
from ticketera.mpsim.store import OUTCOMES, Payment, Preference, back_url_key

router = APIRouter()
CurrentSimulator = Annotated[Simulator, Depends(get_simulator)]


def _money(amount: Decimal | float | int, currency: str) -> str:
    return f"{currency} {Decimal(str(amount)):,.2f}"


_templates = Environment(
    loader=PackageLoader("ticketera.mpsim", "templates"),
    # Every template here is HTML, so no value is ever left unescaped by a wrong guess of its kind.
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    # The templates ship with the package: no need to look at their files again on every page.
    auto_reload=False,
)
_templates.filters["money"] = _money


def _page(template: str, title: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = _templates.get_template(template).render(title=title, **context)
    return HTMLResponse(html, status_code=status_code)


class _ItemRow(NamedTuple):
    title: str
    quantity: int
    unit_price: Decimal
    subtotal: Decimal

    @classmethod
    def of(cls, item: Mapping[str, Any]) -> _ItemRow:
        unit_price = Decimal(str(item["unit_price"]))
        return cls(str(item.get("title") or ""), item["quantity"], unit_price, unit_price * item["quantity"])


def _checkout_page(preference: Preference) -> HTMLResponse:
    data = preference.data
    binary_mode = bool(data.get("binary_mode"))
    return _page(
        "checkout.html",
        "Checkout",
        rows=[_ItemRow.of(item) for item in data["items"]],
        currency=preference.currency_id,
        total=preference.total,
        reference=data.get("external_reference") or "",
        preference_id=preference.id,
        payer_email=(data.get("payer") or {}).get("email") or "",
        outcomes=[
            outcome
            for outcome in OUTCOMES.values()
            if not (binary_mode and outcome.payment_type_id == "ticket")
        ],
        chosen="APRO",
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
        "message.html", titles.get(error.status, "Payment not possible"), error.status, message=error.message
    )


@router.get("/checkout/v1/redirect", response_class=HTMLResponse)
async def checkout_page(pref_id: str, simulator: CurrentSimulator) -> HTMLResponse:
    try:
        preference = simulator.store.get_preference(pref_id)
    except MPError as error:
        return _error_page(error)
    problem = preference.payable_problem(simulator.clock())
    if problem is not None:
        return _page("message.html", "This payment link cannot be paid", 410, message=problem)
    return _checkout_page(preference)


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
    return _page(
        "result.html", f"Payment {payment.status}", payment=payment, where=where, preference_id=preference_id
    )
