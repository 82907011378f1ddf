"""The demo event `ticketera dev` loads, so a fresh clone has something to sell at once."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from ticketera.events import repository, service
from ticketera.events.schemas import EventCreate
from ticketera.kit.clock import Clock, utc_now

DEMO_EVENT_NAME = "Demo: Noche de Rock en el Estadio"


async def ensure_demo_event(session: AsyncSession, *, clock: Clock = utc_now) -> tuple[int, bool]:
    """The demo event's id, creating it first if it does not exist; and whether it was created."""
    existing = await repository.find_event_id_by_name(session, DEMO_EVENT_NAME)
    if existing is not None:
        return existing, False
    now = clock().replace(microsecond=0)
    demo = EventCreate.model_validate(
        {
            "name": DEMO_EVENT_NAME,
            "venue": "Estadio Ticketera, Buenos Aires",
            "startsAt": now + timedelta(days=60),
            "onSaleAt": now,
            "maxTicketsPerUser": 6,
            "queue": {"enabled": True, "admitPerMinute": 120, "maxActiveShoppers": 200, "accessMinutes": 10},
            "sections": [
                {
                    "name": "Platea",
                    "price": "15000.00",
                    "rows": [{"label": row, "seats": 20} for row in "ABCDEFGHIJ"],
                },
                {"name": "Campo", "price": "9000.00", "capacity": 1000},
            ],
        }
    )
    view = await service.create_event(session, demo, clock=clock)
    return view.event.id, True
