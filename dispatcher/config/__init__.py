"""Configuration: frozen dataclasses per section, loaded from TOML plus environment variables."""

from __future__ import annotations

from dispatcher.config.build import build_config, config_to_dict, env_name
from dispatcher.config.load import load_config, read_toml
from dispatcher.config.settings import (
    Config,
    DatabaseSettings,
    DeliverySettings,
    FeedbackSettings,
    GuardSettings,
    LogFormat,
    LogLevel,
    LogSettings,
    QueueSettings,
)
from dispatcher.domain.retry import InDoubtPolicy
from dispatcher.errors import ConfigError
from dispatcher.pacing.settings import PacingSettings
from dispatcher.ses.settings import SesSettings

__all__ = [
    "Config",
    "ConfigError",
    "DatabaseSettings",
    "DeliverySettings",
    "FeedbackSettings",
    "GuardSettings",
    "InDoubtPolicy",
    "LogFormat",
    "LogLevel",
    "LogSettings",
    "PacingSettings",
    "QueueSettings",
    "SesSettings",
    "build_config",
    "config_to_dict",
    "env_name",
    "load_config",
    "read_toml",
]
