"""Configuration: one TOML file, EDGED_* environment overrides, secrets from files or credentials."""

from edged.config.load import ConfigError, LoadedConfig, effective_config, load_config
from edged.config.settings import Settings, state_dir

__all__ = ["ConfigError", "LoadedConfig", "Settings", "effective_config", "load_config", "state_dir"]
