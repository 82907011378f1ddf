"""Webhooks that arrive while the database is down: spooled on disk, paid once it is back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.conftest import services_of
from tests.shop import Shop, Simulator, eventually, preference_id_of
from ticketera.payments.models import PaymentNotification
from ticketera.payments.service import IncomingNotification
from ticketera.payments.spool import NotificationSpool

MOMENT = datetime(2030, 3, 1, 12, 0, tzinfo=UTC)


def notification(resource_id: str, request_id: str = "r-1") -> IncomingNotification:
    return IncomingNotification("webhook", "payment", resource_id, "payment.updated", request_id)


async def test_spooled_notifications_come_back_whole_and_in_arrival_order(tmp_path: Path) -> None:
    spool = NotificationSpool(tmp_path / "spool")
    assert not spool.has_pending()
    await spool.keep(notification("2"), received_at=MOMENT + timedelta(seconds=1))
    await spool.keep(notification("1"), received_at=MOMENT)

    reopened = NotificationSpool(tmp_path / "spool")  # as a restarted process finds them
    pending = reopened.pending()

    assert reopened.has_pending()
    assert [(item.notification, item.received_at) for item in pending] == [
        (notification("1"), MOMENT),
        (notification("2"), MOMENT + timedelta(seconds=1)),
    ]
    for item in pending:
        reopened.discard(item)
    assert not reopened.has_pending()


async def test_an_unreadable_file_is_set_aside_not_retried_forever(tmp_path: Path) -> None:
    spool = NotificationSpool(tmp_path)
    await spool.keep(notification("1"), received_at=MOMENT)
    (tmp_path / "0000-broken.json").write_bytes(b"{not json")

    assert [item.notification for item in spool.pending()] == [notification("1")]
    assert (tmp_path / "0000-broken.unreadable").exists()


def open_breaker(shop: Shop) -> None:
    services_of(shop.app).database.breaker.trip()


async def test_a_payment_approved_while_the_database_is_down_is_paid_once_it_is_back(
    shop: Shop, sim: Simulator
) -> None:
    """MercadoPago hears 200 during the outage (the notification is on disk), and the order is paid
    by the spool's drain as soon as the database answers, not by the reconciler minutes later."""
    services = services_of(shop.app)
    spool = services.payments.spool
    assert spool is not None
    order = await shop.buy(await shop.event())
    open_breaker(shop)

    await sim.pay(preference_id_of(order))
    await sim.drain()

    deliveries = await sim.notifications()
    assert [attempt["status"] for d in deliveries for attempt in d["attempts"]] == [200] * len(deliveries)
    assert spool.has_pending()
    spooled_at = shop.clock()
    shop.clock.advance(20)  # the outage lasts
    services.database.breaker.reset()  # the database answers again
    paid = await shop.wait_for_status(order["id"], "paid", within=30)
    assert paid["status"] == "paid"
    assert not spool.has_pending()
    async with services.database.read_session() as session:
        rows = (await session.execute(PaymentNotification.__table__.select())).all()
    assert rows
    assert {row.received_at.replace(tzinfo=UTC) for row in rows} == {spooled_at}  # when it arrived


async def test_the_webhook_answers_503_when_neither_the_database_nor_the_disk_can_keep_it(
    shop: Shop, sim: Simulator
) -> None:
    services = services_of(shop.app)
    assert services.payments.spool is not None
    spool_folder = services.payments.spool.folder
    spool_folder.parent.mkdir(parents=True, exist_ok=True)
    spool_folder.write_text("a file where the folder should be")
    order = await shop.buy(await shop.event())
    open_breaker(shop)

    await sim.pay(preference_id_of(order))
    await eventually(lambda: _first_attempt_answered(sim))

    deliveries = await sim.notifications()
    assert deliveries[0]["attempts"][0]["status"] == 503
    spool_folder.unlink()
    services.database.breaker.reset()
    assert (await shop.wait_for_status(order["id"], "paid", within=60))["status"] == "paid"


async def _first_attempt_answered(sim: Simulator) -> bool:
    deliveries = await sim.notifications()
    return bool(deliveries and deliveries[0]["attempts"])
