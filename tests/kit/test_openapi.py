"""The OpenAPI answers built from error classes, merged, and written with exact bounds."""

from __future__ import annotations

from typing import Any

from ticketera.kit.errors import Conflict, NotFound
from ticketera.kit.openapi import add_answer, answers, restore_integer_bounds


class Taken(Conflict):
    code = "taken"


class Gone(NotFound):
    code = "gone"


class Busy(Conflict):
    code = "busy"


def test_answers_group_errors_by_status_and_list_their_codes() -> None:
    declared = answers(Taken, Gone, Busy, Taken)

    assert sorted(declared) == [404, 409]
    assert declared[409]["x-error-codes"] == ["busy", "taken"]
    assert declared[409]["description"] == "Conflict: `busy`, `taken`"
    assert declared[404]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorOut"}


def test_an_answer_added_to_the_document_merges_with_the_route_s_own() -> None:
    document: dict[str, Any] = {
        "paths": {
            "/a": {"post": {"responses": {"409": {"x-error-codes": ["taken"], "description": "x"}}}},
            "/b": {
                "post": {
                    "responses": {
                        "409": {
                            "description": "`already_done`",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/Done"}}
                            },
                        }
                    }
                }
            },
        }
    }

    add_answer(document, 409, ["busy"])
    add_answer(document, 409, ["busy"])

    merged = document["paths"]["/a"]["post"]["responses"]["409"]
    assert merged["x-error-codes"] == ["busy", "taken"]
    own = document["paths"]["/b"]["post"]["responses"]["409"]
    assert own["content"]["application/json"]["schema"] == {
        "anyOf": [{"$ref": "#/components/schemas/Done"}, {"$ref": "#/components/schemas/ErrorOut"}]
    }


def test_integer_bounds_written_as_floats_are_integers_again() -> None:
    largest = 2**63 - 1
    schema: dict[str, Any] = {
        "properties": {
            "id": {"type": "integer", "minimum": 1.0, "maximum": float(largest)},
            "price": {"type": "number", "maximum": 9999999999.99},
        },
        "items": [{"exclusiveMaximum": 100.0}],
    }

    restore_integer_bounds(schema, largest=largest)

    assert schema["properties"]["id"]["maximum"] == largest
    assert isinstance(schema["properties"]["id"]["minimum"], int)
    assert schema["properties"]["price"]["maximum"] == 9999999999.99
    assert schema["items"][0]["exclusiveMaximum"] == 100
