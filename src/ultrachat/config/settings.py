"""The one settings object: every knob is an ``ULTRACHAT_*`` environment variable.

Defaults are the scaling plan's values (token lifetimes, rate-limit window, session ages)
and the embedded mode (SQLite under ./var, in-process bus and cache). docs/configuration.md
documents each field; keep the two in step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


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

    # Storage and shared backends
    data_dir: Path = Path("var")
    database_url: str = ""
    database_pool_size: int = Field(10, ge=1)
    redis_url: str = ""
    redis_key_prefix: str = "uc:"
    redis_pool_size: int = Field(50, ge=2)
    pool_timeout_seconds: float = Field(5.0, gt=0)

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

    # Real-time delivery
    ws_hello_timeout_seconds: float = Field(10.0, gt=0)
    ws_ping_interval_seconds: float = Field(20.0, gt=0)
    ws_send_queue_max: int = Field(1000, ge=10)
    ws_max_behind: int = Field(1000, ge=1)
    ws_max_message_bytes: int = Field(65_536, ge=1024)
    presence_ttl_seconds: float = Field(60.0, ge=3)

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

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        if value and not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
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
    def is_postgres(self) -> bool:
        return self.effective_database_url.startswith("postgresql")


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; raise SettingsError with one line on a bad value."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "settings"
        raise SettingsError(f"invalid setting ULTRACHAT_{field.upper()}: {first['msg']}") from None
