"""The one settings object: every knob is an ``ULTRACHAT_*`` environment variable.

Defaults are the scaling plan's values (token lifetimes, rate-limit window, session ages)
and the embedded mode (SQLite under ./var, in-process bus and cache). docs/configuration.md
documents each field; keep the two in step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ultrachat.cache.config import CacheConfig, build_config


class SettingsError(Exception):
    """A setting is invalid; the message is one line that names it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ULTRACHAT_", extra="ignore", frozen=True)

    # Serving
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_body_bytes: int = Field(1_048_576, ge=1024)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # JSON lines for log shippers; "text" for a person at a terminal (docs/operations.md).
    log_format: Literal["json", "text"] = "json"

    # Storage and shared backends
    data_dir: Path = Path("var")
    database_url: str = ""
    database_pool_size: int = Field(10, ge=1)
    # Read replicas (docs/database.md): comma-separated postgresql+asyncpg:// URLs
    database_replica_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    replica_max_lag_seconds: float = Field(5.0, gt=0)
    redis_url: str = ""
    redis_key_prefix: str = "uc:"
    redis_pool_size: int = Field(50, ge=2)
    pool_timeout_seconds: float = Field(5.0, gt=0)
    # PostgreSQL partitions older than this many months are dropped hourly; 0 keeps them all.
    retention_months: int = Field(0, ge=0)

    # Monitoring (docs/monitoring.md): the collector's period, how long its snapshots are
    # kept (0 keeps them all), and the live feed's period.
    metrics_interval_seconds: float = Field(60.0, ge=1)
    metrics_retention_days: int = Field(30, ge=0)
    metrics_live_interval_seconds: float = Field(2.0, ge=0.1)

    # Encryption at rest (docs/security.md). The master key: 32 bytes as hex or base64, or a
    # file holding it. Neither set: SQLite generates data_dir/master.key (0600) and warns;
    # PostgreSQL refuses to start, since every node must share one key.
    master_key: SecretStr | None = None
    master_key_file: Path | None = None
    # Encryptions per data key before a new one takes over: a quarter of NIST's 2^32.
    data_key_max_uses: int = Field(2**30, ge=64, le=2**31)
    # How often nodes reload data keys; the re-wrap job waits this (plus 2 s) after a rotation.
    data_key_refresh_seconds: float = Field(10.0, gt=0)
    rewrap_batch_size: int = Field(500, ge=1, le=10_000)

    # Tokens and sessions (the plan's AuthConfig)
    jwt_issuer: str = "ultrachat"
    jwt_audience: str = "ultrachat-api"
    access_token_ttl_seconds: int = Field(3600, ge=30)
    jwt_leeway_seconds: int = Field(30, ge=0, le=30)
    session_max_age_seconds: int = Field(86_400, ge=60)
    session_renew_threshold_seconds: int = Field(3600, ge=0)
    session_absolute_max_age_seconds: int = Field(30 * 86_400, ge=60)

    # Rate limits: the plan's window of 15 minutes with a maximum of 100
    rate_limit_window_seconds: int = Field(900, ge=1)
    rate_limit_auth_max: int = Field(100, ge=1)
    rate_limit_account_max: int = Field(100, ge=1)
    rate_limit_api_max: int = Field(18_000, ge=0)

    # Real-time delivery. ``native``: /api/v1/ws on picows inside `ultrachat serve` (the
    # least memory and CPU per connection); ``asgi``: the ASGI route on uvicorn's websockets.
    ws_edge: Literal["native", "asgi"] = "native"
    ws_hello_timeout_seconds: float = Field(10.0, gt=0)
    ws_ping_interval_seconds: float = Field(20.0, gt=0)
    ws_send_queue_max: int = Field(1000, ge=10)
    ws_max_behind: int = Field(1000, ge=1)
    ws_max_message_bytes: int = Field(65_536, ge=1024)
    presence_ttl_seconds: float = Field(60.0, ge=3)
    # Send admission (chat/admission.py): once this node's delivery lag has stayed over
    # this for a second, it refuses a growing share of new sends ("overloaded"); 0: never.
    send_shed_lag_seconds: float = Field(1.0, ge=0)

    # The two-tier cache (the plan's CacheConfig; docs/cache.md)
    cache_enabled: bool = True
    cache_ttl_seconds: float = Field(3600.0, gt=0)
    cache_max_entries: int = Field(1_000_000, ge=0)
    cache_resources: Annotated[dict[str, dict[str, Any]], NoDecode] = Field(default_factory=dict)
    cache_invalidation_timeout_seconds: float = Field(1.0, gt=0)

    # Argon2id cost (OWASP: m=19 MiB, t=2, p=1)
    argon2_memory_kib: int = Field(19_456, ge=8)
    argon2_time_cost: int = Field(2, ge=1)
    argon2_parallelism: int = Field(1, ge=1)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("cache_resources", mode="before")
    @classmethod
    def _parse_cache_resources(cls, value: object) -> object:
        if isinstance(value, str):
            if not value.strip():
                return {}
            try:
                return json.loads(value)
            except ValueError:
                raise ValueError("must be a JSON object of resource name to settings") from None
        return value

    @field_validator("cache_resources")
    @classmethod
    def _check_cache_resources(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        build_config(overrides=value)  # raises ValueError naming the problem
        return value

    @field_validator("master_key", "master_key_file", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("master_key")
    @classmethod
    def _check_master_key(cls, value: SecretStr | None) -> SecretStr | None:
        from ultrachat.crypto.master import MasterKeyError, parse_master_key

        if value is not None:
            try:
                parse_master_key(value.get_secret_value())
            except MasterKeyError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        if value and not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @field_validator("database_replica_urls", mode="before")
    @classmethod
    def _split_replica_urls(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("database_replica_urls")
    @classmethod
    def _check_replica_urls(cls, value: list[str], info: ValidationInfo) -> list[str]:
        for url in value:
            if not url.startswith("postgresql+asyncpg://"):
                raise ValueError("each URL must start with postgresql+asyncpg://")
        primary = info.data.get("database_url")
        if value and primary is not None and not primary.startswith("postgresql"):
            raise ValueError("replicas need a PostgreSQL ULTRACHAT_DATABASE_URL")
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @property
    def effective_database_url(self) -> str:
        """The configured URL, or the embedded SQLite file under ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'ultrachat.db'}"

    @property
    def cache_config(self) -> CacheConfig:
        return build_config(self.cache_ttl_seconds, self.cache_max_entries, self.cache_resources)

    @property
    def is_postgres(self) -> bool:
        return self.effective_database_url.startswith("postgresql")


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; raise SettingsError with one line on a bad value."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        if not first["loc"]:  # a rule across settings names them in its message
            raise SettingsError(
                "invalid settings: " + str(first["msg"]).removeprefix("Value error, ")
            ) from None
        field = str(first["loc"][0])
        raise SettingsError(f"invalid setting ULTRACHAT_{field.upper()}: {first['msg']}") from None
