"""One fan against a scripted API (no server): what they do when an answer does not come."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from ticketera.loadtest import fans
from ticketera.loadtest.fans import Answer, Api, EventPlan, Fan, FanEnded, FanOptions, Section
from ticketera.loadtest.recorder import Recorder

PLAN = EventPlan(
    event_id=7,
    name="Scripted",
    queue_enabled=False,
    max_per_fan=4,
    capacity=10,
    available=10,
    sections=(Section(1, "Campo", "general_admission"),),
)
EVENT = {"sections": [{"id": 1, "kind": "general_admission", "available": 10}]}
ORDER = {"id": 5, "quantity": 2, "orderToken": "t", "checkoutUrl": None}


class ScriptedApi(Api):
    """Answers by step from a script (the last answer of a step repeats), every call remembered."""

    def __init__(self, script: dict[str, list[Answer]]) -> None:
        super().__init__([], 1, None, Recorder())
        self.script = script
        self.calls: list[tuple[str, dict[str, str] | None]] = []

    async def call(self, step: str, method: str, url: str, **options: Any) -> Answer:
        self.calls.append((step, options.get("headers")))
        answers = self.script[step]
        return answers.pop(0) if len(answers) > 1 else answers[0]


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fans, "ORDER_POLL_SECONDS", 0.0)


def fan(api: ScriptedApi) -> Fan:
    return Fan(3, api, PLAN, FanOptions(run_tag="t", think_seconds=0, quantity=(2, 2)), seed=1)


async def test_an_order_that_got_no_answer_is_asked_again_with_the_same_key() -> None:
    api = ScriptedApi(
        {
            "event": [Answer(200, EVENT, "")],
            "order": [Answer(0, None, "ReadTimeout"), Answer(201, ORDER, "")],
        }
    )

    hold_id, places, order = await fan(api)._hold("access")

    assert (hold_id, places, order) == ("", 2, ORDER)
    keys = [headers["Idempotency-Key"] for step, headers in api.calls if step == "order" and headers]
    assert keys == ["loadtest-t-3", "loadtest-t-3"]


async def test_a_buyer_presses_a_few_times_then_gives_up() -> None:
    api = ScriptedApi({"event": [Answer(200, EVENT, "")], "order": [Answer(0, None, "ConnectError")]})

    with pytest.raises(FanEnded) as ended:
        await asyncio.wait_for(fan(api)._hold("access"), timeout=10)

    assert ended.value.outcome == "failed"
    assert sum(1 for step, _ in api.calls if step == "order") == fans.ORDER_PRESSES


SIMULATOR = "http://127.0.0.1:9"
PAYABLE = ORDER | {"checkoutUrl": f"{SIMULATOR}/checkout/v1/redirect?pref_id=p-5"}


def paying_fan(api: ScriptedApi) -> Fan:
    api.simulator = httpx.AsyncClient(base_url=SIMULATOR)  # never called: the script answers
    return fan(api)


async def test_a_payment_that_got_no_answer_is_looked_for_in_the_order_before_paying_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fans, "PAY_LOOK_SECONDS", 0.0)
    api = ScriptedApi(
        {
            "pay": [Answer(0, None, "RemoteProtocolError"), Answer(201, {"id": 1}, "")],
            "order_status": [Answer(200, {"status": "pending_payment"}, "")],
        }
    )

    await paying_fan(api)._pay(PAYABLE)

    assert [step for step, _ in api.calls] == ["pay", "order_status", "pay"]


async def test_a_payment_the_order_shows_paid_is_not_made_twice() -> None:
    api = ScriptedApi(
        {
            "pay": [Answer(0, None, "ReadError")],
            "order_status": [
                Answer(200, {"status": "pending_payment"}, ""),
                Answer(200, {"status": "paid"}, ""),
            ],
        }
    )

    await asyncio.wait_for(paying_fan(api)._pay(PAYABLE), timeout=10)

    assert [step for step, _ in api.calls] == ["pay", "order_status", "order_status"]


async def test_a_refused_payment_is_not_pressed_again() -> None:
    api = ScriptedApi({"pay": [Answer(400, {"error": "bad_request"}, "bad_request")]})

    with pytest.raises(FanEnded) as ended:
        await paying_fan(api)._pay(PAYABLE)

    assert ended.value.outcome == "failed"
    assert [step for step, _ in api.calls] == ["pay"]
