"""Base models for the HTTP contract: camelCase keys, unknown keys refused, money as strings."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    Strict,
    WithJsonSchema,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import SkipJsonSchema

from ticketera.kit.db import MAX_ID
from ticketera.kit.money import money_text


class ApiInput(BaseModel):
    """A request body: camelCase only, and a key we do not know is an error, not silently ignored.
    Text is taken as sent, never trimmed: what the OpenAPI document says of it is what is checked."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=False, extra="forbid")


class ApiOutput(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


# Text a person reads (names, venues, device labels): no control characters, none of the
# bidirectional overrides that make a name display as something other than what it is, and no
# spaces around it (a name of spaces alone is no name). The text is checked as sent: trimming it
# first would take what the document refuses (a padded name longer than its limit, ` A-1`).
_CONTROLS = r"\x00-\x1f\x7f\u200e\u200f\u202a-\u202e\u2066-\u2069"
# Neither a control character nor a space, as str.isspace() counts spaces (regex engines disagree
# on what `\s` means, so they are spelled out).
_VISIBLE = r"[^\x00-\x20\x7f\x85\xa0\u1680\u2000-\u200a\u200e\u200f\u2028-\u202f\u205f\u2066-\u2069\u3000]"


def printable_text(*, not_first: str = "") -> str:
    """The pattern of such text, whose first character is also none of `not_first`'s (characters a
    character class takes as they are, such as `~`)."""
    first = _VISIBLE[:-1] + not_first + "]"
    return rf"^{first}([^{_CONTROLS}]*{_VISIBLE})?$"


PRINTABLE_TEXT = printable_text()
# An amount as a client writes it: ASCII digits and at most two decimals, never a sign.
_MONEY_TEXT = re.compile(r"[0-9]{1,10}(\.[0-9]{1,2})?")
LARGEST_AMOUNT = Decimal("9999999999.99")
# A moment as RFC 3339 writes it (the document's `date-time`): date, `T`, time to the second or
# finer, and the offset (which only a door device's offline scan may leave out).
_MOMENT_TEXT = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})?"
)


def _canonical_money(value: Any) -> Any:
    """`"15000"`, `"15000.50"` or a JSON number; not `"-0.00"`, not other scripts' digits (Python's
    Decimal reads Arabic-Indic digits as ours), not `true`."""
    if isinstance(value, bool):
        raise ValueError('must be an amount such as 15000 or "15000.50"')
    if isinstance(value, str):
        if not _MONEY_TEXT.fullmatch(value):
            raise ValueError('must be an amount such as 15000 or "15000.50" (digits 0-9, no sign)')
        return Decimal(value)
    if isinstance(value, int | float):
        amount = Decimal(str(value))
        if amount.is_signed():
            raise ValueError("must not be negative")
        return amount
    return value


def iso_text(value: Any) -> Any:
    """A moment must be written as ISO 8601 text (or be a datetime, from our own code): a bare
    number (`0`, or `"0"`, which pydantic alone reads as 1970) is no date a person meant."""
    if isinstance(value, datetime) or (isinstance(value, str) and _MOMENT_TEXT.fullmatch(value)):
        return value
    raise ValueError("must be an ISO 8601 date and time with its offset, e.g. 2030-03-01T21:00:00-03:00")


def whole_number(value: Any) -> Any:
    """JSON has one kind of number, and to JSON Schema (so to the document) `3.0` is the integer 3:
    taken as 3. `3.5`, `"3"` and `true` are still refused by the strict integer that follows."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _not_null(value: Any) -> Any:
    if value is None:
        raise ValueError("must not be null")
    return value


def _omit_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


MoneyIn = Annotated[
    Decimal,
    BeforeValidator(_canonical_money),
    Field(ge=0, max_digits=12, decimal_places=2, allow_inf_nan=False),
    # What `_canonical_money` and the bounds take, said the way JSON Schema can (pydantic's own
    # schema of a Decimal would take "" and any other string).
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": f"^{_MONEY_TEXT.pattern}$"},
                {"type": "number", "minimum": 0, "maximum": float(LARGEST_AMOUNT), "multipleOf": 0.01},
            ],
            "examples": ["15000.00"],
        }
    ),
]
# Whole numbers and switches as JSON writes them: `true` is no quantity and `"3"` no count, while
# `3.0` is 3. A count's bounds go before WHOLE_NUMBER, `Annotated[int, Strict(), Field(ge=1, le=9),
# WHOLE_NUMBER]`: bounds added after a before-validator are checked, but reach the document as
# bare `ge`/`le` keys that JSON Schema ignores, not as `minimum`/`maximum`.
WHOLE_NUMBER = BeforeValidator(whole_number)
Switch = Annotated[bool, Strict()]
IsoMoment = Annotated[AwareDatetime, BeforeValidator(iso_text)]
MoneyOut = Annotated[Decimal, PlainSerializer(money_text, return_type=str)]
# A row id as a client may send it: what a BIGINT holds, so a larger one is a 422, never an
# overflow deep in the driver (SQLite's OverflowError used to answer 500).
DatabaseId = Annotated[int, Strict(), Field(ge=1, le=MAX_ID), WHOLE_NUMBER]

# Union members are told apart by tags, which pydantic puts in an error's location; this prefix
# marks them so the error handler leaves them out of the field it names (`seatIds`, not `seats.seatIds`).
FORM_TAG_PREFIX = "form:"


def form_tag(name: str) -> str:
    return FORM_TAG_PREFIX + name


T = TypeVar("T")
# A key a client may leave out but not send as null (a change to what cannot be cleared): the
# document shows it without null, and a null is refused here, before any service sees it.
Given = Annotated[
    T | SkipJsonSchema[None], BeforeValidator(_not_null), Field(json_schema_extra=_omit_default)
]
