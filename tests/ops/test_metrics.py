"""/metrics in one process: the text parses, requests by route template, orders, holds, queues, breakers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ADMIN, DatabaseUnderTest, make_settings, services_of, serving
from tests.factories import ga_section, open_sale, place_order, take_hold
from tests.fakes import FakeClock
from ticketera.config import Settings
from ticketera.kit.resilience import breaker_for
from ticketera.orders import service as orders_service
from ticketera.queue.tasks import admission_tick

Families = dict[str, Metric]


@pytest.fixture
async def client(settings: Settings, clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(settings, clock=clock) as http:
        yield http


async def scrape(client: httpx.AsyncClient) -> Families:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def value(families: Families, sample_name: str, **labels: str) -> float | None:
    """The value of the one sample with this name and these labels (among others), if present."""
    family_name = sample_name.removesuffix("_total").removesuffix("_bucket").removesuffix("_count")
    family_name = family_name.removesuffix("_sum")
    family = families.get(family_name)
    if family is None:
        return None
    found = [
        sample.value
        for sample in family.samples
        if sample.name == sample_name and labels.items() <= sample.labels.items()
    ]
    assert len(found) <= 1, f"{sample_name}{labels} matches {len(found)} samples"
    return found[0] if found else None


def routes_seen(families: Families) -> set[str]:
    return {sample.labels["route"] for sample in families["ticketera_http_requests"].samples}


async def test_the_scrape_parses_with_every_family_and_this_processs_figures(
    client: httpx.AsyncClient,
) -> None:
    await client.get("/health/live")

    families = await scrape(client)

    kinds = {name: family.type for name, family in families.items() if name.startswith("ticketera_")}
    assert kinds == {
        "ticketera_http_requests": "counter",
        "ticketera_http_request_duration_seconds": "histogram",
        "ticketera_metrics_source_up": "gauge",
        "ticketera_orders": "gauge",
        "ticketera_holds_live": "gauge",
        "ticketera_holds_live_units": "gauge",
        "ticketera_queue_users": "gauge",
        "ticketera_queue_admitted": "counter",
        "ticketera_circuit_breaker_state": "gauge",
        "ticketera_circuit_breaker_failures": "gauge",
        "ticketera_db_pool_connections": "gauge",
        "ticketera_db_pool_limit": "gauge",
        "ticketera_db_replica_in_use": "gauge",
        "ticketera_db_replica_lag_seconds": "gauge",
        "ticketera_db_replica_reads": "gauge",
        "ticketera_process_resident_memory_bytes": "gauge",
        "ticketera_process_cpu_seconds": "gauge",
    }
    # No DATABASE_REPLICA_URL here: the replica families have no series (tests/kit/test_replicas.py has them).
    assert not families["ticketera_db_replica_in_use"].samples
    assert value(families, "ticketera_metrics_source_up", source="database") == 1
    assert value(families, "ticketera_metrics_source_up", source="queue") == 1
    assert value(families, "ticketera_db_pool_limit") == 20
    in_use = value(families, "ticketera_db_pool_connections", state="in_use")
    free = value(families, "ticketera_db_pool_connections", state="free")
    assert in_use is not None
    assert free is not None
    assert 1 <= in_use + free <= 20
    assert (value(families, "ticketera_process_resident_memory_bytes") or 0) > 10 * 2**20
    # The test process has run its imports and this app at least: some CPU time, however little.
    assert (value(families, "ticketera_process_cpu_seconds") or 0) > 0
    assert value(families, "ticketera_circuit_breaker_state", dependency="database") == 0
    assert value(families, "ticketera_circuit_breaker_failures", dependency="database") == 0
    # Redis is not configured in these tests: no series, rather than a healthy-looking 0.
    assert value(families, "ticketera_circuit_breaker_state", dependency="redis") is None


async def test_a_scraper_asking_for_openmetrics_gets_it(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})

    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")


async def test_requests_are_counted_under_their_route_template(client: httpx.AsyncClient) -> None:
    event = {"name": "Rock", "startsAt": "2099-01-01T20:00:00Z"}
    assert (await client.post("/api/events", json=event)).status_code == 401
    event_id = (await client.post("/api/events", json=event, headers=ADMIN)).json()["id"]
    for _ in range(2):
        assert (await client.get(f"/api/events/{event_id}")).status_code == 200
    assert (await client.get("/api/events/987654")).status_code == 404
    assert (await client.delete("/api/events")).status_code == 405
    assert (await client.get("/no/such/page/12345")).status_code == 404
    assert (await client.get("/openapi.json")).status_code == 200
    await scrape(client)

    families = await scrape(client)

    def requests(method: str, route: str, status: str) -> float | None:
        return value(families, "ticketera_http_requests_total", method=method, route=route, status=status)

    detail = {"method": "GET", "route": "/api/events/{event_id}", "status_class": "2xx"}
    assert requests("GET", "/api/events/{event_id}", "200") == 2
    assert requests("GET", "/api/events/{event_id}", "404") == 1
    assert requests("POST", "/api/events", "401") == 1
    assert requests("POST", "/api/events", "201") == 1
    assert requests("DELETE", "/api/events", "405") == 1
    assert requests("GET", "unmatched", "404") == 1
    assert requests("GET", "/openapi.json", "200") == 1
    assert value(families, "ticketera_http_request_duration_seconds_count", **detail) == 2
    assert value(families, "ticketera_http_request_duration_seconds_bucket", **detail, le="+Inf") == 2
    assert (value(families, "ticketera_http_request_duration_seconds_sum", **detail) or 0) > 0
    # Raw paths never become labels, and the scrapes count themselves nowhere.
    assert routes_seen(families) == {"/api/events", "/api/events/{event_id}", "/openapi.json", "unmatched"}


async def new_order(client: httpx.AsyncClient, event: dict[str, Any], user: str) -> int:
    """An order of one general admission place by `user`, awaiting payment; its id."""
    hold_id = await take_hold(client, event, user, ga_places(event, 1))
    response = await place_order(client, hold_id, buyer={"email": f"{user}@example.com", "name": user})
    assert response.status_code == 201, response.text
    order_id: int = response.json()["id"]
    return order_id


def ga_places(event: dict[str, Any], quantity: int) -> dict[str, Any]:
    return {"sectionId": event["sections"][1]["id"], "quantity": quantity}


async def test_orders_by_status_and_live_holds_follow_the_api(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    event = await open_sale(client, clock)
    await new_order(client, event, "ana")  # unpaid when its ten minutes run out
    await take_hold(client, event, "beto", ga_places(event, 3))  # runs out too
    clock.advance(11 * 60)
    await new_order(client, event, "carla")  # still within its time
    cancelled = await new_order(client, event, "dario")
    response = await client.post(f"/api/orders/{cancelled}/cancel", headers=ADMIN)
    assert response.status_code == 200, response.text
    paid = await new_order(client, event, "elsa")
    # The payment side's own step (its webhook path has tests of its own), as tests/orders confirms.
    async with services_of(client.app).database.write_session() as session:  # type: ignore[attr-defined]
        await orders_service.confirm_payment(session, paid, actor="test", now=clock())
    await take_hold(client, event, "fede", ga_places(event, 2))  # live, never ordered

    families = await scrape(client)

    orders = {sample.labels["status"]: sample.value for sample in families["ticketera_orders"].samples}
    assert orders == {"pending_payment": 1, "expired": 1, "cancelled": 1, "paid": 1, "refunded": 0}
    assert value(families, "ticketera_holds_live") == 1
    assert value(families, "ticketera_holds_live_units") == 2


async def test_figures_of_the_database_are_kept_a_few_seconds(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    event = await open_sale(client, clock)
    before = await scrape(client)

    await take_hold(client, event, "ana", ga_places(event, 1))
    after = await scrape(client)

    # Several Prometheus servers scraping every few seconds cost one read, not one each.
    assert value(before, "ticketera_holds_live") == value(after, "ticketera_holds_live") == 0


async def test_waiting_rooms_show_their_line(client: httpx.AsyncClient, clock: FakeClock) -> None:
    body = {
        "name": "Recital",
        "startsAt": (clock.now + timedelta(days=30)).isoformat().replace("+00:00", "Z"),
        "sections": [ga_section(capacity=100)],
        "queue": {"enabled": True, "admitPerMinute": 60, "maxActiveShoppers": 1000, "accessMinutes": 10},
    }
    event_id = (await client.post("/api/events", json=body, headers=ADMIN)).json()["id"]
    no_queue = await open_sale(client, clock)
    for user in range(7):
        joined = await client.post(f"/api/queue/{event_id}/join", json={"userId": f"user-{user}"})
        assert joined.status_code == 201, joined.text
    state = services_of(client.app)  # type: ignore[attr-defined]
    assert await admission_tick(state.waiting_room, state.database, clock, tick_seconds=1.0) == 5

    families = await scrape(client)

    line = str(event_id)
    assert value(families, "ticketera_queue_users", event_id=line, state="waiting") == 2
    assert value(families, "ticketera_queue_users", event_id=line, state="active") == 5
    assert value(families, "ticketera_queue_users", event_id=line, state="prequeue") == 0
    assert value(families, "ticketera_queue_admitted_total", event_id=line) == 5
    # An event without a waiting room has no line to report.
    assert value(families, "ticketera_queue_users", event_id=str(no_queue["id"]), state="waiting") is None


async def test_breaker_states_follow_the_breakers(settings: Settings, clock: FakeClock) -> None:
    # The breakers are opened by hand while the database is up: no background probe may close them.
    async with serving(settings.model_copy(update={"breaker_probe_seconds": 0}), clock=clock) as client:
        await _breaker_states_follow_the_breakers(client)


async def _breaker_states_follow_the_breakers(client: httpx.AsyncClient) -> None:
    state = services_of(client.app)  # type: ignore[attr-defined]
    monotonic = FakeClock()
    state.payments.gateway.breaker = breaker_for("mercadopago", clock=lambda: monotonic.now.timestamp())
    for _ in range(5):
        state.database.breaker.record_failure()
    for _ in range(3):
        state.payments.gateway.breaker.record_failure()

    opened = await scrape(client)
    monotonic.advance(121)  # past mercadopago's two minutes open
    half_open = await scrape(client)

    assert value(opened, "ticketera_circuit_breaker_state", dependency="database") == 2
    assert value(opened, "ticketera_circuit_breaker_failures", dependency="database") == 5
    assert value(opened, "ticketera_circuit_breaker_state", dependency="mercadopago") == 2
    assert value(opened, "ticketera_circuit_breaker_failures", dependency="mercadopago") == 3
    assert value(half_open, "ticketera_circuit_breaker_state", dependency="mercadopago") == 1
    # The open breaker refuses the scrape's own reads: those figures are missing, and say so.
    assert value(opened, "ticketera_metrics_source_up", source="database") == 0
    assert "ticketera_orders" not in opened
    assert value(opened, "ticketera_http_requests_total", route="/metrics") is None


async def test_redis_breaker_and_queue_on_redis(
    db: DatabaseUnderTest, tmp_path: Path, clock: FakeClock
) -> None:
    from redis.asyncio import Redis

    from tests.conftest import _backend_unavailable

    url = "redis://127.0.0.1:6379/11"
    redis = Redis.from_url(url)
    try:
        await redis.ping()
    except Exception as exc:
        _backend_unavailable("redis", f"cannot connect to {url}: {exc}")
    await redis.flushdb()
    try:
        async with serving(make_settings(db.url, tmp_path, redis_url=url), clock=clock) as client:
            body = {
                "name": "Recital",
                "startsAt": (clock.now + timedelta(days=30)).isoformat().replace("+00:00", "Z"),
                "sections": [ga_section(capacity=100)],
            }
            event_id = (await client.post("/api/events", json=body, headers=ADMIN)).json()["id"]
            for user in range(3):
                await client.post(f"/api/queue/{event_id}/join", json={"userId": f"user-{user}"})

            families = await scrape(client)
    finally:
        await redis.flushdb()
        await redis.aclose()

    assert value(families, "ticketera_circuit_breaker_state", dependency="redis") == 0
    assert value(families, "ticketera_queue_users", event_id=str(event_id), state="waiting") == 3
