"""Everything a run needs that depends only on the config's task, data, model and seed: done once, shared
by every `run_one` on it (the strategies of a comparison, the trials of a search)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from rich.console import Console

from tunelab.artifacts.manifest import hash_records
from tunelab.config.schema import RunConfig
from tunelab.data.encoding import EncodedSplit
from tunelab.data.records import Splits
from tunelab.data.sources import load_data
from tunelab.errors import ConfigError, check_all
from tunelab.inference.predict import encode_split
from tunelab.models.loading import hash_model_dir, resolve_model_dir
from tunelab.tasks.base import Task
from tunelab.tasks.registry import get_task
from tunelab.training.device import resolve_run_precision, seed_everything, select_device

__all__ = ["Prepared", "prepare", "SPLITS"]

SPLITS = ("train", "validation", "test")
# what a prepared run fixed: a run_one config must agree on these (the rest, strategy, optimisation,
# schedule, epochs, output, is free)
_FIXED = ("model", "task", "data", "head")
_FIXED_TRAIN = ("seed", "device", "precision", "num_threads")


@dataclass
class Prepared:
    config: RunConfig                  # as resolved: the precision that runs on this device
    task: Task
    device: torch.device
    splits: Splits
    label_names: list[str]
    data_hashes: dict[str, str]
    model_dir: Path
    base_model_hash: str
    tokenizer: Any                     # the task's preprocessor (tokenizer, image preprocessor)
    encoded: dict[str, EncodedSplit]

    def settle(self, config: Optional[RunConfig] = None) -> RunConfig:
        """`config` (default: the prepared one) with this device's precision; refused when it changes what
        was prepared (data, model, task, head, seed, device), naming the key."""
        if config is None:
            return self.config
        changed = [k for k in _FIXED if getattr(config, k) != getattr(self.config, k)]
        changed += [f"train.{k}" for k in _FIXED_TRAIN if k != "precision"
                    and getattr(config.train, k) != getattr(self.config.train, k)]
        if changed:
            raise ConfigError(f"{', '.join(changed)}: differ from the prepared run's; prepare again for another "
                              "data set, model or seed")
        settled, _ = resolve_run_precision(config, self.device)
        return settled


def prepare(config: RunConfig, *, trust_pickle: bool = False, console: Optional[Console] = None,
            checks: Sequence[Callable[[], object]] = ()) -> Prepared:
    """Read, split and hash the data, resolve and hash the model directory, load the task's preprocessor and
    encode the three splits: once per config, whatever is trained on them afterwards.

    `checks` (the caller's, e.g. the output folder's) run with the data and model checks, none stopping the
    others, so a user sees every problem of the output, data and model in one message (errors.check_all)."""
    console = console or Console(stderr=True)
    task = get_task(config.task)
    seed_everything(config.train.seed)
    device = select_device(config.train)
    config, note = resolve_run_precision(config, device)
    if note:
        console.print(note)
    *_, data, (model_dir, tokenizer) = check_all([*checks, lambda: load_data(config.data, task, config.train.seed),
                                                  lambda: _model_side(config, task, trust_pickle)])
    encoded = {name: encode_split(getattr(data.splits, name), tokenizer, config.data.max_length, task,
                                  data.label_names, train=name == "train") for name in SPLITS}
    return Prepared(config=config, task=task, device=device, splits=data.splits, label_names=data.label_names,
                    data_hashes={name: hash_records(getattr(data.splits, name)) for name in SPLITS},
                    model_dir=model_dir, base_model_hash=hash_model_dir(model_dir), tokenizer=tokenizer,
                    encoded=encoded)


def _model_side(config: RunConfig, task: Task, trust_pickle: bool) -> tuple[Path, Any]:
    """The model directory and the task's preprocessor from it: everything prepare reads of the model,
    checked without the data."""
    model_dir = resolve_model_dir(config.model.name, trust_pickle)
    return model_dir, task.load_preprocessor(model_dir, config)
