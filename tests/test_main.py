"""The app as `create_app` assembles it: the OpenAPI document's answers, the answers the app gives
before any route runs (a body that is not JSON, a method the path does not serve), and how its
background loops stop with it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from tests.conftest import ADMIN, make_settings
from ticketera import main
from ticketera.config import Settings
from ticketera.kit.db import MAX_ID
from ticketera.main import create_app
from ticketera.payments.tasks import PaymentProcessor


@pytest.fixture
async def unstarted(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An app whose lifespan never runs: enough for the document and for what is answered before
    a handler needs the database."""
    app = create_app(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}", tmp_path))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        yield http


async def document(http: httpx.AsyncClient) -> dict[str, Any]:
    response = await http.get("/openapi.json")
    assert response.status_code == 200
    found: dict[str, Any] = response.json()
    return found


async def test_an_operation_declares_what_its_errors_answer(unstarted: httpx.AsyncClient) -> None:
    hold = (await document(unstarted))["paths"]["/api/events/{event_id}/holds"]["post"]["responses"]

    assert set(hold) == {"201", "403", "404", "409", "413", "422", "503"}
    assert hold["403"]["x-error-codes"] == ["access_required"]
    assert {"seats_unavailable", "limit_exceeded", "sales_closed", "resource_busy"} <= set(
        hold["409"]["x-error-codes"]
    )
    assert "`seats_unavailable`" in hold["409"]["description"]
    assert hold["409"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorOut"}
    assert hold["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ValidationErrorOut"
    }
    assert hold["503"]["x-error-codes"] == ["database_unavailable", "server_busy"]
    assert "Retry-After" in hold["503"]["headers"]


async def test_every_operation_declares_the_answers_every_operation_can_give(
    unstarted: httpx.AsyncClient,
) -> None:
    spec = await document(unstarted)
    paths = spec["paths"]

    for path, item in paths.items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert responses["413"]["x-error-codes"] == ["payload_too_large"], (method, path)
            if path.startswith("/api/") and "/qr." not in path:
                assert "database_unavailable" in responses["503"]["x-error-codes"], (method, path)
    # A QR image is drawn from the code alone; the admin's list is rate limited, not locked.
    assert "503" not in paths["/api/tickets/{code}/qr.png"]["get"]["responses"]
    assert "409" not in paths["/api/events"]["get"]["responses"]
    assert "429" in paths["/api/events"]["get"]["responses"]
    # FastAPI's own validation body is not what the app answers.
    assert "HTTPValidationError" not in spec["components"]["schemas"]


async def test_a_scan_s_conflict_is_either_its_result_or_a_busy_row(unstarted: httpx.AsyncClient) -> None:
    await document(unstarted)
    # The document is amended each time it is asked for: the second time reads the same.
    checkin = (await document(unstarted))["paths"]["/api/checkin"]["post"]["responses"]

    assert checkin["410"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ScanOut"}
    assert checkin["409"]["content"]["application/json"]["schema"] == {
        "anyOf": [{"$ref": "#/components/schemas/ScanOut"}, {"$ref": "#/components/schemas/ErrorOut"}]
    }


async def test_integer_bounds_are_exact_integers(unstarted: httpx.AsyncClient) -> None:
    # FastAPI's models hold bounds as floats: 2**63 - 1 would be written 2**63, an id the service refuses.
    spec = await document(unstarted)
    event_id = spec["paths"]["/api/events/{event_id}"]["get"]["parameters"][0]["schema"]
    quantity = spec["components"]["schemas"]["QuantityHold"]["properties"]["quantity"]

    assert (event_id["minimum"], event_id["maximum"]) == (1, MAX_ID)
    assert isinstance(event_id["maximum"], int)
    assert (quantity["minimum"], quantity["maximum"]) == (1, 100)
    # Bounds pydantic could not place (after a validator) would come out as bare `ge`/`le` keys.
    assert not {"ge", "le", "gt", "lt"} & set(keys_of(spec))


def keys_of(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [*node, *(key for value in node.values() for key in keys_of(value))]
    if isinstance(node, list):
        return [key for item in node for key in keys_of(item)]
    return []


async def test_a_body_that_is_not_utf8_is_malformed_json(unstarted: httpx.AsyncClient) -> None:
    response = await unstarted.post(
        "/api/events", content=b"\xff\xfe{", headers={**ADMIN, "Content-Type": "application/json"}
    )

    assert response.status_code == 422, response.text
    assert response.json() == {
        "error": "validation_error",
        "message": "body: the request body is not valid JSON",
        "fields": [{"field": "body", "message": "the request body is not valid JSON"}],
    }


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/api/events/5", "GET, PATCH"),
        ("PUT", "/api/events", "GET, POST"),
        ("POST", "/api/holds/h_abc", "GET, DELETE"),
        ("GET", "/api/checkin", "POST"),
        # Starlette's own routes answer HEAD for GET, and say so.
        ("POST", "/openapi.json", "GET, HEAD"),
    ],
)
async def test_a_method_the_path_does_not_serve_lists_every_one_it_does(
    unstarted: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    response = await unstarted.request(method, path)

    assert response.status_code == 405
    assert response.headers["allow"] == allow
    assert response.json()["error"] == "method_not_allowed"


async def started_and_stopped(settings: Settings, *, ticker: bool = True) -> list[MutableMapping[str, Any]]:
    """The log of an app started and stopped with its background loops: the notification pump, the
    in-process worker and (unless told) the admission ticker. (Captured once the app is built:
    building it configures the logging.)"""
    app = create_app(settings.model_copy(update={"queue_ticker": ticker, "worker_in_process": True}))
    with capture_logs() as logs:
        async with app.router.lifespan_context(app):
            await asyncio.sleep(0.05)
    return logs


async def test_the_app_stops_its_background_loops_between_steps(settings: Settings) -> None:
    events = [line["event"] for line in await started_and_stopped(settings)]
    assert "worker.stopped" in events
    assert "app.background_cut_off" not in events
    assert events[-1] == "app.stopped"


async def test_a_step_that_outlasts_the_grace_is_cut_off_and_named(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def stuck_pass(self: PaymentProcessor, **_: Any) -> dict[str, int]:
        await asyncio.Event().wait()
        raise AssertionError("never released")

    monkeypatch.setattr(PaymentProcessor, "run_pass", stuck_pass)
    monkeypatch.setattr(main, "BACKGROUND_STOP_GRACE_SECONDS", 1.0)
    # No ticker: on a busy machine its first tick could outlast so short a grace too.
    logs = await started_and_stopped(settings, ticker=False)
    cut_off = [line for line in logs if line["event"] == "app.background_cut_off"]
    assert [line["tasks"] for line in cut_off] == [["expiry-worker"]]
    assert logs[-1]["event"] == "app.stopped"
