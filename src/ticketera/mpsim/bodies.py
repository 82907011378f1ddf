"""The official API's request bodies as pydantic models, failing in MercadoPago's error shape.

MercadoPago answers a bad body with status 400 and one cause (`errors.py`), never with a list of
pydantic errors, so `MPBody.parse` turns the first `ValidationError` entry into an `MPError`: the
field's path ("items[0].quantity"), what is wrong with it and a cause code. A field declares its code
(and, where MercadoPago's wording matters, its wording) with a `Cause` in its annotation; anything
inside that field inherits the code. Rules that span fields raise `rule_broken(code, message)`.

These models say what a request must look like; what may happen to a payment in its current state
stays in `store.py`. Preference models keep unknown fields (`extra="allow"`): MercadoPago stores and
echoes a preference's fields whether or not the simulator reads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal, Self, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticCustomError

from ticketera.kit.money import CENT
from ticketera.mpsim.errors import INVALID_PAYER_EMAIL, INVALID_TRANSACTION_AMOUNT, MPError

# The code of a problem in a field that declares none (the same as app.py's for bad parameters).
DEFAULT_CODE = "invalid_parameters"
DEFAULT_CURRENCY_ID = "ARS"
_RULE_ERROR = "mercadopago_rule"
# How a problem is put when the field that has it declares no wording of its own.
_WORDING = {
    "missing": "is required",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "dict_type": "must be an object",
    "list_type": "must be a list",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
}


@dataclass(frozen=True)
class Cause:
    """The cause code for a bad value of the field it annotates, and optionally what to say about it."""

    code: int | str
    problem: str | None = None


def rule_broken(code: int | str, message: str) -> PydanticCustomError:
    """A rule across fields, for a model validator to raise; the answer carries `message` as it is."""
    return PydanticCustomError(_RULE_ERROR, message, {"code": code})


class MPBody(BaseModel):
    """A request of the official API; `parse` answers a bad one as MercadoPago does."""

    model_config = ConfigDict(extra="ignore")

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> Self:
        try:
            return cls.model_validate(body)
        except ValidationError as exc:
            raise _as_mp_error(cls, exc) from exc


def _as_mp_error(model: type[BaseModel], exc: ValidationError) -> MPError:
    # Every error answer of the simulator carries one cause, so the first problem (in the order the
    # fields are declared) is the one reported.
    error = exc.errors(include_url=False)[0]
    if error["type"] == _RULE_ERROR:
        return MPError(400, error["msg"], code=(error.get("ctx") or {})["code"])
    where, cause, own = _locate(model, error)
    problem = cause.problem if own and cause.problem else _WORDING.get(error["type"], "is invalid")
    return MPError(400, f"{where or 'the request body'} {problem}", code=cause.code)


def _locate(model: type[BaseModel], error: ErrorDetails) -> tuple[str, Cause, bool]:
    """The path of the field in error, its cause (or the nearest enclosing one), and whether the
    error is about the very field that declares that cause (only then does its wording apply)."""
    where = ""
    cause = Cause(DEFAULT_CODE)
    own = False
    fields: dict[str, FieldInfo] = model.model_fields
    for part in error["loc"]:
        if isinstance(part, int):
            where += f"[{part}]"
            own = False
            continue
        field = fields.get(part)
        if field is None:
            # A union member's tag, or a key inside a free-form object: the field was the last one.
            break
        where = f"{where}.{part}" if where else part
        declared = next((item for item in field.metadata if isinstance(item, Cause)), None)
        if declared is not None:
            cause, own = declared, True
        else:
            own = False
        nested = _model_in(field.annotation)
        fields = nested.model_fields if nested is not None else {}
    return where, cause, own


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds, alone, optional or in a list."""
    for candidate in (annotation, *get_args(annotation)):
        if get_origin(candidate) is None and isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _json_number_in_cents(value: Any) -> Decimal:
    # A JSON number only: pydantic's Decimal would also take "10.00" or true, which MercadoPago refuses.
    # Rounded to cents before the check against zero, so 0.001 is refused as the zero it charges.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("not a number")
    try:
        return Decimal(str(value)).quantize(CENT)
    except InvalidOperation as exc:  # infinity, or more digits than a Decimal holds
        raise ValueError("not a finite amount") from exc


def _iso_date(value: str) -> str:
    # Checked, but kept as sent: MercadoPago echoes a preference's dates as they came.
    if value:
        parse_iso_date(value)
    return value


def parse_iso_date(value: str) -> datetime:
    """An ISO 8601 date as MercadoPago reads one (a trailing Z included); ValueError if it is none."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def normalise_status(value: str) -> str:
    """The Orders API spells it `canceled`; the payments API `cancelled`."""
    value = value.strip().lower()
    return "cancelled" if value == "canceled" else value


def _normalised_status(value: Any) -> Any:
    return normalise_status(value) if isinstance(value, str) else value


# Money in cents, above zero.
Amount = Annotated[Decimal, BeforeValidator(_json_number_in_cents), Field(gt=0)]
# A price as sent (an int stays an int in the echo), finite and above zero.
PositiveNumber = Annotated[StrictInt | Annotated[StrictFloat, Field(allow_inf_nan=False)], Field(gt=0)]
# An empty date is no date, as MercadoPago reads it.
OptionalDate = Annotated[
    Annotated[str, AfterValidator(_iso_date)] | None, Cause("invalid_date", "must be an ISO 8601 date")
]
NotificationUrl = Annotated[
    # MercadoPago's wording for cause 4020.
    Annotated[str, Field(pattern=r"^https?://")] | None,
    Cause(4020, "attribute must be url valid"),
]
Metadata = Annotated[dict[str, Any] | None, Cause("invalid_metadata")]


# Preferences


class PreferenceItem(MPBody):
    model_config = ConfigDict(extra="allow")

    title: str | None = None
    description: str | None = None
    currency_id: str | None = None
    quantity: Annotated[StrictInt, Field(gt=0), Cause("invalid_items", "must be a positive integer")]
    unit_price: Annotated[PositiveNumber, Cause("invalid_items", "must be a number above zero")]


class PreferencePayer(MPBody):
    model_config = ConfigDict(extra="allow")

    email: str | None = None
    name: str | None = None
    identification: dict[str, Any] | None = None


class BackUrls(MPBody):
    success: str | None = None
    pending: str | None = None
    failure: str | None = None


class PreferenceBody(MPBody):
    """`POST /checkout/preferences`; for `PUT`, the stored preference with the changes laid over it."""

    model_config = ConfigDict(extra="allow")

    items: Annotated[
        list[PreferenceItem], Field(min_length=1), Cause("invalid_items", "must be a non-empty list")
    ]
    payer: Annotated[PreferencePayer | None, Cause("invalid_payer")] = None
    back_urls: Annotated[BackUrls | None, Cause("invalid_back_urls")] = None
    auto_return: Annotated[
        Literal["approved", "all", ""] | None, Cause("invalid_auto_return", "must be approved or all")
    ] = None
    notification_url: NotificationUrl = None
    external_reference: str | None = None
    expires: bool = False
    expiration_date_from: OptionalDate = None
    expiration_date_to: OptionalDate = None
    date_of_expiration: OptionalDate = None
    binary_mode: bool = False
    statement_descriptor: str | None = None
    metadata: Metadata = None

    @model_validator(mode="after")
    def _one_currency(self) -> Self:
        if len({item.currency_id or DEFAULT_CURRENCY_ID for item in self.items}) > 1:
            raise rule_broken("invalid_items", "all items must have the same currency_id")
        return self

    @model_validator(mode="after")
    def _auto_return_needs_a_success_url(self) -> Self:
        if self.auto_return and not (self.back_urls and self.back_urls.success):
            # MercadoPago's own wording for the most common integration mistake.
            raise rule_broken("invalid_auto_return", "auto_return invalid. back_url.success must be defined")
        return self


# Payments


class PaymentPayer(MPBody):
    # Only an @ is asked for: the service validates the addresses it collects.
    email: Annotated[str, Field(pattern="@"), Cause(INVALID_PAYER_EMAIL, "must be a valid email")]
    first_name: str | None = None
    identification: dict[str, Any] | None = None


class PaymentBody(MPBody):
    """`POST /v1/payments`."""

    transaction_amount: Annotated[Amount, Cause(INVALID_TRANSACTION_AMOUNT, "must be a number above zero")]
    payment_method_id: Annotated[str, Field(min_length=1), Cause("invalid_payment_method_id", "is required")]
    payer: Annotated[PaymentPayer, Cause(INVALID_PAYER_EMAIL)]
    notification_url: NotificationUrl = None
    metadata: Metadata = None
    date_of_expiration: OptionalDate = None
    currency_id: str | None = None
    description: str | None = None
    external_reference: str | None = None
    binary_mode: bool = False


class PaymentUpdate(MPBody):
    """`PUT /v1/payments/{id}`: a field changes the payment only if sent (`model_fields_set`)."""

    capture: bool = False
    status: Annotated[
        Annotated[Literal["cancelled"], BeforeValidator(_normalised_status)] | None,
        Cause("invalid_status", "can only be cancelled"),
    ] = None
    external_reference: str | None = None
    metadata: Annotated[dict[str, Any], Cause("invalid_metadata")] = Field(default_factory=dict)


class RefundBody(MPBody):
    """`POST /v1/payments/{id}/refunds`: without an amount, all that is left is refunded."""

    amount: Annotated[Amount | None, Cause(INVALID_TRANSACTION_AMOUNT, "must be a number above zero")] = None


SortKey = Literal["date_created", "date_last_updated", "date_approved", "id"]
# Each filter is named as the Payment attribute it compares with.
SEARCH_FILTERS = ("external_reference", "status", "preference_id", "payment_type_id", "id")


class PaymentSearch(MPBody):
    """`GET /v1/payments/search`'s query: paging, order and the filters the simulator knows."""

    sort: Annotated[SortKey, Cause("invalid_sort", f"must be one of {', '.join(get_args(SortKey))}")] = (
        "date_created"
    )
    criteria: Annotated[Literal["asc", "desc"], Cause("invalid_criteria", "must be asc or desc")] = "desc"
    limit: Annotated[int, Field(ge=1, le=1000), Cause("invalid_paging", "must be 1 to 1000")] = 30
    offset: Annotated[int, Field(ge=0), Cause("invalid_paging", "must be 0 or more")] = 0
    external_reference: str | None = None
    status: str | None = None
    preference_id: str | None = None
    payment_type_id: str | None = None
    id: str | None = None

    def filters(self) -> dict[str, str]:
        """The filters asked for (an empty one is none), by Payment attribute."""
        return {name: value for name in SEARCH_FILTERS if (value := getattr(self, name))}
