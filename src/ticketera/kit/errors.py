"""Errors that carry their HTTP status and the contract's error code.

Services raise these; one handler in `ticketera.main` renders every one of them as
`{"error": code, "message": text, ...details}`.
"""

from __future__ import annotations

from typing import Any, ClassVar

INTERNAL_ERROR_BODY = {
    "error": "internal_error",
    "message": "Something went wrong on our side; it has been logged.",
}


class DomainError(Exception):
    status_code: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    # Seconds a client should wait before trying again, sent as Retry-After when set.
    retry_after: float | None = None

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.details}


class NotFound(DomainError):
    status_code = 404
    code = "not_found"


class Unauthorized(DomainError):
    status_code = 401
    code = "unauthorized"


class Forbidden(DomainError):
    status_code = 403
    code = "forbidden"


class Conflict(DomainError):
    status_code = 409
    code = "conflict"


class InvalidInput(DomainError):
    """Input that passed the schema but breaks a rule; rendered like a validation error."""

    status_code = 422
    code = "validation_error"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", fields=[{"field": field, "message": message}])


class ServiceUnavailable(DomainError):
    status_code = 503
    code = "service_unavailable"
