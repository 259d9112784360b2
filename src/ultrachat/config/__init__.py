"""Configuration: one pydantic-settings object read from ULTRACHAT_* variables."""

from ultrachat.config.settings import Settings, SettingsError, load_settings

__all__ = ["Settings", "SettingsError", "load_settings"]
