"""MercadoPago's webhook signature, with the disagreements MERCADOPAGO.md says to tolerate."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ticketera.payments.signature import InvalidSignature, manifest, sign, verify_signature

SECRET = "webhook-secret"
NOW = datetime(2030, 3, 1, 12, 0, 0, tzinfo=UTC)
TS = str(int(NOW.timestamp()))


def header(data_id: str | None, request_id: str | None, ts: str = TS, secret: str = SECRET) -> str:
    return f"ts={ts},v1={sign(secret, manifest(data_id, request_id, ts))}"


def verify(header_value: str | None, data_id: str | None = "123", request_id: str | None = "req-1") -> None:
    verify_signature(
        header=header_value,
        request_id=request_id,
        data_id=data_id,
        secret=SECRET,
        now=NOW,
        tolerance_seconds=300,
    )


def test_manifest_leaves_out_absent_pairs_and_ends_with_a_semicolon() -> None:
    assert manifest("123", "abc", "1700") == "id:123;request-id:abc;ts:1700;"
    assert manifest(None, "abc", "1700") == "request-id:abc;ts:1700;"
    assert manifest("123", None, "1700") == "id:123;ts:1700;"


def test_a_good_signature_passes() -> None:
    verify(header("123", "req-1"))
    verify(f" ts = {TS} , v1 = {sign(SECRET, manifest('123', 'req-1', TS))} ")  # spaces tolerated


def test_timestamps_in_milliseconds_are_understood() -> None:
    ts_ms = str(int(NOW.timestamp() * 1000))
    verify(header("123", "req-1", ts=ts_ms))


@pytest.mark.parametrize("signed_id", ["AbC123xyz", "abc123xyz"])
def test_alphanumeric_ids_signed_in_either_casing_pass(signed_id: str) -> None:
    verify(header(signed_id, "req-1"), data_id="AbC123xyz")


@pytest.mark.parametrize(
    "bad_header",
    [
        None,
        "",
        "v1=abc",
        "ts=abc,v1=def",
        f"ts={TS}",
        f"ts={TS},v1={'0' * 64}",
        "ts=\u00b2,v1=" + "0" * 64,  # a digit of another script, which int() refuses
        f"ts={'9' * 5000},v1={'0' * 64}",
        f"ts={TS},v1=not-hex",
    ],
)
def test_missing_or_malformed_or_wrong_signatures_are_refused(bad_header: str | None) -> None:
    with pytest.raises(InvalidSignature):
        verify(bad_header)


def test_a_signature_with_another_secret_is_refused() -> None:
    with pytest.raises(InvalidSignature):
        verify(header("123", "req-1", secret="someone-else"))


def test_a_signature_for_another_payment_or_request_is_refused() -> None:
    with pytest.raises(InvalidSignature):
        verify(header("999", "req-1"))
    with pytest.raises(InvalidSignature):
        verify(header("123", "req-2"))


@pytest.mark.parametrize("age", [301, -301, 86_400])
def test_stale_or_future_timestamps_are_refused(age: int) -> None:
    ts = str(int(NOW.timestamp()) - age)
    with pytest.raises(InvalidSignature, match="timestamp"):
        verify(header("123", "req-1", ts=ts))
