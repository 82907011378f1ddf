"""One simulator's parts, held together on `app.state.simulator` for the routes to reach."""

from __future__ import annotations

from fastapi import Request

from ticketera.kit.clock import Clock, utc_now
from ticketera.mpsim.gateway import Gateway
from ticketera.mpsim.notifier import Notifier
from ticketera.mpsim.settings import SimConfig, SimulatorSettings
from ticketera.mpsim.store import SimulatorStore


class Simulator:
    def __init__(self, settings: SimulatorSettings, *, clock: Clock = utc_now) -> None:
        self.settings = settings
        self.clock = clock
        self.config = SimConfig.from_settings(settings)
        self.store = SimulatorStore(
            collector_id=settings.mpsim_collector_id, public_url=settings.public_url, clock=clock
        )
        self.gateway = Gateway()
        # The notifier reads the switches at each step, so a PATCH applies to deliveries under way.
        self.notifier = Notifier(lambda: self.config, collector_id=settings.mpsim_collector_id, clock=clock)
        self.store.on_payment_change = self.notifier.payment_changed

    async def reset(self) -> None:
        await self.notifier.reset()
        self.store.reset()
        self.gateway.reset()
        self.config = SimConfig.from_settings(self.settings)


async def get_simulator(request: Request) -> Simulator:
    simulator: Simulator = request.app.state.simulator
    return simulator
