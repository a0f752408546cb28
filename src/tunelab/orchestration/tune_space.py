"""The search space of `tunelab tune`: config key paths and their ranges, the default one that fits the
strategy, and SPACE.yaml files validated like a config (every problem at once, key path named).

A dimension is `{low, high, log?, step?}` (floats, or ints when both bounds and the step are ints) or
`{choices: [...]}`. Keys are config key paths (`optim.lr`, `strategy.lora.rank`); each is checked by setting
a value of its range into the config and validating that, so a key the config does not have, or a range the
config refuses, is reported before any trial runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from tunelab.catalog import parse_config
from tunelab.config.loading import apply_overrides, as_override, describe_errors
from tunelab.config.schema import RunConfig
from tunelab.errors import ConfigError, bullet_lines
from tunelab.strategies.recommended import recommended_settings
from tunelab.strategies.registry import peft_method

__all__ = ["Dimension", "default_space", "load_space", "check_space", "suggest"]

Value = Union[float, int, str, bool]


class Dimension(BaseModel):
    model_config = ConfigDict(extra="forbid")

    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    step: Optional[float] = None
    choices: Optional[list[Value]] = None

    @model_validator(mode="after")
    def _one_kind(self) -> "Dimension":
        if self.choices is not None:
            if self.low is not None or self.high is not None or not self.choices:
                raise ValueError("give either choices (a non-empty list) or low and high, not both")
            return self
        if self.low is None or self.high is None:
            raise ValueError("give low and high (or choices)")
        if not self.low < self.high:
            raise ValueError(f"low must be below high, got low={self.low}, high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"log: true needs low > 0, got {self.low}")
        return self

    @property
    def is_int(self) -> bool:
        return self.choices is None and all(float(v).is_integer() for v in (self.low, self.high, self.step or 1))

    def values_for_check(self) -> list[Value]:
        if self.choices is not None:
            return list(self.choices)
        kind = int if self.is_int else float
        return [kind(self.low), kind(self.high)]  # type: ignore[arg-type]


def default_space(config: RunConfig, num_blocks: int) -> dict[str, Dimension]:
    """What is worth searching for this strategy: the learning rate on a log scale around the strategy's own
    (a tenth to ten times), warmup, weight decay and the head's dropout; LoRA's rank and alpha; the frozen
    depth of partial, from half the blocks to all but one (a trial costs what its depth trains, and one that
    trains most of the stack is a `full` run under another name); the layer-wise decay of the depth
    strategies."""
    name = config.strategy.name
    method = peft_method(name)
    if method is not None:
        lr_key, lr = f"strategy.{method.section}.lr", getattr(config.strategy, method.section).lr or method.default_lr
    else:
        lr_key = "optim.lr"
        lr = recommended_settings(name, num_blocks=num_blocks, epochs=config.train.epochs).get("optim.lr", config.optim.lr)
    space = {lr_key: Dimension(low=lr / 10, high=min(lr * 10, 0.5), log=True),
             "schedule.warmup_ratio": Dimension(low=0.0, high=0.2),
             "optim.weight_decay": Dimension(low=0.0, high=0.1)}
    if config.head.type != "native":
        space["head.dropout"] = Dimension(low=0.0, high=0.3)
    if name == "lora":
        space["strategy.lora.rank"] = Dimension(choices=[4, 8, 16])
        space["strategy.lora.alpha"] = Dimension(choices=[8, 16, 32])
    if name == "partial" and num_blocks > 2:  # lower half frozen at least: training more of it is `full`'s
        space["strategy.freeze_blocks"] = Dimension(low=num_blocks // 2, high=num_blocks - 1, step=1)
    if method is None and name != "head":
        space["strategy.layerwise_lr_decay"] = Dimension(low=0.7, high=1.0)
    return space


def load_space(path: Path) -> dict[str, Dimension]:
    """SPACE.yaml: a mapping of key paths to dimensions; every malformed dimension reported at once."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"--space {path}: cannot read it as YAML ({err}); give a mapping of key paths to ranges")
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"--space {path}: expected a mapping of config key paths to ranges, e.g. "
                          "optim.lr: {low: 1.0e-5, high: 1.0e-3, log: true}")
    space, problems = {}, []
    for key, value in raw.items():
        try:
            space[str(key)] = Dimension.model_validate(value)
        except ValidationError as err:
            problems += describe_errors(err, Dimension, str(key))
    if problems:
        raise ConfigError(f"--space {path}: {len(problems)} problem(s):\n" + bullet_lines(problems))
    return space


def check_space(raw: dict[str, Any], space: dict[str, Dimension], source: str) -> None:
    """Each key path takes the ends of its range in the config (refused keys and values named together)."""
    problems = []
    for key, dimension in space.items():
        for value in dimension.values_for_check():
            try:
                parse_config(apply_overrides(raw, [as_override(key, value)]), source=source)
            except ConfigError as err:
                lines = [line.strip(" -") for line in str(err).splitlines()[1:]]
                problems.append(f"{key} = {value!r}: " + "; ".join(lines or [str(err)]))
                break
    if problems:
        raise ConfigError(f"search space: {len(problems)} problem(s):\n" + bullet_lines(problems))


def suggest(trial: Any, space: dict[str, Dimension]) -> dict[str, Value]:
    """One value per key path from an Optuna trial (the key path is the parameter's name)."""
    values: dict[str, Value] = {}
    for key, d in space.items():
        if d.choices is not None:
            values[key] = trial.suggest_categorical(key, d.choices)
        elif d.is_int:
            values[key] = trial.suggest_int(key, int(d.low), int(d.high), step=int(d.step or 1), log=d.log)
        else:
            values[key] = trial.suggest_float(key, d.low, d.high, log=d.log, step=d.step)
    return values
