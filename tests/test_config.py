"""Configuration from the environment: aliases, URL mapping, secrets per environment."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from ticketera.config import REQUIRED_SECRETS, ConfigError, Settings, load_settings


def test_node_env_is_an_alias_of_app_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODE_ENV", "production")
    assert Settings(_env_file=None).app_env == "production"


def test_guide_defaults() -> None:
    settings = Settings(_env_file=None)
    assert (settings.port, settings.db_pool_size, settings.hold_minutes) == (3000, 20, 10)
    assert settings.effective_queue_max_size == 100
    assert Settings(_env_file=None, app_env="production").effective_queue_max_size == 1000
    assert settings.effective_redis_url is None
    assert settings.async_database_url == "sqlite+aiosqlite:///data/ticketera.db"
    assert settings.mp_base_url == "https://api.mercadopago.com"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///./data/x.db", "sqlite+aiosqlite:///./data/x.db"),
        ("mysql://u:p@db:3306/t", "mysql+asyncmy://u:p@db:3306/t?charset=utf8mb4"),
        ("mariadb://u@db/t", "mysql+asyncmy://u@db/t?charset=utf8mb4"),
        ("mysql+aiomysql://u@db/t", "mysql+aiomysql://u@db/t?charset=utf8mb4"),
        ("mysql+asyncmy://u@db/t?charset=utf8mb4", "mysql+asyncmy://u@db/t?charset=utf8mb4"),
    ],
)
def test_database_urls_map_to_async_drivers(given: str, expected: str) -> None:
    assert Settings(_env_file=None, database_url=given).async_database_url == expected


def test_database_url_from_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "DB_HOST": "db.internal",
        "DB_USER": "app",
        "DB_PASSWORD": "s3cr:t",
        "DB_NAME": "tk",
    }.items():
        monkeypatch.setenv(name, value)
    url = Settings(_env_file=None).async_database_url
    assert url == "mysql+asyncmy://app:s3cr%3At@db.internal:3306/tk?charset=utf8mb4"


def test_redis_from_url_or_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_HOST", "cache")
    assert Settings(_env_file=None).effective_redis_url == "redis://cache:6379/0"
    monkeypatch.setenv("REDIS_URL", "redis://other:6380/2")
    assert Settings(_env_file=None).effective_redis_url == "redis://other:6380/2"


def test_allowed_origins_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLOWED_ORIGINS", "https://a.example, https://b.example")
    assert Settings(_env_file=None).allowed_origins == ["https://a.example", "https://b.example"]


@pytest.mark.parametrize("env", ["production", "staging"])
def test_production_without_secrets_stops_naming_every_missing_variable(env: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(_env_file=None, app_env=env, admin_api_key="set", data_dir=tmp_path)
    message = str(raised.value)
    missing = [name for name in REQUIRED_SECRETS if name != "ADMIN_API_KEY"]
    assert all(name in message for name in missing)
    assert "ADMIN_API_KEY" not in message
    assert not (tmp_path / "secrets.json").exists()


def test_production_also_needs_its_public_address_and_smtp_but_staging_does_not(tmp_path: Path) -> None:
    secrets = {name.lower(): "set" for name in REQUIRED_SECRETS}

    with pytest.raises(ConfigError) as raised:
        load_settings(_env_file=None, app_env="production", data_dir=tmp_path, **secrets)
    load_settings(_env_file=None, app_env="staging", data_dir=tmp_path, **secrets)

    assert "needs these variables set: PUBLIC_BASE_URL, SMTP_URL." in str(raised.value)


@pytest.mark.parametrize(
    ("address", "accepted"),
    [
        ("https://entradas.example.com", True),
        ("http://entradas.example.com", False),
        ("http://127.0.0.1:8080", True),
        ("http://localhost:3000", True),
    ],
)
def test_production_buyers_and_webhooks_come_back_over_https(
    address: str, accepted: bool, tmp_path: Path
) -> None:
    settings = {name.lower(): "set" for name in REQUIRED_SECRETS}
    settings.update(public_base_url=address, smtp_url="smtp://mail.example.com:587")

    if accepted:
        load_settings(_env_file=None, app_env="production", data_dir=tmp_path, **settings)
    else:
        with pytest.raises(ConfigError, match="must be an https:// address"):
            load_settings(_env_file=None, app_env="production", data_dir=tmp_path, **settings)


def test_development_generates_secrets_once_and_keeps_them(tmp_path: Path) -> None:
    first = load_settings(_env_file=None, data_dir=tmp_path)
    second = load_settings(_env_file=None, data_dir=tmp_path)

    stored = json.loads((tmp_path / "secrets.json").read_text())
    assert set(stored) == set(REQUIRED_SECRETS)
    assert first.admin_api_key == second.admin_api_key == stored["ADMIN_API_KEY"]
    assert len(first.admin_api_key or "") >= 32
    assert (tmp_path / "secrets.json").stat().st_mode & 0o077 == 0


def test_explicit_secrets_win_over_generated_ones(tmp_path: Path) -> None:
    load_settings(_env_file=None, data_dir=tmp_path)
    settings = load_settings(_env_file=None, data_dir=tmp_path, admin_api_key="mine")
    assert settings.admin_api_key == "mine"


def test_dotenv_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("PORT=4000\nNODE_ENV=staging\nQUEUE_MAX_SIZE=500\n")
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert (settings.port, settings.app_env, settings.effective_queue_max_size) == (4000, "staging", 500)


@pytest.mark.parametrize("value", ["20/second", "off", "10 per second; 600/minute"])
def test_rate_limit_accepts_the_limits_syntax(value: str) -> None:
    assert Settings(_env_file=None, app_rate_limit=value).app_rate_limit == value


def test_a_malformed_rate_limit_stops_start_up() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="app_rate_limit"):
        Settings(_env_file=None, app_rate_limit="twenty a second")


def test_an_aiomysql_url_without_the_extra_stops_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiomysql is an optional extra: naming it without installing it says how to get it."""
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "aiomysql" else real_find_spec(name, *args),
    )
    with pytest.raises(ConfigError, match=r"ticketera\[aiomysql\]"):
        load_settings(_env_file=None, data_dir=tmp_path, database_url="mysql+aiomysql://u@db/t")
    assert load_settings(_env_file=None, data_dir=tmp_path, database_url="mysql://u@db/t")


def test_replica_urls_are_one_or_several_and_their_passwords_are_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://ticketera:primary-pw@db/ticketera")
    monkeypatch.setenv(
        "DATABASE_REPLICA_URL",
        "mysql://readonly:first-pw@replica1/ticketera, mysql://readonly:second-pw@replica2/ticketera",
    )
    settings = Settings(_env_file=None)
    assert settings.async_replica_urls == [
        "mysql+asyncmy://readonly:first-pw@replica1/ticketera?charset=utf8mb4",
        "mysql+asyncmy://readonly:second-pw@replica2/ticketera?charset=utf8mb4",
    ]
    assert {"primary-pw", "first-pw", "second-pw"} <= set(settings.secret_values())
    assert settings.db_replica_max_lag_seconds == 1.0
    monkeypatch.delenv("DATABASE_REPLICA_URL")
    assert Settings(_env_file=None).async_replica_urls == []


def test_replicas_of_sqlite_are_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="SQLite has no replicas"):
        Settings(_env_file=None, database_replica_url="mysql://readonly:pw@replica/ticketera")
    with pytest.raises(ValueError, match="must name MariaDB/MySQL replicas"):
        Settings(_env_file=None, database_url="mysql://u@db/t", database_replica_url="sqlite:///copy.db")
