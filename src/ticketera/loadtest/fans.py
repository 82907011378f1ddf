"""One fan's way through an on-sale, over the public API (/work/shared/CONTRACT.md):

    POST /api/queue/{event}/join                     a place in line (or straight in: no queue)
    GET  /api/queue/{event}/status  (or .../stream)  until admitted, at the pace the answer suggests
    GET  /api/events/{event}  [+ /seats]             the buy page: what is left, the seat map
    POST /api/events/{event}/holds                   seats by id (or places, with --no-express)
    POST /api/orders                                 pending payment, with its checkout URL; for
                                                     general admission the express purchase: the
                                                     access token and the places, no hold before
    POST {simulator}/_sim/payments                   card APRO on the simulator's checkout
    GET  /api/orders/{id}  then  /tickets            until paid, then every ticket issued

Answers that tell a client to come back (429 and 503 with Retry-After) are waited out and tried
again, as the waiting-room page does; every request is recorded, retries included.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx

from ticketera.loadtest.recorder import Recorder
from ticketera.loadtest.safety import is_loopback, origin_of

# A fan's browser waits this long for an answer before giving up on a request.
REQUEST_TIMEOUT_SECONDS = 30.0
# Answers with Retry-After are tried again this many times (the wait each time is the server's).
MAX_RETRIES = 30
# A seat or place someone else took first: read what is left and choose again, this many times.
MAX_HOLD_ATTEMPTS = 5
# The order page's refresh while MercadoPago's notification makes its way to the service.
ORDER_POLL_SECONDS = 1.0
# How many times a buyer presses "buy" when no answer comes back (same Idempotency-Key each time),
# and "pay" (after looking at the order for PAY_LOOK_SECONDS each time).
ORDER_PRESSES = 3
PAY_LOOK_SECONDS = 10.0
# The fastest a fan polls: the waiting room's own pace near the front of the line.
POLL_MIN_SECONDS = 2.0


@dataclass(frozen=True)
class Section:
    id: int
    name: str
    kind: str  # "general_admission" or "reserved"


@dataclass(frozen=True)
class EventPlan:
    """What the load test learned of the event before the first fan arrived."""

    event_id: int
    name: str
    queue_enabled: bool
    max_per_fan: int
    capacity: int
    available: int
    sections: tuple[Section, ...]


@dataclass(frozen=True)
class FanOptions:
    run_tag: str
    think_seconds: float = 2.0
    abandon_rate: float = 0.0
    pay: bool = True
    quantity: tuple[int, int] = (1, 4)
    sse: bool = False
    poll_min_seconds: float = POLL_MIN_SECONDS
    poll_max_seconds: float = 60.0
    paid_timeout_seconds: float = 60.0
    # General admission in one request (hold and order at once), as a shop page for places does;
    # seats keep the picker's hold, then the order.
    express: bool = True


@dataclass(frozen=True)
class Answer:
    status: int  # 0: no answer
    body: Any
    code: str  # the error code of a refusal; the exception's name for no answer

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class FanEnded(Exception):
    """The visit is over; the outcome says how."""

    def __init__(self, outcome: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome


class Api:
    """The HTTP side shared by every fan: lanes of a few connections each to the target (and a
    pool to the simulator), each lane with as many requests in flight as it has connections,
    every request recorded.

    Lanes rather than one pool of --concurrency connections: httpcore's pool scans every
    connection for every request it places, so one pool of 100 connections spent a third of the
    load generator's CPU on that scan alone (profiled: 17 s of 56) and the latencies measured
    were partly its own."""

    def __init__(
        self,
        lanes: list[httpx.AsyncClient],
        lane_connections: int,
        simulator: httpx.AsyncClient | None,
        recorder: Recorder,
        stream_client: httpx.AsyncClient | None = None,
        simulator_connections: int = 10,
    ) -> None:
        self.lanes = [(client, asyncio.Semaphore(lane_connections)) for client in lanes]
        self.simulator = simulator
        self._simulator_slots = asyncio.Semaphore(simulator_connections)
        self.stream_client = stream_client
        self.recorder = recorder
        # Set by the monitor once every place is sold (none available, none held): what the
        # waiting-room page would announce, so the fans still in line go home.
        self.sold_out = asyncio.Event()

    async def call(
        self,
        step: str,
        method: str,
        url: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        on_simulator: bool = False,
        lane: int = 0,
        record: bool = True,
    ) -> Answer:
        if on_simulator:
            assert self.simulator is not None
            client, slots = self.simulator, self._simulator_slots
        else:
            client, slots = self.lanes[lane % len(self.lanes)]
        for _ in range(MAX_RETRIES):
            waited = time.monotonic()
            async with slots:
                started = time.monotonic()
                self.recorder.client_wait_s += started - waited
                try:
                    response = await client.request(method, url, json=json, headers=headers, params=params)
                except httpx.HTTPError as exc:
                    if record:
                        self.recorder.request(step, started, 0, type(exc).__name__)
                    return Answer(0, None, type(exc).__name__)
                body = _json_or_none(response)
                code = error_code(body) if response.status_code >= 300 else ""
                if record:
                    self.recorder.request(step, started, response.status_code, code)
            retry_after = response.headers.get("retry-after")
            if response.status_code in (429, 503) and retry_after is not None:
                # As the waiting-room page does: wait what the server asked (a little more, at
                # random, so that refused fans do not all come back in the same instant).
                await asyncio.sleep(_seconds(retry_after) * random.uniform(1.0, 1.5))  # noqa: S311
                continue
            return Answer(response.status_code, body, code)
        return Answer(response.status_code, body, code)


def _json_or_none(response: httpx.Response) -> Any:
    if not response.content or "json" not in response.headers.get("content-type", ""):
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _seconds(retry_after: str) -> float:
    try:
        return max(0.5, float(retry_after))
    except ValueError:
        return 5.0  # an HTTP date: rare enough that a fixed wait will do


def error_code(body: Any) -> str:
    """The contract's error code (`{"error": code, ...}`), or the check-in's `result`; "" if none."""
    if isinstance(body, dict):
        for key in ("error", "result"):
            if isinstance(body.get(key), str):
                return str(body[key])
    return ""


def same_server(checkout: httpx.URL, simulator: httpx.URL) -> bool:
    """Whether a checkout URL is the given simulator's page. Only the decision to pay: the payment
    goes to --simulator-url, never to the checkout's own host. `localhost` and 127.0.0.1 on one
    port are one server (the simulator names itself `localhost` by default)."""
    scheme, host, port = origin_of(checkout)
    given_scheme, given_host, given_port = origin_of(simulator)
    if (scheme, port) != (given_scheme, given_port):
        return False
    return host == given_host or (is_loopback(host) and is_loopback(given_host))


class Fan:
    def __init__(self, index: int, api: Api, plan: EventPlan, options: FanOptions, seed: int) -> None:
        self.index = index
        self.api = api
        self.plan = plan
        self.options = options
        # One generator per fan, from the run's seed: the same run replays the same choices.
        self.rng = random.Random(seed)  # noqa: S311  # not for secrets: think times and choices
        self.state: str | None = None
        self.queue_token = ""
        self.user = f"{options.run_tag}-{index}"

    async def _call(self, step: str, method: str, url: str, **options: Any) -> Answer:
        """A request on this fan's lane (a browser keeps its own connections, too)."""
        return await self.api.call(step, method, url, lane=self.index, **options)

    async def _call_again_if_unanswered(self, step: str, method: str, url: str, **options: Any) -> Answer:
        """An order: when no answer comes (a timeout, a dropped connection), the buyer presses again,
        as the buy page lets them, with the same Idempotency-Key, so that an order the service did
        create is found, not left pending and unpaid, holding its places until it expires."""
        answer = await self._call(step, method, url, **options)
        for _ in range(ORDER_PRESSES - 1):
            if answer.status != 0:
                break
            await asyncio.sleep(ORDER_POLL_SECONDS)
            answer = await self._call(step, method, url, **options)
        return answer

    def _move(self, state: str | None) -> None:
        self.api.recorder.move(self.state, state)
        self.state = state

    def _decides_to_leave(self) -> bool:
        return self.rng.random() < self.options.abandon_rate

    async def _think(self) -> None:
        if self.options.think_seconds > 0:
            await asyncio.sleep(self.options.think_seconds * self.rng.uniform(0.5, 1.5))

    async def visit(self) -> str:
        """The whole visit; returns its outcome (recorder.OUTCOMES)."""
        self._move("arriving")
        try:
            outcome = await self._visit()
        except FanEnded as ended:
            outcome = ended.outcome
        except asyncio.CancelledError:
            self.api.recorder.outcomes["unfinished"] += 1
            waiting = self.state == "waiting"
            self._move(None)
            if waiting and self.queue_token:
                # The run is over, not the sale: give the place back, so that the next run does not
                # queue behind this one's fans (best effort; the runner bounds how long it waits).
                with contextlib.suppress(Exception):
                    await self.api.call(
                        "leave",
                        "DELETE",
                        f"/api/queue/{self.plan.event_id}/me",
                        headers={"Authorization": f"Bearer {self.queue_token}"},
                        lane=self.index,
                        record=False,
                    )
            raise
        self.api.recorder.outcomes[outcome] += 1
        self._move("done")
        return outcome

    async def _visit(self) -> str:
        event = self.plan.event_id
        joined = await self._call("join", "POST", f"/api/queue/{event}/join", json={"userId": self.user})
        if not joined.ok or not isinstance(joined.body, dict):
            return "failed"
        queue_token = self.queue_token = str(joined.body.get("queueToken", ""))
        access = joined.body.get("accessToken")
        self._move("waiting")
        if not access:
            access = await self._wait_in_line(queue_token)
        self.api.recorder.admissions.append(self.api.recorder.now())
        self._move("shopping")
        await self._think()
        try:
            hold_id, places, ordered = await self._hold(str(access))
        except FanEnded as ended:
            if ended.outcome == "sold_out" and queue_token:
                # The page says sold out and the fan leaves: their turn goes to nobody's harm.
                await self._call(
                    "leave",
                    "DELETE",
                    f"/api/queue/{event}/me",
                    headers={"Authorization": f"Bearer {queue_token}"},
                )
            raise
        if ordered is not None:
            order = ordered
        else:
            if self._decides_to_leave():
                # The tab closed: the hold stays until it expires, as it would.
                return "abandoned_hold"
            await self._think()
            order = await self._order(hold_id)
        if not self.options.pay or self.api.simulator is None:
            return "ordered"
        if self._decides_to_leave():
            return "abandoned_checkout"
        self._move("paying")
        await self._think()
        await self._pay(order)
        return await self._await_tickets(order, places)

    async def _wait_in_line(self, queue_token: str) -> str:
        event = self.plan.event_id
        leaves = self._decides_to_leave()
        headers = {"Authorization": f"Bearer {queue_token}"}
        if self.options.sse and self.api.stream_client is not None and not leaves:
            # The stream until admitted, unless the sale ends first (a stream says nothing of that).
            streaming = asyncio.create_task(self._stream_until_admitted(queue_token))
            sold_out = asyncio.create_task(self.api.sold_out.wait())
            try:
                await asyncio.wait({streaming, sold_out}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (streaming, sold_out):
                    task.cancel()
                await asyncio.gather(streaming, sold_out, return_exceptions=True)
            if streaming.done() and not streaming.cancelled():
                token = streaming.result()  # FanEnded (access expired) propagates from here
                if token:
                    return token
        polls = 0
        while True:
            if self.api.sold_out.is_set():
                await self._call("leave", "DELETE", f"/api/queue/{event}/me", headers=headers)
                raise FanEnded("sold_out")
            answer = await self._call("status", "GET", f"/api/queue/{event}/status", headers=headers)
            if not answer.ok or not isinstance(answer.body, dict):
                raise FanEnded("failed")
            status = answer.body.get("status")
            if status == "admitted" and answer.body.get("accessToken"):
                return str(answer.body["accessToken"])
            if status == "expired":
                raise FanEnded("access_expired")
            polls += 1
            if leaves and polls >= self.rng.randint(1, 3):
                await self._call("leave", "DELETE", f"/api/queue/{event}/me", headers=headers)
                raise FanEnded("abandoned_line")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.api.sold_out.wait(), self._poll_interval(answer.body))

    def _poll_interval(self, status: dict[str, Any]) -> float:
        """As the waiting page does: the pace the answer gives for this place (`checkAgainSeconds`:
        soon near the front, up to a minute far back); from a server that gives none, a quarter of
        the `etaSeconds` left. Within [poll-min, poll-max], give or take 10%."""
        pace, eta = status.get("checkAgainSeconds"), status.get("etaSeconds")
        if isinstance(pace, int | float):
            seconds = float(pace)
        else:
            seconds = float(eta) / 4 if isinstance(eta, int | float) else self.options.poll_min_seconds
        bounded = min(max(seconds, self.options.poll_min_seconds), self.options.poll_max_seconds)
        return bounded * self.rng.uniform(0.9, 1.1)

    async def _stream_until_admitted(self, queue_token: str) -> str | None:
        """The waiting-room stream (SSE) until it says admitted; None when it ends otherwise (the
        caller falls back to polling)."""
        client = self.api.stream_client
        assert client is not None
        started = time.monotonic()
        url = f"/api/queue/{self.plan.event_id}/stream"
        try:
            async with client.stream("GET", url, params={"token": queue_token}) as response:
                self.api.recorder.request("stream", started, response.status_code)
                if response.status_code != 200:
                    return None
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    body = httpx.Response(200, content=line[5:].strip()).json()
                    if body.get("status") == "admitted" and body.get("accessToken"):
                        return str(body["accessToken"])
                    if body.get("status") == "expired":
                        raise FanEnded("access_expired")
        except httpx.HTTPError as exc:
            self.api.recorder.request("stream", started, 0, type(exc).__name__)
        return None

    async def _read_event(self) -> dict[str, Any]:
        answer = await self._call("event", "GET", f"/api/events/{self.plan.event_id}")
        if not answer.ok or not isinstance(answer.body, dict):
            raise FanEnded("failed")
        return answer.body

    async def _hold(self, access_token: str) -> tuple[str, int, dict[str, Any] | None]:
        """A hold on what the fan chose: (hold id, places, None); or, for general admission with
        `express`, the order itself: ("", places, order)."""
        low, high = self.options.quantity
        wanted = self.rng.randint(low, max(low, min(high, self.plan.max_per_fan)))
        headers = {"X-Access-Token": access_token}
        for _ in range(MAX_HOLD_ATTEMPTS):
            event = await self._read_event()
            open_sections = [s for s in event.get("sections", []) if int(s.get("available", 0)) > 0]
            if not open_sections:
                raise FanEnded("sold_out")
            section = self.rng.choice(open_sections)
            quantity = min(wanted, int(section["available"]))
            body: dict[str, Any]
            if section.get("kind") == "reserved":
                seats = await self._choose_seats(int(section["id"]), quantity)
                if not seats:
                    continue
                body, quantity = {"seatIds": seats}, len(seats)
            else:
                body = {"sectionId": int(section["id"]), "quantity": quantity}
                if self.options.express:
                    answer = await self._call_again_if_unanswered(
                        "order",
                        "POST",
                        "/api/orders",
                        json={**body, "buyer": self._buyer()},
                        headers=headers | {"Idempotency-Key": f"loadtest-{self.user}"},
                    )
                    if answer.ok and isinstance(answer.body, dict):
                        self.api.recorder.places_ordered += int(answer.body.get("quantity", 0))
                        return "", quantity, answer.body
                    if answer.code == "seats_unavailable":
                        continue  # someone was faster: look again
                    if answer.code in ("access_required", "access_expired"):
                        raise FanEnded("access_expired")
                    raise FanEnded("failed")
            answer = await self._call(
                "hold", "POST", f"/api/events/{self.plan.event_id}/holds", json=body, headers=headers
            )
            if answer.ok and isinstance(answer.body, dict):
                return str(answer.body["holdId"]), quantity, None
            if answer.code == "seats_unavailable":
                continue  # someone was faster: look again
            if answer.code in ("access_required", "access_expired"):
                raise FanEnded("access_expired")
            raise FanEnded("failed")
        raise FanEnded("sold_out")

    async def _choose_seats(self, section_id: int, quantity: int) -> list[int]:
        """Side by side where the map allows: a run of `quantity` seats from a random free one."""
        answer = await self._call(
            "seats",
            "GET",
            f"/api/events/{self.plan.event_id}/seats",
            params={"section": str(section_id), "status": "available"},
        )
        if not answer.ok or not isinstance(answer.body, dict):
            raise FanEnded("failed")
        free = [int(seat["id"]) for seat in answer.body.get("seats", []) if seat.get("status") == "available"]
        if not free:
            return []
        start = self.rng.randrange(len(free))
        return free[start : start + quantity] or free[:quantity]

    async def _order(self, hold_id: str) -> dict[str, Any]:
        answer = await self._call_again_if_unanswered(
            "order",
            "POST",
            "/api/orders",
            json={"holdId": hold_id, "buyer": self._buyer()},
            headers={"Idempotency-Key": f"loadtest-{self.user}"},
        )
        if not answer.ok or not isinstance(answer.body, dict):
            raise FanEnded("access_expired" if answer.code == "hold_expired" else "failed")
        self.api.recorder.places_ordered += int(answer.body.get("quantity", 0))
        return answer.body

    def _buyer(self) -> dict[str, str]:
        return {"email": f"fan-{self.user}@example.com", "name": f"Fan {self.index}"}

    async def _pay(self, order: dict[str, Any]) -> None:
        """Card APRO on the simulator's checkout: its control API does what the form does."""
        simulator = self.api.simulator
        assert simulator is not None
        checkout = httpx.URL(await self._checkout_url(order))
        if not same_server(checkout, simulator.base_url):
            # The checkout is somewhere this run was not given: no payment, no traffic there.
            raise FanEnded("ordered")
        for _ in range(ORDER_PRESSES):
            answer = await self._call(
                "pay",
                "POST",
                "/_sim/payments",
                json={"preferenceId": checkout.params.get("pref_id", ""), "outcome": "APRO"},
                on_simulator=True,
            )
            if answer.ok:
                return
            if answer.status != 0:
                raise FanEnded("failed")
            # No answer (a dropped connection, a timeout): the card may have been charged. A buyer
            # looks at their order before paying again, never presses twice at once; unpaid orders
            # would hold their places until they expire, and the sale would never sell out.
            if await self._paid_within(order, PAY_LOOK_SECONDS):
                return
        raise FanEnded("failed")

    async def _paid_within(self, order: dict[str, Any], seconds: float) -> bool:
        """Whether the order page shows the order paid, refreshed until `seconds` have passed."""
        headers = {"Authorization": f"Bearer {order['orderToken']}"}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            answer = await self._call("order_status", "GET", f"/api/orders/{order['id']}", headers=headers)
            if answer.ok and isinstance(answer.body, dict) and answer.body.get("status") == "paid":
                return True
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(ORDER_POLL_SECONDS)

    async def _checkout_url(self, order: dict[str, Any]) -> str:
        """The order's checkout. An order answered while MercadoPago was slow or down comes without
        one (`checkoutUrl: null`) and the service's worker makes it later: the buyer's order page
        refreshes until it shows the button, and so does the fan, within --paid-timeout."""
        url = order.get("checkoutUrl")
        if url:
            return str(url)
        headers = {"Authorization": f"Bearer {order['orderToken']}"}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.paid_timeout_seconds
        while loop.time() < deadline:
            await asyncio.sleep(ORDER_POLL_SECONDS)
            answer = await self._call("order_status", "GET", f"/api/orders/{order['id']}", headers=headers)
            if answer.ok and isinstance(answer.body, dict) and answer.body.get("checkoutUrl"):
                return str(answer.body["checkoutUrl"])
        raise FanEnded("ordered")

    async def _await_tickets(self, order: dict[str, Any], places: int) -> str:
        if not await self._paid_within(order, self.options.paid_timeout_seconds):
            return "not_paid"
        self.api.recorder.orders_paid += 1
        headers = {"Authorization": f"Bearer {order['orderToken']}"}
        answer = await self._call("tickets", "GET", f"/api/orders/{order['id']}/tickets", headers=headers)
        if not answer.ok or not isinstance(answer.body, dict):
            return "tickets_missing"
        issued = [t for t in answer.body.get("tickets", []) if t.get("code")]
        self.api.recorder.tickets_issued += len(issued)
        return "bought" if len(issued) == places else "tickets_missing"
