"""The one place that knows every task and every strategy: a config is valid when its schema holds and the
rules of its task and its strategy hold, and every problem of all three is reported at once.

`config/` validates the schema without knowing any task or strategy; each task and each strategy states its
own rules (`check_config`, `check_strategy`) and, for a PEFT method, its section's schema. This module
resolves what depends on them (the task's default metric, the method's section with its defaults) and
collects the lines into one ConfigError.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tunelab.config.loading import describe_errors, problems_error, read_config_file, validate_schema
from tunelab.config.schema import MixingConfig, PreferenceConfig, RunConfig, StrategyConfig, ThresholdConfig
from tunelab.errors import ConfigError
from tunelab.optional import INSTALL, missing
from tunelab.strategies.peft.lora import quantized_base
from tunelab.strategies.registry import check_strategy, peft_method, resolve_sections, strategy_names, unknown_strategy
from tunelab.tasks.registry import TASKS, canonical_task, task_hint, task_names

__all__ = ["load_config", "parse_config", "resolve_config", "require_single_task", "MULTITASK_TASKS"]


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Load and validate the config at `path`; relative data paths resolve against the config's folder."""
    return parse_config(read_config_file(path, overrides), source=str(path))


def parse_config(raw: dict[str, Any], source: str = "<config>") -> RunConfig:
    """Validate a plain mapping; every problem is listed with its key path and what to do."""
    config, problems = validate_schema(raw)
    if config is None:  # the cross-section rules need a config the schema accepts; the strategy's own do not
        problems += _name_problems(raw) + _strategy_problems(raw, problems)
    else:
        config, more = resolve_config(config)
        problems += more
    if problems:
        raise problems_error(source, problems)
    assert config is not None
    return config


def resolve_config(config: RunConfig) -> tuple[RunConfig, list[str]]:
    """The config with what the task and strategy supply filled in, and the lines of every rule it breaks."""
    if config.tasks is not None:
        return _resolve_multitask(config)
    canonical = canonical_task(config.task)
    if canonical != config.task:  # `text-classification` -> `classification`, saved as such
        config = config.model_copy(update={"task": canonical})
    task = TASKS.get(config.task)
    problems = [] if task is not None else [_unknown_task(config.task)]
    if task is not None and config.early_stopping.metric is None:
        early = config.early_stopping.model_copy(update={"metric": task.default_metric})
        config = config.model_copy(update={"early_stopping": early})
    strategy, section_errors = resolve_sections(config.strategy)
    problems += [line for prefix, err, schema in section_errors for line in describe_errors(err, schema, prefix)]
    config = config.model_copy(update={"strategy": strategy})
    problems += check_strategy(config.strategy)
    if task is not None:
        problems += task.check_config(config)
    return config, problems + _tracking_problems(config) + _init_problems(config) + _sharding_problems(config) + \
        _distill_problems(config) + _preference_problems(config) + _quantize_problems(config)


def _quantize_problems(config: RunConfig) -> list[str]:
    """QLoRA's 4-bit base: what `validate` can tell before a device is resolved. run_one refuses `auto` that
    resolves to a CPU and a missing bitsandbytes; a finished run loads on a CPU (its base rounded, plain weights)."""
    if not quantized_base(config.strategy):
        return []
    problems = []
    if config.train.device == "cpu":
        problems.append("strategy.lora.quantize: 4-bit base weights (QLoRA) run on a CUDA GPU only (bitsandbytes' "
                        "kernels); train.device is cpu: remove quantize, or set train.device: cuda on a GPU machine")
    if config.train.distributed == "fsdp":
        problems.append("strategy.lora.quantize: not with train.distributed: fsdp (FSDP cannot shard 4-bit "
                        "weights here); use ddp or one process")
    return problems


def _preference_problems(config: RunConfig) -> list[str]:
    """The `preference:` section tunes DPO; on another task it would be silently ignored."""
    task = TASKS.get(config.task)
    if task is None or task.needs_reference or config.preference == PreferenceConfig():
        return []
    return [f"preference.beta: applies to task preference (DPO), not {config.task}; remove the preference section"]


def _distill_problems(config: RunConfig) -> list[str]:
    """Distillation needs logits that are class scores (a teacher's soft targets). The teacher folder itself is
    checked when a run is prepared: a saved student's config must still load once its teacher is gone."""
    task = TASKS.get(config.task)
    if config.strategy.distill is None or task is None or task.soft_targets is not None:
        return []
    takes = ", ".join(name for name, known in TASKS.items() if known.soft_targets is not None)
    return [f"strategy.distill: distillation learns from a teacher's class scores, for tasks {takes}; not task "
            f"{config.task}; remove strategy.distill"]


# a frozen prefix (served from the activation cache or unfrozen block by block) is DDP's: FSDP units shard blocks
_UNSHARDED_STRATEGIES = ("head", "partial", "gradual")


def _sharding_problems(config: RunConfig) -> list[str]:
    """What FSDP (train.distributed: fsdp) does not shard: strategies with a frozen prefix, guards (their
    anchors and Fishers are whole tensors beside the shards) and compiled blocks."""
    if config.train.distributed != "fsdp":
        return []
    problems = []
    if config.strategy.name in _UNSHARDED_STRATEGIES:
        problems.append(f"train.distributed: fsdp shards full and PEFT strategies, not {config.strategy.name} (its frozen "
                        "blocks hold no gradients or optimizer state to shard); use ddp")
    if config.strategy.guard is not None:
        problems.append("strategy.guard: not with train.distributed: fsdp (the guard holds whole copies of the "
                        "weights beside the shards); use ddp")
    if config.train.compile:
        problems.append("train.compile: not with train.distributed: fsdp; turn compile off or use ddp")
    return problems


def _init_problems(config: RunConfig) -> list[str]:
    """A run that starts from an earlier run's weights saves full weights: an adapter is saved against its
    base, which would then be weights no directory holds."""
    if config.model.init_from is None or peft_method(config.strategy.name) is None:
        return []
    return [f"model.init_from: strategy {config.strategy.name} saves an adapter against the base model, not against "
            "an earlier run's weights; use full, partial, gradual or head, or start from the base (an adapter per "
            "task needs no init_from)"]


def _tracking_problems(config: RunConfig) -> list[str]:
    """A tracker the config asks for must be installed: found without importing it (mlflow takes a second),
    so `tunelab validate` says so before any training starts."""
    wanted = {"tracking.tensorboard": "tensorboard" if config.tracking.tensorboard else None,
              "tracking.mlflow": "mlflow" if config.tracking.mlflow is not None else None}
    return [f"{key}: needs {INSTALL[module][0]} (not installed): {INSTALL[module][1]} "
            f"(or pip install \"tunelab[tracking]\" for both trackers)"
            for key, module in wanted.items() if module is not None and missing([module])]


def _name_problems(raw: dict[str, Any]) -> list[str]:
    """Unknown task or strategy names, which a schema failure elsewhere must not hide."""
    problems = []
    task = raw.get("task", "classification")
    if isinstance(task, str) and canonical_task(task) not in TASKS:
        problems.append(_unknown_task(task))
    strategy = raw.get("strategy")
    name = strategy.get("name") if isinstance(strategy, dict) else None
    if isinstance(name, str) and name not in strategy_names():
        problems.append(unknown_strategy(name))
    return problems


def _strategy_problems(raw: dict[str, Any], problems: list[str]) -> list[str]:
    """The strategy section's own problems (a peft key at the wrong level, a method section's typo) when
    the schema failed elsewhere: a user fixing `optim.learning_rate` should not learn of `strategy.r` next."""
    strategy = raw.get("strategy")
    if not isinstance(strategy, dict) or strategy.get("name", "full") not in strategy_names() or \
            any(line.startswith("strategy") for line in problems):
        return []
    try:
        parsed = StrategyConfig.model_validate(strategy)
    except ValidationError:
        return []
    resolved, section_errors = resolve_sections(parsed)
    return [line for prefix, err, schema in section_errors for line in describe_errors(err, schema, prefix)] + \
        check_strategy(resolved)


def _unknown_task(name: str) -> str:
    """The refusal of a task name: the likely meaning of an ambiguous ecosystem name, else the closest name."""
    hinted = task_hint(name)
    close = [hinted] if hinted else difflib.get_close_matches(name, task_names(), n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"task: unknown task {name!r}{hint}; choose one of: {', '.join(task_names())}"


# the tasks a multi-task run takes: one pooled head per task on one text backbone
MULTITASK_TASKS = ("classification", "multilabel", "regression")
_NOT_IN_A_MIXTURE = {
    "token_classification": "it tags every token of sentences read word by word, and is not supported beside "
                            "other tasks yet; train it in a run of its own",
    "image_classification": "it reads images through an image backbone, and the tasks of a run share one text "
                            "backbone and its tokenizer",
}
_PER_TASK_KEYS = ("task", "data", "head", "loss")  # a task's own lines are reported under tasks[i]


def _resolve_multitask(config: RunConfig) -> tuple[RunConfig, list[str]]:
    """A multi-task config: each task's rules checked on its single-task config (its lines under `tasks[i]`), the
    run's own sections once, and what the tasks share filled in: each task's head and loss, the mixing, the
    early-stopping metric (one every task computes: their common default, else loss)."""
    assert config.tasks is not None
    problems = _multitask_refusals(config)
    entries, tasks = [], []
    for i, entry in enumerate(config.tasks):
        canonical = canonical_task(entry.task)
        task = TASKS.get(canonical)
        if task is None:
            problems.append(f"tasks[{i}].{_unknown_task(entry.task)}")
        elif canonical not in MULTITASK_TASKS:
            reason = _NOT_IN_A_MIXTURE.get(canonical, "its head is a language model's own output layer over the "
                                           "vocabulary, not a head on a shared encoder's features")
            problems.append(f"tasks[{i}].task: {canonical} is not offered in a multi-task run ({reason}); "
                            f"tasks: takes {', '.join(MULTITASK_TASKS)}")
        head = entry.head or config.head
        if head.type == "native":
            problems.append(f"tasks[{i}].head.type: native is the architecture's own classifier, and a transformers "
                            "sequence classifier holds one; each task of a multi-task run gets a tunelab head: "
                            "linear (what auto picks) or mlp")
        head = head.model_copy(update={"type": "linear"}) if head.type == "auto" else head
        entries.append(entry.model_copy(update={"task": canonical, "head": head, "loss": entry.loss or config.loss}))
        tasks.append(task if canonical in MULTITASK_TASKS else None)
    defaults = {task.default_metric for task in tasks if task is not None}
    early = config.early_stopping
    if early.metric is None:
        early = early.model_copy(update={"metric": defaults.pop() if len(defaults) == 1 else "loss"})
    config = config.model_copy(update={"tasks": entries, "mixing": config.mixing or MixingConfig(),
                                       "early_stopping": early,
                                       "forgetting": config.forgetting.model_copy(update={"measure": False})})
    strategy, section_errors = resolve_sections(config.strategy)
    problems += [line for prefix, err, schema in section_errors for line in describe_errors(err, schema, prefix)]
    config = config.model_copy(update={"strategy": strategy})
    problems += check_strategy(config.strategy)
    for i, (entry, task) in enumerate(zip(entries, tasks)):
        if task is not None:
            single = config.task_config(entry.name).model_copy(update={"thresholds": ThresholdConfig()})
            problems += [_under_task(line, i) for line in task.check_config(single)]
    problems = list(dict.fromkeys(problems))  # a rule of the shared sections, broken once, said once
    return config, problems + _tracking_problems(config) + _sharding_problems(config)


def require_single_task(config: RunConfig, command: str) -> None:
    """Refuse a multi-task config in a command that runs single-task configs only (compare, tune, recommend)."""
    if config.tasks is not None:
        raise ConfigError(f"{command}: a multi-task config (tasks:) trains with `tunelab train`; {command} takes a "
                          "single-task config (task: and data:) for now")


def _under_task(line: str, index: int) -> str:
    """A task's rule about its own section (data, head, loss) is reported under its place in the list."""
    key = line.split(":", 1)[0].split(" ", 1)[0]
    return f"tasks[{index}].{line}" if key.split(".", 1)[0] in _PER_TASK_KEYS else line


def _multitask_refusals(config: RunConfig) -> list[str]:
    """What a multi-task run does not do yet, each with the key to remove."""
    refused = []
    if config.thresholds.tune:
        refused.append("thresholds.tune: not with tasks: yet (thresholds are tuned for one binary or multilabel task); "
                       "remove it")
    if config.strategy.distill is not None:
        refused.append("strategy.distill: not with tasks: yet (a teacher run has one task); remove it")
    if config.strategy.guard is not None:
        refused.append("strategy.guard: not with tasks: yet (a guard holds one task's data); remove it")
    if config.model.init_from is not None:
        refused.append("model.init_from: not with tasks: yet; start a multi-task run from a model directory "
                       "(model: runs/x/model for a continued pre-training run)")
    forgetting = config.forgetting
    if forgetting.reference is not None or ("measure" in forgetting.model_fields_set and forgetting.measure):
        refused.append("forgetting: the forgetting meter does not run on a multi-task run yet; remove the section")
    return refused
