"""The simulator's in-memory state and MercadoPago's payment rules.

Preferences, payments and refunds live in dictionaries for the life of the process. Every rule the
service depends on is here, in one place: what each test card holder name does, which states allow a
refund or a cancellation (cause 2063), what a full or partial refund leaves behind, what an admin move
sets. Every create or change of a payment is reported to `on_payment_change` (the notifier).

What a request must look like is said by the models in `bodies.py`; each method parses its body with
them once it has found what the request names, so an unknown payment is a 404 whatever the body says.

Ids keep counting across `reset()`: a service under test may still hold payment ids from an earlier
test, and an id that meant another payment then would make its failures hard to read.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from ticketera.kit.clock import Clock, utc_now
from ticketera.kit.money import CENT
from ticketera.mpsim.bodies import (
    DEFAULT_CURRENCY_ID,
    BackUrls,
    PaymentBody,
    PaymentSearch,
    PaymentUpdate,
    PreferenceBody,
    RefundBody,
    SortKey,
    normalise_status,
    parse_iso_date,
)
from ticketera.mpsim.errors import INVALID_PAYMENT_STATE, PAYMENT_NOT_FOUND, MPError

# MercadoPago answers in the seller's local time (Argentina, UTC-3), milliseconds and offset included;
# a client that parses dates naively breaks here rather than in production.
MP_TIMEZONE = timezone(timedelta(hours=-3))
FIRST_PAYMENT_ID = 1300000001
FIRST_REFUND_ID = 1500000001
FIRST_MERCHANT_ORDER_ID = 17000000001
CASH_METHODS = frozenset({"rapipago", "pagofacil"})
# Cash payment slips can be paid for a few days; MercadoPago then cancels them as expired.
CASH_PAYMENT_DAYS = 3
DEFAULT_PAYER_EMAIL = "test_user_80507629@testuser.com"

PaymentListener = Callable[["Payment", str], None]


def format_date(moment: datetime) -> str:
    return moment.astimezone(MP_TIMEZONE).isoformat(timespec="milliseconds")


def parse_date(value: str | None) -> datetime | None:
    """A date from a body the models of `bodies.py` have checked; an empty one is none."""
    if not value:
        return None
    moment = parse_iso_date(value)
    # A date without an offset is the seller's local time, as MercadoPago reads it.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=MP_TIMEZONE)


@dataclass(frozen=True)
class Outcome:
    """What the buyer chooses on the checkout page, named as MercadoPago's test card holders."""

    code: str
    label: str
    status: str
    status_detail: str
    payment_method_id: str = "master"
    payment_type_id: str = "credit_card"


OUTCOMES: dict[str, Outcome] = {
    outcome.code: outcome
    for outcome in (
        Outcome("APRO", "Approved", "approved", "accredited"),
        Outcome("CONT", "Pending (contingency review)", "in_process", "pending_contingency"),
        Outcome("OTHE", "Rejected: other reason", "rejected", "cc_rejected_other_reason"),
        Outcome("CALL", "Rejected: call to authorise", "rejected", "cc_rejected_call_for_authorize"),
        Outcome("FUND", "Rejected: insufficient funds", "rejected", "cc_rejected_insufficient_amount"),
        Outcome("SECU", "Rejected: bad security code", "rejected", "cc_rejected_bad_filled_security_code"),
        Outcome("EXPI", "Rejected: bad expiry date", "rejected", "cc_rejected_bad_filled_date"),
        Outcome("FORM", "Rejected: form error", "rejected", "cc_rejected_bad_filled_other"),
        Outcome(
            "CASH",
            "Cash (Rapipago slip): pending until paid",
            "pending",
            "pending_waiting_payment",
            payment_method_id="rapipago",
            payment_type_id="ticket",
        ),
    )
}

# The status_detail an admin move sets unless told otherwise.
ADMIN_STATUS_DETAILS: dict[str, str | None] = {
    "approved": "accredited",
    "authorized": "pending_capture",
    "in_process": "pending_review_manual",
    "pending": "pending_waiting_payment",
    "rejected": "cc_rejected_other_reason",
    "cancelled": "by_collector",
    "refunded": "by_admin",
    "charged_back": "settled",
    "in_mediation": None,
}
OPEN_STATUSES = frozenset({"pending", "in_process", "authorized"})


def back_url_key(status: str) -> str:
    """Which of a preference's back_urls the buyer returns to after a payment in this status."""
    if status == "approved":
        return "success"
    if status == "rejected":
        return "failure"
    return "pending"


def payment_type_for(payment_method_id: str) -> str:
    if payment_method_id in CASH_METHODS:
        return "ticket"
    if payment_method_id == "account_money":
        return "account_money"
    if payment_method_id.startswith("deb") or payment_method_id == "maestro":
        return "debit_card"
    return "credit_card"


def _number(amount: Decimal) -> int | float:
    return int(amount) if amount == amount.to_integral_value() else float(amount)


def _cash_slip_expiry(payment_type: str, requested: str | None, now: datetime) -> datetime | None:
    """When a cash slip lapses: the date asked for, or CASH_PAYMENT_DAYS from now; None for others."""
    if payment_type != "ticket":
        return None
    return parse_date(requested) or now + timedelta(days=CASH_PAYMENT_DAYS)


def _preference_data(body: PreferenceBody) -> dict[str, Any]:
    """What MercadoPago keeps of a preference: every field sent, read or not, with its defaults."""
    back_urls = body.back_urls or BackUrls()
    return {
        **body.model_dump(),
        "items": [
            {
                **item.model_dump(),
                "title": item.title or "",
                "description": item.description or "",
                "currency_id": item.currency_id or DEFAULT_CURRENCY_ID,
            }
            for item in body.items
        ],
        "payer": body.payer.model_dump(exclude_unset=True) if body.payer else {},
        "back_urls": {
            "success": back_urls.success or "",
            "pending": back_urls.pending or "",
            "failure": back_urls.failure or "",
        },
        "auto_return": body.auto_return or "",
        "external_reference": body.external_reference or "",
        "metadata": body.metadata or {},
    }


@dataclass
class Refund:
    id: int
    payment_id: int
    amount: Decimal
    created_at: datetime
    source: str = "collector"

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "payment_id": self.payment_id,
            "amount": _number(self.amount),
            "metadata": {},
            "source": {"id": str(self.payment_id), "name": self.source, "type": self.source},
            "date_created": format_date(self.created_at),
            "unique_sequence_number": None,
            "refund_mode": "standard",
            "adjustment_amount": 0,
            "status": "approved",
            "reason": None,
            "labels": [],
            "partition_details": [],
        }


@dataclass
class Payment:
    id: int
    created_at: datetime
    updated_at: datetime
    status: str
    status_detail: str | None
    amount: Decimal
    currency_id: str
    payment_method_id: str
    payment_type_id: str
    payer_id: int
    payer_email: str
    payer_first_name: str | None
    collector_id: int
    approved_at: datetime | None = None
    expires_at: datetime | None = None
    description: str | None = None
    external_reference: str | None = None
    notification_url: str | None = None
    preference_id: str | None = None
    merchant_order_id: int | None = None
    binary_mode: bool = False
    payer_identification: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    refunded: Decimal = Decimal("0.00")
    refunds: list[Refund] = field(default_factory=list)

    @property
    def refundable(self) -> Decimal:
        return self.amount - self.refunded

    def to_api(self) -> dict[str, Any]:
        is_card = self.payment_type_id in ("credit_card", "debit_card")
        net = self.amount if self.status == "approved" else Decimal("0")
        return {
            "id": self.id,
            "date_created": format_date(self.created_at),
            "date_approved": format_date(self.approved_at) if self.approved_at else None,
            "date_last_updated": format_date(self.updated_at),
            "date_of_expiration": format_date(self.expires_at) if self.expires_at else None,
            "money_release_date": format_date(self.approved_at) if self.approved_at else None,
            "operation_type": "regular_payment",
            "issuer_id": "3" if is_card else None,
            "payment_method_id": self.payment_method_id,
            "payment_type_id": self.payment_type_id,
            "status": self.status,
            "status_detail": self.status_detail,
            "currency_id": self.currency_id,
            "description": self.description,
            "live_mode": False,
            "collector_id": self.collector_id,
            "payer": {
                "id": str(self.payer_id),
                "email": self.payer_email,
                "first_name": self.payer_first_name,
                "identification": self.payer_identification,
                "type": "guest",
            },
            "metadata": self.metadata,
            "external_reference": self.external_reference,
            "notification_url": self.notification_url,
            "preference_id": self.preference_id,
            "order": (
                {"id": str(self.merchant_order_id), "type": "mercadopago"} if self.merchant_order_id else {}
            ),
            "transaction_amount": _number(self.amount),
            "transaction_amount_refunded": _number(self.refunded),
            "transaction_details": {
                "net_received_amount": _number(net),
                "total_paid_amount": _number(self.amount),
                "installment_amount": _number(self.amount),
                "overpaid_amount": 0,
                "external_resource_url": (
                    f"https://www.mercadopago.com.ar/payments/{self.id}/ticket"
                    if self.payment_type_id == "ticket"
                    else None
                ),
            },
            "installments": 1,
            "binary_mode": self.binary_mode,
            "captured": True,
            "card": (
                {
                    "first_six_digits": "503175",
                    "last_four_digits": "0604",
                    "cardholder": {"name": self.payer_first_name},
                }
                if is_card
                else {}
            ),
            "refunds": [refund.to_api() for refund in self.refunds],
        }


@dataclass
class Preference:
    id: str
    data: dict[str, Any]
    created_at: datetime
    merchant_order_id: int | None = None

    @property
    def total(self) -> Decimal:
        return sum(
            (Decimal(str(item["unit_price"])) * item["quantity"] for item in self.data["items"]),
            Decimal("0"),
        ).quantize(CENT)

    @property
    def currency_id(self) -> str:
        currency: str = self.data["items"][0].get("currency_id") or "ARS"
        return currency

    @property
    def back_urls(self) -> dict[str, str]:
        urls: dict[str, str] = self.data.get("back_urls") or {}
        return urls

    def payable_problem(self, now: datetime) -> str | None:
        """Why the link cannot be paid now (its `expires` window), or None."""
        if not self.data.get("expires"):
            return None
        starts = parse_date(self.data.get("expiration_date_from"))
        ends = parse_date(self.data.get("expiration_date_to"))
        if starts is not None and now < starts:
            return f"This payment link opens on {format_date(starts)}."
        if ends is not None and now > ends:
            return f"This payment link expired on {format_date(ends)}."
        return None


class SimulatorStore:
    def __init__(self, *, collector_id: int, public_url: str, clock: Clock = utc_now) -> None:
        self.collector_id = collector_id
        self.public_url = public_url.rstrip("/")
        self.clock = clock
        self.on_payment_change: PaymentListener | None = None
        self.preferences: dict[str, Preference] = {}
        self.payments: dict[int, Payment] = {}
        self._payer_ids: dict[str, int] = {}
        self._payment_ids = itertools.count(FIRST_PAYMENT_ID)
        self._refund_ids = itertools.count(FIRST_REFUND_ID)
        self._merchant_order_ids = itertools.count(FIRST_MERCHANT_ORDER_ID)

    def reset(self) -> None:
        self.preferences.clear()
        self.payments.clear()
        self._payer_ids.clear()

    # Preferences

    def create_preference(self, body: Mapping[str, Any]) -> Preference:
        preference_id = f"{self.collector_id}-{uuid.uuid4()}"
        now = self.clock()
        init_point = f"{self.public_url}/checkout/v1/redirect?pref_id={preference_id}"
        data = {
            "operation_type": "regular_payment",
            "site_id": "MLA",
            "marketplace": "NONE",
            **_preference_data(PreferenceBody.parse(body)),
            # Set by MercadoPago whatever the body says.
            "id": preference_id,
            "init_point": init_point,
            "sandbox_init_point": init_point,
            "collector_id": self.collector_id,
            "client_id": str(self.collector_id),
            "date_created": format_date(now),
        }
        preference = Preference(preference_id, data, now)
        self.preferences[preference_id] = preference
        return preference

    def get_preference(self, preference_id: str) -> Preference:
        preference = self.preferences.get(preference_id)
        if preference is None:
            raise MPError(404, f"Preference {preference_id} not found", code="not_found")
        return preference

    def update_preference(self, preference_id: str, body: Mapping[str, Any]) -> Preference:
        preference = self.get_preference(preference_id)
        fixed = ("id", "init_point", "sandbox_init_point", "collector_id", "client_id", "date_created")
        merged = {**preference.data, **{key: value for key, value in body.items() if key not in fixed}}
        # The whole result is validated, not the changes alone: auto_return in one update may need the
        # back_urls of an earlier one.
        preference.data = _preference_data(PreferenceBody.parse(merged))
        preference.data["last_updated"] = format_date(self.clock())
        return preference

    # Payments

    def get_payment(self, payment_id: int | str) -> Payment:
        try:
            payment = self.payments.get(int(payment_id))
        except ValueError:
            payment = None
        if payment is None:
            raise MPError(404, "Payment not found", code=PAYMENT_NOT_FOUND)
        return payment

    def pay_preference(
        self,
        preference_id: str,
        outcome_code: str,
        *,
        payer_email: str | None = None,
        ignore_expiry: bool = False,
    ) -> Payment:
        """What the checkout page does when the buyer submits: the items' total, from the preference."""
        preference = self.get_preference(preference_id)
        outcome = OUTCOMES.get(outcome_code.upper())
        if outcome is None:
            raise MPError(400, f"unknown outcome {outcome_code}; use one of {', '.join(OUTCOMES)}")
        now = self.clock()
        problem = None if ignore_expiry else preference.payable_problem(now)
        if problem is not None:
            raise MPError(410, problem, code="preference_expired")
        data = preference.data
        binary_mode = bool(data.get("binary_mode"))
        if binary_mode and outcome.payment_type_id == "ticket":
            raise MPError(400, "binary_mode preferences take no cash payments", code="binary_mode")
        if preference.merchant_order_id is None:
            # One merchant order per preference, shared by every attempt to pay it.
            preference.merchant_order_id = next(self._merchant_order_ids)
        payer = data.get("payer") or {}
        expires_at = _cash_slip_expiry(outcome.payment_type_id, data.get("date_of_expiration"), now)
        return self._new_payment(
            outcome=outcome,
            amount=preference.total,
            currency_id=preference.currency_id,
            payer_email=payer_email or payer.get("email") or DEFAULT_PAYER_EMAIL,
            payer_first_name=outcome.code if outcome.payment_type_id != "ticket" else payer.get("name"),
            payer_identification=payer.get("identification") or {},
            description=data["items"][0].get("title") or None,
            external_reference=data.get("external_reference") or None,
            notification_url=data.get("notification_url"),
            preference_id=preference.id,
            merchant_order_id=preference.merchant_order_id,
            binary_mode=binary_mode,
            metadata=dict(data.get("metadata") or {}),
            expires_at=expires_at,
        )

    def create_payment(self, raw: Mapping[str, Any]) -> Payment:
        """`POST /v1/payments`: the outcome follows payer.first_name, as with MercadoPago's test cards."""
        body = PaymentBody.parse(raw)
        payment_type = payment_type_for(body.payment_method_id)
        first_name = body.payer.first_name
        if payment_type == "ticket":
            outcome = OUTCOMES["CASH"]
        else:
            # Any other holder name is approved, as the sandbox does for real card data.
            outcome = OUTCOMES.get((first_name or "").upper(), OUTCOMES["APRO"])
            if outcome.code == "CASH":
                outcome = OUTCOMES["APRO"]
        expires_at = _cash_slip_expiry(payment_type, body.date_of_expiration, self.clock())
        return self._new_payment(
            outcome=outcome,
            amount=body.transaction_amount,
            currency_id=body.currency_id or DEFAULT_CURRENCY_ID,
            payment_method_id=body.payment_method_id,
            payment_type_id=payment_type,
            payer_email=body.payer.email,
            payer_first_name=first_name,
            payer_identification=body.payer.identification or {},
            description=body.description,
            external_reference=body.external_reference,
            notification_url=body.notification_url,
            binary_mode=body.binary_mode,
            metadata=dict(body.metadata or {}),
            expires_at=expires_at,
        )

    def _new_payment(
        self,
        *,
        outcome: Outcome,
        amount: Decimal,
        currency_id: str,
        payer_email: str,
        payer_first_name: str | None,
        payer_identification: dict[str, Any],
        description: str | None,
        external_reference: str | None,
        notification_url: str | None,
        binary_mode: bool,
        metadata: dict[str, Any],
        expires_at: datetime | None,
        payment_method_id: str | None = None,
        payment_type_id: str | None = None,
        preference_id: str | None = None,
        merchant_order_id: int | None = None,
    ) -> Payment:
        now = self.clock()
        status, detail = outcome.status, outcome.status_detail
        if binary_mode and status not in ("approved", "rejected"):
            # binary_mode promises approved or rejected only: what would wait for review is refused.
            status, detail = "rejected", "cc_rejected_high_risk"
        payment = Payment(
            id=next(self._payment_ids),
            created_at=now,
            updated_at=now,
            status=status,
            status_detail=detail,
            amount=amount,
            currency_id=currency_id,
            payment_method_id=payment_method_id or outcome.payment_method_id,
            payment_type_id=payment_type_id or outcome.payment_type_id,
            payer_id=self._payer_id(payer_email),
            payer_email=payer_email,
            payer_first_name=payer_first_name,
            payer_identification=payer_identification,
            collector_id=self.collector_id,
            approved_at=now if status == "approved" else None,
            expires_at=expires_at,
            description=description,
            external_reference=external_reference,
            notification_url=notification_url,
            preference_id=preference_id,
            merchant_order_id=merchant_order_id,
            binary_mode=binary_mode,
            metadata=metadata,
        )
        self.payments[payment.id] = payment
        self._changed(payment, "payment.created")
        return payment

    def _payer_id(self, email: str) -> int:
        # The same buyer keeps the same payer id, as a MercadoPago account would.
        return self._payer_ids.setdefault(email.lower(), 1000000001 + len(self._payer_ids))

    def update_payment(self, payment_id: str, raw: Mapping[str, Any]) -> Payment:
        """`PUT /v1/payments/{id}`: cancel a payment still waiting, or amend its reference or metadata."""
        payment = self.get_payment(payment_id)
        body = PaymentUpdate.parse(raw)
        if body.capture:
            raise MPError(400, "Only authorized payments can be captured", code=INVALID_PAYMENT_STATE)
        if body.status is not None:
            if payment.status not in OPEN_STATUSES:
                raise MPError(
                    400,
                    f"A {payment.status} payment cannot be cancelled",
                    code=INVALID_PAYMENT_STATE,
                )
            payment.status, payment.status_detail = "cancelled", "by_collector"
        # Sent as null, a reference is cleared; not sent, it stays.
        if "external_reference" in body.model_fields_set:
            payment.external_reference = body.external_reference
        if "metadata" in body.model_fields_set:
            payment.metadata = dict(body.metadata)
        payment.updated_at = self.clock()
        self._changed(payment, "payment.updated")
        return payment

    def refund_payment(self, payment_id: str, raw: Mapping[str, Any]) -> Refund:
        payment = self.get_payment(payment_id)
        body = RefundBody.parse(raw)
        amount = payment.refundable if body.amount is None else body.amount
        if payment.status != "approved":
            raise MPError(
                400,
                f"The action requested is not valid for a {payment.status} payment",
                code=INVALID_PAYMENT_STATE,
            )
        if amount > payment.refundable:
            raise MPError(
                400,
                f"The refund of {amount} is above what is left to refund ({payment.refundable})",
                code=INVALID_PAYMENT_STATE,
            )
        return self._refund(payment, amount, source="collector")

    def _add_refund(self, payment: Payment, amount: Decimal, *, source: str, now: datetime) -> Refund:
        refund = Refund(next(self._refund_ids), payment.id, amount, now, source=source)
        payment.refunds.append(refund)
        payment.refunded += amount
        return refund

    def _refund(self, payment: Payment, amount: Decimal, *, source: str) -> Refund:
        now = self.clock()
        refund = self._add_refund(payment, amount, source=source, now=now)
        if payment.refunded >= payment.amount:
            payment.status, payment.status_detail = "refunded", "refunded"
        else:
            payment.status_detail = "partially_refunded"
        payment.updated_at = now
        self._changed(payment, "payment.updated")
        return refund

    def move_payment(self, payment_id: int | str, status: str, status_detail: str | None) -> Payment:
        """An admin move, as MercadoPago's back office makes them: any status from any status."""
        payment = self.get_payment(payment_id)
        status = normalise_status(status)
        if status == "expired":
            status, status_detail = "cancelled", status_detail or "expired"
        if status not in ADMIN_STATUS_DETAILS:
            raise MPError(400, f"unknown status {status}; use one of {', '.join(ADMIN_STATUS_DETAILS)}")
        if status_detail is None:
            status_detail = ADMIN_STATUS_DETAILS[status]
            if status == "cancelled" and payment.status in OPEN_STATUSES:
                # What MercadoPago records when a payment stays pending past its deadline.
                status_detail = "expired"
        now = self.clock()
        if status == "refunded" and payment.refundable > 0:
            self._add_refund(payment, payment.refundable, source="admin", now=now)
        if status == "approved" and payment.approved_at is None:
            payment.approved_at = now
        payment.status, payment.status_detail = status, status_detail
        payment.updated_at = now
        self._changed(payment, "payment.updated")
        return payment

    def search_payments(self, raw: Mapping[str, str]) -> dict[str, Any]:
        query = PaymentSearch.parse(raw)
        sort_keys: dict[SortKey, Callable[[Payment], Any]] = {
            "date_created": lambda payment: (payment.created_at, payment.id),
            "date_last_updated": lambda payment: (payment.updated_at, payment.id),
            "date_approved": lambda payment: (
                payment.approved_at or datetime.min.replace(tzinfo=UTC),
                payment.id,
            ),
            "id": lambda payment: payment.id,
        }
        filters = query.filters()
        matching = [
            payment
            for payment in self.payments.values()
            if all(str(getattr(payment, name, None) or "") == value for name, value in filters.items())
        ]
        matching.sort(key=sort_keys[query.sort], reverse=query.criteria == "desc")
        limit, offset = query.limit, query.offset
        return {
            "paging": {"total": len(matching), "limit": limit, "offset": offset},
            "results": [payment.to_api() for payment in matching[offset : offset + limit]],
        }

    def _changed(self, payment: Payment, action: str) -> None:
        if self.on_payment_change is not None:
            self.on_payment_change(payment, action)
