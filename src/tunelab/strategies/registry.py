"""The one list of strategies: the depth strategies and the PEFT methods, one entry each. Config validation
and the CLI derive their choices from it; a new PEFT method is its file (section, rules, apply) plus one
line in PEFT_METHODS, and the layers it inserts in `strategies/peft/<method>_layers.py`.

Importing this module imports no torch (`tunelab validate` reads every method's section and rules through
it): the method files import their layers, and the depth strategies the models package, when they compile.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

from pydantic import BaseModel, ValidationError

from tunelab.config.schema import OptimConfig, StrategyConfig
from tunelab.errors import ConfigError
from tunelab.strategies.distill import DISTILL_KEY, DistillSection, attach_distillation, check_distill_shape
from tunelab.strategies.guards import GUARDS, PLANNED, GuardSection
from tunelab.strategies.depth import compile_full, compile_gradual, compile_head, compile_partial
from tunelab.strategies.peft.adapters import HoulsbyMethod, PfeifferMethod
from tunelab.strategies.peft.base import PeftMethod, PeftSection
from tunelab.strategies.peft.bitfit import BitFitMethod
from tunelab.strategies.peft.ia3 import IA3Method
from tunelab.strategies.peft.lora import LoraMethod
from tunelab.strategies.peft.prefix import PrefixTuningMethod
from tunelab.strategies.peft.prompt import PromptTuningMethod
from tunelab.strategies.plan import Plan

if TYPE_CHECKING:
    from tunelab.models.task_model import TaskModel

__all__ = ["DEPTH_STRATEGIES", "PEFT_METHODS", "strategy_names", "compile_strategy", "peft_method", "check_strategy",
           "resolve_sections", "unknown_strategy", "GUARD_KEY", "DISTILL_KEY", "distill_section"]

GUARD_KEY = "guard"  # strategy.guard: a forgetting guard's section, for every strategy (strategies/guards/)
Compiler = Callable[[StrategyConfig, "TaskModel", OptimConfig, int], Plan]

DEPTH_STRATEGIES: dict[str, Compiler] = {
    "full": compile_full,
    "head": compile_head,
    "partial": compile_partial,
    "gradual": compile_gradual,
}

# Parameter-efficient methods, one instance each: their compile step is their strategy.
PEFT_METHODS: dict[str, PeftMethod] = {
    "lora": LoraMethod(),
    "ia3": IA3Method(),
    "bitfit": BitFitMethod(),
    "houlsby": HoulsbyMethod(),
    "pfeiffer": PfeifferMethod(),
    "prompt_tuning": PromptTuningMethod(),
    "prefix_tuning": PrefixTuningMethod(),
}


def peft_method(name: str) -> Optional[PeftMethod]:
    """The PEFT method behind strategy `name`, or None for the depth strategies."""
    return PEFT_METHODS.get(name)


def strategy_names() -> list[str]:
    return [*DEPTH_STRATEGIES, *PEFT_METHODS]


def compile_strategy(config: StrategyConfig, model: TaskModel, optim: OptimConfig, epochs: int) -> Plan:
    """Strategy (data) + model -> Plan (names, param groups, events), with the guard's penalty when
    `strategy.guard` names one (EWC's Fisher is filled in by the caller, which has the data) and the soft-target
    term when `strategy.distill` is given (the teacher's logits likewise)."""
    method = PEFT_METHODS.get(config.name)
    compiler = method.compile if method is not None else DEPTH_STRATEGIES.get(config.name)
    if compiler is None:
        raise ConfigError(unknown_strategy(config.name))
    plan = compiler(config, model, optim, epochs)
    guard = guard_section(config)
    plan = GUARDS[guard.name].attach(plan, model, guard) if guard is not None else plan
    distill = distill_section(config)
    return attach_distillation(plan, distill) if distill is not None else plan


def distill_section(config: StrategyConfig) -> Optional[DistillSection]:
    """The resolved `strategy.distill` section, or None without one (validated here when built in code)."""
    raw: Any = (config.model_extra or {}).get(DISTILL_KEY)
    if raw is None or isinstance(raw, DistillSection):
        return raw
    return DistillSection.model_validate(raw)


def guard_section(config: StrategyConfig) -> Optional[GuardSection]:
    """The resolved `strategy.guard` section, or None without one (validated here when built in code)."""
    raw: Any = (config.model_extra or {}).get(GUARD_KEY)
    if raw is None or isinstance(raw, GuardSection):
        return raw
    return GUARDS[raw["name"]].Section.model_validate(raw)


def check_guard(raw: Any) -> list[str]:
    """The guard's name: known, or planned (said so), or missing; its options are its section's schema's."""
    if isinstance(raw, GuardSection):
        return []
    if not isinstance(raw, dict):
        return [f"strategy.{GUARD_KEY}: expected a mapping such as {{name: l2sp, strength: 0.01}}, got {raw!r}"]
    name = raw.get("name")
    if name in GUARDS:
        return []
    if name in PLANNED:
        return [f"strategy.{GUARD_KEY}.name: {PLANNED[name]}; choose one of: {', '.join(GUARDS)}"]
    what = "is missing" if name is None else f"unknown guard {name!r}"
    return [f"strategy.{GUARD_KEY}.name: {what}; choose one of: {', '.join(GUARDS)}"]


def unknown_strategy(name: str) -> str:
    """The one refusal of a strategy name, wherever it is found (config validation, compile)."""
    return f"strategy.name: unknown strategy {name!r}; choose one of: {', '.join(strategy_names())}"


def section_names() -> dict[str, str]:
    """Every PEFT section key and the first method that reads it (houlsby and pfeiffer share `adapter`)."""
    names: dict[str, str] = {}
    for method in PEFT_METHODS.values():
        names.setdefault(method.section, method.name)
    return names


def check_strategy(config: StrategyConfig) -> list[str]:
    """The rules that need the registry: a known name, the options that fit it, and no section of another
    method. One line per problem, with its key path and the fix."""
    if config.name not in strategy_names():
        return [unknown_strategy(config.name)]
    errors: list[str] = []
    method = peft_method(config.name)
    if config.name == "partial" and config.freeze_blocks is None and not config.freeze_patterns:
        errors.append("strategy: strategy partial needs freeze_blocks (an int) or freeze_patterns (globs)")
    if method is not None:
        try:
            errors += method.check_config(config)
        except ValidationError:  # its section is invalid: resolve_sections reports that, with key paths
            pass
    elif config.name != "partial" and (config.freeze_blocks is not None or config.freeze_patterns):
        errors.append(f"strategy: freeze_blocks / freeze_patterns apply to strategy partial, not {config.name!r}")
    sections = section_names()
    for key, value in (config.model_extra or {}).items():
        if value is None:  # `lora: null`, as configs saved before sections moved to their methods spell it
            continue
        if key == GUARD_KEY:
            errors += check_guard(value)
        elif key == DISTILL_KEY:
            errors += check_distill_shape(value)
        elif key not in sections:
            errors.append(_unknown_key(key, config.name, sections))
        elif method is None or method.section != key:
            wanted = f"strategy.{method.section}" if method else "no method section"
            errors.append(f"strategy.{key}: strategy.{key} is given but strategy {config.name!r} reads {wanted}; "
                          f"remove strategy.{key} or choose a strategy that uses it")
    return errors


SectionErrors = list[tuple[str, ValidationError, type[BaseModel]]]


def resolve_sections(config: StrategyConfig) -> tuple[StrategyConfig, SectionErrors]:
    """The chosen method's section, the guard's and the distillation's, each validated by the schema declared
    with it and filled with its defaults (so the resolved config shows them); the validation errors, with the
    section's key path and schema."""
    resolved, errors = config.model_copy(), []
    method = peft_method(config.name)
    raw_guard: Any = (config.model_extra or {}).get(GUARD_KEY)
    wanted = [(method.section, method.Section)] if method is not None else []
    if isinstance(raw_guard, dict) and raw_guard.get("name") in GUARDS:  # a bad name: check_guard says so
        wanted.append((GUARD_KEY, GUARDS[raw_guard["name"]].Section))
    if isinstance((config.model_extra or {}).get(DISTILL_KEY), (dict, BaseModel)):  # another type: check_strategy
        wanted.append((DISTILL_KEY, DistillSection))
    for key, schema in wanted:
        raw: Any = (config.model_extra or {}).get(key)
        if isinstance(raw, BaseModel):
            raw = raw.model_dump()
        try:
            setattr(resolved, key, schema.model_validate(raw or {}))
        except ValidationError as err:
            errors.append((f"strategy.{key}", err, schema))
    return resolved, errors


def _unknown_key(key: str, strategy: str, sections: dict[str, str]) -> str:
    """The line for an unknown key under `strategy:`. peft and Axolotl configs put a method's options (`r`,
    `lora_alpha`, `target_modules`) beside its name, so a key that is an option of a method's section, under
    tunelab's name or another tool's, is pointed at its place in that section."""
    method = peft_method(strategy)
    if key in ("lr", "learning_rate") and method is None:
        return (f"strategy.{key}: unknown key; the learning rate is optim.lr (blocks and head scale it with "
                "strategy.layerwise_lr_decay and strategy.head_lr_multiplier); move it there")
    own = _section_key(method, "lr" if key == "learning_rate" else key) if method is not None else None
    if method is not None and own is not None:
        return (f"strategy.{key}: unknown key; {method.title or method.name} options live under "
                f"strategy.{method.section}: strategy.{method.section}.{own}; move it there")
    places: dict[str, list[str]] = {}   # `strategy.<section>.<key>` -> the strategies that read it
    for other in PEFT_METHODS.values():
        field = _section_key(other, key) if key not in PeftSection.model_fields else None  # `lr`: every method's
        if field is not None:
            places.setdefault(f"strategy.{other.section}.{field}", []).append(other.name)
    if places:
        where = " or ".join(f"{path} (with strategy.name: {' or '.join(names)})" for path, names in places.items())
        return f"strategy.{key}: unknown key for strategy {strategy!r}; it is a method option: {where}"
    return (f"strategy.{key}: unknown key{_did_you_mean(key, [*StrategyConfig.model_fields, *sections])}; "
            "remove it or fix the spelling")


def _section_key(method: PeftMethod, key: str) -> Optional[str]:
    """tunelab's key in `method`'s section for `key` (its own name or peft's / Axolotl's), or None."""
    fields = method.Section.model_fields
    return key if key in fields else method.Section.foreign_names.get(key)


def _did_you_mean(key: str, valid: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else f" (valid keys: {', '.join(valid)})"
