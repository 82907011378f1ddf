"""One fan against a scripted API (no server): what they do when an answer does not come."""

from __future__ import annotations

import asyncio
from typing import Any

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
