"""Read a YAML config, apply `--set key.path=value` overrides, validate its schema, and describe every error.

The rules that need a task or a strategy are not here (this package imports nothing of tunelab but errors):
`tunelab.catalog.load_config` / `parse_config` run these schema checks and those rules and report every
problem at once.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Optional

import yaml
from pydantic import BaseModel, ValidationError

from tunelab.config.schema import RunConfig
from tunelab.errors import ConfigError, bullet_lines

__all__ = ["read_config_file", "validate_schema", "describe_errors", "problems_error", "apply_overrides",
           "as_override", "config_to_yaml"]


# Names other tools use for our keys: a user coming from HF Trainer or Axolotl gets pointed at ours.
ALIASES = {
    "learning_rate": "lr", "num_epochs": "epochs", "num_train_epochs": "epochs", "epoch": "epochs",
    "per_device_train_batch_size": "batch_size", "gradient_accumulation_steps": "grad_accum_steps",
    "lr_scheduler_type": "name", "scheduler": "schedule", "lr_scheduler": "schedule", "optimizer": "optim",
    "max_seq_length": "max_length", "sequence_len": "max_length", "output_dir": "output", "base_model": "model",
    "warmup": "warmup_ratio", "clip_grad_norm": "max_grad_norm", "max_norm": "max_grad_norm",
}


def read_config_file(path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """The mapping in the YAML file at `path` with the overrides applied; relative data paths resolve against
    the config's folder."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found; give the path of a YAML file (see configs/ for examples)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); save the file as UTF-8") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{path}{where}: invalid YAML: {problem}; fix the syntax at that position") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections (model:, data:, ...), got {type(raw).__name__}")
    raw = apply_overrides(raw, overrides or [])
    _resolve_data_paths(raw, path.parent)
    return raw


def validate_schema(raw: dict[str, Any]) -> tuple[Optional[RunConfig], list[str]]:
    """The typed config (None if the schema refuses it) and one line per schema problem."""
    try:
        return RunConfig.model_validate(raw), []
    except ValidationError as err:
        return None, describe_errors(err, RunConfig)


def describe_errors(err: ValidationError, model: type[BaseModel], prefix: str = "") -> list[str]:
    """One line per validation error: its key path (under `prefix`), what is wrong and what to do."""
    return [_describe(e, model, prefix) for e in err.errors()]


def problems_error(source: str, lines: list[str]) -> ConfigError:
    noun = "problem" if len(lines) == 1 else "problems"
    return ConfigError(f"{source}: {len(lines)} config {noun}:\n" + bullet_lines(lines))


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of `raw` with each `a.b.c=value` set; the value is parsed as YAML (`3`, `1e-4`, `[a, b]`)."""
    result = yaml.safe_load(yaml.safe_dump(raw)) or {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key.path=value, for example --set optim.lr=1e-4")
        node = result
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if isinstance(child, str) and part == "model":  # `model: minilm` shorthand
                child = {"name": child}
            if not isinstance(child, dict):
                child = {}
            node[part] = child
            node = child
        node[parts[-1]] = _parse_value(value)
    return result


def as_override(key: str, value: Any) -> str:
    """`key=value` as `apply_overrides` reads it back to the same value (strings quoted, numbers and lists as
    written): the one way code, not a user, sets a key path (compare's rows, tune's trials)."""
    return f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}"


def _parse_value(text: str) -> Any:
    """YAML scalars, plus `1e-4`, which YAML 1.1 would leave as a string."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def config_to_yaml(config: RunConfig) -> str:
    """The resolved config as YAML: every default spelled out, so a run repeats from its directory alone."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def _resolve_data_paths(raw: dict[str, Any], base: Path) -> None:
    tasks = raw.get("tasks")
    for entry in tasks if isinstance(tasks, list) else []:  # a multi-task config: each task's data section
        if isinstance(entry, dict):
            _resolve_data_paths(entry, base)
    data = raw.get("data")
    if not isinstance(data, dict):
        return
    for key in ("train", "validation", "test"):
        value = data.get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute() and not Path(value).exists():
            candidate = base / value
            if candidate.exists():
                data[key] = str(candidate)


def _describe(error: Any, model: type[BaseModel], prefix: str) -> str:
    loc = _key_path([prefix] if prefix else [], error["loc"])
    kind = error["type"]
    msg = error["msg"].removeprefix("Value error, ")
    if kind == "extra_forbidden":
        return f"{loc}: unknown key{_did_you_mean(model, error['loc'])}; remove it or fix the spelling"
    if kind == "missing":
        return f"{loc}: required key is missing; add it"
    value = error.get("input")
    shown = "" if isinstance(value, dict) else f", got {value!r}"
    return f"{loc or 'config'}: {msg}{shown}"


def _section_type(annotation: Any) -> Optional[type[BaseModel]]:
    """The section class a field holds: itself, or inside Optional[...] / list[...] (tasks: a list of sections)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _section_type(arg)
        if found is not None:
            return found
    return None


def _key_path(start: list[str], loc: tuple[Any, ...]) -> str:
    """`tasks[1].data.label_column`: keys joined by dots, list positions in brackets."""
    path = ".".join(start)
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not str(part).startswith("function-"):
            path += f".{part}" if path else str(part)
    return path


def _did_you_mean(root: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """Suggest the closest valid key for an unknown one, by walking the schema along `loc`: the other tool's
    name first (a section class may declare its own `foreign_names`, as the PEFT methods' do for peft's),
    then the nearest spelling, else the valid keys."""
    model: type[BaseModel] | None = root
    for part in loc[:-1]:
        if isinstance(part, int):  # a list's item (tasks[1]): its type was found at the list's key
            continue
        field = model.model_fields.get(str(part)) if model else None
        model = _section_type(getattr(field, "annotation", None))
    if model is None:
        return ""
    key = str(loc[-1])
    aliases = {**ALIASES, **getattr(model, "foreign_names", {})}
    if aliases.get(key) in model.model_fields:
        return f" (did you mean {aliases[key]!r}?)"
    close = difflib.get_close_matches(key, list(model.model_fields), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else f" (valid keys: {', '.join(model.model_fields)})"
