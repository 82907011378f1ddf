"""The simulator on a free port, a client for it, and a webhook receiver that verifies like the service.

Each test gets a fresh simulator (retries compressed to fractions of a second) and, when it asks, a
receiver: a small FastAPI app under uvicorn that records every delivery, answers the statuses a test
queues (then 200) and checks signatures the way MERCADOPAGO.md tells the service to: data.id from the
query, the original casing or lowercased, ts in seconds or milliseconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from tests.mpsim_server import running_simulator, serving_asgi

SIM_TOKEN = "TEST-sim-token"
SIM_SECRET = "sim-webhook-secret"
AUTH = {"Authorization": f"Bearer {SIM_TOKEN}"}


def idempotency(key: str | None = None) -> dict[str, str]:
    return {"X-Idempotency-Key": key or uuid.uuid4().hex}


@dataclass
class Delivery:
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any]
    answered: int

    @property
    def kind(self) -> str:
        return "webhook" if "data.id" in self.query else "ipn"

    @property
    def request_id(self) -> str:
        return self.headers["x-request-id"]

    @property
    def ts(self) -> int:
        return int(self.signature_parts()["ts"])

    def signature_parts(self) -> dict[str, str]:
        pairs = (part.split("=", 1) for part in self.headers["x-signature"].split(","))
        return {key.strip(): value.strip() for key, value in pairs}

    def signed_with(self, secret: str) -> str | None:
        """Which casing of data.id the signature was made with ("original" or "lower"), or None."""
        parts = self.signature_parts()
        data_id = self.query["data.id"]
        for casing, candidate in (("original", data_id), ("lower", data_id.lower())):
            manifest = f"id:{candidate};request-id:{self.request_id};ts:{parts['ts']};"
            expected = hmac.new(secret.encode(), manifest.encode(), hashlib.sha256).hexdigest()
            if hmac.compare_digest(expected, parts["v1"]):
                return casing
        return None


class WebhookReceiver:
    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.answers: list[int] = []
        self.url = ""
        self._arrived = asyncio.Condition()
        self.app = FastAPI()
        self.app.add_api_route("/hooks", self._receive, methods=["POST"])

    async def _receive(self, request: Request) -> Response:
        status = self.answers.pop(0) if self.answers else 200
        body = await request.json() if await request.body() else {}
        delivery = Delivery(dict(request.query_params), dict(request.headers), body, status)
        async with self._arrived:
            self.deliveries.append(delivery)
            self._arrived.notify_all()
        return Response(status_code=status)

    def of_kind(self, kind: str) -> list[Delivery]:
        return [delivery for delivery in self.deliveries if delivery.kind == kind]

    async def wait_for(self, count: int, *, kind: str = "webhook", seconds: float = 5.0) -> list[Delivery]:
        """At least `count` deliveries of this kind, waiting up to `seconds` for them."""
        async with asyncio.timeout(seconds), self._arrived:
            await self._arrived.wait_for(lambda: len(self.of_kind(kind)) >= count)
        return self.of_kind(kind)


@pytest.fixture
async def sim() -> AsyncIterator[str]:
    async with running_simulator(SIM_TOKEN, SIM_SECRET) as base_url:
        yield base_url


@pytest.fixture
async def mp(sim: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client for the simulator: the official API with the bearer, and the control API."""
    async with httpx.AsyncClient(base_url=sim, headers=AUTH, timeout=10) as client:
        yield client


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    hooks = WebhookReceiver()
    async with serving_asgi(hooks.app) as base_url:
        hooks.url = f"{base_url}/hooks"
        yield hooks


async def create_preference(mp: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "items": [
            {"id": "seat-1", "title": "Platea A-1", "quantity": 2, "unit_price": 1500.5, "currency_id": "ARS"}
        ],
        "payer": {"email": "buyer@example.com"},
        "external_reference": "order-42",
        "back_urls": {
            "success": "http://shop.test/return/success?order=42",
            "pending": "http://shop.test/return/pending",
            "failure": "http://shop.test/return/failure",
        },
        "auto_return": "approved",
    }
    body.update(fields)
    response = await mp.post("/checkout/preferences", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def create_payment(
    mp: httpx.AsyncClient, first_name: str = "APRO", key: str | None = None, **fields: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "transaction_amount": 3001,
        "description": "2 tickets",
        "payment_method_id": "master",
        "payer": {"email": "buyer@example.com", "first_name": first_name},
        "external_reference": "order-42",
    }
    body.update(fields)
    response = await mp.post("/v1/payments", json=body, headers=idempotency(key))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def drain(mp: httpx.AsyncClient, seconds: float = 5.0) -> None:
    response = await mp.post("/_sim/notifications/drain", params={"timeout": seconds})
    assert response.json() == {"drained": True}, response.text


async def notifications(mp: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    response = await mp.get("/_sim/notifications", params=params)
    assert response.status_code == 200
    records: list[dict[str, Any]] = response.json()
    return records
