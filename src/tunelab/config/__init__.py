"""The run configuration: schema, reading and schema validation (the task and strategy rules are
collected with these by `tunelab.catalog`)."""

from tunelab.config.loading import apply_overrides, config_to_yaml, read_config_file, validate_schema
from tunelab.config.schema import RunConfig

__all__ = ["RunConfig", "read_config_file", "validate_schema", "apply_overrides", "config_to_yaml"]
