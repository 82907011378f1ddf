"""A hypothesis state machine drives holds, releases, orders, payments, cancellations, time and the
worker against the real services and database, and checks every unit against a simple model.

The model is the rulebook in its plainest form: a unit is sold to one order, or held by one hold
until a deadline, or free. After every step each unit's live status in the database must be the
model's, and no unit may ever be sold twice.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.fakes import FakeClock
from ticketera.events import service as events_service
from ticketera.events.models import Seat
from ticketera.events.schemas import EventCreate
from ticketera.holds import service as holds_service
from ticketera.holds.schemas import HoldRequest
from ticketera.kit.db import Database, create_engine
from ticketera.kit.errors import DomainError
from ticketera.kit.migrate import upgrade
from ticketera.ops.tasks import expire_overdue
from ticketera.orders import service as orders_service
from ticketera.orders.models import OrderReason
from ticketera.orders.schemas import OrderRequest
from ticketera.orders.service import PaymentOutcome

T = TypeVar("T")
USERS = ["ana", "beto", "carla"]
LIMIT = 4
HOLD_MINUTES = 10


@dataclass
class ModelUnit:
    holder: int | None = None  # the hold that took it last (kept after it lapses, like the database)
    until: datetime | None = None
    sold_to: int | None = None

    def free(self, now: datetime) -> bool:
        return self.sold_to is None and (self.holder is None or self.until is None or self.until <= now)


@dataclass
class ModelHold:
    id: int
    public_id: str
    user: str
    units: list[int]
    expires_at: datetime
    status: str = "active"


@dataclass
class ModelOrder:
    id: int
    hold: ModelHold
    expires_at: datetime
    status: str = "pending_payment"


@dataclass
class Model:
    units: dict[int, ModelUnit] = field(default_factory=dict)
    reserved: list[int] = field(default_factory=list)
    places: list[int] = field(default_factory=list)
    holds: dict[int, ModelHold] = field(default_factory=dict)
    orders: dict[int, ModelOrder] = field(default_factory=dict)

    def owned_by(self, user: str, now: datetime) -> int:
        count = 0
        for unit in self.units.values():
            if unit.sold_to is not None:
                count += self.orders[unit.sold_to].hold.user == user
            elif unit.holder is not None and not unit.free(now) and self.holds[unit.holder].user == user:
                count += 1
        return count


class InventoryMachine(RuleBasedStateMachine):
    holds = Bundle("holds")
    orders = Bundle("orders")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.folder = tempfile.TemporaryDirectory()
        self.clock = FakeClock(datetime(2030, 5, 1, 12, tzinfo=UTC))
        self.database = Database(
            create_engine(f"sqlite+aiosqlite:///{Path(self.folder.name) / 'model.db'}", pool_size=2)
        )
        self.model = Model()
        self.keys = 0
        self.event_id = self.run(self._set_up())

    def run(self, work: Awaitable[T]) -> T:
        return self.loop.run_until_complete(work)

    def write(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        async def attempt() -> T:
            async with self.database.write_session() as session:
                return await work(session)

        return self.run(attempt())

    async def _set_up(self) -> int:
        await upgrade(self.database.engine)
        body = {
            "name": "Model",
            "startsAt": (self.clock.now + timedelta(days=30)).isoformat(),
            "maxTicketsPerUser": LIMIT,
            "sections": [
                {"name": "Platea", "price": "100.00", "rows": [{"label": "A", "seats": 6}]},
                {"name": "Campo", "price": "50.00", "capacity": 4},
            ],
        }
        async with self.database.write_session() as session:
            view = await events_service.create_event(
                session, EventCreate.model_validate(body), clock=self.clock
            )
        async with self.database.read_session() as session:
            rows = (await session.execute(select(Seat.id, Seat.row_label).order_by(Seat.id))).all()
        for unit_id, row in rows:
            self.model.units[unit_id] = ModelUnit()
            (self.model.reserved if row is not None else self.model.places).append(unit_id)
        self.ga_section = view.sections[1].section.id
        return view.event.id

    def teardown(self) -> None:
        self.run(self.database.dispose())
        self.loop.close()
        self.folder.cleanup()

    def _hold(self, user: str, request: HoldRequest) -> ModelHold | DomainError:
        async def take(session: AsyncSession) -> holds_service.HoldView:
            plan = await holds_service.plan_hold(
                session, event_id=self.event_id, form=request.root, now=self.clock()
            )
            return await holds_service.hold_units(
                session, plan=plan, user_id=user, now=self.clock(), hold_minutes=HOLD_MINUTES
            )

        try:
            view = self.write(take)
        except DomainError as error:
            return error
        hold = ModelHold(view.id, view.public_id, user, [unit.id for unit in view.units], view.expires_at)
        self.model.holds[hold.id] = hold
        for unit_id in hold.units:
            self.model.units[unit_id] = ModelUnit(holder=hold.id, until=hold.expires_at)
        return hold

    @rule(target=holds, user=st.sampled_from(USERS), picks=st.sets(st.integers(0, 5), min_size=1, max_size=3))
    def hold_seats(self, user: str, picks: set[int]) -> Any:
        now = self.clock()
        seat_ids = sorted(self.model.reserved[index] for index in picks)
        over_limit = self.model.owned_by(user, now) + len(seat_ids) > LIMIT
        taken = any(not self.model.units[seat].free(now) for seat in seat_ids)
        outcome = self._hold(user, HoldRequest.model_validate({"seatIds": seat_ids}))
        # What is visibly gone is refused before the buyer's limit is counted.
        if taken:
            assert isinstance(outcome, holds_service.SeatsUnavailable), outcome
        elif over_limit:
            assert isinstance(outcome, holds_service.LimitExceeded), outcome
        else:
            assert isinstance(outcome, ModelHold), outcome
            assert sorted(outcome.units) == seat_ids
            return outcome
        return None  # refused: nothing joins the bundle

    @rule(target=holds, user=st.sampled_from(USERS), quantity=st.integers(1, 3))
    def hold_places(self, user: str, quantity: int) -> Any:
        now = self.clock()
        over_limit = self.model.owned_by(user, now) + quantity > LIMIT
        free = sum(self.model.units[unit].free(now) for unit in self.model.places)
        outcome = self._hold(
            user, HoldRequest.model_validate({"sectionId": self.ga_section, "quantity": quantity})
        )
        if free < quantity:
            assert isinstance(outcome, holds_service.SeatsUnavailable), outcome
        elif over_limit:
            assert isinstance(outcome, holds_service.LimitExceeded), outcome
        else:
            assert isinstance(outcome, ModelHold), outcome
            assert len(outcome.units) == quantity
            assert set(outcome.units) <= set(self.model.places)
            return outcome
        return None  # refused: nothing joins the bundle

    @rule(hold=holds)
    def release(self, hold: ModelHold | None) -> None:
        if hold is None:
            return

        async def give_back(session: AsyncSession) -> None:
            await holds_service.release_hold(session, hold.public_id, actor="test", now=self.clock())

        try:
            self.write(give_back)
        except holds_service.HoldAlreadyOrdered:
            assert hold.status == "ordered"
            return
        if hold.status == "active":
            hold.status = "released"
            for unit in self.model.units.values():
                if unit.holder == hold.id and unit.sold_to is None:
                    unit.holder, unit.until = None, None

    @rule(target=orders, hold=holds)
    def place_order(self, hold: ModelHold | None) -> Any:
        if hold is None:
            return None  # refused: nothing joins the bundle
        now = self.clock()
        self.keys += 1
        request = OrderRequest.model_validate(
            {"holdId": hold.public_id, "buyer": {"email": "a@example.com", "name": "A"}}
        )

        async def create(session: AsyncSession) -> orders_service.OrderView:
            return await orders_service.create_order(
                session, key=f"model-key-{self.keys}", request=request, now=now, payment_minutes=HOLD_MINUTES
            )

        live = (
            hold.status == "active"
            and hold.expires_at > now
            and all(
                self.model.units[unit].holder == hold.id and not self.model.units[unit].free(now)
                for unit in hold.units
            )
        )
        try:
            view = self.write(create)
        except (holds_service.HoldExpired, holds_service.HoldAlreadyOrdered):
            refused = True
        else:
            refused = False
        if refused:
            assert not live
            return None  # refused: nothing joins the bundle
        assert live
        hold.status = "ordered"
        order = ModelOrder(view.order.id, hold, view.order.expires_at)
        self.model.orders[order.id] = order
        for unit in hold.units:
            self.model.units[unit].until = order.expires_at
        return order

    @rule(order=orders)
    def pay(self, order: ModelOrder | None) -> None:
        if order is None:
            return

        async def confirm(session: AsyncSession) -> PaymentOutcome:
            return await orders_service.confirm_payment(session, order.id, actor="test", now=self.clock())

        outcome = self.write(confirm)
        if order.status == "paid":
            assert outcome is PaymentOutcome.ALREADY_PAID
        elif order.status == "cancelled":
            assert outcome is PaymentOutcome.NOT_PAYABLE
        elif (
            self.clock() >= order.expires_at
            and self.model.owned_by(order.hold.user, self.clock()) + len(order.hold.units) > LIMIT
        ):
            # Paid late while the buyer holds or bought others since: refunded, not sold.
            assert outcome is PaymentOutcome.LIMIT_EXCEEDED
        elif all(
            self.model.units[unit].holder == order.hold.id and self.model.units[unit].sold_to is None
            for unit in order.hold.units
        ):
            assert outcome is PaymentOutcome.SOLD
            order.status = "paid"
            for unit in order.hold.units:
                self.model.units[unit] = ModelUnit(holder=order.hold.id, sold_to=order.id)
        else:
            assert outcome is PaymentOutcome.SEATS_LOST

    @rule(order=orders)
    def cancel(self, order: ModelOrder | None) -> None:
        if order is None:
            return

        async def cancel(session: AsyncSession) -> None:
            await orders_service.cancel_order(
                session, order.id, actor="test", now=self.clock(), reason=OrderReason.ADMIN
            )

        try:
            self.write(cancel)
        except orders_service.OrderNotCancellable:
            assert order.status == "paid"
            return
        if order.status != "cancelled":
            order.status = "cancelled"
            for unit in self.model.units.values():
                if unit.holder == order.hold.id and unit.sold_to is None and not unit.free(self.clock()):
                    unit.holder, unit.until = None, None

    @rule(seconds=st.sampled_from([30, 290, 610]))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule()
    def run_worker(self) -> None:
        self.run(expire_overdue(self.database, self.clock))

    @invariant()
    def units_match_the_model(self) -> None:
        now = self.clock()

        async def read() -> list[Any]:
            async with self.database.read_session() as session:
                return list(
                    (
                        await session.execute(select(Seat.id, Seat.status, Seat.held_until, Seat.order_id))
                    ).all()
                )

        for unit_id, status, held_until, order_id in self.run(read()):
            expected = self.model.units[unit_id]
            if expected.sold_to is not None:
                assert (status, order_id) == ("sold", expected.sold_to), unit_id
            elif expected.free(now):
                assert status == "available" or (status == "held" and held_until <= now), unit_id
            else:
                assert status == "held", unit_id
                assert held_until == expected.until, unit_id

    @invariant()
    def nothing_is_sold_twice(self) -> None:
        paid = [order for order in self.model.orders.values() if order.status == "paid"]
        sold_units = [unit for order in paid for unit in order.hold.units]
        assert len(sold_units) == len(set(sold_units))


InventoryMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_inventory_rules = InventoryMachine.TestCase
