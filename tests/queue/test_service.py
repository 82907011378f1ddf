"""Fairness of the pre-queue draw: every order equally likely, checked with a chi-square test."""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from tests.fakes import FakeClock
from ticketera.events.models import EventStatus
from ticketera.kit.tokens import TokenSigner
from ticketera.queue.memory import MemoryQueueBackend
from ticketera.queue.service import EventQueueSettings, WaitingRoom, draw_order

USERS = ["ana", "beto", "carla", "dario"]
PERMUTATIONS = list(itertools.permutations(USERS))


def chi_square_limit(degrees: int, z: float = 4.753) -> float:
    """Upper critical value of chi-square (Wilson-Hilferty); z = 4.753 is a one-sided p of 1e-6,
    so a fair shuffle fails this test about once in a million runs."""
    k = 2 / (9 * degrees)
    return degrees * (1 - k + z * math.sqrt(k)) ** 3


def chi_square(counts: Counter[tuple[str, ...]], trials: int) -> float:
    expected = trials / len(PERMUTATIONS)
    return sum((counts[order] - expected) ** 2 / expected for order in PERMUTATIONS)


def orders_drawn(shuffle: Callable[[list[str]], list[str]], trials: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(shuffle(list(USERS))) for _ in range(trials))


def naive_shuffle(users: list[str]) -> list[str]:
    """The classic mistake: swap each place with any place. Not uniform; the test must catch it."""
    order = list(users)
    for index in range(len(order)):
        other = random.randrange(len(order))
        order[index], order[other] = order[other], order[index]
    return order


def test_the_draw_gives_every_order_the_same_chance() -> None:
    trials = 24_000
    counts = orders_drawn(draw_order, trials)

    assert set(counts) == set(PERMUTATIONS)
    assert chi_square(counts, trials) < chi_square_limit(len(PERMUTATIONS) - 1)


def test_the_chi_square_check_catches_a_biased_shuffle() -> None:
    trials = 24_000
    counts = orders_drawn(naive_shuffle, trials)

    assert chi_square(counts, trials) > chi_square_limit(len(PERMUTATIONS) - 1)


async def test_releasing_the_prequeue_through_the_waiting_room_is_uniform() -> None:
    clock = FakeClock(datetime(2030, 1, 1, tzinfo=UTC))
    backend = MemoryQueueBackend()
    room = WaitingRoom(
        backend,
        TokenSigner("x" * 32),
        load_settings=_no_settings,
        clock=clock,
        max_waiting=100,
        claim_seconds=60,
    )
    trials = 4_800
    counts: Counter[tuple[str, ...]] = Counter()
    for event_id in range(trials):
        for user in USERS:
            await backend.join(event_id, user, now_ms=clock.ms, on_sale_ms=clock.ms + 1, max_waiting=100)
        await room.release_prequeue(event_id)
        ahead = {}
        for user in USERS:
            view = await backend.view(event_id, user, now_ms=clock.ms)
            assert view is not None
            ahead[user] = view.ahead or 0
        counts[tuple(sorted(USERS, key=ahead.__getitem__))] += 1

    assert chi_square(counts, trials) < chi_square_limit(len(PERMUTATIONS) - 1)


async def _no_settings(event_id: int) -> EventQueueSettings | None:
    return None


def test_admission_pauses_for_paused_and_unpublished_events() -> None:
    base = EventQueueSettings(
        event_id=1,
        status=EventStatus.PUBLISHED,
        on_sale_at=None,
        starts_at=datetime(2030, 1, 1, tzinfo=UTC),
        enabled=True,
        admit_per_minute=60,
        max_active_shoppers=10,
        access_minutes=10,
        paused=False,
    )
    assert base.admitting
    assert not replace(base, paused=True).admitting
    assert not replace(base, status=EventStatus.PAUSED).admitting
    assert not replace(base, status=EventStatus.CANCELLED).admitting
