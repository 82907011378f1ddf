"""Base models for the HTTP contract: camelCase keys, unknown keys refused, money as strings."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, Strict
from pydantic.alias_generators import to_camel

from ticketera.kit.db import MAX_ID
from ticketera.kit.money import money_text


class ApiInput(BaseModel):
    """A request body: camelCase only, and a key we do not know is an error, not silently ignored."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=False, extra="forbid", str_strip_whitespace=True
    )


class ApiOutput(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


# Text a person reads (names, venues, device labels): no control characters, and none of the
# bidirectional overrides that make a name display as something other than what it is.
_UNPRINTABLE = r"\x00-\x1f\x7f\u200e\u200f\u202a-\u202e\u2066-\u2069"


def printable_text(*, not_first: str = "") -> str:
    """The pattern of printable text, whose first character is none of `not_first`'s."""
    if not not_first:
        return f"^[^{_UNPRINTABLE}]+$"
    # Escaped only where a character class needs it, so the pattern reads the same in JavaScript.
    excluded = re.sub(r"([\\\]^-])", r"\\\1", not_first)
    return f"^[^{_UNPRINTABLE}{excluded}][^{_UNPRINTABLE}]*$"


PRINTABLE_TEXT = printable_text()
# An amount as a client writes it: ASCII digits and at most two decimals, never a sign.
_MONEY_TEXT = re.compile(r"[0-9]{1,10}(\.[0-9]{1,2})?")


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
    number (`0`) is no date a person meant."""
    if not isinstance(value, str | datetime):
        raise ValueError("must be an ISO 8601 date and time with its offset, e.g. 2030-03-01T21:00:00-03:00")
    return value


MoneyIn = Annotated[
    Decimal,
    BeforeValidator(_canonical_money),
    Field(ge=0, max_digits=12, decimal_places=2, allow_inf_nan=False),
]
# Whole numbers and switches as JSON writes them: `true` is no quantity and `"3"` no count.
Count = Annotated[int, Strict()]
Switch = Annotated[bool, Strict()]
IsoMoment = Annotated[AwareDatetime, BeforeValidator(iso_text)]
MoneyOut = Annotated[Decimal, PlainSerializer(money_text, return_type=str)]
# A row id as a client may send it: what a BIGINT holds, so a larger one is a 422, never an
# overflow deep in the driver (SQLite's OverflowError used to answer 500).
DatabaseId = Annotated[int, Strict(), Field(ge=1, le=MAX_ID)]
