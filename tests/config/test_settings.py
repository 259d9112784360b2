"""Settings: the plan's defaults, OWASP's argon2 parameters, and one-line errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ultrachat.auth.passwords import PasswordHasherPool
from ultrachat.config import Settings, SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test sets: an operator's ULTRACHAT_* variables must not leak in."""
    for name in list(os.environ):
        if name.startswith("ULTRACHAT_"):
            monkeypatch.delenv(name)


def test_defaults_are_the_plans() -> None:
    settings = Settings()
    # Tokens and sessions (the plan's AuthConfig)
    assert settings.access_token_ttl_seconds == 3600
    assert settings.jwt_issuer == "ultrachat"
    assert settings.jwt_audience == "ultrachat-api"
    assert settings.jwt_leeway_seconds == 30
    assert settings.session_max_age_seconds == 24 * 3600
    assert settings.session_renew_threshold_seconds == 3600
    # Rate limits: a 15-minute window with a maximum of 100
    assert settings.rate_limit_window_seconds == 15 * 60
    assert settings.rate_limit_auth_max == 100
    assert settings.rate_limit_account_max == 100
    # The embedded default: SQLite under ./var, no Redis
    assert settings.effective_database_url == f"sqlite+aiosqlite:///{Path('var') / 'ultrachat.db'}"
    assert settings.redis_url == ""
    assert not settings.is_postgres
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.cors_origins == []


def test_argon2_defaults_are_owasps() -> None:
    settings = Settings()
    assert settings.argon2_memory_kib == 19_456
    assert settings.argon2_time_cost == 2
    assert settings.argon2_parallelism == 1


async def test_the_default_hasher_makes_owasp_argon2id_hashes() -> None:
    settings = Settings()
    hasher = PasswordHasherPool(
        settings.argon2_memory_kib, settings.argon2_time_cost, settings.argon2_parallelism
    )
    try:
        password_hash = await hasher.hash("correct horse battery staple")
        assert password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
        assert await hasher.verify(password_hash, "correct horse battery staple")
        assert not await hasher.verify(password_hash, "Correct horse battery staple")
        assert not hasher.needs_rehash(password_hash)
    finally:
        hasher.close()


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ULTRACHAT_PORT", "9001")
    monkeypatch.setenv("ULTRACHAT_CORS_ORIGINS", "https://a.example, https://b.example,")
    monkeypatch.setenv("ULTRACHAT_DATABASE_URL", "postgresql+asyncpg://u@db/ultrachat")
    settings = load_settings()
    assert settings.port == 9001
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.is_postgres


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "abc"),
        ("PORT", "0"),
        ("PORT", "70000"),
        ("DATABASE_URL", "mysql://root:hunter2@db/chat"),
        ("REDIS_URL", "http://cache.example"),
        ("LOG_LEVEL", "chatty"),
        ("JWT_LEEWAY_SECONDS", "31"),
        ("ACCESS_TOKEN_TTL_SECONDS", "-1"),
        ("MAX_BODY_BYTES", "10"),
        ("RATE_LIMIT_AUTH_MAX", "0"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(f"ULTRACHAT_{name}", value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(f"invalid setting ULTRACHAT_{name}: ")
    assert "\n" not in message
    assert "hunter2" not in message, "the message must not echo a secret"
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
