"""Request types whose JSON Schema and validation are the same rule: what the document allows the
validator takes, and what it refuses the validator refuses."""

from __future__ import annotations

from typing import Annotated, Any

import jsonschema_rs
import pytest
from pydantic import BaseModel, StringConstraints, TypeAdapter, ValidationError

from ticketera.kit.schemas import PRINTABLE_TEXT, ApiInput, DatabaseId, Given, IsoMoment, MoneyIn


class Patch(BaseModel):
    name: Given[str] = None


def accepted_by_both(annotation: Any, value: Any) -> tuple[bool, bool]:
    adapter = TypeAdapter(annotation)
    schema = jsonschema_rs.validator_for(adapter.json_schema(), validate_formats=True)
    try:
        adapter.validate_python(value)
        validated = True
    except ValidationError:
        validated = False
    return schema.is_valid(value), validated


@pytest.mark.parametrize("amount", ["15000", "15000.50", "0", 15000, 0.07, 12.5])
def test_an_amount_the_document_allows_is_taken(amount: Any) -> None:
    assert accepted_by_both(MoneyIn, amount) == (True, True)


@pytest.mark.parametrize(
    "amount", ["", "-0.00", "1.234", "\u0661\u0665", " 12", 1e-7, -1, True, "12345678901"]
)
def test_an_amount_the_document_refuses_is_refused(amount: Any) -> None:
    assert accepted_by_both(MoneyIn, amount) == (False, False)


@pytest.mark.parametrize("moment", ["0", "1700000000", 0, "2030-01-01 20:00:00Z", "2030-01-01T20:00Z"])
def test_a_moment_is_iso_text_not_a_number(moment: Any) -> None:
    assert accepted_by_both(IsoMoment, moment) == (False, False)


def test_a_moment_written_as_rfc_3339_is_taken() -> None:
    assert accepted_by_both(IsoMoment, "2030-01-01T20:00:00.5-03:00") == (True, True)


@pytest.mark.parametrize(
    ("value", "taken"), [(3, True), (3.0, True), (3.5, False), ("3", False), (True, False)]
)
def test_an_id_is_a_json_integer(value: Any, taken: bool) -> None:
    # To JSON Schema 3.0 is the integer 3; a string or a boolean is no id.
    assert accepted_by_both(DatabaseId, value) == (taken, taken)
    if taken:
        assert TypeAdapter(DatabaseId).validate_python(value) == 3


def test_a_given_key_may_be_left_out_but_not_sent_as_null() -> None:
    assert Patch.model_validate({}).model_fields_set == set()
    with pytest.raises(ValidationError, match="must not be null"):
        Patch.model_validate({"name": None})
    assert Patch.model_json_schema()["properties"]["name"] == {"title": "Name", "type": "string"}


class Named(ApiInput):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=PRINTABLE_TEXT)]


@pytest.mark.parametrize(
    ("name", "taken"),
    [
        ("Noche de Rock", True),
        ("名前", True),
        (" Rock", False),
        ("\nRock\t", False),
        ("\u3000名前\u3000", False),
        (" ", False),
        ("\u0085", False),  # a space to str.isspace()
        ("  \u00a0 ", False),
        ("Ro\nck", False),
        ("a\u202eb", False),
    ],
)
def test_a_name_the_document_allows_is_the_name_the_model_takes(name: str, taken: bool) -> None:
    schema = jsonschema_rs.validator_for(Named.model_json_schema()["properties"]["name"])
    try:
        Named.model_validate({"name": name})
        validated = True
    except ValidationError:
        validated = False
    assert (schema.is_valid(name), validated) == (taken, taken)
