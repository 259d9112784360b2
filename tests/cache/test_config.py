"""The plan's CacheConfig from settings: defaults, JSON overrides, refusals."""

from __future__ import annotations

import os

import pytest

from ultrachat.cache.config import (
    CHANNEL_MEMBERSHIP,
    CHAT_MESSAGES,
    USER_PREFERENCES,
    ResourceConfig,
    build_config,
)
from ultrachat.config import SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("ULTRACHAT_"):
            monkeypatch.delenv(name)


def test_defaults_are_the_plans() -> None:
    config = load_settings().cache_config
    assert (config.global_ttl, config.max_size) == (3600, 1_000_000)
    assert config.resources[USER_PREFERENCES] == ResourceConfig(86_400, 100_000, "both")
    assert config.resources[CHAT_MESSAGES] == ResourceConfig(300, 500_000, "time")
    assert {
        "channel-membership",
        "user-channels",
        "user-profiles",
        "channel-history-head",
    } <= set(config.resources)


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ULTRACHAT_CACHE_TTL_SECONDS", "120")
    monkeypatch.setenv("ULTRACHAT_CACHE_MAX_ENTRIES", "5000")
    monkeypatch.setenv(
        "ULTRACHAT_CACHE_RESOURCES",
        '{"user-preferences": {"ttl": 60, "invalidation_strategy": "time"},'
        ' "chat-messages": {"max_size": 10}}',
    )
    config = load_settings().cache_config
    assert (config.global_ttl, config.max_size) == (120, 5000)
    assert config.resources[USER_PREFERENCES] == ResourceConfig(60, 100_000, "time")
    assert config.resources[CHAT_MESSAGES] == ResourceConfig(300, 10, "time")
    # Resources without a TTL of their own follow the global one.
    assert config.resources[CHANNEL_MEMBERSHIP].ttl == 120


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("not json", "JSON object"),
        ('{"no-such-thing": {"ttl": 1}}', "unknown cache resource"),
        ('{"user-preferences": {"ttl": 0}}', "ttl"),
        ('{"user-preferences": {"max_size": -1}}', "max_size"),
        ('{"user-preferences": {"invalidation_strategy": "lru"}}', "invalidation_strategy"),
        ('{"user-preferences": {"colour": "red"}}', "unknown field"),
        ('{"user-preferences": 5}', "ULTRACHAT_CACHE_RESOURCES"),
    ],
)
def test_bad_overrides_stop_start_up(
    monkeypatch: pytest.MonkeyPatch, value: str, problem: str
) -> None:
    monkeypatch.setenv("ULTRACHAT_CACHE_RESOURCES", value)
    with pytest.raises(SettingsError, match="ULTRACHAT_CACHE_RESOURCES") as info:
        load_settings()
    assert problem in str(info.value)


def test_build_config_refuses_what_settings_refuse() -> None:
    with pytest.raises(ValueError, match="unknown cache resource"):
        build_config(overrides={"nope": {}})
