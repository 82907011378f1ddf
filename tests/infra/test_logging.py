"""Log lines: JSON in production, readable in development, always JSON in the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import structlog

from ticketera.infra.logging import LOG_FILE_NAME, configure_logging


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
