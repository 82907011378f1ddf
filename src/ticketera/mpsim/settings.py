"""The simulator's configuration: start-up settings from the environment, and runtime switches.

Start-up settings use the variable names the service reads (MP_ACCESS_TOKEN, MP_WEBHOOK_SECRET), so
one `.env` drives both. Runtime switches (`SimConfig`) are what tests change through `/_sim/config`;
a reset puts them back to the values derived from the start-up settings.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# MercadoPago retries a notification 15 minutes after a failure, then at growing intervals. It
# documents no cap; the simulator stops after the last step so a dead receiver is not called forever.
MERCADOPAGO_RETRY_SCHEDULE = (900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0)
DEFAULT_PORT = 8090
# The seller's account: MercadoPago puts it in preferences (collector_id) and notifications (user_id).
DEFAULT_COLLECTOR_ID = 202809963


class SimulatorSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    mp_access_token: str | None = None
    mp_webhook_secret: str | None = None
    mpsim_port: int = Field(default=DEFAULT_PORT, ge=1, le=65535)
    mpsim_public_url: str | None = None
    mpsim_retry_schedule: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: list(MERCADOPAGO_RETRY_SCHEDULE)
    )
    # Where notifications go for payments that name no notification_url: MercadoPago's equivalent is
    # the webhook URL configured once in the seller's dashboard.
    mpsim_notification_url: str | None = None
    mpsim_collector_id: int = DEFAULT_COLLECTOR_ID

    @field_validator("mpsim_retry_schedule", mode="before")
    @classmethod
    def _split_schedule(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [float(step) for step in value.split(",") if step.strip()]
        return value

    @field_validator("mpsim_retry_schedule")
    @classmethod
    def _non_negative(cls, value: list[float]) -> list[float]:
        if any(step < 0 for step in value):
            raise ValueError("retry delays must be zero or more seconds")
        return value

    @property
    def public_url(self) -> str:
        """Base of the init_point links the buyer's browser opens."""
        return (self.mpsim_public_url or f"http://localhost:{self.mpsim_port}").rstrip("/")


class SimConfig(BaseModel):
    """Runtime switches, in the control API's camelCase (`PATCH /_sim/config`)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    # How data.id enters the signed manifest: the docs lowercase alphanumeric ids, the newer SDKs
    # sign the original casing. Numeric payment ids read the same either way.
    id_casing: Literal["original", "lower"] = "original"
    ts_unit: Literal["s", "ms"] = "s"
    duplicates: int = Field(default=0, ge=0, le=20)
    duplicate_same_request_id: bool = True
    out_of_order: bool = False
    drop_notifications: bool = False
    notification_delay_seconds: float = Field(default=0.0, ge=0, le=3600)
    retry_schedule: list[Annotated[float, Field(ge=0)]] = Field(default_factory=list)
    webhook_secret: str = ""
    notification_url: str | None = None

    @classmethod
    def from_settings(cls, settings: SimulatorSettings) -> SimConfig:
        return cls(
            retry_schedule=list(settings.mpsim_retry_schedule),
            webhook_secret=settings.mp_webhook_secret or "",
            notification_url=settings.mpsim_notification_url,
        )

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True)


class SimulatorConfigError(ValueError):
    """The simulator cannot start as configured; the message says what to set."""
