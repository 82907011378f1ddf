"""What each operation can answer, in the OpenAPI document.

Every error answer has one body, `{"error": code, "message": text, ...details}` (`ErrorOut`; a 422
adds `fields`). A route declares the errors it can answer by their classes (`answers(EventNotFound,
SeatsUnavailable)`), so the document lists the status and code each class carries rather than what
someone remembered; each status's codes are listed in its description and, for tools, in
`x-error-codes`. What every operation can answer (a body too large, a database away) is added to
the whole document in one place (`ticketera.main`) with `add_answer`.
"""

from __future__ import annotations

import http
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from pydantic import ConfigDict

from ticketera.kit.errors import DomainError
from ticketera.kit.schemas import ApiOutput

REF_PREFIX = "#/components/schemas/"
# The codes a status of an operation answers with, machine-readable (the description says the same).
CODES = "x-error-codes"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# Answers after which a client should wait, told how long by Retry-After (whole seconds).
RETRY_AFTER_STATUSES = (429, 503)
OR = "; or "
BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")

Answers = dict[int | str, dict[str, Any]]
Operation = dict[str, Any]


class ErrorOut(ApiOutput):
    """Every error answer: a stable code to branch on, a sentence for people, and the details some
    codes add (`reason`, `seats`, `field`...)."""

    model_config = ConfigDict(extra="allow")

    error: str
    message: str


class FieldErrorOut(ApiOutput):
    # The field as the client wrote it: `sections[0].price`, or `body` for the body as a whole.
    field: str
    message: str


class ValidationErrorOut(ErrorOut):
    """A request the schema or a rule refuses (422): each wrong field, named as the client wrote it."""

    fields: list[FieldErrorOut]


def answers(*errors: type[DomainError]) -> Answers:
    """The `responses=` of a route that can raise these errors: one entry per status, its codes
    listed."""
    by_status: dict[int, list[str]] = {}
    for error in errors:
        codes = by_status.setdefault(error.status_code, [])
        if error.code not in codes:
            codes.append(error.code)
    return {status: error_answer(status, codes) for status, codes in sorted(by_status.items())}


def error_answer(status: int, codes: Iterable[str]) -> dict[str, Any]:
    """An error answer with these codes. The body's schema is named explicitly (not as a route's
    `model`): FastAPI would file a model under the route's own media type, image/png for a QR code,
    while errors are always JSON."""
    listed = sorted(set(codes))
    model = ValidationErrorOut if status == 422 else ErrorOut
    answer: dict[str, Any] = {
        "description": _describe(status, listed),
        "content": {"application/json": {"schema": {"$ref": REF_PREFIX + model.__name__}}},
        CODES: listed,
    }
    if status in RETRY_AFTER_STATUSES:
        answer["headers"] = {
            "Retry-After": {
                "description": "seconds to wait before trying again",
                "schema": {"type": "integer", "minimum": 1},
            }
        }
    return answer


def add_answer(
    document: dict[str, Any],
    status: int,
    codes: Iterable[str],
    *,
    where: Callable[[str, str, Operation], bool] = lambda _path, _method, _operation: True,
) -> None:
    """Declare that the operations `where` selects (path, method, operation) can answer `status`
    with `codes`, merged with what they already declare. Safe to repeat."""
    for path, method, operation in operations(document):
        if where(path, method, operation):
            merge_answer(operation, status, codes)


def merge_answer(operation: Operation, status: int, codes: Iterable[str]) -> None:
    responses = operation.setdefault("responses", {})
    existing = responses.get(str(status)) or {}
    merged = error_answer(status, [*existing.get(CODES, []), *codes])
    media = merged["content"]["application/json"]
    error_schema = media["schema"]
    own = existing.get("content", {}).get("application/json", {}).get("schema")
    if isinstance(own, dict) and error_schema in own.get("anyOf", []):
        own = next(schema for schema in own["anyOf"] if schema != error_schema)  # merged before
    # FastAPI's own 422 is replaced: the app renders every validation error in the error body.
    if own is not None and own != error_schema and status != 422:
        # The same status with a body of its own (a scan's 409 `already_checked_in`): either one.
        media["schema"] = {"anyOf": [own, error_schema]}
        own_description = existing.get("description", "").split(OR)[0]
        merged["description"] = f"{own_description}{OR}{merged['description']}"
    responses[str(status)] = merged


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, Operation]]:
    for path, item in document.get("paths", {}).items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def add_error_schemas(document: dict[str, Any]) -> None:
    """The error bodies' schemas, under the names `error_answer` refers to."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for model in (ErrorOut, ValidationErrorOut):
        schema = model.model_json_schema(ref_template=REF_PREFIX + "{model}", mode="serialization")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema


def restore_integer_bounds(node: Any, *, largest: int) -> None:
    """FastAPI's OpenAPI models keep bounds as floats (`fastapi.openapi.models.Schema.maximum:
    float`), which writes `le=100` as 100.0 and rounds `largest` (2**63 - 1) up to 2**63, a value
    the service refuses: whole bounds are written back as integers, `largest` exactly."""
    if isinstance(node, list):
        for item in node:
            restore_integer_bounds(item, largest=largest)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key in BOUNDS and isinstance(value, float) and value.is_integer():
                node[key] = largest if value == float(largest) else int(value)
            else:
                restore_integer_bounds(value, largest=largest)


def _describe(status: int, codes: list[str]) -> str:
    phrase = http.HTTPStatus(status).phrase
    return f"{phrase}: " + ", ".join(f"`{code}`" for code in codes) if codes else phrase
