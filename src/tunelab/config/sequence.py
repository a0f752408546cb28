"""SEQUENCE.yaml of `tunelab continual`: one backbone, tasks learnt one after another, and the strategies to
learn them with. Each task is one run config's data (and task type); `run:` holds every run's other sections
(train, optim, schedule, head, forgetting, ...) as a run config spells them. Validated like a run config:
every problem at once, with its key path (the runs' own configs are validated again when they are built)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tunelab.config.loading import _resolve_data_paths, describe_errors, problems_error
from tunelab.errors import ConfigError

__all__ = ["SequenceConfig", "SequenceTask", "StrategySpec", "parse_strategy_spec", "load_sequence", "PER_TASK"]

PER_TASK = "-per-task"  # `lora-per-task`: each task from the base model, with its own adapter and head
_SPEC = re.compile(r"^(?P<name>[a-z0-9_]+?)(?P<per_task>-per-task)?(?:\+(?P<guard>[a-z0-9_]+))?$")


class SequenceTask(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Short name of the task (folder names, tables).")
    data: dict[str, Any] = Field(description="The task's data section, as in a run config (builtin or files).")
    task: str = Field("classification", description="Its task type.")

    @field_validator("name")
    @classmethod
    def _plain(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", value):
            raise ValueError(f"use letters, digits, '_', '.' or '-' (a folder name), got {value!r}")
        return value


class StrategySpec(BaseModel):
    """`full`, `full+ewc` (a guard from `guards:`), `lora-per-task` (each task from the base)."""

    spec: str
    name: str
    guard: Optional[str] = None
    per_task: bool = False


def parse_strategy_spec(spec: str) -> StrategySpec:
    found = _SPEC.match(spec.strip())
    if found is None:
        raise ValueError(f"{spec!r}: expected STRATEGY, STRATEGY+GUARD or STRATEGY-per-task (e.g. full, full+ewc, "
                         "lora-per-task)")
    per_task = bool(found["per_task"])
    if per_task and found["guard"]:
        raise ValueError(f"{spec!r}: a task learnt from the base has nothing earlier to guard; drop +{found['guard']}")
    return StrategySpec(spec=spec.strip(), name=found["name"], guard=found["guard"], per_task=per_task)


class SequenceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: Any = Field("minilm", description="The backbone, as a run config's model: a name or a mapping.")
    tasks: list[SequenceTask] = Field(min_length=2, description="Learnt in this order.")
    strategies: list[str] = Field(default_factory=lambda: ["full", "full+ewc", "full+replay", "lora-per-task"])
    guards: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Each guard's settings (its "
                                              "section without name), e.g. ewc: {strength: 1.0e5}.")
    metric: str = Field("accuracy", description="The test metric of the matrix R.")
    run: dict[str, Any] = Field(default_factory=dict, description="Every run's other sections.")
    settings: dict[str, dict[str, Any]] = Field(default_factory=dict, description="One strategy's own values, "
                                                "by its entry in strategies:, as key paths, e.g. lora-per-task: "
                                                "{strategy.lora.lr: 2.0e-3}; they win over run:.")
    output: str = "runs/continual"

    @field_validator("strategies")
    @classmethod
    def _specs(cls, value: list[str]) -> list[str]:
        problems = []
        for spec in value:
            try:
                parse_strategy_spec(spec)
            except ValueError as err:
                problems.append(str(err))
        if problems or not value:
            raise ValueError("; ".join(problems) or "name at least one strategy")
        return value

    @model_validator(mode="after")
    def _distinct(self) -> "SequenceConfig":
        names = [t.name for t in self.tasks]
        doubled = sorted({n for n in names if names.count(n) > 1})
        if doubled:
            raise ValueError(f"tasks: names must differ (a folder each), {', '.join(doubled)} repeat")
        taken = {"model", "task", "data", "strategy", "output"} & set(self.run)
        if taken:
            raise ValueError(f"run: {', '.join(sorted(taken))} come from the sequence (model:, tasks:, strategies:, "
                             "output:), not from run:")
        unknown = sorted(set(self.settings) - set(self.strategies))
        if unknown:
            raise ValueError(f"settings: {', '.join(unknown)} is not in strategies: ({', '.join(self.strategies)}); "
                             "key each strategy's values by its entry there")
        return self

    @property
    def specs(self) -> list[StrategySpec]:
        return [parse_strategy_spec(s) for s in self.strategies]


def load_sequence(path: Path) -> SequenceConfig:
    """SEQUENCE.yaml, validated (every problem at once); the tasks' relative data paths resolve against its folder."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read it as a YAML file ({err}); give the path of a sequence file") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping (model:, tasks:, strategies:, ...)")
    for task in raw.get("tasks") or []:
        if isinstance(task, dict):
            _resolve_data_paths(task, Path(path).parent)
    try:
        return SequenceConfig.model_validate(raw)
    except ValidationError as err:
        raise problems_error(str(path), describe_errors(err, SequenceConfig)) from None
