"""`model.init_from`: a run that starts from an earlier run's embeddings and blocks instead of the base
model's, with a fresh head for its own task. The next task of a sequence (`tunelab continual`) is such a run;
so is any hand-made one (`tunelab train next.yaml --set model.init_from=runs/first`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from tunelab.artifacts.model_io import load_run
from tunelab.config.schema import RunConfig
from tunelab.errors import ModelError
from tunelab.models.task_model import TaskModel

__all__ = ["backbone_state", "load_backbone"]


def backbone_state(run_dir: Path | str, config: RunConfig) -> dict[str, torch.Tensor]:
    """The embeddings' and blocks' tensors (every group but the head) of the run at `run_dir`, which must
    have been trained from the same base model with the same head type."""
    run = load_run(run_dir)
    if run.config.model.name != config.model.name or run.config.head.type != config.head.type:
        raise ModelError(f"model.init_from {run_dir}: that run is {run.config.model.name} with a "
                         f"{run.config.head.type} head, this one {config.model.name} with a {config.head.type} head; "
                         "start from a run of the same backbone and head type")
    names = _backbone_names(run.model)
    return {name: tensor.detach().clone() for name, tensor in run.model.state_dict().items() if name in names}


def load_backbone(model: TaskModel, state: Optional[dict[str, torch.Tensor]], source: Optional[str]) -> TaskModel:
    """`model` with `state` loaded over its embeddings and blocks (its head as built); `model` without a state."""
    if state is None:
        return model
    ours = _backbone_names(model)
    if ours != set(state):
        odd = sorted(ours ^ set(state))
        raise ModelError(f"model.init_from {source}: its backbone differs from this model's ({len(odd)} tensors, "
                         f"first: {odd[0]}); start from a run of the same backbone and head type")
    model.load_state_dict(state, strict=False)
    return model


def _backbone_names(model: TaskModel) -> set[str]:
    """State-dict names of every LayerStack group but the head: what init_from carries from run to run."""
    stack = model.layer_stack
    return {name for name in model.state_dict() if stack.group_of(name) != stack.head_group}
