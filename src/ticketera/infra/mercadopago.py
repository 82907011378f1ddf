"""Our async MercadoPago client: preferences, payment read and search, refunds, cancellation.

Written on httpx rather than wrapping the official SDK, which is sync (requests), hides its base URL
(no simulator), sends a random idempotency key per call (so our retries would charge twice) and does
not retry POSTs. Here every write carries an `X-Idempotency-Key` built by the caller from domain ids,
retries follow the deployment guide (at most 3 retries, exponential backoff with full jitter, only
for connection errors, timeouts, 429 and 5xx, never another 4xx) and every attempt goes through the
`mercadopago` circuit breaker (3 consecutive failures -> open 2 minutes -> one half-open probe).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
import structlog

from ticketera.kit.aiohttp_transport import AiohttpTransport
from ticketera.kit.errors import ServiceUnavailable
from ticketera.kit.resilience import (
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
    RetryPolicy,
    breaker_for,
    call_with_resilience,
)

log = structlog.get_logger(__name__)

# "Max 3 reintentos": the first attempt plus three retries.
MAX_ATTEMPTS = 4
DEFAULT_TIMEOUT_SECONDS = 10.0
CONNECT_TIMEOUT_SECONDS = 3.0
USER_AGENT = "ticketera-mercadopago/1"
MAX_CONNECTIONS = 50


class PaymentsUnavailable(ServiceUnavailable):
    """MercadoPago cannot be reached now (breaker open, or retries exhausted)."""

    code = "payments_unavailable"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class MercadoPagoError(Exception):
    """MercadoPago answered a request with an error that retrying will not fix (a 4xx)."""

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body if isinstance(body, dict) else {"message": str(body)}
        causes = self.body.get("cause") or []
        self.cause_codes = {str(cause.get("code")) for cause in causes if isinstance(cause, dict)}
        super().__init__(f"MercadoPago answered {status}: {self.body.get('message', '')}")


class _RetryableStatus(Exception):
    """429 or 5xx: MercadoPago is overloaded or failing, worth another attempt."""

    def __init__(self, status: int) -> None:
        super().__init__(f"MercadoPago answered {status}")
        self.status = status

    @classmethod
    def check(cls, response: httpx.Response) -> httpx.Response:
        """The response, unless it says MercadoPago is overloaded or failing."""
        if response.status_code == 429 or response.status_code >= 500:
            raise cls(response.status_code)
        return response


def is_dependency_failure(exc: BaseException) -> bool:
    """What counts against the breaker and is retried: the service failing, not our request.

    Waiting too long for one of our own pooled connections (PoolTimeout) says we are busy, not that
    MercadoPago is down: counting it would let our own rush open the breaker.
    """
    if isinstance(exc, httpx.PoolTimeout):
        return False
    return isinstance(exc, (httpx.TransportError, _RetryableStatus))


@dataclass(frozen=True)
class Preference:
    id: str
    init_point: str


@dataclass(frozen=True)
class ProviderPayment:
    """A payment as MercadoPago reports it; the fields our rules read, and the rest in `raw`."""

    id: str
    status: str
    status_detail: str | None
    external_reference: str | None
    amount: Decimal
    refunded_amount: Decimal
    currency: str | None
    payment_type: str | None
    last_updated: datetime | None
    raw: Mapping[str, Any] = field(repr=False)

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> ProviderPayment:
        return cls(
            id=str(body["id"]),
            status=str(body.get("status") or "unknown"),
            status_detail=body.get("status_detail"),
            external_reference=body.get("external_reference"),
            amount=_decimal(body.get("transaction_amount")),
            refunded_amount=_decimal(body.get("transaction_amount_refunded")),
            currency=body.get("currency_id"),
            payment_type=body.get("payment_type_id"),
            last_updated=_timestamp(body.get("date_last_updated")),
            raw=body,
        )


@dataclass(frozen=True)
class Refund:
    id: str
    payment_id: str
    amount: Decimal
    status: str


class MercadoPagoClient:
    """One per process; holds a connection pool. `breaker` is exposed for /health and /metrics."""

    def __init__(
        self,
        access_token: str,
        *,
        base_url: str,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        breaker_clock: Callable[[], float] = time.monotonic,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.breaker: CircuitBreaker = breaker_for(
            "mercadopago", clock=breaker_clock, counts_as_failure=is_dependency_failure
        )
        self._retry = retry or RetryPolicy(
            max_attempts=MAX_ATTEMPTS, base_delay=0.2, max_delay=2.0, is_retryable=is_dependency_failure
        )
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT_SECONDS),
            headers={"Authorization": f"Bearer {access_token}", "User-Agent": USER_AGENT},
            # On aiohttp's connections: a fifth of httpcore's CPU per call (see its module).
            transport=transport or AiohttpTransport(max_connections=MAX_CONNECTIONS),
        )

    async def close(self) -> None:
        await self._http.aclose()

    def ensure_available(self) -> None:
        """Fail fast while the breaker is open, before any work that would need MercadoPago."""
        if self.breaker.state is BreakerState.OPEN:
            raise PaymentsUnavailable(
                "Payments are unavailable right now; your seats stay held, try again shortly.",
                retry_after=self.breaker.seconds_until_probe,
            )

    # -- the API ------------------------------------------------------------------------------

    async def create_preference(self, body: Mapping[str, Any], *, idempotency_key: str) -> Preference:
        answer = await self._request(
            "POST", "/checkout/preferences", json=body, idempotency_key=idempotency_key
        )
        return Preference(id=str(answer["id"]), init_point=str(answer["init_point"]))

    async def get_payment(self, payment_id: str) -> ProviderPayment:
        return ProviderPayment.of(await self._request("GET", f"/v1/payments/{int(payment_id)}"))

    async def search_payments(self, external_reference: str, *, limit: int = 30) -> list[ProviderPayment]:
        answer = await self._request(
            "GET",
            "/v1/payments/search",
            params={
                "external_reference": external_reference,
                "sort": "date_created",
                "criteria": "desc",
                "limit": limit,
            },
        )
        return [ProviderPayment.of(result) for result in answer.get("results", [])]

    async def refund_payment(
        self, payment_id: str, *, idempotency_key: str, amount: Decimal | None = None
    ) -> Refund:
        body: dict[str, Any] = {} if amount is None else {"amount": float(amount)}
        answer = await self._request(
            "POST",
            f"/v1/payments/{int(payment_id)}/refunds",
            json=body,
            idempotency_key=idempotency_key,
        )
        return Refund(
            id=str(answer["id"]),
            payment_id=str(answer.get("payment_id", payment_id)),
            amount=_decimal(answer.get("amount")),
            status=str(answer.get("status", "approved")),
        )

    async def cancel_payment(self, payment_id: str, *, idempotency_key: str) -> ProviderPayment:
        answer = await self._request(
            "PUT",
            f"/v1/payments/{int(payment_id)}",
            json={"status": "cancelled"},
            idempotency_key=idempotency_key,
        )
        return ProviderPayment.of(answer)

    # -- plumbing -----------------------------------------------------------------------------

    async def answers(self) -> None:
        """One cheap authenticated read that bypasses the breaker and the retries (the breaker's
        background probe): a search for a reference no order has. Raises unless MercadoPago answers."""
        _RetryableStatus.check(
            await self._http.get(
                "/v1/payments/search", params={"external_reference": "ticketera-probe", "limit": 1}
            )
        )

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        headers = {"X-Idempotency-Key": idempotency_key} if idempotency_key else None

        async def attempt() -> httpx.Response:
            return _RetryableStatus.check(
                await self._http.request(method, path, json=json, params=params, headers=headers)
            )

        started = time.perf_counter()
        try:
            response = await call_with_resilience(self.breaker, self._retry, attempt)
        except CircuitOpenError as exc:
            raise PaymentsUnavailable(
                "Payments are unavailable right now; try again shortly.", retry_after=exc.retry_after
            ) from exc
        except (httpx.TransportError, _RetryableStatus) as exc:
            log.warning("mercadopago.unavailable", method=method, path=path, error=type(exc).__name__)
            raise PaymentsUnavailable("MercadoPago is not answering; try again shortly.") from exc
        elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
        if response.status_code >= 400:
            log.warning("mercadopago.rejected", method=method, path=path, status=response.status_code)
            raise MercadoPagoError(response.status_code, _json_or_text(response))
        log.debug("mercadopago.called", method=method, path=path, ms=elapsed_ms)
        body = _json_or_text(response)
        return body if isinstance(body, dict) else {}


def _json_or_text(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def _decimal(value: Any) -> Decimal:
    if value is None:
        return Decimal("0")
    return Decimal(str(value)).quantize(Decimal("0.01"))


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
