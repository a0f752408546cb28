"""Save a trained TaskModel as a Hugging Face directory and load a run back for eval and predict.

A native-head model is a plain transformers directory (AutoModelForSequenceClassification loads it);
a tunelab head is saved beside the backbone as `tunelab_head.safetensors` + `tunelab_head.json`. A multi-task
run's model is saved the same way, once: the backbone (or adapter) and every head in that file under its name
(`news.proj.weight`); `load_run(RUN_DIR, head=NAME)` loads the backbone with one of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import yaml
from safetensors.torch import load_file, save_file

from tunelab.atomic import atomic_write_json, atomic_write_with, give_usual_modes
from tunelab.catalog import parse_config
from tunelab.config.schema import RunConfig
from tunelab.errors import ConfigError, ModelError, TunelabError
from tunelab.artifacts.adapter_io import is_adapter_dir, load_adapter, read_meta, save_adapter
from tunelab.artifacts.backbone_io import save_backbone
from tunelab.models.loading import hash_model_dir, resolve_model_dir
from tunelab.strategies.registry import peft_method
from tunelab.models.task_model import TaskModel
from tunelab.tasks.multitask import MultiTask
from tunelab.tasks.registry import get_task

__all__ = ["save_task_model", "save_hf_model", "load_run", "LoadedRun", "HEAD_WEIGHTS", "HEAD_CONFIG"]

HEAD_WEIGHTS = "tunelab_head.safetensors"
HEAD_CONFIG = "tunelab_head.json"


def save_task_model(model: TaskModel, tokenizer: Any, out_dir: Path, config: RunConfig) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    if get_task(config.task).saves_backbone:  # continued pre-training: a backbone a later run starts from
        save_backbone(model, tokenizer, out_dir, resolve_model_dir(config.model.name))
        return
    method = peft_method(config.strategy.name)
    if method is not None:  # PEFT: adapter weights + head + config only, never a copy of the base
        base_dir = resolve_model_dir(config.model.name)
        tokenizer.save_pretrained(out_dir)
        save_adapter(model, out_dir, config, method, base_hash=hash_model_dir(base_dir), base_dir=str(base_dir))
        give_usual_modes(out_dir)
        return
    save_hf_model(model, tokenizer, out_dir, config)


def save_hf_model(model: TaskModel, tokenizer: Any, out_dir: Path, config: RunConfig) -> None:
    """A plain transformers directory (plus the tunelab head files when the head is not native)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.network.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    give_usual_modes(out_dir)  # save_pretrained's safetensors files come out 0600
    if model.head is not None:
        state = {k: v.detach().contiguous().cpu() for k, v in model.head.state_dict().items()}
        atomic_write_with(out_dir / HEAD_WEIGHTS, lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"}))
        atomic_write_json(out_dir / HEAD_CONFIG, {"format_version": 1, **_head_settings(config)})


def _head_settings(config: RunConfig) -> dict[str, Any]:
    if config.tasks is None:
        return config.head.model_dump()
    return {"heads": {entry.name: entry.head.model_dump() for entry in config.tasks if entry.head is not None}}


@dataclass
class LoadedRun:
    config: RunConfig
    model: TaskModel
    tokenizer: Any
    label_names: list[str]


def load_run(run_dir: str | Path, head: Optional[str] = None) -> LoadedRun:
    """Load a finished run directory: its resolved config, labels, model and tokenizer. A multi-task run loads
    with one of its heads (`head`), as that task's single-task run: its config, labels and model."""
    run_dir = Path(run_dir)
    for name in ("config.yaml", "labels.json", "model"):
        if not (run_dir / name).exists():
            raise TunelabError(f"{run_dir}: not a tunelab run directory (no {name}); give the folder a `tunelab train` wrote")
    config = parse_config(yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")), source=str(run_dir / "config.yaml"))
    labels = json.loads((run_dir / "labels.json").read_text(encoding="utf-8"))
    _check_head(run_dir, config, head)
    label_names = labels["labels"]
    multi = MultiTask.of(config, {n: h["labels"] for n, h in labels["heads"].items()}) if config.tasks else None
    build: Callable[[Path], TaskModel] = ((lambda d: multi.build_model(config.model, d)) if multi is not None else
                                          (lambda d: get_task(config.task).build_model(config.model, config.head,
                                                                                       label_names, d)))
    model_dir = run_dir / "model"
    if is_adapter_dir(model_dir):
        model = _load_adapter_run(model_dir, config, build)
    else:
        model = build(model_dir)
    if model.head is not None and not is_adapter_dir(model_dir):
        weights = model_dir / HEAD_WEIGHTS
        if not weights.is_file():
            raise ModelError(f"{model_dir}: {HEAD_WEIGHTS} is missing; the trained head cannot be restored")
        model.head.load_state_dict(load_file(str(weights)))
    model.eval()
    if multi is not None and head is not None:  # the backbone with that head, as its task's single-task run
        one = multi.heads[head]
        model = model.head_view(head)
        config, label_names = one.config, one.label_names
    task = get_task(config.task)
    return LoadedRun(config=config, model=model, tokenizer=task.load_preprocessor(model_dir, config), label_names=label_names)


def _check_head(run_dir: Path, config: RunConfig, head: Optional[str]) -> None:
    """A multi-task run is loaded with one of its heads, named; a single-task run has one head, not named."""
    if config.tasks is None:
        if head is not None:
            raise ConfigError(f"--head {head}: {run_dir} is a single-task run (one head); --head picks a head of a "
                              "multi-task run: remove it")
        return
    names = ", ".join(entry.name for entry in config.tasks)
    if head is None:
        raise ConfigError(f"{run_dir}: a multi-task run with heads {names}; `tunelab predict` and `eval` load one "
                          "head with --head NAME (export, serve, merge and the other commands take single-task runs "
                          "for now)")
    if head not in {entry.name for entry in config.tasks}:
        raise ConfigError(f"--head {head}: {run_dir} has no head {head!r}; its heads: {names}")


def _load_adapter_run(model_dir: Path, config: RunConfig, build: Callable[[Path], TaskModel]) -> TaskModel:
    """Base model from the config (checked against the hash recorded at training time) + the saved adapter."""
    meta = read_meta(model_dir)
    method = peft_method(meta.get("method", ""))
    if method is None:
        raise ModelError(f"{model_dir}: adapter method {meta.get('method')!r} is not known to this tunelab; upgrade tunelab")
    base_dir = resolve_model_dir(config.model.name)
    if meta.get("base_model_hash") and hash_model_dir(base_dir) != meta["base_model_hash"]:
        raise ModelError(f"{model_dir}: the adapter was trained on other base weights than those in {base_dir}; "
                         "point model.name in the run's config.yaml at the original base model")
    model = build(base_dir)
    load_adapter(model, model_dir, config, method)
    return model
