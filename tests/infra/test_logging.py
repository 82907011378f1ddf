"""Log lines: JSON in production, readable in development, always JSON in the file."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import structlog
from fastapi import Request

from tests.conftest import ADMIN, make_settings
from ticketera.infra.logging import LOG_FILE_NAME, REDACTED, Redactor, configure_logging
from ticketera.kit.db import create_engine
from ticketera.kit.migrate import upgrade
from ticketera.main import create_app
from ticketera.tickets.documents import PrintedOrder, PrintedTicket, order_pdf


@pytest.fixture(autouse=True)
def _restore_logging() -> object:
    yield
    configure_logging(json_console=False, level="WARNING", cache_loggers=False)


def test_production_console_and_file_are_json_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(json_console=True, level="INFO", log_dir=tmp_path, cache_loggers=False)

    with structlog.contextvars.bound_contextvars(request_id="r-1"):
        structlog.get_logger("ticketera.test").info("order.paid", order_id=7, total="15000.00")

    console = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    stored = json.loads((tmp_path / LOG_FILE_NAME).read_text().strip().splitlines()[-1])
    for line in (console, stored):
        assert line["event"] == "order.paid"
        assert (line["order_id"], line["request_id"], line["level"]) == (7, "r-1", "info")
        assert line["timestamp"].endswith("Z")


def test_development_console_is_readable_and_stdlib_loggers_are_structured(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging

    configure_logging(json_console=False, level="INFO", log_dir=tmp_path, cache_loggers=False)

    structlog.get_logger("ticketera.test").warning("breaker.opened", breaker="redis")
    logging.getLogger("uvicorn.error").info("Started server process")

    console = capsys.readouterr().err
    assert "breaker.opened" in console
    assert "breaker=redis" in console
    assert not console.lstrip().startswith("{")
    stored = [json.loads(line) for line in (tmp_path / LOG_FILE_NAME).read_text().splitlines()]
    assert [line["event"] for line in stored] == ["breaker.opened", "Started server process"]
    assert stored[1]["logger"] == "uvicorn.error"


def test_the_redactor_masks_credentials_by_name_and_by_value() -> None:
    redact = Redactor(["s3cr3t-admin-key", "short"])
    cleaned = redact(
        None,
        "error",
        {
            "event": "http.unhandled_error",
            "headers": {"Authorization": "Bearer s3cr3t-admin-key", "Accept": "application/json"},
            "access_token": "eyJhbGciOi",
            "detail": "connecting with s3cr3t-admin-key failed",
            "note": "short words stay",
            "big": "x" * 10_000,
        },
    )
    assert cleaned["headers"] == {"Authorization": REDACTED, "Accept": "application/json"}
    assert cleaned["access_token"] == REDACTED
    assert cleaned["detail"] == f"connecting with {REDACTED} failed"
    assert cleaned["note"] == "short words stay"
    assert len(cleaned["big"]) < 2_100


async def test_no_error_path_writes_a_secret_to_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 500 whose handler held the admin key in its locals, a 401 with a wrong key, a 422 and a
    404: the log has each of them, and none of the configured secrets, in a bounded line."""
    # A production app caches each module's logger on its first line, for good: every later test
    # that captures a line of those modules would capture nothing.
    monkeypatch.setattr(
        "ticketera.main.configure_logging",
        lambda **kwargs: configure_logging(**{**kwargs, "cache_loggers": False}),
    )
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'log.db'}", tmp_path, log_level="INFO", app_env="production"
    )
    engine = create_engine(settings.async_database_url)
    await upgrade(engine)
    await engine.dispose()
    app = create_app(settings)

    @app.get("/test/boom")
    async def boom(request: Request) -> None:
        authorization = request.headers.get("authorization")
        raise RuntimeError(f"something broke for {authorization}")

    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        assert (await http.get("/test/boom", headers=ADMIN)).status_code == 500
        wrong = {"Authorization": f"Bearer {settings.staff_api_key}-wrong"}
        assert (await http.post("/api/events", headers=wrong, json={})).status_code == 401
        assert (await http.post("/api/events", headers=ADMIN, json={"name": 1})).status_code == 422
        assert (await http.get(f"/api/orders/1?token={settings.secret_key}")).status_code in (401, 404)

    text = (settings.log_dir / LOG_FILE_NAME).read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    failure = next(line for line in lines if line["event"] == "http.unhandled_error")
    assert failure["exception"][0]["frames"], "the traceback is kept, without its locals"
    assert all("locals" not in frame for frame in failure["exception"][0]["frames"])
    for secret in settings.secret_values():
        assert secret not in text
    assert max(len(line) for line in text.splitlines()) < 20_000


def test_font_chatter_stays_out_of_the_log(tmp_path: Path) -> None:
    """fontTools writes dozens of INFO lines per PDF it embeds a font in (a name beyond Latin-1); the
    log keeps ours."""
    configure_logging(json_console=True, level="INFO", log_dir=tmp_path, cache_loggers=False)
    order_pdf(
        PrintedOrder(
            order_id=1,
            event_name="Noche de Rock",
            starts_at=datetime(2030, 3, 1, 21, tzinfo=UTC),
            venue="Estadio",
            buyer_name="Łucja",
            buyer_email="ana@example.com",
            tickets=[PrintedTicket("CODE", "Campo", None, "valid")],
            zone=UTC,
        )
    )
    structlog.get_logger("ticketera.test").info("email.sent")
    loggers = {json.loads(line)["logger"] for line in (tmp_path / LOG_FILE_NAME).read_text().splitlines()}
    assert loggers == {"ticketera.test"}
