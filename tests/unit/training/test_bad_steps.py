"""NaN/Inf steps are not applied; a streak of them stops the run naming the step and causes, last checkpoint intact."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from tunelab.errors import TrainingError
from tunelab.strategies import compile_strategy
from tunelab.training import Trainer
from tunelab.training.callbacks import Callback
from tunelab.training.checkpoint import CheckpointStore, verify


class NaNOnCalls(nn.Module):
    """The real loss, times NaN on the chosen (1-based) calls."""

    def __init__(self, inner: nn.Module, bad: set[int]) -> None:
        super().__init__()
        self.inner, self.bad, self.calls = inner, bad, 0

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        loss = self.inner(logits, targets)
        return loss * float("nan") if self.calls in self.bad else loss


class Snapshots(Callback):
    def __init__(self, model: nn.Module) -> None:
        self.model, self.after_step = model, {}

    def on_step_end(self, state, control) -> None:
        self.after_step[state.step] = [p.detach().clone() for p in self.model.parameters()]


def build(build_training, raw: dict, bad: set[int]):
    config, task, data, model, enc, loss_fn = build_training(raw)
    loss_fn = NaNOnCalls(loss_fn, bad)
    snapshots = Snapshots(model)
    trainer = Trainer(config, task, data.label_names, loss_fn, torch.device("cpu"), 0, [snapshots])
    plan = compile_strategy(config.strategy, model, config.optim, config.train.epochs)
    return config, trainer, model, plan, enc, snapshots


def test_a_bad_step_is_skipped_and_training_goes_on(tiny_config: dict, build_training) -> None:
    tiny_config["train"].update(epochs=1, max_bad_steps=2)
    config, trainer, model, plan, enc, snapshots = build(build_training, tiny_config, bad={3})
    result = trainer.fit(model, plan, enc["train"], enc["validation"])
    assert result.steps == 9
    unchanged = all(torch.equal(a, b) for a, b in zip(snapshots.after_step[2], snapshots.after_step[3]))
    changed = any(not torch.equal(a, b) for a, b in zip(snapshots.after_step[3], snapshots.after_step[4]))
    assert unchanged and changed
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_consecutive_bad_steps_stop_the_run_and_keep_the_last_good_checkpoint(tiny_config: dict, tmp_path: Path, build_training) -> None:
    tiny_config["train"].update(epochs=2, max_bad_steps=3, checkpoint_every_steps=2)
    config, trainer, model, plan, enc, snapshots = build(build_training, tiny_config, bad=set(range(5, 100)))
    store = CheckpointStore(tmp_path / "checkpoints", keep=5)
    with pytest.raises(TrainingError) as err:
        trainer.fit(model, plan, enc["train"], enc["validation"], checkpoints=store)
    message = str(err.value)
    assert "stopped at step 7 (epoch 1)" in message and "3 consecutive steps (5-7" in message
    assert "optim.lr=0.003" in message and "train.precision" in message
    assert f"{tmp_path / 'checkpoints' / 'step-00000004'}" in message
    assert [p.name for p in store.names()] == ["step-00000002", "step-00000004"]  # none written during the streak
    assert verify(store.names()[-1]) is None
    assert all(torch.equal(a, b) for a, b in zip(snapshots.after_step[4], snapshots.after_step[6]))
