"""`ticketera loadtest` against a real Ticketera on a free port (SQLite, the admission ticker on,
the MercadoPago simulator paying): it sells out a small event and writes its report."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from tests.conftest import ADMIN, fresh_database, make_settings
from tests.mpsim_server import listening_socket, serving_asgi, socket_url
from tests.shop import Simulator, eventually, preference_id_of, sim
from ticketera.cli import app as cli
from ticketera.kit.db import create_engine
from ticketera.kit.migrate import upgrade
from ticketera.loadtest.report import write_report
from ticketera.loadtest.runner import LoadtestOptions, Targets, run_loadtest
from ticketera.main import create_app
from ticketera.orders.models import Order
from ticketera.tickets.models import Ticket

__all__ = ["sim"]  # fixtures

# Nothing measured is asserted: these targets are off, so only correctness can fail a run here.
UNCHECKED = Targets(p95_ms=0, requests_per_minute=0, rss_mb=0, cpu_percent=0, error_rate=0.0)


@dataclass
class Target:
    url: str
    simulator_url: str
    http: httpx.AsyncClient
    database_url: str

    async def event(self, **body: Any) -> dict[str, Any]:
        body = {"name": "Loadtest", "startsAt": "2030-01-01T20:00:00Z", "maxTicketsPerUser": 4, **body}
        response = await self.http.post("/api/events", json=body, headers=ADMIN)
        assert response.status_code == 201, response.text
        event: dict[str, Any] = response.json()
        return event

    def options(self, event: dict[str, Any], tmp_path: Path, **overrides: Any) -> LoadtestOptions:
        options = LoadtestOptions(
            url=self.url,
            simulator_url=self.simulator_url,
            event_id=int(event["id"]),
            fans=40,
            report_dir=tmp_path / "report",
            max_seconds=60,  # a bound for a broken run: a working one takes seconds
            ramp_seconds=0.5,
            think_seconds=0,
            quantity=(2, 3),
            poll_min_seconds=0.1,
            poll_max_seconds=0.3,
            sample_seconds=0.3,
            seed=1,
            targets=UNCHECKED,
        )
        return replace(options, **overrides)


@asynccontextmanager
async def serving_target(tmp_path: Path, simulator_url: str, **settings: Any) -> AsyncIterator[Target]:
    async with fresh_database("sqlite", tmp_path, prefix="loadtest") as url:
        engine = create_engine(url)
        await upgrade(engine)
        await engine.dispose()
        sock = listening_socket()
        base_url = socket_url(sock)
        values: dict[str, Any] = {
            "mp_base_url": simulator_url,
            "public_base_url": base_url,  # where the simulator sends its webhooks
            "queue_ticker": True,
            "queue_tick_seconds": 0.1,
            **settings,
        }
        app = create_app(make_settings(url, tmp_path, **values))
        async with serving_asgi(app, sock), httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            yield Target(base_url, simulator_url, http, url)


@pytest.fixture
async def target(tmp_path: Path, sim: Simulator, simulator_url: str) -> AsyncIterator[Target]:
    async with serving_target(tmp_path, simulator_url) as served:
        yield served


async def test_fans_sell_out_an_event_and_every_paid_order_has_its_tickets(
    target: Target, tmp_path: Path
) -> None:
    event = await target.event(
        queue={"enabled": True, "admitPerMinute": 6000, "maxActiveShoppers": 10, "accessMinutes": 5},
        sections=[
            {"name": "Platea", "price": "15000.00", "rows": [{"label": "A", "seats": 10}]},
            {"name": "Campo", "price": "9000.00", "capacity": 20},
        ],
    )
    options = target.options(event, tmp_path)

    result = await run_loadtest(options)
    figures, checks = write_report(result, options.report_dir or tmp_path)

    assert result.stopped_by == "finished"
    fans = figures["fans"]
    assert sum(fans.values()) == 40
    assert fans["bought"] >= 1
    # 40 fans asking 2 or 3 places each for 30: some find it sold out, none is left waiting.
    assert fans["bought"] + fans["sold_out"] == 40, fans
    tickets = figures["tickets"]
    assert tickets["soldAtEnd"] == tickets["capacity"] == 30
    assert tickets["ticketsIssued"] == tickets["placesOrdered"] == 30
    assert tickets["ordersPaid"] == fans["bought"]
    assert figures["passed"], checks
    # The service's own books agree with what the fans read back.
    engine = create_engine(target.database_url)
    try:
        async with engine.connect() as connection:
            paid = (await connection.execute(select(func.count()).where(Order.status == "paid"))).scalar_one()
            issued = (await connection.execute(select(func.count()).select_from(Ticket))).scalar_one()
    finally:
        await engine.dispose()
    assert (paid, issued) == (fans["bought"], 30)

    directory = options.report_dir
    assert directory is not None
    names = {path.name for path in directory.iterdir()}
    charts = {"throughput.png", "latency.png", "line.png", "seats.png", "errors.png", "target.png"}
    assert {"report.md", "figures.json"} | charts <= names
    written = json.loads((directory / "figures.json").read_text())
    assert set(written) >= {
        "run",
        "fans",
        "requests",
        "steps",
        "tickets",
        "target",
        "series",
        "targets",
        "passed",
        "client",
    }
    assert set(written["steps"]) >= {"join", "status", "event", "seats", "hold", "order", "pay", "tickets"}
    # Seats were held, then ordered; general admission was bought in one request (express).
    assert written["steps"]["order"]["ok"] > written["steps"]["hold"]["ok"]
    assert written["target"]["metricsExported"]
    assert written["series"]["samples"]["seatsLeft"][-1] == 0
    assert "PASSED" in (directory / "report.md").read_text().splitlines()[0]


async def test_max_seconds_ends_the_run_with_fans_still_in_line(target: Target, tmp_path: Path) -> None:
    # One shopper at a time, and the first never finishes (no payment): the others wait for good.
    event = await target.event(
        queue={"enabled": True, "admitPerMinute": 60, "maxActiveShoppers": 1, "accessMinutes": 5},
        sections=[{"name": "Campo", "price": "9000.00", "capacity": 100}],
    )
    options = target.options(event, tmp_path, fans=5, pay=False, think_seconds=600, max_seconds=1.5)

    result = await run_loadtest(options)
    figures, _ = write_report(result, tmp_path / "report", charts=False)

    assert result.stopped_by == "max_seconds"
    assert figures["fans"]["unfinished"] == 5
    # The fans still in line gave their places back: the next run does not queue behind them.
    stats = await target.http.get(f"/api/queue/{event['id']}/stats", headers=ADMIN)
    assert stats.json()["waiting"] == 0, stats.text
    assert "stopped at --max-seconds" in (tmp_path / "report" / "report.md").read_text()


async def test_a_target_given_on_the_command_line_that_fails_exits_non_zero_and_names_it(
    target: Target, tmp_path: Path
) -> None:
    event = await target.event(
        queue={"enabled": False}, sections=[{"name": "Campo", "price": "9000.00", "capacity": 10}]
    )
    arguments = ["loadtest", "--url", target.url, "--event", str(event["id"]), "--fans", "3", "--no-pay"]
    arguments += ["--think-seconds", "0", "--ramp-seconds", "0", "--no-live", "--report", str(tmp_path / "r")]
    lenient = ["--min-rpm", "0", "--max-cpu-percent", "0", "--max-rss-mb", "0"]

    # The CLI runs its own event loop: in a thread, while this loop serves the target.
    failing = await asyncio.to_thread(CliRunner().invoke, cli, [*arguments, *lenient, "--p95-ms", "0.001"])
    passing = await asyncio.to_thread(CliRunner().invoke, cli, [*arguments, *lenient, "--p95-ms", "0"])

    assert failing.exit_code == 1, failing.output
    assert "Targets not met: p95 latency" in failing.output
    assert passing.exit_code == 0, passing.output


async def buy_everything(target: Target, event: dict[str, Any]) -> dict[str, Any]:
    """Someone else's order for every place of `event` (pending payment): its places are held."""
    joined = (await target.http.post(f"/api/queue/{event['id']}/join", json={"userId": "early"})).json()
    token = joined.get("accessToken")
    while not token:  # the admission ticker runs every 0.1 s
        await asyncio.sleep(0.05)
        status = await target.http.get(
            f"/api/queue/{event['id']}/status", headers={"Authorization": f"Bearer {joined['queueToken']}"}
        )
        token = status.json().get("accessToken")
    section = event["sections"][0]
    held = await target.http.post(
        f"/api/events/{event['id']}/holds",
        json={"sectionId": section["id"], "quantity": section["capacity"]},
        headers={"X-Access-Token": token},
    )
    assert held.status_code == 201, held.text
    ordered = await target.http.post(
        "/api/orders",
        json={"holdId": held.json()["holdId"], "buyer": {"email": "early@example.com", "name": "Early"}},
        headers={"Idempotency-Key": "early-buyer-order"},
    )
    assert ordered.status_code == 201, ordered.text
    order: dict[str, Any] = ordered.json()
    return order


@pytest.mark.parametrize("sse", [False, True], ids=["polling", "stream"])
async def test_fans_in_a_line_that_no_longer_moves_go_home_when_the_event_sells_out(
    target: Target, sim: Simulator, tmp_path: Path, sse: bool
) -> None:
    # Every place is in someone's pending order and the line is paused: nobody will be let in, and
    # only the sell-out (the payment) tells the fans waiting that it is over.
    event = await target.event(
        queue={"enabled": True, "admitPerMinute": 6000, "maxActiveShoppers": 10, "accessMinutes": 5},
        sections=[{"name": "Campo", "price": "9000.00", "capacity": 4}],
    )
    order = await buy_everything(target, event)
    paused = await target.http.patch(f"/api/queue/{event['id']}", json={"paused": True}, headers=ADMIN)
    assert paused.status_code == 200, paused.text
    options = target.options(event, tmp_path, fans=6, sse=sse)

    run = asyncio.create_task(run_loadtest(options))
    await eventually(lambda: line_holds(target, event, 6))
    await sim.pay(preference_id_of(order))
    result = await run

    assert result.stopped_by == "finished"
    assert result.recorder.outcomes["sold_out"] == 6


async def line_holds(target: Target, event: dict[str, Any], waiting: int) -> bool:
    stats = await target.http.get(f"/api/queue/{event['id']}/stats", headers=ADMIN)
    return bool(stats.json()["waiting"] == waiting)


async def test_fans_can_wait_on_the_stream_and_go_home_when_it_sells_out(
    target: Target, tmp_path: Path
) -> None:
    # Two shoppers at a time: most fans wait on the SSE stream, and some are still there at the sell-out.
    event = await target.event(
        queue={"enabled": True, "admitPerMinute": 6000, "maxActiveShoppers": 2, "accessMinutes": 5},
        sections=[{"name": "Campo", "price": "9000.00", "capacity": 8}],
    )
    options = target.options(event, tmp_path, fans=12, sse=True, quantity=(2, 2))

    result = await run_loadtest(options)
    figures, _ = write_report(result, tmp_path / "report", charts=False)

    assert result.stopped_by == "finished"
    assert figures["fans"]["bought"] == 4
    assert figures["fans"]["sold_out"] == 8
    assert figures["steps"]["stream"]["ok"] >= 1
    assert figures["tickets"]["ticketsIssued"] == 8


async def test_a_fan_whose_order_came_without_its_checkout_pays_once_the_worker_makes_it(
    tmp_path: Path, sim: Simulator, simulator_url: str
) -> None:
    # MercadoPago refuses the preferences for a moment: the orders are answered with
    # `checkoutUrl: null` and the worker makes their checkouts afterwards, as the buyer's order
    # page waits to show. The fans wait too, then pay, instead of leaving their orders unpaid.
    async with serving_target(tmp_path, simulator_url, worker_interval_seconds=0.2) as target:
        event = await target.event(sections=[{"name": "Campo", "price": "9000.00", "capacity": 4}])
        refused = {"status": 503, "count": 6, "method": "POST", "pathPrefix": "/checkout/preferences"}
        await sim.call("POST", "/_sim/faults", json=refused)

        result = await run_loadtest(target.options(event, tmp_path, fans=2, quantity=(2, 2)))

    assert result.stopped_by == "finished"
    assert result.recorder.outcomes["bought"] == 2, result.recorder.outcomes
    assert result.recorder.tickets_issued == 4
    deferred = [r for r in result.recorder.requests if r.step == "order_status"]
    assert deferred, "the checkouts were all there at once: the faults did not bite"
