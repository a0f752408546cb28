"""The run configuration: schema and loading."""

from tunelab.config.loading import apply_overrides, config_to_yaml, load_config, parse_config
from tunelab.config.schema import RunConfig

__all__ = ["RunConfig", "load_config", "parse_config", "apply_overrides", "config_to_yaml"]
