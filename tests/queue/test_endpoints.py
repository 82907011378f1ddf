"""The waiting room over HTTP, in-process and on Redis, with time moved by an injected clock."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.conftest import ADMIN, DatabaseUnderTest, make_settings, services_of, serving
from tests.factories import ga_section, known_user
from tests.fakes import FakeClock
from tests.queue.conftest import open_room, tick
from ticketera.queue.redis_backend import EventKeys, RedisQueueBackend


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def make_event(client: httpx.AsyncClient, clock: FakeClock, **overrides: Any) -> int:
    body: dict[str, Any] = {
        "name": "Recital",
        "startsAt": iso(clock.now + timedelta(days=30)),
        "sections": [ga_section(capacity=100)],
        "queue": {"enabled": True, "admitPerMinute": 60, "maxActiveShoppers": 1000, "accessMinutes": 10},
    }
    body.update(overrides)
    response = await client.post("/api/events", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    event_id: int = response.json()["id"]
    return event_id


async def join(client: httpx.AsyncClient, event_id: int, user: str) -> httpx.Response:
    """`user` joins as the organizer's site vouches for them: joining again is the same person."""
    body = {**known_user(client, user), "userInfo": {"name": user}}
    return await client.post(f"/api/queue/{event_id}/join", json=body)


async def status_of(client: httpx.AsyncClient, event_id: int, token: str) -> dict[str, Any]:
    response = await client.get(f"/api/queue/{event_id}/status", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_join_is_idempotent_per_user(room_client: httpx.AsyncClient, clock: FakeClock) -> None:
    event_id = await make_event(room_client, clock)

    first = await join(room_client, event_id, "ana")
    second = await join(room_client, event_id, "beto")
    again = await join(room_client, event_id, "ana")

    assert first.status_code == 201
    body = first.json()
    assert (body["status"], body["position"], body["ahead"]) == ("waiting", 1, 0)
    assert body["etaSeconds"] == 1  # the configured 60/min until an admission rate is measured
    assert "accessToken" not in body or body["accessToken"] is None
    assert second.json()["position"] == 2
    assert again.status_code == 200
    assert again.json()["queueToken"] == body["queueToken"]
    assert again.json()["position"] == 1


async def test_a_bare_user_id_is_a_label_not_a_claim_on_a_place(
    room_client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """The outside probe's repro: joining with someone else's `userId` returned their queue token
    and, once admitted, their access token."""
    event_id = await make_event(room_client, clock)
    url = f"/api/queue/{event_id}/join"
    ana = await join(room_client, event_id, "ana")

    thief = await room_client.post(url, json={"userId": "ana"})
    again = await room_client.post(url, json={"userId": "ana"})

    assert (thief.status_code, thief.json()["position"]) == (201, 2)
    assert thief.json()["queueToken"] != ana.json()["queueToken"]
    assert (again.status_code, again.json()["position"]) == (201, 3)
    await tick(room_client, clock)
    admitted = await status_of(room_client, event_id, ana.json()["queueToken"])
    stolen = await status_of(room_client, event_id, thief.json()["queueToken"])
    access = jwt.decode(admitted["accessToken"], options={"verify_signature": False})
    assert access["sub"] == "ana"
    assert jwt.decode(stolen["accessToken"], options={"verify_signature": False})["sub"] != "ana"


async def test_a_newcomer_gets_an_anonymous_place_kept_by_its_queue_token(
    room_client: httpx.AsyncClient, clock: FakeClock
) -> None:
    event_id = await make_event(room_client, clock)
    url = f"/api/queue/{event_id}/join"
    first = await room_client.post(url, json={})
    token = first.json()["queueToken"]
    other = await room_client.post(url, json={})

    reload = await room_client.post(url, json={}, headers={"Authorization": f"Bearer {token}"})

    assert (first.status_code, first.json()["position"]) == (201, 1)
    assert (other.status_code, other.json()["position"]) == (201, 2)
    assert (reload.status_code, reload.json()["position"], reload.json()["queueToken"]) == (200, 1, token)
    identity = jwt.decode(token, options={"verify_signature": False})["sub"]
    assert identity.startswith("~")
    assert len(identity) > 20


async def test_a_queue_token_of_another_event_or_a_forged_one_is_refused(
    room_client: httpx.AsyncClient, clock: FakeClock
) -> None:
    event_id = await make_event(room_client, clock)
    other_event = await make_event(room_client, clock)
    token = (await join(room_client, other_event, "ana")).json()["queueToken"]
    forged = jwt.encode({"typ": "queue", "eid": event_id, "sub": "ana"}, "x" * 32, algorithm="HS256")
    url = f"/api/queue/{event_id}/join"

    answers = [
        await room_client.post(url, json={}, headers={"Authorization": f"Bearer {given}"})
        for given in (token, forged)
    ]

    assert [(answer.status_code, answer.json()["error"]) for answer in answers] == [
        (401, "invalid_token"),
        (401, "invalid_token"),
    ]


async def test_the_organizers_assertion_gives_a_user_their_place_on_another_device(
    room_client: httpx.AsyncClient, clock: FakeClock
) -> None:
    event_id = await make_event(room_client, clock)
    url = f"/api/queue/{event_id}/join"
    phone = await join(room_client, event_id, "ana")
    await join(room_client, event_id, "beto")
    clock.advance(600)

    laptop = await room_client.post(url, json=known_user(room_client, "ana"))

    assert (laptop.status_code, laptop.json()["position"]) == (200, 1)
    assert laptop.json()["queueToken"] == phone.json()["queueToken"]


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda body: {**body, "userId": "beto"}, id="signed-for-another-user"),
        pytest.param(
            lambda body: {**body, "userAssertion": body["userAssertion"][:-2] + "AA"}, id="bad-signature"
        ),
        pytest.param(lambda body: {**body, "userAssertion": "v1.123"}, id="malformed"),
    ],
)
async def test_a_forged_assertion_is_refused(
    room_client: httpx.AsyncClient, clock: FakeClock, tamper: Any
) -> None:
    event_id = await make_event(room_client, clock)

    response = await room_client.post(
        f"/api/queue/{event_id}/join", json=tamper(known_user(room_client, "ana"))
    )

    assert (response.status_code, response.json()["error"]) == (401, "invalid_user_assertion")


async def test_assertions_are_refused_where_the_organizer_shares_no_secret(
    db: DatabaseUnderTest, tmp_path: Path, clock: FakeClock
) -> None:
    settings = make_settings(db.url, tmp_path, user_assertion_secret=None)
    async with serving(settings, clock=clock) as client:
        event_id = await make_event(client, clock)
        response = await client.post(f"/api/queue/{event_id}/join", json=known_user(client, "ana"))

    assert (response.status_code, response.json()["error"]) == (401, "invalid_user_assertion")
    assert "USER_ASSERTION_SECRET" in response.json()["message"]


async def test_an_event_s_line_is_kept_three_days_after_it_starts(
    room_client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Then forgotten, so past events hold no memory: the admission step gives every key of the
    line that deadline (Redis), or drops the in-process line once it passes."""
    event_id = await make_event(room_client, clock)
    starts_at = clock.now + timedelta(days=30)
    await join(room_client, event_id, "ana")

    await tick(room_client, clock)

    backend = services_of(room_client.app).waiting_room.backend  # type: ignore[attr-defined]
    if isinstance(backend, RedisQueueBackend):
        deadline_ms = await backend.connection.client.pexpiretime(EventKeys(event_id).users)
        assert deadline_ms == int((starts_at + timedelta(days=3)).timestamp() * 1000)
    else:
        # Another event's admission steps go on (the in-process backend forgets lines on them).
        await make_event(room_client, clock, startsAt=iso(clock.now + timedelta(days=90)))
        clock.advance(timedelta(days=33, seconds=1).total_seconds())
        assert await backend.view(event_id, "ana", now_ms=clock.ms) is not None
        await tick(room_client, clock)
        assert await backend.view(event_id, "ana", now_ms=clock.ms) is None


async def test_admitted_users_claim_a_signed_access_token(
    room_client: httpx.AsyncClient, clock: FakeClock
) -> None:
    event_id = await make_event(room_client, clock)
    tokens = [(await join(room_client, event_id, f"user-{index}")).json()["queueToken"] for index in range(8)]

    admitted = await tick(room_client, clock)
    first = await status_of(room_client, event_id, tokens[0])
    repeated = await status_of(room_client, event_id, tokens[0])
    sixth = await status_of(room_client, event_id, tokens[5])

    assert admitted == 5  # the burst at 60/min
    assert first["status"] == "admitted"
    assert first["accessExpiresAt"] == iso(clock.now + timedelta(minutes=10))
    assert repeated["accessToken"] == first["accessToken"]
    claims = jwt.decode(first["accessToken"], options={"verify_signature": False})
    assert (claims["typ"], claims["eid"], claims["sub"]) == ("access", event_id, "user-0")
    room = services_of(room_client.app).waiting_room  # type: ignore[attr-defined]
    assert room.signer.verify_access_token(first["accessToken"], event_id, now=clock.now).user_id == "user-0"
    assert (sixth["status"], sixth["position"], sixth["ahead"]) == ("waiting", 1, 0)
    assert sixth["etaSeconds"] > 0


async def test_unclaimed_turns_are_skipped_and_access_runs_out(
    room_client: httpx.AsyncClient, clock: FakeClock
) -> None:
    event_id = await make_event(room_client, clock, queue={"admitPerMinute": 60, "maxActiveShoppers": 1})
    ana, beto, carla = [(await join(room_client, event_id, user)).json()["queueToken"] for user in "abc"]

    await tick(room_client, clock)  # a is admitted but never comes back
    clock.advance(121)  # the claim window (120 s) passes
    await tick(room_client, clock)
    expired_a = await status_of(room_client, event_id, ana)
    admitted_b = await status_of(room_client, event_id, beto)
    clock.advance(601)  # b's ten minutes of access run out
    expired_b = await status_of(room_client, event_id, beto)
    await tick(room_client, clock)
    admitted_c = await status_of(room_client, event_id, carla)

    assert expired_a["status"] == "expired"
    assert admitted_b["status"] == "admitted"
    assert expired_b["status"] == "expired"
    assert admitted_c["status"] == "admitted"


async def test_an_event_without_queue_admits_at_once(
    room_client: httpx.AsyncClient, clock: FakeClock
) -> None:
    event_id = await make_event(room_client, clock, queue={"enabled": False, "accessMinutes": 15})

    joined = await join(room_client, event_id, "ana")
    status = await status_of(room_client, event_id, joined.json()["queueToken"])

    assert joined.status_code == 201
    assert joined.json()["status"] == "admitted"
    assert joined.json()["accessToken"]
    assert joined.json()["accessExpiresAt"] == iso(clock.now.replace(microsecond=0) + timedelta(minutes=15))
    assert status["status"] == "admitted"


async def test_the_prequeue_is_shuffled_at_the_on_sale_ahead_of_later_joins(
    room_client: httpx.AsyncClient, clock: FakeClock
) -> None:
    on_sale = clock.now + timedelta(minutes=5)
    event_id = await make_event(
        room_client, clock, onSaleAt=iso(on_sale), queue={"admitPerMinute": 1, "maxActiveShoppers": 1}
    )
    early = {
        user: (await join(room_client, event_id, user)).json() for user in [f"early-{n}" for n in range(20)]
    }

    assert {body["status"] for body in early.values()} == {"waiting"}
    assert {body["position"] for body in early.values()} == {None}
    assert {body["preQueue"] for body in early.values()} == {True}
    assert {body["etaSeconds"] for body in early.values()} == {300}
    assert await tick(room_client, clock) == 0  # nothing before the on-sale

    clock.advance(301)
    late = (await join(room_client, event_id, "late")).json()
    await tick(room_client, clock)
    places = {
        user: await status_of(room_client, event_id, body["queueToken"]) for user, body in early.items()
    }
    late_place = await status_of(room_client, event_id, late["queueToken"])

    admitted = [user for user, place in places.items() if place["status"] == "admitted"]
    waiting_positions = sorted(place["position"] for place in places.values() if place["status"] == "waiting")
    assert len(admitted) == 1
    assert waiting_positions == list(range(1, 20))
    assert late_place["position"] == 20
    drawn_order = sorted(places, key=lambda user: places[user]["position"] or 0)
    assert drawn_order != sorted(places)  # shuffled (1 chance in 20! of a false failure)


async def test_leaving_frees_the_place(room_client: httpx.AsyncClient, clock: FakeClock) -> None:
    event_id = await make_event(room_client, clock)
    ana = (await join(room_client, event_id, "ana")).json()["queueToken"]
    beto = (await join(room_client, event_id, "beto")).json()["queueToken"]

    left = await room_client.delete(f"/api/queue/{event_id}/me", headers={"Authorization": f"Bearer {ana}"})

    assert left.status_code == 204
    assert (await status_of(room_client, event_id, ana))["status"] == "left"
    assert (await status_of(room_client, event_id, beto))["position"] == 1
    rejoined = await join(room_client, event_id, "ana")
    assert (rejoined.status_code, rejoined.json()["position"]) == (201, 2)


async def test_admins_see_stats_and_change_admission_live(
    room_client: httpx.AsyncClient, clock: FakeClock
) -> None:
    event_id = await make_event(room_client, clock)
    for index in range(12):
        await join(room_client, event_id, f"u{index}")

    refused = await room_client.get(f"/api/queue/{event_id}/stats")
    paused = await room_client.patch(f"/api/queue/{event_id}", json={"paused": True}, headers=ADMIN)
    while_paused = await tick(room_client, clock)
    clock.advance(1)
    resumed = await room_client.patch(
        f"/api/queue/{event_id}",
        json={"paused": False, "admitPerMinute": 120, "maxActiveShoppers": 3},
        headers=ADMIN,
    )
    after = await tick(room_client, clock)
    stats = await room_client.get(f"/api/queue/{event_id}/stats", headers=ADMIN)

    assert refused.status_code == 401
    assert paused.status_code == 200
    assert paused.json()["paused"] is True
    assert while_paused == 0
    assert resumed.json()["admitPerMinute"] == 120
    assert after == 3  # the new cap
    assert stats.json() | {"backend": ""} == {
        "eventId": event_id,
        "enabled": True,
        "paused": False,
        "waiting": 9,
        "preQueue": 0,
        "admitted": 3,
        "activeShoppers": 3,
        "admitPerMinute": 120,
        "maxActiveShoppers": 3,
        "measuredAdmitPerMinute": 3,
        "released": True,  # no onSaleAt: the (empty) pre-queue is released at the first tick
        "backend": "",
    }


async def test_a_full_waiting_room_refuses_newcomers_but_not_those_in_line(
    request: pytest.FixtureRequest, room_kind: str, db: DatabaseUnderTest, tmp_path: Path, clock: FakeClock
) -> None:
    cluster_url = request.getfixturevalue("redis_cluster_url") if room_kind == "cluster" else None
    async with open_room(
        room_kind, db.url, tmp_path, clock, cluster_url=cluster_url, queue_max_size=2
    ) as client:
        event_id = await make_event(client, clock)
        await join(client, event_id, "a")
        await join(client, event_id, "b")

        refused = await join(client, event_id, "c")
        rejoin = await join(client, event_id, "a")

    assert refused.status_code == 503
    assert refused.json()["error"] == "queue_full"
    assert int(refused.headers["retry-after"]) >= 1
    assert rejoin.status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"userId": "x" * 129}, "userId"),
        ({"userId": "bad\u0007id"}, "userId"),
        ({"userId": ""}, "userId"),
        ({"userId": "~anonymous-looking"}, "userId"),
        ({"userAssertion": "v1.1.x"}, "body"),
        ({"userId": "ok", "extra": 1}, "extra"),
    ],
)
async def test_bad_join_input_is_422(
    room_client: httpx.AsyncClient, clock: FakeClock, body: dict[str, Any], field: str
) -> None:
    event_id = await make_event(room_client, clock)

    response = await room_client.post(f"/api/queue/{event_id}/join", json=body)

    assert response.status_code == 422
    assert response.json()["fields"][0]["field"] == field


async def test_unknown_draft_or_cancelled_events(room_client: httpx.AsyncClient, clock: FakeClock) -> None:
    draft = await make_event(room_client, clock, status="draft")
    cancelled = await make_event(room_client, clock)
    await room_client.patch(f"/api/events/{cancelled}", json={"status": "cancelled"}, headers=ADMIN)

    unknown = await join(room_client, 999_999, "ana")
    drafted = await join(room_client, draft, "ana")
    gone = await join(room_client, cancelled, "ana")
    malformed = await room_client.post(
        f"/api/queue/{draft}/join", content=b"{nope", headers={"Content-Type": "application/json"}
    )

    assert (unknown.status_code, unknown.json()["error"]) == (404, "event_not_found")
    assert drafted.status_code == 404
    assert (gone.status_code, gone.json()["error"]) == (409, "event_cancelled")
    assert malformed.status_code == 422


async def test_tokens_are_checked(room_client: httpx.AsyncClient, clock: FakeClock) -> None:
    event_id = await make_event(room_client, clock)
    other_event = await make_event(room_client, clock, name="Otro")
    token = (await join(room_client, event_id, "ana")).json()["queueToken"]
    other_token = (await join(room_client, other_event, "ana")).json()["queueToken"]
    forged = jwt.encode(
        {"typ": "queue", "eid": event_id, "sub": "ana"}, "not-the-key-" * 4, algorithm="HS256"
    )
    await tick(room_client, clock)
    access = (await status_of(room_client, event_id, token))["accessToken"]

    def bearer(value: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {value}"}

    url = f"/api/queue/{event_id}/status"
    responses = {
        "missing": await room_client.get(url),
        "garbage": await room_client.get(url, headers=bearer("garbage")),
        "forged": await room_client.get(url, headers=bearer(forged)),
        "other event": await room_client.get(url, headers=bearer(other_token)),
        "access token": await room_client.get(url, headers=bearer(access)),
    }

    assert {name: response.status_code for name, response in responses.items()} == dict.fromkeys(
        responses, 401
    )
    assert {response.json()["error"] for response in responses.values()} == {"invalid_token"}
    room = services_of(room_client.app).waiting_room  # type: ignore[attr-defined]
    clock.advance(601)
    with pytest.raises(Exception, match="expired"):
        room.signer.verify_access_token(access, event_id, now=clock.now)


async def test_the_stream_pushes_the_status_as_server_sent_events(
    room_client: httpx.AsyncClient, clock: FakeClock
) -> None:
    event_id = await make_event(room_client, clock)
    token = (await join(room_client, event_id, "ana")).json()["queueToken"]
    await tick(room_client, clock)

    response = await room_client.get(f"/api/queue/{event_id}/stream", params={"token": token})
    refused = await room_client.get(f"/api/queue/{event_id}/stream", params={"token": "nope"})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "event: status" in response.text
    assert '"status":"admitted"' in response.text
    assert refused.status_code == 401


async def test_a_paused_line_says_so_in_the_status_and_gives_no_estimate(
    room_client: httpx.AsyncClient, clock: FakeClock
) -> None:
    event_id = await make_event(room_client, clock)
    await join(room_client, event_id, "ana")
    beto = (await join(room_client, event_id, "beto")).json()["queueToken"]
    before = await status_of(room_client, event_id, beto)

    await room_client.patch(f"/api/queue/{event_id}", json={"paused": True}, headers=ADMIN)
    clock.advance(5)  # past the settings' cache
    while_paused = await status_of(room_client, event_id, beto)
    await room_client.patch(f"/api/queue/{event_id}", json={"paused": False}, headers=ADMIN)
    clock.advance(5)
    resumed = await status_of(room_client, event_id, beto)
    schema = (await room_client.get("/openapi.json")).json()["components"]["schemas"]["QueueStatusOut"]

    assert before["paused"] is False
    assert (while_paused["status"], while_paused["paused"], while_paused["etaSeconds"]) == (
        "waiting",
        True,
        None,
    )
    assert while_paused["position"] == before["position"]
    assert resumed["paused"] is False
    assert "paused" in schema["properties"]["paused"]["description"]


async def test_a_waiting_user_is_asked_to_check_again_by_place(
    room_client: httpx.AsyncClient, clock: FakeClock
) -> None:
    # 60 a minute: the 100th in line cannot be let in before 99 s, the 10th before 9 s.
    event_id = await make_event(room_client, clock)
    bodies = [(await join(room_client, event_id, f"fan-{index}")).json() for index in range(100)]

    front, tenth, back = bodies[0], bodies[9], bodies[99]
    assert (front["checkAgainSeconds"], tenth["checkAgainSeconds"]) == (2, 9)
    # At most half of the claim window (QUEUE_CLAIM_SECONDS, 120 by default): 60 s.
    assert back["checkAgainSeconds"] == 60
    await room_client.patch(f"/api/queue/{event_id}", json={"paused": True}, headers=ADMIN)
    clock.advance(5)  # past the settings' cache
    paused_at_the_back = await status_of(room_client, event_id, back["queueToken"])
    assert (paused_at_the_back["paused"], paused_at_the_back["checkAgainSeconds"]) == (True, 60)
    await room_client.patch(f"/api/queue/{event_id}", json={"paused": False}, headers=ADMIN)
    clock.advance(5)
    await tick(room_client, clock)
    admitted = await status_of(room_client, event_id, front["queueToken"])
    assert (admitted["status"], admitted["checkAgainSeconds"]) == ("admitted", None)


async def test_the_prequeue_is_asked_to_check_again_when_the_sale_opens(
    room_client: httpx.AsyncClient, clock: FakeClock
) -> None:
    on_sale = clock.now + timedelta(seconds=40)
    event_id = await make_event(room_client, clock, onSaleAt=iso(on_sale))

    early = (await join(room_client, event_id, "early")).json()
    clock.advance(39)
    last_second = await status_of(room_client, event_id, early["queueToken"])

    assert (early["preQueue"], early["checkAgainSeconds"]) == (True, 40)
    assert last_second["checkAgainSeconds"] == 2
