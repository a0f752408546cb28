"""What a guard needs of an earlier run of a task sequence: its model (for EWC's Fisher), its head's trained
tensors (replay scores its examples through them) and a seeded sample of its training split, encoded with
its own tokenizer and label set, with its own task loss. Read from the run directory alone, so a sequence can
be continued by hand (`tunelab train next.yaml` with `strategy.guard.runs: [...]`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tunelab.artifacts.model_io import load_run
from tunelab.data.encoding import EncodedSplit
from tunelab.data.sources import load_data
from tunelab.errors import ModelError
from tunelab.inference.predict import encode_split
from tunelab.models.task_model import TaskModel
from tunelab.tasks.registry import get_task

__all__ = ["EarlierRun", "load_earlier_run", "head_tensors", "check_same_backbone", "seeded_sample"]


@dataclass
class EarlierRun:
    run_dir: Path
    model: TaskModel
    train: EncodedSplit                # a seeded sample of its training split
    loss_fn: nn.Module
    pad_id: int
    label_names: list[str]


def load_earlier_run(run_dir: str | Path, examples: int, seed: int) -> EarlierRun:
    """The run at `run_dir` with at most `examples` of its training examples (seeded by `seed`)."""
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    config = run.config
    task = get_task(config.task)
    data = load_data(config.data, task, config.split_seed)
    records = data.splits.train
    if len(records) > examples:
        keep = np.random.default_rng(seed).choice(len(records), examples, replace=False)
        records = [records[int(i)] for i in sorted(keep)]
    train = encode_split(records, run.tokenizer, config.data.max_length, task, run.label_names)
    loss_fn = task.loss_fn(config.loss, train, run.label_names)
    pad_id = getattr(run.tokenizer, "pad_token_id", None) or 0
    return EarlierRun(run_dir, run.model, train, loss_fn, pad_id, run.label_names)


def head_tensors(earlier: EarlierRun, model: TaskModel) -> dict[str, torch.Tensor]:
    """The earlier run's head (its LayerStack head group), by the names `model` gives the same parameters."""
    stack = earlier.model.layer_stack
    head = {n: p.detach() for n, p in earlier.model.named_parameters() if stack.group_of(n) == stack.head_group}
    ours = dict(model.named_parameters())
    foreign = [n for n in head if n not in ours]
    if foreign or not head:
        raise ModelError(f"{earlier.run_dir}: its head ({foreign[0] if foreign else 'none found'}) is not this "
                         "model's; an earlier run of a sequence needs the same backbone and head type")
    return head


def check_same_backbone(earlier: EarlierRun, names: list[str]) -> None:
    """The parameters a guard holds exist in the earlier run's model (the same architecture)."""
    theirs: dict[str, Any] = dict(earlier.model.named_parameters())
    missing = [n for n in names if n not in theirs]
    if missing:
        raise ModelError(f"{earlier.run_dir}: its model lacks {len(missing)} of this run's parameters (first: "
                         f"{missing[0]}); an earlier run of a sequence needs the same backbone")


def seeded_sample(split: EncodedSplit, examples: int, seed: int) -> EncodedSplit:
    """At most `examples` of `split`, drawn by `seed` (a guard's reference: EWC's Fisher, replay's sources)."""
    if len(split) <= examples:
        return split
    keep = np.random.default_rng(seed).choice(len(split), examples, replace=False)
    return split.select(sorted(int(i) for i in keep))
