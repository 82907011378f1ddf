"""Schemathesis over the service's own OpenAPI document, on every backend: each operation, fed what
the document allows and what it refuses, answers only as the document says.

Checks, per answer: no server error (5xx; a documented 503 would fail too, as nothing here is
down), a status the operation declares, the declared content type and headers, a body that matches
the declared schema, input the schema refuses answered 4xx, input it allows not refused unless for
a rule a schema cannot state (RULES_BEYOND_THE_SCHEMA), and a 405 with its `Allow`.

The document is read through ASGI, as `/openapi.json` serves it, and every case is sent through
ASGI by schemathesis, which runs the app (its lifespan too) on an event loop of its own in another
thread. These tests are synchronous and block the test loop meanwhile, so the MercadoPago simulator
the app calls runs on a thread of its own (the session's simulator lives in the test loop).

Cases are aimed at real data as well as at random ids: every positive case with a path is sent once
as generated (mostly unknown ids: 404s) and once more with its path pointing at seeded data (an
event on sale, a live hold, a paid order and its ticket) and the tokens that open it, so handlers
run past their lookups and checks. Credentials rotate case by case (admin key, staff key, admin
key, none), so admin and staff operations are exercised past 401 and also without a key.
Runs are reproducible: a fixed seed, derandomized, and no example database written anywhere.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis import APIOperation, Response
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.python import asgi as schemathesis_asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    missing_required_header,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from tests.conftest import (
    ACCESS_TOKEN,
    ADMIN_KEY,
    STAFF_KEY,
    WEBHOOK_SECRET,
    DatabaseUnderTest,
    empty_all_tables,
    make_settings,
    serving,
)
from tests.factories import open_sale, place_order, take_hold
from tests.mpsim_server import running_simulator
from tests.shop import eventually, ga_section_id, preference_id_of
from ticketera.main import create_app
from ticketera.payments.signature import manifest, sign

pytestmark = [pytest.mark.slow]

Case = schemathesis.Case[APIOperation[Any, Any, Any, Any]]

# Examples per operation in the fuzzing phase (the coverage phase adds its own boundary and
# negative cases): about 45 s per backend on a 2-core CI machine. Raise it by hand to look harder
# (TICKETERA_FUZZ_EXAMPLES=1000); a failure prints the request that reproduces it.
MAX_EXAMPLES = int(os.environ.get("TICKETERA_FUZZ_EXAMPLES", "100"))
SEED = 20261231

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {
            "mode": "all",
            "max-examples": MAX_EXAMPLES,
            # Reproducible in CI, and no example database written into the work tree.
            "deterministic": True,
            "database": "none",
        },
        "phases": {"stateful": {"enabled": False}},
        "operations": [
            # The waiting room's event stream stays open while the user waits (checkAgainSeconds
            # between updates, until admitted): a fuzzer would wait on it, not test it. Its opening
            # (token and event checks) is the status operation's, which is fuzzed.
            {"include-path": "/api/queue/{event_id}/stream", "enabled": False},
        ],
    }
)
# Rules the service keeps that a JSON schema cannot state (time, order between fields, letter case,
# sums over a body, the data in the database): a 422 naming one of these is an answer to input the
# schema allowed, not a disagreement between the two. Any other 422 to input the schema allows is.
RULES_BEYOND_THE_SCHEMA = [
    re.compile(pattern)
    for pattern in (
        r"startsAt: must be in the future",
        r"(startsAt|onSaleAt): must be before the year 9000",
        r"onSaleAt: must not be after startsAt",
        r"(sections|rows)\[\d+\]\.name: section names must be unique within an event",
        r"sections\[\d+\]: row labels must be unique within a section \(letter case aside\)",
        r"body: row labels must be unique within a section \(letter case aside\)",
        r"(sections|rows): at most \d+ seats and places per call, got \d+",
        r"sections: an event has at most \d+ sections",
        r"seatIds: not reserved seats of this event: .*",
        r"sectionId: a reserved section is held by seatIds, not by quantity",
        # email-validator's refusals beyond the `email` format: addresses at reserved names
        # (`.invalid`, `localhost`...) and other forms no inbox has, where the tickets would be lost.
        r"buyer\.email: value is not a valid email address: .*",
    )
]


def schema_valid_input_is_accepted(_ctx: Any, response: Response, case: Case) -> bool | None:
    """What the schema allows the service takes, or refuses for a rule beyond the schema."""
    if case.meta is None or case.meta.generation.mode is not GenerationMode.POSITIVE:
        return None
    if response.status_code != 422:
        return None
    fields = response.json().get("fields", [])
    unexplained = [
        f"{item['field']}: {item['message']}"
        for item in fields
        if not any(rule.fullmatch(f"{item['field']}: {item['message']}") for rule in RULES_BEYOND_THE_SCHEMA)
    ]
    assert not unexplained, f"the schema allows what the service refuses: {unexplained}"
    return None


CHECKS = [
    not_a_server_error,
    schema_valid_input_is_accepted,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
    missing_required_header,
    unsupported_method,
]
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
STAFF = {"Authorization": f"Bearer {STAFF_KEY}"}
# Admin key on half the cases: admin operations run past 401 and staff ones (which the admin key
# opens too) on three in four; one in four carries only what the case itself generated.
CREDENTIALS: tuple[dict[str, str] | None, ...] = (ADMIN, STAFF, ADMIN, None)


@dataclass
class Seeded:
    """What aimed cases point at: path parameters by name, and the tokens that open them."""

    path_targets: dict[str, list[str]]
    access_token: str
    queue_token: str
    order_tokens: dict[str, str]


@dataclass
class FuzzTarget:
    """The app under fuzzing and the data its aimed cases point at."""

    app: Any
    seeded: Seeded
    rotation: dict[str, Iterator[int]] = field(default_factory=dict)

    def turn(self, operation: str) -> int:
        return next(self.rotation.setdefault(operation, itertools.count()))

    def aim(self, case: Case, turn: int, credential: dict[str, str] | None) -> dict[str, str]:
        """Point the case's path at seeded data; the headers that go with it: the shopper's access
        token, and where no key is sent, the token of what the path names (a place in line, an order)."""
        for name in case.path_parameters:
            targets = self.seeded.path_targets.get(name)
            if targets:
                case.path_parameters[name] = targets[turn % len(targets)]
        headers = {"X-Access-Token": self.seeded.access_token}
        if credential is not None:
            return {**headers, **credential}
        if case.operation.path.startswith("/api/queue/"):
            headers["Authorization"] = f"Bearer {self.seeded.queue_token}"
        order_token = self.seeded.order_tokens.get(str(case.path_parameters.get("order_id")))
        if order_token is not None:
            headers["Authorization"] = f"Bearer {order_token}"
        return headers


@contextmanager
def simulator_in_thread() -> Iterator[str]:
    """The MercadoPago simulator on a loop of its own, answering while these tests block theirs."""
    ready = threading.Event()
    found: dict[str, Any] = {}

    async def serve() -> None:
        stop = asyncio.Event()
        found["stop"] = (asyncio.get_running_loop(), stop)
        async with running_simulator(ACCESS_TOKEN, WEBHOOK_SECRET) as base_url:
            found["url"] = base_url
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), name="mp-simulator", daemon=True)
    thread.start()
    assert ready.wait(30), "the simulator did not start"
    try:
        yield found["url"]
    finally:
        loop, stop = found["stop"]
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)


@pytest.fixture(scope="module")
def fuzz_simulator() -> Iterator[str]:
    with simulator_in_thread() as url:
        yield url


async def signed_payment_notification(http: httpx.AsyncClient, payment_id: str) -> None:
    """What MercadoPago sends when a payment changes, signed with the webhook secret."""
    ts, request_id = str(int(time.time())), f"seed-{payment_id}"
    v1 = sign(WEBHOOK_SECRET, manifest(payment_id, request_id, ts))
    response = await http.post(
        "/api/webhooks/mercadopago",
        params={"type": "payment", "data.id": payment_id},
        headers={"x-signature": f"ts={ts},v1={v1}", "x-request-id": request_id},
        json={"action": "payment.updated", "type": "payment", "data": {"id": payment_id}},
    )
    assert response.status_code == 200, response.text


async def seed(http: httpx.AsyncClient, simulator_url: str) -> Seeded:
    """An event on sale with a live hold, an order awaiting payment and a paid one with its
    tickets, and a shopper let in to buy."""
    event = await open_sale(http)
    places = {"sectionId": ga_section_id(event), "quantity": 1}
    live_hold = await take_hold(http, event, "fuzz-holder", places)
    pending = (await place_order(http, await take_hold(http, event, "fuzz-pending", places))).json()
    paid = (await place_order(http, await take_hold(http, event, "fuzz-paid", places))).json()
    async with httpx.AsyncClient(base_url=simulator_url) as simulator:
        payment = await simulator.post(
            "/_sim/payments", json={"preferenceId": preference_id_of(paid), "outcome": "APRO"}
        )
        assert payment.status_code < 300, payment.text
    await signed_payment_notification(http, str(payment.json()["id"]))

    async def sold() -> bool:
        # The notification is processed after the webhook's answer.
        return bool((await http.get(f"/api/orders/{paid['id']}", headers=ADMIN)).json()["status"] == "paid")

    await eventually(sold)
    tickets = (await http.get(f"/api/orders/{paid['id']}/tickets", headers=ADMIN)).json()
    shopper = (await http.post(f"/api/queue/{event['id']}/join", json={"userId": "fuzz-shopper"})).json()
    return Seeded(
        path_targets={
            "event_id": [str(event["id"])],
            "hold_id": [live_hold],
            "order_id": [str(paid["id"]), str(pending["id"])],
            "code": [tickets["tickets"][0]["code"]],
        },
        access_token=shopper["accessToken"],
        queue_token=shopper["queueToken"],
        order_tokens={str(order["id"]): order["orderToken"] for order in (paid, pending)},
    )


@pytest.fixture(scope="module")
async def fuzz_target(
    test_database: DatabaseUnderTest, tmp_path_factory: pytest.TempPathFactory, fuzz_simulator: str
) -> AsyncIterator[FuzzTarget]:
    tmp_path = tmp_path_factory.mktemp(f"fuzz-{test_database.backend}")
    settings = make_settings(
        test_database.url,
        tmp_path,
        mp_base_url=fuzz_simulator,
        # The limits stay on (their 429 is documented) but far above what a fuzzer sends.
        app_rate_limit="100000/minute",
        queue_join_rate_limit="100000/minute",
    )
    try:
        async with serving(settings) as http:
            seeded = await seed(http, fuzz_simulator)
        yield FuzzTarget(create_app(settings), seeded)
    finally:
        # Started by schemathesis on its own loop; stopped here so the app's pools close.
        await asyncio.to_thread(schemathesis_asgi.shutdown_lifespans)
        await empty_all_tables(test_database.engine)


def served_document() -> dict[str, Any]:
    """The document `/openapi.json` serves, read through ASGI at collection time (one pytest item
    per operation needs it then) from an app that is never started: the document needs no database
    and is the same on every backend."""
    # Kept until the run ends: the app's log file handler stays open on it until another app is made.
    folder = Path(tempfile.mkdtemp(prefix="ticketera-openapi-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    settings = make_settings(f"sqlite+aiosqlite:///{folder / 'unused.db'}", folder)
    # Outside a `with` block schemathesis' client does not start the app's lifespan.
    app: Any = create_app(settings)
    response = schemathesis_asgi.get_client(app).get("/openapi.json")
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


schema = schemathesis.openapi.from_dict(served_document(), config=CONFIG)


@schema.parametrize()
def test_every_operation_answers_as_documented(case: Case, fuzz_target: FuzzTarget) -> None:
    turn = fuzz_target.turn(case.operation.label)
    credential = CREDENTIALS[turn % len(CREDENTIALS)]
    response = case.call(headers=credential, app=fuzz_target.app)
    case.validate_response(response, checks=CHECKS, headers=credential)
    if (
        not case.path_parameters
        or case.meta is None
        or case.meta.generation.mode is not GenerationMode.POSITIVE
    ):
        return
    headers = fuzz_target.aim(case, turn, credential)
    response = case.call(headers=headers, app=fuzz_target.app)
    case.validate_response(response, checks=CHECKS, headers=headers)
