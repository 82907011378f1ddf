"""MercadoPago's error shape: `{"message", "error", "status", "cause": [{"code", "description"}]}`."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

# Cause codes MercadoPago documents for the calls the simulator answers.
PAYMENT_NOT_FOUND = 2000
INVALID_PAYMENT_STATE = 2063  # "The action requested is not valid for the current payment state"
INVALID_TRANSACTION_AMOUNT = 4037
INVALID_PAYER_EMAIL = 4050
IDEMPOTENCY_KEY_MISSING = 4292

# The `error` word MercadoPago pairs with each HTTP status.
_ERROR_WORDS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    410: "gone",
    429: "too_many_requests",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}


def error_word(status: int) -> str:
    return _ERROR_WORDS.get(status, "bad_request" if status < 500 else "internal_error")


class MPError(Exception):
    """An answer in MercadoPago's error shape; raised by the store, rendered by the app."""

    def __init__(
        self, status: int, message: str, *, code: int | str | None = None, error: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.error = error or error_word(status)

    def to_body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, code=self.code, error=self.error)


def error_body(
    status: int, message: str, *, code: int | str | None = None, error: str | None = None
) -> dict[str, Any]:
    cause = [] if code is None else [{"code": code, "description": message}]
    return {"message": message, "error": error or error_word(status), "status": status, "cause": cause}


def error_response(error: MPError) -> JSONResponse:
    return JSONResponse(error.to_body(), status_code=error.status)
