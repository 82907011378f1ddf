"""Base models for the HTTP contract: camelCase keys, unknown keys refused, money as strings."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer
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


MoneyIn = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2, allow_inf_nan=False)]
MoneyOut = Annotated[Decimal, PlainSerializer(money_text, return_type=str)]
# A row id as a client may send it: what a BIGINT holds, so a larger one is a 422, never an
# overflow deep in the driver (SQLite's OverflowError used to answer 500).
DatabaseId = Annotated[int, Field(ge=1, le=MAX_ID)]
