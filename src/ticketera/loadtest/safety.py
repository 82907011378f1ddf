"""Where the load test may send traffic: the addresses it was given, and nowhere else.

A load test is a denial of service pointed where the operator says. Three rules keep it from
pointing anywhere else: only the origins of --url and --simulator-url are ever contacted (every
request is checked, so a checkout URL or a redirect naming another host is refused, not followed);
targets off this machine need --i-own-this; and the run has a time bound (runner.py).
"""

from __future__ import annotations

import ipaddress
import ssl
from functools import cache

import certifi
import httpx

from ticketera.kit.aiohttp_transport import AiohttpTransport


class TargetRefused(Exception):
    """An address the load test will not send traffic to; the message says why."""


class OffTargetRequest(httpx.RequestError):
    """A request to an origin the operator did not name (raised before anything is sent)."""


def origin_of(url: str | httpx.URL) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL, ports made explicit, so two spellings of one origin compare equal."""
    parsed = httpx.URL(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return parsed.scheme, parsed.host.lower(), port


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine: a loopback address, or the name `localhost`.

    Other names are not resolved: what a name resolves to can change between this check and the
    connection, so a name counts as another machine."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_address(url: str, what: str, *, i_own_this: bool) -> str:
    """`url` without a trailing slash if the load test may use it, else TargetRefused."""
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise TargetRefused(f"{what} {url!r} is not an http(s) URL")
    if not is_loopback(parsed.host) and not i_own_this:
        raise TargetRefused(
            f"{what} {url} is not on this machine: a load test is a flood of requests, so it only goes "
            "elsewhere when you say the deployment is yours (--i-own-this)"
        )
    return url.rstrip("/")


@cache
def tls_context() -> ssl.SSLContext:
    """One TLS context for every client of the run: each would otherwise load the CA bundle again
    (80 ms apiece, and a run opens a dozen lanes). httpx's own default: certifi's bundle."""
    return ssl.create_default_context(cafile=certifi.where())


def guarded_client(
    base_url: str,
    allowed: list[str],
    *,
    connections: int,
    timeout: float,
    streams: bool = False,
) -> httpx.AsyncClient:
    """An HTTP client that refuses any request outside the `allowed` base URLs' origins, never
    follows a redirect, and keeps at most `connections` connections.

    Its requests go over aiohttp's connections (kit.aiohttp_transport): with httpx's own transport
    the load generator spent 1.8 ms of CPU per request and, one process for 50,000 fans, set the
    pace of the sale it was measuring. A client for `streams` (server-sent events, read line by line
    as they come) keeps httpx's own transport, which hands a body over before it ends."""
    origins = {origin_of(url) for url in allowed}

    async def refuse_off_target(request: httpx.Request) -> None:
        if origin_of(request.url) not in origins:
            raise OffTargetRequest(
                f"refused: {request.url.host}:{request.url.port} was not given", request=request
            )

    return httpx.AsyncClient(
        base_url=base_url,
        follow_redirects=False,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        # The pool never makes a request wait (runner.py lets no more than `connections` be in
        # flight), so its own timeout would only hide a bug.
        timeout=httpx.Timeout(timeout, pool=None),
        event_hooks={"request": [refuse_off_target]},
        verify=tls_context(),
        transport=None if streams else AiohttpTransport(max_connections=connections, tls=tls_context()),
        headers={"User-Agent": "ticketera-loadtest"},
    )
