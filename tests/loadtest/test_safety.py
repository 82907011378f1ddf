"""The load test talks only to the addresses it was given, and to this machine unless told otherwise."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from ticketera.cli import app as cli
from ticketera.loadtest.fans import same_server
from ticketera.loadtest.safety import (
    OffTargetRequest,
    TargetRefused,
    check_address,
    guarded_client,
    is_loopback,
)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("10.0.0.5", False),
        ("192.0.2.10", False),
        ("ticketera.example.com", False),
        ("localhost.evil.test", False),
    ],
)
def test_only_loopback_addresses_and_localhost_are_this_machine(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_a_remote_target_is_refused_unless_the_operator_owns_it() -> None:
    with pytest.raises(TargetRefused, match="--i-own-this"):
        check_address("http://192.0.2.10:3000", "--url", i_own_this=False)
    assert check_address("http://192.0.2.10:3000/", "--url", i_own_this=True) == "http://192.0.2.10:3000"
    with pytest.raises(TargetRefused, match="not an http"):
        check_address("ftp://127.0.0.1/", "--url", i_own_this=True)


def test_the_command_refuses_a_remote_url_before_sending_anything() -> None:
    # 192.0.2.0/24 is reserved for documentation: nothing answers there, so a request would hang or fail
    # with a transport error, not this refusal.
    result = CliRunner().invoke(
        cli, ["loadtest", "--url", "http://192.0.2.10:3000", "--fans", "1", "--no-live"]
    )

    assert result.exit_code == 2, result.output
    assert "--i-own-this" in result.output


def test_the_command_refuses_a_remote_simulator_too() -> None:
    arguments = ["loadtest", "--url", "http://127.0.0.1:9", "--simulator-url", "http://192.0.2.10:8090"]
    result = CliRunner().invoke(cli, [*arguments, "--fans", "1", "--no-live"])

    assert result.exit_code == 2, result.output
    assert "--simulator-url" in result.output


async def test_the_client_refuses_any_other_origin_and_follows_no_redirect() -> None:
    async with guarded_client(
        "http://127.0.0.1:9", ["http://127.0.0.1:9", "http://localhost:8090"], connections=1, timeout=1
    ) as client:
        assert client.follow_redirects is False
        for elsewhere in ("http://192.0.2.10:9/", "http://127.0.0.1:10/", "https://127.0.0.1:9/"):
            with pytest.raises(OffTargetRequest):
                await client.get(elsewhere)


def test_a_checkout_on_the_simulators_port_is_the_simulators_whatever_loopback_name_it_uses() -> None:
    import httpx

    simulator = httpx.URL("http://127.0.0.1:8090")
    assert same_server(httpx.URL("http://localhost:8090/checkout/v1/redirect?pref_id=1"), simulator)
    assert not same_server(httpx.URL("http://localhost:8091/checkout/v1/redirect?pref_id=1"), simulator)
    assert not same_server(httpx.URL("https://www.mercadopago.com.ar/checkout?pref_id=1"), simulator)
