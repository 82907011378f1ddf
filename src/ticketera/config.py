"""One Settings object, read from the environment and `.env`.

Every variable of the public contract's configuration section lives here, with the deployment
guide's defaults. Production and staging refuse to start without their secrets; development
generates them once under the data directory so a fresh clone runs with no set-up.
"""

from __future__ import annotations

import importlib.util
import json
import secrets
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from limits import parse_many
from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import URL, make_url

MERCADOPAGO_API = "https://api.mercadopago.com"

# Secrets a production or staging process cannot run without. In development each is generated
# once and kept in `<DATA_DIR>/secrets.json`, so restarts keep issued tokens valid.
REQUIRED_SECRETS = ("ADMIN_API_KEY", "STAFF_API_KEY", "SECRET_KEY", "MP_ACCESS_TOKEN", "MP_WEBHOOK_SECRET")
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
# What else production cannot run without: where MercadoPago sends webhooks and buyers come back
# (unset, both point at localhost and no webhook of a real deployment arrives), and how tickets reach
# buyers (unset, the emails land in a local folder nobody reads).
REQUIRED_IN_PRODUCTION = ("PUBLIC_BASE_URL", "SMTP_URL")

# SQLAlchemy needs an async driver; operators write the URLs they know.
_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "mysql": "mysql+asyncmy",
    "mariadb": "mysql+asyncmy",
    "mysql+pymysql": "mysql+asyncmy",
    "mariadb+asyncmy": "mysql+asyncmy",
    "mariadb+aiomysql": "mysql+aiomysql",
}


class AppEnv(StrEnum):
    DEVELOPMENT = "development"
    STAGING = "staging"
    PRODUCTION = "production"
    TEST = "test"


class ConfigError(Exception):
    """The configuration cannot run; the message says what to set."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        populate_by_name=True,
    )

    app_env: AppEnv = Field(default=AppEnv.DEVELOPMENT, validation_alias=AliasChoices("APP_ENV", "NODE_ENV"))
    host: str = "0.0.0.0"  # noqa: S104 - a service listens on all interfaces; nginx sits in front
    port: int = Field(default=3000, ge=1, le=65535)
    data_dir: Path = Path("data")

    database_url: str | None = None
    db_host: str | None = None
    db_port: int = 3306
    db_user: str = "ticketera"
    db_password: str = ""
    db_name: str = "ticketera"
    db_ssl: bool = False
    # The certificate authority that signed the database server's certificate, when it is not one the
    # system trusts (a private CA, a cloud provider's bundle). Implies DB_SSL.
    db_ssl_ca: Path | None = None
    db_pool_size: int = Field(default=20, ge=1, le=500)
    db_pool_recycle_seconds: int = 1800
    db_connect_timeout_seconds: float = 5.0
    db_lock_timeout_seconds: int = 3
    # How long MariaDB may say nothing before it is taken as frozen: a connection in use for half of
    # it makes the app ask for a greeting on a connection of its own, and none within the other half
    # opens the breaker and cuts what waits on it, which answers 503 instead of hanging (kit.dbwatch).
    # 0: no watch.
    db_unresponsive_seconds: float = Field(default=1.0, ge=0, le=60)
    # Read replicas of the MariaDB primary, comma-separated URLs (the guide's `readonly` user): they
    # serve the reads that tolerate a second of lag (event listing, detail, seat map, check-in
    # figures), never one that decides a write or follows the caller's own (kit.replicas).
    database_replica_url: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # A replica further behind the primary than this is left for the primary until it catches up;
    # each process checks its replicas four times per this period.
    db_replica_max_lag_seconds: float = Field(default=1.0, ge=0.1, le=60)
    # An open circuit breaker asks its dependency this often (seconds) and closes as soon as it
    # answers; 0 leaves it to the first request after the open time (60 s database, 30 s Redis,
    # 2 min MercadoPago).
    breaker_probe_seconds: float = Field(default=1.0, ge=0, le=60)

    redis_url: str | None = None
    redis_host: str | None = None
    redis_port: int = 6379
    # The Redis address is a Redis Cluster node: the cluster client spreads events over shards.
    redis_cluster: bool = False

    queue_max_size: int | None = Field(default=None, ge=1)
    # An admitted user who does not come back for their turn within this window is skipped.
    queue_claim_seconds: int = Field(default=120, ge=5, le=3600)
    # How often the admission ticker steps every event's line (each replica runs one).
    queue_tick_seconds: float = Field(default=1.0, gt=0, le=60)
    queue_ticker: bool = True
    # Joins one user may make per event, on top of the per-IP APP_RATE_LIMIT.
    queue_join_rate_limit: str = "10/minute"
    app_rate_limit: str = "20/second"
    # The proxies whose X-Forwarded-For is believed (addresses or networks, comma-separated): the
    # client is the right-most address in the header that is not one of them. Anyone else's header
    # is ignored, so nobody picks their own address to walk past the per-IP limits. Never "*".
    forwarded_allow_ips: str = "127.0.0.1,::1"
    # Request bodies past this many bytes are answered 413 before they are read in full; the
    # organizer's and the door's bulk calls (event creation, offline check-in batches) get more.
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_bulk_body_bytes: int = Field(default=16_777_216, ge=1024)
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    admin_api_key: str | None = None
    staff_api_key: str | None = None
    secret_key: str | None = None
    # Shared with the organizer's site, which signs `userAssertion`s with it so a signed-in user
    # gets their place in line back on another device. Unset: no assertion is accepted.
    user_assertion_secret: str | None = None

    mp_access_token: str | None = None
    mp_webhook_secret: str | None = None
    mp_base_url: str = MERCADOPAGO_API
    mp_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    # Approved or rejected only, never pending (MercadoPago's binary_mode).
    mp_binary_mode: bool = False
    # Cash coupons (Rapipago, Pago Facil) can be paid days later: off unless an organizer wants them.
    mp_allow_cash: bool = False
    mp_statement_descriptor: str | None = Field(default=None, max_length=22)
    # How old a webhook's signed timestamp may be before it is refused as a replay.
    mp_webhook_tolerance_seconds: int = Field(default=300, ge=10, le=86400)

    # Where the tickets email goes out: smtp://user:pass@host:587, smtps://host:465. Unset: each
    # email is written to <DATA_DIR>/outbox/ as an .eml file (development).
    smtp_url: str | None = None
    mail_from: str = "Ticketera <tickets@localhost>"

    # How times are shown to buyers (tickets, the order page): the venue's zone, not the server's.
    display_timezone: str = "America/Argentina/Buenos_Aires"

    public_base_url: str | None = None
    # Where MercadoPago sends webhooks, when not the public address: a development stack whose
    # simulator runs beside the app reaches it on the stack's network (http://app:3000).
    mp_notification_base_url: str | None = None
    hold_minutes: int = Field(default=10, ge=1, le=120)
    # How often the worker records expired holds and orders; and whether the web process runs it
    # itself (default: on the embedded SQLite default, where no separate worker is expected).
    worker_interval_seconds: float = Field(default=5.0, gt=0, le=3600)
    worker_in_process: bool | None = None
    # Monthly partitions on MariaDB (ticketera.kit.partitions): months kept ahead of today, which the
    # worker adds once a day so the catch-all partition stays empty; and how many months of the audit
    # log stay in the database before `ticketera db partitions` archives and drops them.
    partition_months_ahead: int = Field(default=3, ge=1, le=24)
    audit_log_retention_months: int = Field(default=24, ge=1, le=600)
    # Processed webhook notifications kept before `ticketera db partitions` archives and deletes them
    # (ticketera.ops.retention): the table cannot be partitioned, so it is pruned by rows instead.
    payment_notification_retention_months: int = Field(default=12, ge=1, le=600)
    # `ticketera db archive` refuses an event until this long after it started (or was cancelled): a
    # card chargeback can arrive months after the payment, and must still find its order to undo.
    archive_after_days: int = Field(default=180, ge=0, le=3650)
    log_dir: Path = Path("logs")
    log_level: str = "INFO"

    @field_validator("app_rate_limit", "queue_join_rate_limit")
    @classmethod
    def _rate_limit_syntax(cls, value: str) -> str:
        value = value.strip()
        if value.lower() != "off":
            parse_many(value)  # "20/second", "10 per second; 600/minute": a typo stops start-up here
        return value

    @field_validator("display_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        # An unknown zone stops start-up here, not at the first PDF.
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}, e.g. America/Argentina/Buenos_Aires") from exc
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.display_timezone)

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _no_wildcard_proxies(cls, value: str) -> str:
        if "*" in value:
            raise ValueError(
                "FORWARDED_ALLOW_IPS must list the proxies (e.g. 127.0.0.1,172.18.0.0/16), not '*': "
                "with '*' any client picks its own address"
            )
        return value

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("database_replica_url", mode="before")
    @classmethod
    def _split_replica_urls(cls, value: Any) -> Any:
        # Commas or whitespace between URLs; a comma inside a password is written %2C.
        if isinstance(value, str):
            return [url for url in value.replace(",", " ").split() if url]
        return value

    @field_validator("app_env", mode="before")
    @classmethod
    def _normalise_env(cls, value: Any) -> Any:
        aliases = {"dev": "development", "prod": "production", "stage": "staging"}
        if isinstance(value, str):
            value = value.strip().lower()
            return aliases.get(value, value)
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_database_url(self) -> Settings:
        make_url(self.async_database_url)  # a malformed DATABASE_URL fails here, at start-up
        if self.database_replica_url and self.is_sqlite:
            raise ValueError(
                "DATABASE_REPLICA_URL needs a MariaDB/MySQL DATABASE_URL: SQLite has no replicas "
                "(one file, read by every process directly); unset DATABASE_REPLICA_URL"
            )
        for url in self.async_replica_urls:
            if make_url(url).get_backend_name() != "mysql":
                raise ValueError(
                    "DATABASE_REPLICA_URL must name MariaDB/MySQL replicas (mysql://readonly:...@host/db), "
                    f"not {make_url(url).get_backend_name()}"
                )
        return self

    @property
    def is_production_like(self) -> bool:
        return self.app_env in (AppEnv.PRODUCTION, AppEnv.STAGING)

    @property
    def effective_queue_max_size(self) -> int:
        if self.queue_max_size is not None:
            return self.queue_max_size
        return 1000 if self.is_production_like else 100

    @property
    def effective_public_base_url(self) -> str:
        return (self.public_base_url or f"http://localhost:{self.port}").rstrip("/")

    @cached_property
    def async_database_url(self) -> str:
        """The database URL with an async driver, built from DATABASE_URL or the DB_* parts."""
        if self.database_url:
            return to_async_url(self.database_url)
        if self.db_host:
            url = URL.create(
                "mysql+asyncmy",
                username=self.db_user,
                password=self.db_password or None,
                host=self.db_host,
                port=self.db_port,
                database=self.db_name,
                query={"charset": "utf8mb4"},
            )
            return url.render_as_string(hide_password=False)
        return f"sqlite+aiosqlite:///{quote(str(self.data_dir / 'ticketera.db'))}"

    @property
    def async_replica_urls(self) -> list[str]:
        """DATABASE_REPLICA_URL's URLs, with the async driver."""
        return [to_async_url(url) for url in self.database_replica_url]

    @property
    def is_sqlite(self) -> bool:
        return make_url(self.async_database_url).get_backend_name() == "sqlite"

    @property
    def runs_worker_in_process(self) -> bool:
        return self.worker_in_process if self.worker_in_process is not None else self.is_sqlite

    @property
    def effective_redis_url(self) -> str | None:
        if self.redis_url:
            return self.redis_url
        if self.redis_host:
            return f"redis://{self.redis_host}:{self.redis_port}/0"
        return None

    def require_driver(self) -> None:
        """Stop a start-up whose DATABASE_URL names a driver this installation lacks: aiomysql is an
        optional extra (asyncmy, always installed, serves every `mysql://` URL)."""
        driver = make_url(self.async_database_url).get_driver_name()
        if driver == "aiomysql" and importlib.util.find_spec("aiomysql") is None:
            raise ConfigError(
                "DATABASE_URL asks for the aiomysql driver, which is an optional extra: "
                "pip install 'ticketera[aiomysql]', or use mysql://... (asyncmy)."
            )

    def secret_values(self) -> list[str]:
        """Every configured credential, never to be written to a log (see infra.logging.Redactor)."""
        values = [getattr(self, name.lower()) for name in REQUIRED_SECRETS]
        values.append(self.user_assertion_secret)
        values.append(make_url(self.async_database_url).password)
        values.extend(make_url(url).password for url in self.async_replica_urls)
        if self.effective_redis_url:
            values.append(make_url(self.effective_redis_url).password)
        return [str(value) for value in values if value]

    def missing_secrets(self) -> list[str]:
        return [name for name in REQUIRED_SECRETS if not getattr(self, name.lower())]

    def require_secrets(self) -> None:
        """Stop a production-like start-up that lacks secrets (and, in production, a public https
        address and an SMTP server), naming all of them at once."""
        if not self.is_production_like:
            return
        missing = self.missing_secrets()
        if self.app_env is AppEnv.PRODUCTION:
            missing += [name for name in REQUIRED_IN_PRODUCTION if not getattr(self, name.lower())]
        if missing:
            raise ConfigError(
                f"APP_ENV={self.app_env.value} needs these variables set: {', '.join(missing)}. "
                "Set them in the environment or in .env (see .env.example)."
            )
        if self.app_env is AppEnv.PRODUCTION and self.public_base_url:
            address = urlsplit(self.public_base_url)
            # Plain http only for a production-mode run on this machine (benchmarks, a try-out).
            if address.scheme != "https" and address.hostname not in LOOPBACK_HOSTS:
                raise ConfigError(
                    f"PUBLIC_BASE_URL must be an https:// address in production, not {self.public_base_url}: "
                    "buyers pay and come back through it, and MercadoPago sends webhooks to it."
                )

    def with_development_secrets(self) -> tuple[Settings, dict[str, str]]:
        """Fill missing secrets from `<DATA_DIR>/secrets.json`, generating and storing new ones.

        Returns the completed settings and the secrets that were generated or loaded (for printing).
        Production-like settings are returned unchanged: they must come from the operator.
        """
        missing = self.missing_secrets()
        if self.is_production_like or not missing:
            return self, {}
        store = self.data_dir / "secrets.json"
        stored: dict[str, str] = json.loads(store.read_text()) if store.exists() else {}
        changed = False
        for name in missing:
            if name not in stored:
                stored[name] = secrets.token_urlsafe(32)
                changed = True
        if changed:
            store.parent.mkdir(parents=True, exist_ok=True)
            store.write_text(json.dumps(stored, indent=2) + "\n")
            store.chmod(0o600)
        used = {name: stored[name] for name in missing}
        return self.model_copy(update={name.lower(): value for name, value in used.items()}), used


def to_async_url(url: str) -> str:
    """Map `sqlite:///` and `mysql://` (and friends) onto the async drivers SQLAlchemy needs."""
    parsed = make_url(url)
    driver = _ASYNC_DRIVERS.get(parsed.drivername, parsed.drivername)
    parsed = parsed.set(drivername=driver)
    if parsed.get_backend_name() == "mysql" and "charset" not in parsed.query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return parsed.render_as_string(hide_password=False)


def load_settings(**overrides: Any) -> Settings:
    """Settings for a process: environment and .env, development secrets filled in, checked."""
    settings, _ = Settings(**overrides).with_development_secrets()
    settings.require_secrets()
    settings.require_driver()
    return settings
